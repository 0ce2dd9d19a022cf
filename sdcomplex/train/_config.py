"""Training configuration as code: one frozen dataclass holding every hyperparameter of a run.

The defaults are the standard CIFAR recipe of PAPER.md section 5 (SGD with momentum 0.9, batch
128, learning rate 0.1 with cosine decay, weight decay 5e-4, random crop with 4-pixel padding
and horizontal flips, 200 epochs, a checkpoint every epoch), with the augmentation scaled to the
data set: ``augment``, ``crop_padding`` and ``flip`` left at ``None`` are resolved when the
config is built from :func:`~sdcomplex.data.augmentation_defaults` (crop padding
``image_size / 8``: 4 pixels for 32-pixel CIFAR images, 1 for the 8-pixel digits; flips only
for data sets whose classes are mirror-invariant; no augmentation of non-image data), so the
recorded config always holds the values the run uses. A config is serialised to JSON
(``config.json`` in the run directory) and identified by its :meth:`~TrainConfig.hash`, a hash
of its canonical JSON form, which every checkpoint manifest records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sdcomplex._config_base import Config, option
from sdcomplex._config_files import read_config_object
from sdcomplex._config_kinds import Bool, Choice, Int, Optional, Options, Real, Text, Tuple
from sdcomplex._config_kinds import Path as PathKind
from sdcomplex.data import AugmentationDefaults, augmentation_defaults

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")

_DATASET_DEFAULTS = ("augment", "crop_padding", "flip")
"""Fields whose ``None`` default is resolved from the data set (see the module docstring)."""
DATA_FIELDS = (
    "dataset",
    "data_dir",
    "data_options",
    "binary",
    "n_per_class",
    "n_test_per_class",
    "subset_seed",
    "normalise",
)
"""The fields that choose the examples and their preprocessing: two runs with the same values
see the same data (a teacher and its students must; augmentation may differ)."""


@dataclass(frozen=True)
class TrainConfig(Config):
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
            mirror-invariant classes: CIFAR, Tiny ImageNet; off for digits). ``image_folder``
            has no default crop padding or flip: training it with ``augment`` needs both.
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
        eval_train_examples: evaluate train loss/accuracy on this many training examples
            (``None``: all of them): a uniform sample without replacement, numpy seed 0, the
            same in every run on the data set (not the first ones, which are a few classes
            of a data set stored class by class).

    Example:
        >>> cfg = TrainConfig(model="mlp", dataset="digits", epochs=3, augment=False)
        >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> len(cfg.hash())
        16
    """

    model: str = option(Text(), "resnet20", metavar="MODEL")
    model_options: dict[str, Any] = option(
        Options(), default_factory=dict, flag="model-option", metavar="KEY=VALUE"
    )
    dataset: str = option(Text(), "cifar10", flag="data")
    data_dir: str | None = option(Optional(PathKind()), None)
    data_options: dict[str, Any] = option(
        Options(), default_factory=dict, flag="data-option", metavar="KEY=VALUE"
    )
    binary: bool = option(Bool(), False)
    n_per_class: int | None = option(Optional(Int(minimum=1)), None)
    n_test_per_class: int | None = option(Optional(Int(minimum=1)), None)
    subset_seed: int = option(Int(minimum=0), 0)
    num_classes: int | None = option(Optional(Int(minimum=2)), None)
    normalise: bool = option(Bool(), True)
    augment: bool | None = option(Optional(Bool()), None)
    crop_padding: int | None = option(Optional(Int(minimum=0)), None)
    flip: bool | None = option(Optional(Bool()), None)
    epochs: int = option(Int(minimum=1), 200)
    batch_size: int = option(Int(minimum=1), 128)
    optimizer: str = option(Choice(OPTIMIZERS), "sgd")
    learning_rate: float = option(Real(low=0.0, low_open=True), 0.1, flag="lr")
    momentum: float = option(Real(low=0.0, high=1.0, high_open=True), 0.9)
    nesterov: bool = option(Bool(), False)
    weight_decay: float = option(Real(low=0.0), 5e-4)
    decay_norm_and_bias: bool = option(Bool(), True)
    schedule: str = option(Choice(SCHEDULES), "cosine")
    warmup_epochs: int = option(Int(minimum=0), 0)
    lr_milestones: tuple[int, ...] = option(Tuple(Int()), (), flag="milestones")
    lr_decay_factor: float = option(Real(low=0.0, high=1.0, low_open=True), 0.1)
    final_lr_fraction: float = option(Real(low=0.0, high=1.0), 0.0)
    adam_b1: float = option(Real(low=0.0, high=1.0, high_open=True), 0.9)
    adam_b2: float = option(Real(low=0.0, high=1.0, high_open=True), 0.999)
    adam_eps: float = option(Real(low=0.0, low_open=True), 1e-8)
    seed: int = option(Int(minimum=0), 0)
    checkpoint_every: int = option(Int(minimum=1), 1, metavar="K")
    keep_checkpoints: int | None = option(Optional(Int(minimum=1)), None, metavar="N")
    eval_batch_size: int = option(Int(minimum=1), 1000)
    eval_train_examples: int | None = option(Optional(Int(minimum=1)), None, metavar="N")

    def validate(self) -> None:
        """Resolves the augmentation left to the data set, then checks across fields."""
        _resolve_augmentation(self)
        if self.nesterov and self.momentum == 0:
            raise ValueError("TrainConfig.nesterov needs momentum > 0")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"TrainConfig.warmup_epochs must be < epochs ({self.epochs}), "
                f"got {self.warmup_epochs}"
            )
        if self.schedule == "step":
            if not self.lr_milestones:
                raise ValueError(
                    "TrainConfig: the step schedule needs lr_milestones (epochs), e.g. [100, 150]"
                )
            ms = self.lr_milestones
            if list(ms) != sorted(set(ms)) or ms[0] < 1 or ms[-1] >= self.epochs:
                raise ValueError(
                    f"TrainConfig.lr_milestones must be increasing epochs in "
                    f"[1, {self.epochs - 1}], got {ms!r}"
                )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again).

        Augmentation fields that this config took from its data set (left at ``None``) are
        taken from the data set of the copy again, e.g. ``TrainConfig().replace(
        dataset="digits")`` has the digits' 1-pixel crops and no flips, like
        ``TrainConfig(dataset="digits")``.
        """
        again: dict[str, Any] = {n: None for n in dataset_defaulted(self) if n not in changes}
        return super().replace(**again, **changes)


def dataset_defaulted(config: TrainConfig) -> frozenset[str]:
    """The augmentation fields ``config`` left at ``None`` and took from its data set's
    :class:`~sdcomplex.data.AugmentationDefaults` (empty for a config read from a run's
    ``config.json``, which records every value)."""
    return frozenset(getattr(config, "_from_dataset", ()))


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


def load_config(path: str | os.PathLike[str], cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Reads a config file: JSON (``.json``) or a Python file exposing ``get_config()``.

    ``get_config()`` may return a :class:`TrainConfig` or a dict of fields. A JSON file holds a
    (possibly partial) object of fields, e.g. a run directory's ``config.json``.

    Raises:
        ValueError: missing file, unknown extension, malformed JSON, no ``get_config``,
            unknown fields or invalid values.
    """
    data = read_config_object(path, cls)
    return data if isinstance(data, cls) else cls.from_dict(data)
