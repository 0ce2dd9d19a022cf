"""Training configuration as code: one frozen dataclass holding every hyperparameter of a run.

The defaults are the standard CIFAR recipe of PAPER.md section 5 (SGD with momentum 0.9, batch
128, learning rate 0.1 with cosine decay, weight decay 5e-4, random crop with 4-pixel padding
and horizontal flips, 200 epochs, a checkpoint every epoch), with the augmentation scaled to the
data set: ``augment``, ``crop_padding`` and ``flip`` left at ``None`` are resolved when the
config is built from :func:`~sdcomplex.data.augmentation_defaults` (crop padding
``image_size / 8``: 4 pixels for 32-pixel CIFAR images, 1 for the 8-pixel digits; flips only
for data sets whose classes are mirror-invariant; no augmentation of non-image data), so the
recorded config always holds the values the run uses. A config is serialised to JSON
(``config.json`` in the run directory) and identified by :func:`config_hash`, a hash of its
canonical JSON form, which every checkpoint manifest records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdcomplex._config_files import read_config_file
from sdcomplex._io import to_jsonable
from sdcomplex.data import AugmentationDefaults, augmentation_defaults

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")

_INT_FIELDS = (
    "subset_seed",
    "crop_padding",  # (None is resolved from the data set before validation)
    "epochs",
    "batch_size",
    "warmup_epochs",
    "seed",
    "checkpoint_every",
    "eval_batch_size",
)
_OPTIONAL_INT_FIELDS = (
    "n_per_class",
    "n_test_per_class",
    "num_classes",
    "keep_checkpoints",
    "eval_train_examples",
)
_FLOAT_FIELDS = (
    "learning_rate",
    "momentum",
    "weight_decay",
    "lr_decay_factor",
    "final_lr_fraction",
    "adam_b1",
    "adam_b2",
    "adam_eps",
)
_DATASET_DEFAULTS = ("augment", "crop_padding", "flip")
"""Fields whose ``None`` default is resolved from the data set (see the module docstring)."""
_BOOL_FIELDS = ("binary", "normalise", "augment", "flip", "nesterov", "decay_norm_and_bias")


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a training run (frozen; JSON round trip; stable hash).

    Attributes:
        model: model registry name (``sdcomplex.models.available_models``), e.g. ``"resnet20"``.
        model_options: constructor overrides for :func:`~sdcomplex.models.create_model`, e.g.
            ``{"width": 2}``. A ``num_classes`` entry must equal the data's class count.
        dataset: data set registry name (``sdcomplex.data.available_datasets``).
        data_dir: where the data set's files are (``None``: the loader's default).
        data_options: loader options, e.g. ``{"n_train": 200, "dim": 8}`` for ``synthetic``.
        binary: relabel into a binary task (first half of the classes vs the rest).
        n_per_class: keep a class-balanced training subset of this many examples per class.
        n_test_per_class: also subsample the test split (``None``: the whole test split).
        subset_seed: seed of those subsets.
        num_classes: expected number of classes (``None``: whatever the data has); a mismatch
            with the data is an error raised before training.
        normalise: standardise inputs with the training split's per-channel mean and std
            (otherwise only divide by ``pixel_max``).
        augment: random crop and flip of training images (image data only); ``None``: the data
            set's default (on for images of a known size).
        crop_padding: zero padding per side for the random crop (0: no crop); ``None``: the
            data set's, ``round(image_size / 8)`` (4 for 32-pixel images, 1 for 8-pixel ones).
        flip: random horizontal flips when ``augment``; ``None``: the data set's (on only for
            mirror-invariant classes: CIFAR, Tiny ImageNet; off for digits).
        epochs: training epochs ``T``.
        batch_size: examples per training step; the incomplete last batch is dropped.
        optimizer: ``"sgd"`` (heavy-ball momentum, PyTorch convention), ``"adam"`` (weight decay
            added to the gradient, as in PyTorch's Adam) or ``"adamw"`` (decoupled decay).
        learning_rate: peak learning rate ``lr0``.
        momentum: SGD momentum (0 for plain SGD).
        nesterov: Nesterov momentum for SGD.
        weight_decay: ``wd``; SGD and Adam use the gradient ``g + wd * w``, AdamW subtracts
            ``lr * wd * w`` from the update.
        decay_norm_and_bias: decay every parameter (default, as the standard CIFAR recipe) or
            only ``kernel`` parameters (not biases, not BatchNorm scales and offsets).
        schedule: ``"cosine"``, ``"step"`` or ``"constant"``; see :func:`make_schedule`.
        warmup_epochs: linear warm-up epochs before the schedule (0: none).
        lr_milestones: epochs after which the step schedule multiplies the rate by
            ``lr_decay_factor`` (e.g. ``(100, 150)``).
        lr_decay_factor: factor of the step schedule.
        final_lr_fraction: the cosine schedule decays to ``final_lr_fraction * lr0``.
        adam_b1: Adam's first-moment decay.
        adam_b2: Adam's second-moment decay.
        adam_eps: Adam's epsilon.
        seed: seed of the initialisation, the batch order and the augmentation.
        checkpoint_every: save a checkpoint every ``k`` epochs (and after the last one); 1 for
            teachers whose trajectory online distillation replays.
        keep_checkpoints: keep only the latest this many epoch checkpoints (``None``: all).
        eval_batch_size: examples per evaluation batch.
        eval_train_examples: evaluate train loss/accuracy on the first this many training
            examples (``None``: all of them).

    Example:
        >>> cfg = TrainConfig(model="mlp", dataset="digits", epochs=3, augment=False)
        >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> len(config_hash(cfg))
        16
    """

    model: str = "resnet20"
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "cifar10"
    data_dir: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    binary: bool = False
    n_per_class: int | None = None
    n_test_per_class: int | None = None
    subset_seed: int = 0
    num_classes: int | None = None
    normalise: bool = True
    augment: bool | None = None
    crop_padding: int | None = None
    flip: bool | None = None
    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True
    schedule: str = "cosine"
    warmup_epochs: int = 0
    lr_milestones: tuple[int, ...] = ()
    lr_decay_factor: float = 0.1
    final_lr_fraction: float = 0.0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    seed: int = 0
    checkpoint_every: int = 1
    keep_checkpoints: int | None = None
    eval_batch_size: int = 1000
    eval_train_examples: int | None = None

    def __post_init__(self) -> None:
        def bad(name: str, what: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {what}, got {getattr(self, name)!r}")

        numpy_to_python(self)
        _resolve_augmentation(self)

        for name in ("model", "dataset", "optimizer", "schedule"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"TrainConfig.{name} must be a non-empty string")
        if self.data_dir is not None:
            if not isinstance(self.data_dir, str | os.PathLike):
                raise TypeError(f"TrainConfig.data_dir must be a path, got {self.data_dir!r}")
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        for name in ("model_options", "data_options"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise TypeError(f"TrainConfig.{name} must be a dict with string keys")
            object.__setattr__(self, name, _plain(dict(value)))
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig.{name} must be true or false")
        for name in _INT_FIELDS + _OPTIONAL_INT_FIELDS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_INT_FIELDS:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"TrainConfig.{name} must be an integer, got {value!r}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"TrainConfig.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise bad(name, "finite")
            object.__setattr__(self, name, float(value))
        milestones = self.lr_milestones
        if isinstance(milestones, str) or not isinstance(milestones, list | tuple):
            raise TypeError("TrainConfig.lr_milestones must be a list of epochs")
        if any(isinstance(m, bool) or not isinstance(m, int) for m in milestones):
            raise TypeError(f"TrainConfig.lr_milestones must hold integers, got {milestones!r}")
        object.__setattr__(self, "lr_milestones", tuple(milestones))
        for name in ("epochs", "batch_size", "checkpoint_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        for name in ("n_per_class", "n_test_per_class", "keep_checkpoints", "eval_train_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise bad(name, "None or >= 1")
        if self.num_classes is not None and self.num_classes < 2:
            raise bad("num_classes", "None or >= 2")
        for name in ("subset_seed", "seed", "crop_padding", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {list(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {list(SCHEDULES)}")
        if self.learning_rate <= 0:
            raise bad("learning_rate", "> 0")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "in [0, 1)")
        if self.nesterov and self.momentum == 0:
            raise ValueError("TrainConfig.nesterov needs momentum > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", ">= 0")
        if not 0 <= self.final_lr_fraction <= 1:
            raise bad("final_lr_fraction", "in [0, 1]")
        if not 0 < self.lr_decay_factor <= 1:
            raise bad("lr_decay_factor", "in (0, 1]")
        if not (0 <= self.adam_b1 < 1 and 0 <= self.adam_b2 < 1 and self.adam_eps > 0):
            raise ValueError("TrainConfig: need 0 <= adam_b1, adam_b2 < 1 and adam_eps > 0")
        if self.warmup_epochs >= self.epochs:
            raise bad("warmup_epochs", f"< epochs ({self.epochs})")
        if self.schedule == "step":
            if not self.lr_milestones:
                raise ValueError(
                    "TrainConfig: the step schedule needs lr_milestones (epochs), e.g. [100, 150]"
                )
            ms = self.lr_milestones
            if list(ms) != sorted(set(ms)) or ms[0] < 1 or ms[-1] >= self.epochs:
                raise bad("lr_milestones", f"increasing epochs in [1, {self.epochs - 1}]")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again).

        Augmentation fields that this config took from its data set (left at ``None``) are
        taken from the data set of the copy again, e.g. ``TrainConfig().replace(
        dataset="digits")`` has the digits' 1-pixel crops and no flips, like
        ``TrainConfig(dataset="digits")``.
        """
        from_dataset = getattr(self, "_from_dataset", ())
        again: dict[str, Any] = {name: None for name in from_dataset if name not in changes}
        return dataclasses.replace(self, **again, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists); inverse of :meth:`from_dict`."""
        return json.loads(json.dumps(dataclasses.asdict(self), allow_nan=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Builds a config from a (possibly partial) dict; missing fields take the defaults.

        Raises:
            ValueError: unknown field names (the message lists the valid ones).
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a config must be a JSON object / dict, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid fields: {names}")
        return cls(**dict(data))

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, indented)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _resolve_augmentation(config: TrainConfig) -> None:
    """Fills ``augment``, ``crop_padding`` and ``flip`` left at ``None`` from the data set's
    :class:`~sdcomplex.data.AugmentationDefaults` (an unknown data set name is left for
    :func:`~sdcomplex.train.check_names` to report: no augmentation)."""
    resolved = frozenset(n for n in _DATASET_DEFAULTS if getattr(config, n) is None)
    object.__setattr__(config, "_from_dataset", resolved)  # not a field: see replace()
    if not resolved:
        return
    try:
        defaults = augmentation_defaults(config.dataset)
    except (ValueError, TypeError):
        defaults = AugmentationDefaults(image_size=None, mirror_invariant=False)
    for name in resolved:
        object.__setattr__(config, name, getattr(defaults, name))


def numpy_to_python(config: Any) -> None:
    """Replaces NumPy scalars (``np.float32(0.1)``, ``np.int64(3)``, ``np.bool_(True)``) in the
    fields of a frozen config dataclass, and inside its list fields, by the Python numbers they
    hold, so that they pass validation and serialise to JSON like Python numbers."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, np.generic):
            object.__setattr__(config, f.name, value.item())
        elif isinstance(value, list | tuple) and any(isinstance(v, np.generic) for v in value):
            items = [v.item() if isinstance(v, np.generic) else v for v in value]
            object.__setattr__(config, f.name, type(value)(items))


def _plain(value: Any) -> Any:
    """Lists to tuples inside option dicts are normalised by JSON: keep plain JSON types."""
    try:
        return json.loads(json.dumps(to_jsonable(value), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"config options must be JSON values: {err}") from None


def config_hash(config: TrainConfig) -> str:
    """Stable 16-hex-digit hash of a config: sha256 of its canonical JSON form.

    Equal configs (including ``1`` vs ``1.0`` for float fields and lists vs tuples) hash
    equally on every platform and Python version.
    """
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """``"field: old -> new"`` for every field that differs (empty if equal)."""
    a, b = old.to_dict(), new.to_dict()
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def load_config(path: str | os.PathLike[str], cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Reads a config file: JSON (``.json``) or a Python file exposing ``get_config()``.

    ``get_config()`` may return a :class:`TrainConfig` or a dict of fields. A JSON file holds a
    (possibly partial) object of fields, e.g. a run directory's ``config.json``.

    Raises:
        ValueError: missing file, unknown extension, malformed JSON, no ``get_config``,
            unknown fields or invalid values.
    """
    file = Path(path)
    data = read_config_file(file)
    if isinstance(data, TrainConfig):
        if not isinstance(data, cls):
            raise TypeError(f"{file}: get_config() returned {type(data).__name__}, not {cls}")
        return data
    return cls.from_dict(data)
