"""Distillation configuration as code: the student's :class:`TrainConfig` plus how it is taught.

A :class:`DistillConfig` is serialised to JSON (``distill.json`` in the run directory, with its
hash) and identified by its :meth:`~DistillConfig.hash`; a run directory is only ever resumed with
the same config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdcomplex._config_base import Config, option
from sdcomplex._config_files import read_config_object
from sdcomplex._config_kinds import Choice, Int, Nested, Optional, Real
from sdcomplex._config_kinds import Path as PathKind
from sdcomplex.train import TrainConfig

MODES = ("none", "offline", "online")
"""Distillation modes: labels only, a fixed teacher checkpoint, the teacher's trajectory."""


@dataclass(frozen=True, kw_only=True)
class DistillSettings(Config):
    """The settings of distillation runs shared by every method and seed (keyword-only).

    A :class:`DistillConfig` has these fields, and so has a reproduction's
    :class:`~sdcomplex.reproduce.DistillationSpec`, which passes them on to each of its runs
    (:meth:`settings`); they are declared once, here.

    Attributes:
        alpha: weight of the label cross-entropy in the KD loss, in [0, 1] (0: pure teacher).
        stride: online KD replays every ``stride``-th teacher checkpoint and the last.
        diagnostics_every: log diagnostics at epochs 0, k, 2k, ... and the last epoch (0: none).
        probe_size: examples of the class-balanced probe subset of the training set on which the
            student's NTK and the supervision complexities are computed.
        probe_seed: seed of the probe subset and of the fidelity subsets.
        random_labels_seed: seed of the random labels whose complexity is logged.
        fidelity_examples: train and test fidelity (and ``train_kd_loss``) are measured on
            fixed class-balanced random subsets of this many training and test examples
            (``None``: the whole splits). 1000 examples give a standard error of at most 1.6
            points and keep the current checkpoint's forward passes cheap.
    """

    alpha: float = option(Real(low=0.0, high=1.0), 0.0)
    stride: int = option(Int(minimum=1), 1)
    diagnostics_every: int = option(Int(minimum=0), 1, metavar="K")
    probe_size: int = option(Int(minimum=2), 256)
    probe_seed: int = option(Int(minimum=0), 0)
    random_labels_seed: int = option(Int(minimum=0), 0)
    fidelity_examples: int | None = option(Optional(Int(minimum=1)), 1000, metavar="N")

    def settings(self) -> dict[str, Any]:
        """The :class:`DistillSettings` fields and their values."""
        return {name: getattr(self, name) for name in DistillSettings.field_names()}


@dataclass(frozen=True)
class DistillConfig(DistillSettings):
    """Every setting of a distillation run (frozen; JSON round trip; stable hash).

    The fields of :class:`DistillSettings` (``alpha``, ``stride``, ``diagnostics_every``,
    ``probe_size``, ``probe_seed``, ``random_labels_seed``, ``fidelity_examples``) are
    keyword-only.

    Attributes:
        student: the student's model, data, optimiser, epochs, seed, ... (a :class:`TrainConfig`;
            a dict of its fields is converted). Its data must match the teacher's (same data
            set, class count and input shape), which :func:`~sdcomplex.distill.distill` checks
            before training.
        mode: ``"none"`` (labels only, cross-entropy), ``"offline"`` (one teacher checkpoint) or
            ``"online"`` (the teacher's checkpoint trajectory replayed on the schedule of
            :func:`~sdcomplex.distill.online_schedule`).
        teacher_dir: the teacher's run directory (written by :func:`~sdcomplex.train.train`);
            required unless ``mode == "none"``, where it is optional and only used by the
            diagnostics (fidelity and complexity of its targets).
        teacher_epoch: offline KD: the checkpoint epoch that supervises (early stopping);
            ``None``: the final one.
        temperature: tau > 0 of the KD loss and of the teacher soft targets in the diagnostics.

    Example:
        >>> cfg = DistillConfig(student=TrainConfig(model="mlp", dataset="digits",
        ...                     augment=False), teacher_dir="runs/teacher", mode="offline")
        >>> DistillConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> len(cfg.hash())
        16
    """

    _what = "distillation config"

    student: TrainConfig = option(Nested(TrainConfig))
    mode: str = option(
        Choice(
            MODES,
            message="unknown distillation mode {value!r}; expected one of " + ", ".join(MODES),
        ),
        default="online",
    )
    teacher_dir: str | None = option(Optional(PathKind()), None, flag="teacher", metavar="RUN_DIR")
    teacher_epoch: int | None = option(Optional(Int(minimum=0)), None)
    temperature: float = option(Real(low=0.0, low_open=True), 4.0)

    def validate(self) -> None:
        """The teacher a mode needs, the checkpoint only offline KD selects."""
        if self.mode != "none" and self.teacher_dir is None:
            raise ValueError(f"mode {self.mode!r} needs a teacher run directory (teacher_dir)")
        if self.teacher_epoch is not None and self.mode != "offline":
            raise ValueError(
                f"teacher_epoch selects the checkpoint of offline KD; mode is {self.mode!r}"
            )


def read_config_data(path: str | os.PathLike[str]) -> DistillConfig | dict[str, Any]:
    """The raw contents of a config file: the dict of a JSON file, or what a Python file's
    ``get_config()`` returns (a :class:`DistillConfig` or a dict of its fields).

    Raises:
        ValueError: missing file, unknown extension, malformed JSON, no ``get_config``.
        TypeError: the file holds neither.
    """
    return read_config_object(path, DistillConfig)  # type: ignore[no-any-return]


def load_config(path: str | os.PathLike[str]) -> DistillConfig:
    """Reads a distillation config file: JSON (``.json``, e.g. a run's ``distill.json``
    ``config`` entry saved alone) or a Python file whose ``get_config()`` returns a
    :class:`DistillConfig` or a dict of its fields.

    A run directory's ``distill.json`` is accepted too (its ``config`` entry is read).

    Raises:
        ValueError: missing file, unknown extension, malformed JSON, no ``get_config``,
            unknown fields or invalid values.

    Example:
        >>> cfg = load_config("experiments/online_kd.py")  # doctest: +SKIP
    """
    data = read_config_data(path)
    if isinstance(data, DistillConfig):
        return data
    if "config" in data and "config_hash" in data and isinstance(data["config"], Mapping):
        data = dict(data["config"])  # a run directory's distill.json
    return DistillConfig.from_dict(data)
