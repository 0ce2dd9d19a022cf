"""Orbax checkpoints of a run directory, one per saved epoch, each with a manifest and checksums.

Layout of a run directory ``DIR``::

    DIR/checkpoints/epoch_<e>/variables       params and batch_stats after epoch e (0: init)
    DIR/checkpoints/epoch_<e>/train           optimiser state, step count, running sums
    DIR/checkpoints/epoch_<e>/manifest        JSON: epoch, step, config hash, versions, ...
    DIR/checkpoints/epoch_<e>/checksums.json  size and sha256 of every other file of it
    DIR/preempt/step_<s>/...                  at most one mid-epoch checkpoint (SIGTERM)
    DIR/damaged/<kind>_<n>/                   damaged checkpoints moved aside on resume
    DIR/checkpoints/removed/, DIR/preempt/removed/   checkpoints being removed

Checkpoints are written by ``orbax.checkpoint.CheckpointManager`` into a temporary directory
that is renamed when complete; then ``checksums.json`` is written (atomically). A process
killed at any moment leaves complete, verifiable checkpoints, at most one without checksums
(the one being finished) and temporary leftovers (removed when the run is reopened). A
checkpoint is removed (``keep_checkpoints``, a superseded preemption checkpoint) by renaming it
into ``removed/`` first and deleting its files there, so a kill in the middle of a removal
leaves no listed, incomplete checkpoint either. Every
read verifies the checksums first (:func:`verify_checkpoint`), so a damaged checkpoint (a
changed byte, a truncated or missing file) is a :class:`~sdcomplex.train.DamagedFile` error
naming the file, never an Orbax traceback or silently wrong values. Checkpoints written before
checksums were recorded (no ``checksums`` entry in their manifest) are read unverified.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from sdcomplex.placement import active_processes, make_placement
from sdcomplex.train._integrity import (
    CHECKSUM_FILE,
    DamagedFile,
    has_checksums,
    verify_checksums,
    write_checksums,
)

CHECKPOINT_DIR = "checkpoints"
PREEMPT_DIR = "preempt"
DAMAGED_DIR = "damaged"
REMOVED_DIR = "removed"  # below CHECKPOINT_DIR and PREEMPT_DIR: checkpoints being removed
_ITEMS = ("variables", "train", "manifest")
_PREFIX = {"epoch": "epoch", "preempt": "step"}
_LIBRARIES = ("sdcomplex", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


class DamagedCheckpointWarning(UserWarning):
    """A damaged checkpoint was moved aside and an earlier one is used."""


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
    # Orbax's array writers need absolute paths; a run directory may be given relative to the
    # working directory (``sdcomplex train --out runs/x``).
    path = Path(directory).absolute()
    processes = active_processes()  # None: every process of the run takes part
    multiprocessing = ocp.options.MultiprocessingOptions()
    if processes is not None:  # this process alone: no barriers with the others
        multiprocessing = ocp.options.MultiprocessingOptions(active_processes=set(processes))
        if create:  # (Orbax creates the directory only with every process taking part)
            path.mkdir(parents=True, exist_ok=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=create,
        step_prefix=prefix,
        todelete_subdir=REMOVED_DIR,  # a removal is a rename, then deletion (_empty_removed)
        create=create and processes is None,
        multiprocessing_options=multiprocessing,
    )
    if create:
        return ocp.CheckpointManager(path, options=options, item_names=_ITEMS)
    handlers = {
        "variables": ocp.StandardCheckpointHandler(),
        "train": ocp.StandardCheckpointHandler(),
        "manifest": ocp.JsonCheckpointHandler(),
    }
    return ocp.CheckpointManager(path, options=options, item_handlers=handlers)


def _restore_target(manager: Any, number: int, item: str) -> Any:
    """The shapes and dtypes of a saved item on this process's first device: checkpoints
    written on any number of devices restore here (Orbax refuses a saved sharding whose devices
    do not exist)."""
    tree = getattr(manager.item_metadata(number), item)
    tree = getattr(tree, "tree", tree)
    return make_placement(devices=jax.local_devices()[:1]).abstract_replicated(tree)


def _orbax_restore(manager: Any, number: int, step_dir: Path, **items: Any) -> Any:
    """``manager.restore`` of some items, any Orbax failure reported as a damaged checkpoint."""
    try:
        return manager.restore(number, args=ocp.args.Composite(**items))
    except Exception as err:  # Orbax, TensorStore, JSON and shape errors alike
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise DamagedFile(step_dir, f"Orbax cannot read it: {type(err).__name__} {first}") from None


def _verify(manager: Any, number: int, step_dir: Path) -> None:
    """Checks a checkpoint's files against its checksums (see the module docstring)."""
    if has_checksums(step_dir):
        verify_checksums(step_dir)
        return
    manifest = _orbax_restore(manager, number, step_dir, manifest=ocp.args.JsonRestore())
    if "checksums" in dict(manifest.manifest):  # written with checksums: unfinished
        raise DamagedFile(step_dir, f"no {CHECKSUM_FILE}: its write did not finish")


