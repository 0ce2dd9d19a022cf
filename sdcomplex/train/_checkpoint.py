"""Orbax checkpoints of a run directory, one per saved epoch, each with a small manifest.

Layout of a run directory ``DIR``::

    DIR/checkpoints/epoch_<e>/variables   params and batch_stats after epoch e (e = 0: init)
    DIR/checkpoints/epoch_<e>/train       optimiser state, step count, running sums
    DIR/checkpoints/epoch_<e>/manifest    JSON: epoch, step, config hash, library versions
    DIR/preempt/step_<s>/...              at most one mid-epoch checkpoint (SIGTERM), same items

Checkpoints are written by ``orbax.checkpoint.CheckpointManager`` into a temporary directory
that is renamed when complete, so a process killed at any moment leaves either a complete
checkpoint or none (temporary leftovers are removed when the run is reopened).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"
PREEMPT_DIR = "preempt"
_ITEMS = ("variables", "train", "manifest")
_LIBRARIES = ("sdcomplex", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a checkpoint depends on (recorded in manifests)."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _manager(directory: Path, prefix: str, *, keep: int | None = None, create: bool = True):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=create,
        step_prefix=prefix,
        create=create,
    )
    return ocp.CheckpointManager(directory, options=options, item_names=_ITEMS)


class CheckpointStore:
    """The epoch checkpoints and the preemption checkpoint of one run directory.

    Args:
        run_dir: the run directory (created if needed).
        keep: keep only the latest ``keep`` epoch checkpoints (``None``: all).
    """

    def __init__(self, run_dir: str | os.PathLike[str], keep: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self._epochs = _manager(self.run_dir / CHECKPOINT_DIR, "epoch", keep=keep)
        self._preempt = _manager(self.run_dir / PREEMPT_DIR, "step", keep=1)

    def epochs(self) -> list[int]:
        """Epochs with a complete checkpoint, increasing."""
        return sorted(int(s) for s in self._epochs.all_steps())

    def preempt_steps(self) -> list[int]:
        """Global steps of complete preemption checkpoints (at most one in normal use)."""
        return sorted(int(s) for s in self._preempt.all_steps())

    def save(
        self,
        kind: str,
        number: int,
        variables: Mapping[str, Any],
        train: Mapping[str, Any],
        manifest: Mapping[str, Any],
    ) -> None:
        """Saves an ``"epoch"`` checkpoint (``number`` = epoch) or a ``"preempt"`` one (step)."""
        manager = self._epochs if kind == "epoch" else self._preempt
        args = ocp.args.Composite(
            variables=ocp.args.StandardSave(dict(variables)),
            train=ocp.args.StandardSave(dict(train)),
            manifest=ocp.args.JsonSave(dict(manifest)),
        )
        manager.save(number, args=args, force=True)
        manager.wait_until_finished()

    def restore(self, kind: str, number: int, abstract_variables: Any, abstract_train: Any):
        """``(variables, train, manifest)`` of a checkpoint, restored into the given structures."""
        manager = self._epochs if kind == "epoch" else self._preempt
        out = manager.restore(
            number,
            args=ocp.args.Composite(
                variables=ocp.args.StandardRestore(abstract_variables),
                train=ocp.args.StandardRestore(abstract_train),
                manifest=ocp.args.JsonRestore(),
            ),
        )
        return out.variables, out.train, dict(out.manifest)

    def manifest(self, kind: str, number: int) -> dict[str, Any]:
        """The manifest of a checkpoint."""
        manager = self._epochs if kind == "epoch" else self._preempt
        out = manager.restore(number, args=ocp.args.Composite(manifest=ocp.args.JsonRestore()))
        return dict(out.manifest)

    def delete_preempt(self) -> None:
        """Removes every preemption checkpoint."""
        for step in self.preempt_steps():
            self._preempt.delete(step)

    def close(self) -> None:
        """Waits for pending writes and releases the managers."""
        self._epochs.close()
        self._preempt.close()


def _reader(run_dir: str | os.PathLike[str]):
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run directory {path} does not exist")
    return _manager(path / CHECKPOINT_DIR, "epoch", create=False)


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs that have a complete checkpoint in a run directory, increasing.

    Epoch 0 is the initialisation; epoch ``e`` holds the variables after ``e`` training epochs.

    Example:
        >>> list_checkpoints("runs/teacher")  # doctest: +SKIP
        [0, 1, 2, 3]
    """
    manager = _reader(run_dir)
    try:
        return sorted(int(s) for s in manager.all_steps())
    finally:
        manager.close()


def _restore_item(run_dir: str | os.PathLike[str], epoch: int, item: str) -> Any:
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise TypeError(f"epoch must be an integer, got {epoch!r}")
    manager = _reader(run_dir)
    try:
        epochs = sorted(int(s) for s in manager.all_steps())
        if epoch not in epochs:
            raise ValueError(
                f"{run_dir} has no checkpoint for epoch {epoch}; checkpoints: {epochs or 'none'}"
            )
        restore = ocp.args.JsonRestore() if item == "manifest" else ocp.args.StandardRestore()
        return getattr(manager.restore(epoch, args=ocp.args.Composite(**{item: restore})), item)
    finally:
        manager.close()


def load_checkpoint(run_dir: str | os.PathLike[str], epoch: int) -> dict[str, Any]:
    """The model variables saved after ``epoch`` epochs (only that checkpoint is read).

    Args:
        run_dir: a run directory written by :func:`~sdcomplex.train.train`.
        epoch: an epoch from :func:`list_checkpoints`.

    Returns:
        ``{'params': ..., 'batch_stats': ...}`` (no ``batch_stats`` for models without
        BatchNorm) of float32 ``jax.Array`` leaves, ready for ``model.apply``.

    Raises:
        ValueError: no such run directory or no checkpoint for that epoch.

    Example:
        >>> variables = load_checkpoint("runs/teacher", 3)  # doctest: +SKIP
        >>> logits = model.apply(variables, x, train=False)  # doctest: +SKIP
    """
    return dict(_restore_item(run_dir, epoch, "variables"))


def load_manifest(run_dir: str | os.PathLike[str], epoch: int) -> dict[str, Any]:
    """The manifest of an epoch checkpoint: ``epoch``, ``step``, ``config_hash``,
    ``versions`` (library versions), ``kind``, ``time``."""
    return dict(_restore_item(run_dir, epoch, "manifest"))
