"""From a config to a data set and a model, with every input checked before training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn

from sdcomplex.data import (
    AugmentationDefaults,
    Dataset,
    DatasetInfo,
    augmentation_defaults,
    available_datasets,
    balanced_subset,
    load_dataset,
)
from sdcomplex.models import abstract_variables, create_model, model_spec
from sdcomplex.train._config import TrainConfig, dataset_defaulted


class RunSetup(NamedTuple):
    """What a run trains on: the data set (after subsetting) and the configured model."""

    dataset: Dataset
    model: nn.Module


def check_names(config: TrainConfig) -> None:
    """Cheap checks needing no data: model and data set names, data directory.

    Raises:
        ValueError: unknown model or data set name, or a ``data_dir`` that does not exist.
    """
    model_spec(config.model)  # raises ValueError listing the known models
    known = available_datasets()
    if config.dataset not in known:
        raise ValueError(f"unknown dataset {config.dataset!r}; available: {', '.join(known)}")
    if config.data_dir is not None and not Path(config.data_dir).expanduser().exists():
        raise ValueError(f"data directory {config.data_dir} does not exist")
    if "num_classes" in config.model_options and config.num_classes is not None:
        if config.model_options["num_classes"] != config.num_classes:
            raise ValueError(
                f"model_options num_classes={config.model_options['num_classes']} contradicts "
                f"num_classes={config.num_classes}"
            )


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The config's model with ``num_classes`` outputs: ``create_model(config.model,
    num_classes, **config.model_options)`` (a ``num_classes`` among the options is checked
    against the data by :func:`setup_run`, not passed twice).

    Example:
        >>> cfg = TrainConfig(model="mlp", dataset="digits", model_options={"hidden_sizes": [4]})
        >>> build_model(cfg, 10).hidden_sizes
        (4,)
    """
    options = {k: v for k, v in config.model_options.items() if k != "num_classes"}
    return create_model(config.model, num_classes, **options)


def load_run_data(config: TrainConfig) -> Dataset:
    """The config's data set: loaded, made binary and subsampled as the config says."""
    options: dict[str, Any] = dict(config.data_options)
    if config.data_dir is not None:
        options["data_dir"] = config.data_dir
    dataset = load_dataset(config.dataset, binary=config.binary, **options)
    if config.n_per_class is not None or config.n_test_per_class is not None:
        n = config.n_per_class
        if n is None:  # keep every training example, subsample only the test split
            n = int(dataset.class_counts("train").min())
            if n * dataset.info.num_classes != dataset.info.n_train:
                raise ValueError(
                    "n_test_per_class without n_per_class needs a class-balanced training set"
                )
        dataset = balanced_subset(
            dataset, n, seed=config.subset_seed, n_test_per_class=config.n_test_per_class
        )
    return dataset


def check_augmentation(config: TrainConfig, info: DatasetInfo) -> None:
    """Checks that ``augment=True`` has images to augment and a known crop padding and flip.

    A data set whose image size is unknown before loading (``image_folder``) has no default
    crop padding or flip: an ``augment=True`` that left them to the data set would train with
    no crop and no flip, so they must be given.

    Raises:
        ValueError: augmentation of non-image data, or of images whose crop padding or flip
            was left to a data set that has no default for them.
    """
    if not config.augment:
        return
    if not info.is_image:
        raise ValueError(
            f"augment=True needs image data, but {config.dataset} has inputs of shape "
            f"{info.input_shape}; set augment to false (--no-augment)"
        )
    unset = sorted(dataset_defaulted(config) & {"crop_padding", "flip"})
    if not unset or augmentation_defaults(config.dataset).image_size is not None:
        return
    height, width = info.input_shape[:2]
    padding = AugmentationDefaults(min(height, width), mirror_invariant=False).crop_padding
    hints = {
        "crop_padding": f"crop_padding (e.g. {padding} for its {height}x{width} images: "
        f"--crop-padding {padding})",
        "flip": "flip (true or false: --flip / --no-flip)",
    }
    raise ValueError(
        f"augment=True, but {config.dataset} has no default {' or '.join(unset)} (its image "
        f"size and whether a mirrored image keeps its class are unknown before loading): set "
        f"{' and '.join(hints[name] for name in unset)}"
    )


def setup_run(config: TrainConfig) -> RunSetup:
    """Loads the data and builds the model, checking that they fit together.

    Raises:
        ValueError: unknown names, missing data, a class count that contradicts the data
            (``num_classes`` or ``model_options['num_classes']``), augmentation of non-image
            data or with no known crop padding or flip (:func:`check_augmentation`), a batch
            larger than the training set, or a model that cannot take the data's input shape.
    """
    check_names(config)
    dataset = load_run_data(config)
    info = dataset.info
    expected = config.model_options.get("num_classes", config.num_classes)
    if expected is not None and expected != info.num_classes:
        raise ValueError(
            f"wrong number of classes: the config asks for {expected}, but {config.dataset} "
            f"has {info.num_classes} ({', '.join(info.class_names[:5])}"
            f"{', ...' if info.num_classes > 5 else ''})"
        )
    model = build_model(config, info.num_classes)
    check_augmentation(config, info)
    if config.batch_size > info.n_train:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {info.n_train} training examples"
        )
    try:
        abstract_variables(model, info.input_shape)
    except Exception as err:  # any shape error of the model (flax, jax, ValueError, ...)
        raise ValueError(
            f"model {config.model} cannot take {config.dataset} inputs of shape "
            f"{info.input_shape}: {err}"
        ) from None
    return RunSetup(dataset, model)