def _savable(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    """``tree`` as Orbax saves it: as it is, or as host (NumPy) arrays when this process saves
    alone in a multi-process run (Orbax refuses a single process's arrays there)."""
    if active_processes() is None:
        return tree
    return jax.device_get(dict(tree))


class CheckpointStore:
    """The epoch checkpoints and the preemption checkpoint of one run directory.

    Args:
        run_dir: the run directory (created if needed).
        keep: keep only the latest ``keep`` epoch checkpoints (``None``: all).
        placement: the run's :class:`~sdcomplex.placement.Placement`: with several processes
            every one saves (Orbax's saves are collective) and process 0 writes the checksums.
    """

    def __init__(
        self, run_dir: str | os.PathLike[str], keep: int | None = None, *, placement: Any = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.placement = placement
        self._managers = {
            "epoch": _manager(self.run_dir / CHECKPOINT_DIR, "epoch", keep=keep),
            "preempt": _manager(self.run_dir / PREEMPT_DIR, "step", keep=1),
        }
        self._empty_removed()  # what a process killed while removing checkpoints left

    def step_dir(self, kind: str, number: int) -> Path:
        """The directory of a checkpoint (``kind`` ``"epoch"`` or ``"preempt"``)."""
        parent = CHECKPOINT_DIR if kind == "epoch" else PREEMPT_DIR
        return self.run_dir / parent / f"{_PREFIX[kind]}_{number}"

    def epochs(self) -> list[int]:
        """Epochs with a complete checkpoint, increasing (not yet verified)."""
        return sorted(int(s) for s in self._managers["epoch"].all_steps())

    def preempt_steps(self) -> list[int]:
        """Global steps of complete preemption checkpoints (at most one in normal use)."""
        return sorted(int(s) for s in self._managers["preempt"].all_steps())

    def save(
        self,
        kind: str,
        number: int,
        variables: Mapping[str, Any],
        train: Mapping[str, Any],
        manifest: Mapping[str, Any],
    ) -> None:
        """Saves an ``"epoch"`` checkpoint (``number`` = epoch) or a ``"preempt"`` one (step),
        then its checksums."""
        manager = self._managers[kind]
        variables, train = _savable(variables), _savable(train)
        args = ocp.args.Composite(
            variables=ocp.args.StandardSave(dict(variables)),
            train=ocp.args.StandardSave(dict(train)),
            manifest=ocp.args.JsonSave({**manifest, "checksums": CHECKSUM_FILE}),
        )
        manager.save(number, args=args, force=True)  # collective: every process saves
        manager.wait_until_finished()
        if self.placement is None or self.placement.writes_files:
            write_checksums(self.step_dir(kind, number))
        if self.placement is not None:
            self.placement.sync(f"checksums {kind} {number}")
        self._empty_removed()  # checkpoints the save's keep policy removed

    def verify(self, kind: str, number: int) -> None:
        """Raises :class:`DamagedFile` unless the checkpoint's files match its checksums."""
        _verify(self._managers[kind], number, self.step_dir(kind, number))

    def restore(self, kind: str, number: int, abstract_variables: Any, abstract_train: Any):
        """``(variables, train, manifest)`` of a verified checkpoint, restored into the given
        structures."""
        self.verify(kind, number)
        out = _orbax_restore(
            self._managers[kind],
            number,
            self.step_dir(kind, number),
            variables=ocp.args.StandardRestore(abstract_variables),
            train=ocp.args.StandardRestore(abstract_train),
            manifest=ocp.args.JsonRestore(),
        )
        return out.variables, out.train, dict(out.manifest)

    def manifest(self, kind: str, number: int) -> dict[str, Any]:
        """The manifest of a checkpoint (verified first)."""
        self.verify(kind, number)
        step_dir = self.step_dir(kind, number)
        restore = ocp.args.JsonRestore()
        return dict(
            _orbax_restore(self._managers[kind], number, step_dir, manifest=restore).manifest
        )

    def newest_intact(
        self, kind: str, check: Callable[[dict[str, Any]], None] | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        """``(number, manifest)`` of the newest intact checkpoint of a kind (``None``: none).

        Newer damaged ones (files that do not match their checksums, or a manifest that
        ``check`` rejects with :class:`DamagedFile`, e.g. metrics lines it recorded that have
        changed since) are moved to ``DIR/damaged/`` with a :class:`DamagedCheckpointWarning`
        naming the damaged file.
        """
        numbers = self.epochs() if kind == "epoch" else self.preempt_steps()
        for number in reversed(numbers):
            try:
                manifest = self.manifest(kind, number)
                if check is not None:
                    check(manifest)
                return number, manifest
            except DamagedFile as err:
                name = self.step_dir(kind, number).name
                moved = self.quarantine(kind, number)
                warnings.warn(
                    f"checkpoint {name} not used: {err}; moved to {moved}, resuming from an "
                    "earlier checkpoint",
                    DamagedCheckpointWarning,
                    stacklevel=2,
                )
        return None

    def quarantine(self, kind: str, number: int) -> Path:
        """Moves a checkpoint to ``DIR/damaged/<kind>_<number>[.<k>]``; returns where."""
        target = self.run_dir / DAMAGED_DIR / f"{kind}_{number}"
        k = 0
        while target.exists():
            k += 1
            target = target.with_name(f"{kind}_{number}.{k}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self.step_dir(kind, number), target)
        self._managers[kind].reload()
        return target

    def delete_preempt(self, up_to: int | None = None) -> None:
        """Removes every preemption checkpoint (``up_to``: those of global steps up to it)."""
        for step in self.preempt_steps():
            if up_to is None or step <= up_to:
                self._managers["preempt"].delete(step)
        self._empty_removed()

    def _empty_removed(self) -> None:
        """Deletes the files of the checkpoints Orbax renamed into ``removed/`` to remove them
        (process 0 alone, the one Orbax removes with)."""
        if self.placement is not None and not self.placement.writes_files:
            return
        for parent in (CHECKPOINT_DIR, PREEMPT_DIR):
            shutil.rmtree(self.run_dir / parent / REMOVED_DIR, ignore_errors=True)

    def close(self) -> None:
        """Waits for pending writes and releases the managers."""
        for manager in self._managers.values():
            manager.close()


def _reader(run_dir: str | os.PathLike[str]):
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run directory {path} does not exist")
    return _manager(path / CHECKPOINT_DIR, "epoch", create=False)


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[int]:
    """Epochs that have a complete checkpoint in a run directory, increasing.

    Epoch 0 is the initialisation; epoch ``e`` holds the variables after ``e`` training epochs.
    (Complete: written to the end; :func:`verify_checkpoint` checks that it is intact.)

    Example:
        >>> list_checkpoints("runs/teacher")  # doctest: +SKIP
        [0, 1, 2, 3]
    """
    manager = _reader(run_dir)
    try:
        return sorted(int(s) for s in manager.all_steps())
    finally:
        manager.close()


def _restore_item(run_dir: str | os.PathLike[str], epoch: int, item: str | None) -> Any:
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise TypeError(f"epoch must be an integer, got {epoch!r}")
    manager = _reader(run_dir)
    try:
        epochs = sorted(int(s) for s in manager.all_steps())
        if epoch not in epochs:
            raise ValueError(
                f"{run_dir} has no checkpoint for epoch {epoch}; checkpoints: {epochs or 'none'}"
            )
        step_dir = Path(run_dir) / CHECKPOINT_DIR / f"epoch_{epoch}"
        _verify(manager, epoch, step_dir)
        if item is None:
            return None
        if item == "manifest":
            restore = ocp.args.JsonRestore()
        else:
            restore = ocp.args.StandardRestore(_restore_target(manager, epoch, item))
        return getattr(_orbax_restore(manager, epoch, step_dir, **{item: restore}), item)
    finally:
        manager.close()


def verify_checkpoint(run_dir: str | os.PathLike[str], epoch: int) -> None:
    """Checks that the checkpoint of ``epoch`` exists and that its files are intact.

    Raises:
        ValueError: no such run directory or checkpoint.
        DamagedFile: a file of the checkpoint does not match its checksum (named).
    """
    _restore_item(run_dir, epoch, None)


def load_checkpoint(run_dir: str | os.PathLike[str], epoch: int) -> dict[str, Any]:
    """The model variables saved after ``epoch`` epochs (only that checkpoint is read, after
    its checksums are verified).

    Args:
        run_dir: a run directory written by :func:`~sdcomplex.train.train`.
        epoch: an epoch from :func:`list_checkpoints`.

    Returns:
        ``{'params': ..., 'batch_stats': ...}`` (no ``batch_stats`` for models without
        BatchNorm) of float32 ``jax.Array`` leaves, ready for ``model.apply``.

    Raises:
        ValueError: no such run directory or no checkpoint for that epoch.
        DamagedFile: the checkpoint is damaged (the message names the file).

    Example:
        >>> variables = load_checkpoint("runs/teacher", 3)  # doctest: +SKIP
        >>> logits = model.apply(variables, x, train=False)  # doctest: +SKIP
    """
    return dict(_restore_item(run_dir, epoch, "variables"))


def load_manifest(run_dir: str | os.PathLike[str], epoch: int) -> dict[str, Any]:
    """The manifest of an epoch checkpoint: ``epoch``, ``step``, ``config_hash``,
    ``versions`` (library versions), ``kind``, ``time``, ``metrics_sha256`` (one digest per
    metrics line written before it), ``checksums``."""
    return dict(_restore_item(run_dir, epoch, "manifest"))
