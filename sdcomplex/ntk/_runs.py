"""Kernels of trained runs: a run's model at one checkpoint, its examples, logits and NTK.

A run is a directory written by :func:`sdcomplex.train.train` (or ``sdcomplex train``,
``sdcomplex distill``): ``config.json``, ``run.json`` and Orbax checkpoints of epochs
``0..T``. ``RUN@EPOCH`` names the variables after ``EPOCH`` epochs, ``RUN@init`` the
initialisation recomputed from the run's seed (equal to checkpoint 0, and available even when
that checkpoint was not kept), ``RUN`` or ``RUN@last`` the latest checkpoint.

Examples are taken from the data the run trained on (its data set, options and subset, loaded
by :func:`sdcomplex.train.load_run_data`) or from another data set with the same input shape,
and always normalised with the run's own training statistics (``run.json``), as in training.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from sdcomplex._checks import as_int
from sdcomplex.data import Dataset, DatasetInfo, input_statistics, normalise_array
from sdcomplex.data import balanced_indices as balanced_indices  # the selection of kernels
from sdcomplex.models import init_variables
from sdcomplex.ntk._adapters import ParamFilter, ntk_fn
from sdcomplex.ntk._api import empirical_ntk
from sdcomplex.train import (
    RunDirectory,
    TrainConfig,
    batched_apply,
    build_model,
    load_checkpoint,
    load_run_data,
)

SPLITS = ("train", "test")


def parse_run_spec(spec: str) -> tuple[str, int | str]:
    """Splits ``RUN[@EPOCH|@init|@last]`` into ``(run_dir, epoch)``.

    The text after the last ``@`` is the epoch: a non-negative integer, ``init`` or ``last``;
    without ``@`` the epoch is ``"last"``.

    Raises:
        ValueError: an empty run or an epoch that is none of these.

    Example:
        >>> parse_run_spec("runs/teacher@12"), parse_run_spec("runs/teacher")
        (('runs/teacher', 12), ('runs/teacher', 'last'))
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a run is given as RUN[@EPOCH|@init], got {spec!r}")
    run, sep, epoch = spec.rpartition("@")
    if not sep:
        return spec, "last"
    if not run:
        raise ValueError(f"{spec!r} names no run directory before '@'")
    if epoch in ("init", "last"):
        return run, epoch
    if not epoch.isdigit():
        raise ValueError(
            f"bad epoch {epoch!r} in {spec!r}: expected RUN@EPOCH (an integer >= 0), "
            "RUN@init or RUN@last"
        )
    return run, int(epoch)


