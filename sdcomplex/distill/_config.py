"""Distillation configuration as code: the student's :class:`TrainConfig` plus how it is taught.

A :class:`DistillConfig` is serialised to JSON (``distill.json`` in the run directory, with its
hash) and identified by :func:`distill_config_hash`; a run directory is only ever resumed with
the same config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcomplex._checks import check_int_field
from sdcomplex._config_files import read_config_file
from sdcomplex.distill._loss import check_kd_arguments
from sdcomplex.train import TrainConfig
from sdcomplex.train._config import numpy_to_python

MODES = ("none", "offline", "online")
"""Distillation modes: labels only, a fixed teacher checkpoint, the teacher's trajectory."""


def _int(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    check_int_field("DistillConfig", name, value, minimum=minimum, optional=optional)


@dataclass(frozen=True)
class DistillConfig:
    """Every setting of a distillation run (frozen; JSON round trip; stable hash).

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

    Example:
        >>> cfg = DistillConfig(student=TrainConfig(model="mlp", dataset="digits",
        ...                     augment=False), teacher_dir="runs/teacher", mode="offline")
        >>> DistillConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> len(distill_config_hash(cfg))
        16
    """

    student: TrainConfig
    mode: str = "online"
    teacher_dir: str | None = None
    teacher_epoch: int | None = None
    temperature: float = 4.0
    alpha: float = 0.0
    stride: int = 1
    diagnostics_every: int = 1
    probe_size: int = 256
    probe_seed: int = 0
    random_labels_seed: int = 0
    fidelity_examples: int | None = 1000

    def __post_init__(self) -> None:
        numpy_to_python(self)
        student = self.student
        if isinstance(student, Mapping):
            object.__setattr__(self, "student", TrainConfig.from_dict(student))
        elif not isinstance(student, TrainConfig):
            raise TypeError(
                f"DistillConfig.student must be a TrainConfig, got {type(student).__name__}"
            )
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ValueError(
                f"unknown distillation mode {self.mode!r}; expected one of {', '.join(MODES)}"
            )
        if self.teacher_dir is not None:
            path = self.teacher_dir
            if not isinstance(path, str | os.PathLike) or not os.fspath(path):
                raise TypeError(f"DistillConfig.teacher_dir must be a path, got {path!r}")
            object.__setattr__(self, "teacher_dir", os.fspath(self.teacher_dir))
        if self.mode != "none" and self.teacher_dir is None:
            raise ValueError(f"mode {self.mode!r} needs a teacher run directory (teacher_dir)")
        _int("teacher_epoch", self.teacher_epoch, minimum=0, optional=True)
        if self.teacher_epoch is not None and self.mode != "offline":
            raise ValueError(
                f"teacher_epoch selects the checkpoint of offline KD; mode is {self.mode!r}"
            )
        try:
            check_kd_arguments(self.temperature, self.alpha)
        except (TypeError, ValueError) as err:
            raise type(err)(f"DistillConfig: {err}") from None
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "alpha", float(self.alpha))
        _int("stride", self.stride, minimum=1)
        _int("diagnostics_every", self.diagnostics_every, minimum=0)
        _int("probe_size", self.probe_size, minimum=2)
        _int("probe_seed", self.probe_seed, minimum=0)
        _int("random_labels_seed", self.random_labels_seed, minimum=0)
        _int("fidelity_examples", self.fidelity_examples, minimum=1, optional=True)

    def replace(self, **changes: Any) -> DistillConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the student as a nested dict); inverse of :meth:`from_dict`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["student"] = self.student.to_dict()
        return json.loads(json.dumps(out, allow_nan=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistillConfig:
        """Builds a config from a dict; missing fields (and missing student fields) take the
        defaults.

        Raises:
            ValueError: unknown field names (the message lists the valid ones), no student.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a config must be a JSON object / dict, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown distillation config field(s) {unknown}; valid: {names}")
        if "student" not in data:
            raise ValueError("a distillation config needs a 'student' (a TrainConfig's fields)")
        return cls(**dict(data))

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, indented)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def distill_config_hash(config: DistillConfig) -> str:
    """Stable 16-hex-digit hash of a config: sha256 of its canonical JSON form."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def distill_config_differences(old: DistillConfig, new: DistillConfig) -> list[str]:
    """``"field: old -> new"`` for every differing field (``student.<field>`` for the student)."""
    a, b = old.to_dict(), new.to_dict()
    sa, sb = a.pop("student"), b.pop("student")
    out = [
        f"student.{k}: {sa.get(k)!r} -> {sb.get(k)!r}"
        for k in sorted(set(sa) | set(sb))
        if sa.get(k) != sb.get(k)
    ]
    keys = sorted(set(a) | set(b))
    out += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
    return out


def read_config_data(path: str | os.PathLike[str]) -> DistillConfig | dict[str, Any]:
    """The raw contents of a config file: the dict of a JSON file, or what a Python file's
    ``get_config()`` returns (a :class:`DistillConfig` or a dict of its fields).

    Raises:
        ValueError: missing file, unknown extension, malformed JSON, no ``get_config``.
    """
    file = Path(path)
    data = read_config_file(file)
    if isinstance(data, DistillConfig):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{file}: expected a DistillConfig or a dict of its fields, got {type(data).__name__}"
        )
    return dict(data)


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