@dataclasses.dataclass(frozen=True, eq=False)
class RunCheckpoint:
    """A run's model and variables at one epoch.

    Attributes:
        run_dir: the run directory (absolute).
        epoch: the epoch of the variables (0 = initialisation).
        source: ``"checkpoint"`` (read from the run's checkpoint of ``epoch``) or ``"init"``
            (recomputed from the run's seed, as :func:`sdcomplex.train.train` initialises).
        config: the run's :class:`~sdcomplex.train.TrainConfig`.
        config_hash: its hash (recorded in every checkpoint manifest).
        info: the data set metadata the run trained on (``run.json``), with the normalisation
            statistics of its inputs.
        model: the Flax module, rebuilt from the config.
        variables: ``{"params": ..., "batch_stats": ...}`` for ``model.apply``.
    """

    run_dir: Path
    epoch: int
    source: str
    config: TrainConfig
    config_hash: str
    info: DatasetInfo
    model: nn.Module
    variables: dict[str, Any]

    @functools.cached_property
    def variables_sha256(self) -> str:
        """SHA-256 of the variables (every leaf's path, dtype, shape and bytes): two runs, or
        one run trained again (a student of another teacher), share a directory, epoch and
        config hash but not their variables."""
        return tree_sha256(self.variables)

    @property
    def spec(self) -> str:
        """``RUN@EPOCH`` (or ``RUN@init``) of these variables."""
        return f"{self.run_dir}@{'init' if self.source == 'init' else self.epoch}"

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity: run directory, epoch, source, config hash, model and the
        digest of its variables."""
        return {
            "run": str(self.run_dir),
            "epoch": "init" if self.source == "init" else self.epoch,
            "config_hash": self.config_hash,
            "variables_sha256": self.variables_sha256,
            "model": self.config.model,
            "model_options": self.config.model_options,
        }


def tree_sha256(tree: Any) -> str:
    """Hex SHA-256 of a pytree of arrays: each leaf's path, dtype, shape and bytes, in order.

    Example:
        >>> a = {"w": np.zeros(2, np.float32)}
        >>> tree_sha256(a) == tree_sha256({"w": np.zeros(2, np.float32)})
        True
        >>> tree_sha256(a) == tree_sha256({"w": np.zeros(2, np.float64)})
        False
    """
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        head = f"{jax.tree_util.keystr(path)}|{array.dtype.str}|{array.shape}\n"
        digest.update(head.encode("utf-8"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_run_checkpoint(
    run_dir: str | os.PathLike[str], epoch: int | str = "last"
) -> RunCheckpoint:
    """Opens a run at an epoch: its config, data set metadata, model and variables.

    Args:
        run_dir: a run directory.
        epoch: an epoch with a checkpoint, ``"last"`` (the latest checkpoint) or ``"init"``
            (the initialisation recomputed from the run's seed; equal to checkpoint 0).

    Returns:
        The :class:`RunCheckpoint`.

    Raises:
        ValueError: no such directory, not a run directory, a ``config.json`` edited after
            the run started or a damaged ``run.json`` (see ``RunDirectory.read_config``), no
            checkpoint of that epoch (the message lists the epochs there are), or a bad epoch.

    Example:
        >>> run = load_run_checkpoint("runs/teacher", 12)  # doctest: +SKIP
        >>> logits = run.model.apply(run.variables, x, train=False)  # doctest: +SKIP
    """
    path = Path(run_dir).expanduser().resolve()  # Orbax needs absolute paths
    run = RunDirectory(path)
    if not path.is_dir():
        raise ValueError(f"no such run directory: {path}")
    for file in (run.config_file, run.run_file):
        if not file.is_file():
            raise ValueError(f"{path} is not a training run directory (no {file.name})")
    config, info = run.read_config(), run.dataset_info()  # checked against run.json's seal
    model = build_model(config, info.num_classes)
    if epoch == "init":
        variables = init_variables(model, config.seed, tuple(info.input_shape))
        return RunCheckpoint(path, 0, "init", config, config.hash(), info, model, variables)
    epochs = run.checkpoints()
    if epoch == "last":
        if not epochs:
            raise ValueError(f"{path} has no checkpoints")
        epoch = epochs[-1]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, 'init' or 'last', got {epoch!r}")
    if epoch not in epochs:
        raise ValueError(f"{path} has no checkpoint of epoch {epoch}; checkpoints: {epochs}")
    variables = load_checkpoint(path, epoch)
    chash = config.hash()
    return RunCheckpoint(path, epoch, "checkpoint", config, chash, info, model, variables)


class RunExamples(NamedTuple):
    """Examples a kernel is computed on.

    Attributes:
        raw: (n, ...) inputs as stored in the data set (e.g. uint8 images).
        labels: (n,) int labels.
        indices: (n,) positions in the split (of the run's data, after its own subset).
        description: JSON-ready record: data set, data source, split, subset size and seed.
    """

    raw: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    description: dict[str, Any]


def run_examples(
    run: RunCheckpoint,
    *,
    split: str = "train",
    n_per_class: int | None = None,
    subset_seed: int = 0,
    dataset: Dataset | None = None,
) -> RunExamples:
    """The examples of a run's data (or of ``dataset``), optionally a class-balanced subset.

    Args:
        run: the run.
        split: ``"train"`` or ``"test"``.
        n_per_class: keep `balanced_indices` of this many examples per class (None: all).
        subset_seed: seed of that subset.
        dataset: another data set with the run's input shape and class count (None: the
            data the run trained on, loaded as the run did).

    Raises:
        ValueError: unknown split, a data set that does not fit the run, too few examples, a
            negative ``subset_seed``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    subset_seed = as_int("subset_seed", subset_seed, minimum=0)
    source = "run" if dataset is None else "other"
    data = load_run_data(run.config) if dataset is None else dataset
    info = data.info
    if tuple(info.input_shape) != tuple(run.info.input_shape):
        raise ValueError(
            f"{info.name} has inputs of shape {tuple(info.input_shape)}; the run's model takes "
            f"{tuple(run.info.input_shape)}"
        )
    if info.num_classes != run.info.num_classes:
        raise ValueError(
            f"{info.name} has {info.num_classes} classes; the run has {run.info.num_classes}"
        )
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    if n_per_class is None:
        indices = np.arange(len(y), dtype=np.int64)
    else:
        indices = balanced_indices(y, n_per_class, seed=subset_seed)
    description = {
        "dataset": info.name,
        "source": source,
        "provenance": list(info.provenance),
        "split": split,
        "n_per_class": n_per_class,
        "subset_seed": subset_seed if n_per_class is not None else None,
        "n": int(len(indices)),
    }
    return RunExamples(x[indices], np.asarray(y[indices]), indices, description)


def run_inputs(run: RunCheckpoint, raw: Any) -> np.ndarray:
    """Raw inputs to the run's model inputs: float32, normalised as in its training."""
    mean, std = input_statistics(run.info, normalise=run.config.normalise)
    return normalise_array(np.asarray(raw), run.info.replace(mean=mean, std=std))


def run_logits(run: RunCheckpoint, raw: Any, *, batch_size: int = 1000) -> np.ndarray:
    """(n, C) float32 logits of the run's model (inference mode) on raw inputs."""
    x = run_inputs(run, raw)

    @jax.jit
    def apply(variables: Any, xb: jax.Array) -> jax.Array:
        return run.model.apply(variables, xb, train=False)  # type: ignore[return-value]

    size = max(1, min(batch_size, len(x)))  # one compilation for every batch
    return batched_apply(apply, run.variables, x, size).astype(np.float32)


def run_ntk(
    run: RunCheckpoint,
    raw: Any,
    *,
    outputs: str = "mean",
    param_filter: ParamFilter = None,
    implementation: str = "auto",
    progress: bool | None = None,
    mesh: Any = None,
) -> np.ndarray:
    """The empirical NTK of the run's model at its epoch on raw inputs (normalised first).

    ``empirical_ntk(*ntk_fn(run.model, run.variables, param_filter=...), run_inputs(run,
    raw), outputs=...)``: BatchNorm in inference mode; see `empirical_ntk` for ``outputs``,
    ``implementation``, ``progress`` and ``mesh`` (the devices it is computed on).
    """
    fn, params = ntk_fn(run.model, run.variables, param_filter=param_filter)
    x = run_inputs(run, raw)
    return empirical_ntk(
        fn,
        params,
        x,
        outputs=outputs,
        implementation=implementation,
        progress=progress,
        mesh=mesh,
    )


def teacher_fits(teacher: RunCheckpoint, run: RunCheckpoint) -> None:
    """Raises ValueError unless ``teacher`` was trained on the task of ``run`` (same data set,
    binary relabelling, classes and input shape); normalisations may differ."""
    checks: list[tuple[str, Callable[[RunCheckpoint], Any]]] = [
        ("data set", lambda r: (r.config.dataset, r.config.binary)),
        ("classes", lambda r: tuple(r.info.class_names)),
        ("input shape", lambda r: tuple(r.info.input_shape)),
    ]
    for what, key in checks:
        if key(teacher) != key(run):
            raise ValueError(
                f"teacher {teacher.run_dir} has another {what} ({key(teacher)}) than "
                f"{run.run_dir} ({key(run)})"
            )
