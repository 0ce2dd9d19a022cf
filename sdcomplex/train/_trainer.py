"""``train(config, run_dir)``: one loop over a prepared run (see :mod:`sdcomplex.train._loop`).

Read top-down: check the names, return a finished run at once, verify or refuse the run
directory, load the data, :func:`~sdcomplex.train._loop.prepare` the run,
:func:`~sdcomplex.train._loop.restore_or_init` its state, then for each epoch
:func:`~sdcomplex.train._loop.train_epoch`, :func:`~sdcomplex.train._loop.evaluate_epoch` and
:func:`~sdcomplex.train._loop.save`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from tqdm.auto import tqdm

from sdcomplex.data import quiet_loading
from sdcomplex.placement import Placement, make_placement
from sdcomplex.train._checkpoint import CheckpointStore, load_checkpoint
from sdcomplex.train._config import TrainConfig
from sdcomplex.train._integrity import DamagedFile
from sdcomplex.train._loop import (
    Position,
    Prepared,
    StopRequest,
    evaluate_epoch,
    prepare,
    restore_or_init,
    save,
    train_epoch,
    zero_sums,
)
from sdcomplex.train._metrics import check_metrics_lines, read_metrics
from sdcomplex.train._rundir import RunDirectory
from sdcomplex.train._setup import RunSetup, check_names, setup_run
from sdcomplex.train._supervision import Supervision, resolve_supervision


class TrainResult(NamedTuple):
    """Outcome of :func:`train`.

    Attributes:
        run_dir: the run directory.
        status: ``"completed"`` (trained to the last epoch now), ``"already_complete"``
            (nothing to do) or ``"preempted"`` (stopped by SIGTERM/SIGINT after saving).
        epoch: epochs completed.
        metrics: every line of ``metrics.jsonl``.
        variables: the model's variables at the end (``None`` when preempted).
        signal: the number of the SIGTERM or SIGINT received during training (``None``: none).
            It is set with ``status="completed"`` too when the signal came during the last
            epoch, which then finished normally; a command line should still exit with
            ``128 + signal``, the convention of a process stopped by a signal.
    """

    run_dir: Path
    status: str
    epoch: int
    metrics: list[dict[str, Any]]
    variables: dict[str, Any] | None
    signal: int | None = None


def finished_result(config: TrainConfig, run_dir: str | Path) -> TrainResult | None:
    """The result (``status="already_complete"``) of a finished run in ``run_dir`` whose final
    checkpoint, metrics lines and ``run.json`` are intact; ``None`` otherwise (not finished, or
    damaged: the run is then resumed from its newest intact checkpoint by training it again,
    which also writes a missing ``run.json`` again).

    Raises:
        ValueError: the directory holds a different config, or edited or damaged records.
    """
    run_dir = Path(run_dir)
    run = RunDirectory(run_dir)
    if not run.verify(config) or not run.checkpoint_dir.is_dir() or not run.run_file.exists():
        return None
    store = CheckpointStore(run_dir, keep=config.keep_checkpoints)
    try:
        if config.epochs not in store.epochs():
            return None
        try:
            manifest = store.manifest("epoch", config.epochs)
            check_metrics_lines(run_dir, manifest.get("metrics_sha256", []))
            variables = load_checkpoint(run_dir, config.epochs)
        except DamagedFile:
            return None
        return TrainResult(run_dir, "already_complete", config.epochs, run.metrics(), variables)
    finally:
        store.close()


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    supervision: Supervision | None = None,
    setup: RunSetup | None = None,
    placement: Placement | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Trains (or resumes, or recognises as finished) the run ``config`` in ``run_dir``.

    The run directory holds ``config.json`` (the resolved config), ``run.json`` (config hash,
    data set metadata, library versions), ``metrics.jsonl`` (one line per epoch, epoch 0 =
    initialisation; see :mod:`sdcomplex.train._metrics`) and Orbax checkpoints every
    ``checkpoint_every`` epochs, at epoch 0 and after the last epoch.

    Determinism: initialisation from ``key(seed)``, the batches of epoch ``e`` from
    ``EpochBatcher(seed).permutation(e)`` and the augmentation of step ``s`` of epoch ``e``
    from ``fold_in(fold_in(key(seed), e), s)``, so a run killed at any moment (even ``kill
    -9``) and started again resumes from its last complete checkpoint and ends, on CPU, with
    bit-identical parameters and metrics (except the timing fields). SIGTERM or SIGINT finishes
    the current step, saves a checkpoint and returns ``status="preempted"`` (``signal`` says
    which). A resumed run starts from its newest intact checkpoint (checksums, metrics lines
    and config checked); newer damaged ones are moved to ``damaged/`` with a
    :class:`~sdcomplex.train.DamagedCheckpointWarning`, and the result is the same.

    Args:
        config: the run's hyperparameters.
        run_dir: output directory: new or empty (a new run), or holding a run with the same
            config (resumed, or returned at once when complete).
        supervision: what the student learns from (:class:`Supervision`: its loss, the
            forward pass inside the step, the variables of each epoch, extra metrics of each
            epoch), e.g. a teacher built by :func:`sdcomplex.distill.distill`. Default: the
            cross-entropy with the labels.
        setup: the data set and model of ``config`` (:func:`setup_run`) when the caller has
            loaded them already (default: loaded here).
        placement: the devices to train on (:func:`~sdcomplex.placement.make_placement`;
            default: one device, the default one). Data-parallel over its ``"data"`` axis:
            every global batch of ``config.batch_size`` is split over the devices, the state
            is replicated, gradients and BatchNorm's batch statistics are those of the global
            batch, so any device count trains the same run up to float reordering (and one
            device exactly as without a placement). The device count is not part of the
            config: ``run.json`` and each checkpoint's manifest record it, and a run resumes
            on any device count. With several processes (:func:`~sdcomplex.placement.
            start_distributed`) every process calls ``train`` and process 0 writes the files.
        quiet: no progress bars and no per-epoch lines.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: unknown model or data set, missing data, wrong number of classes, a run
            directory holding a different config or other files (or, without a
            ``supervision``, a distillation run), a ``config.json`` edited
            after the run started, a resumed run whose data files changed since it started
            (its ``run.json`` records the data set), a batch size the device count does not
            divide (unless the run is finished: it is then returned whatever the placement),
            all before any training or writing.
        DamagedFile: a damaged ``run.json`` (a ``ValueError``).
        TrainingDiverged: a non-finite loss (a ``ValueError``; nothing of it is saved).

    Warns:
        UserWarning: a run resumed with other library versions than ``run.json`` records.

    Example:
        >>> cfg = TrainConfig(model="mlp", dataset="digits", epochs=2, augment=False)
        >>> result = train(cfg, "/tmp/runs/mlp_digits", quiet=True)  # doctest: +SKIP
        >>> result.metrics[-1]["test_acc"]  # doctest: +SKIP
        0.95
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if supervision is None:  # (distill passes the supervision of its run)
        RunDirectory(Path(run_dir)).refuse_distillation()
    supervision = resolve_supervision(supervision)
    if setup is not None and not isinstance(setup, RunSetup):
        raise TypeError(f"setup must be a RunSetup (setup_run(config)), got {type(setup).__name__}")
    if placement is None:
        placement = make_placement(num_devices=1)
    elif not isinstance(placement, Placement):
        raise TypeError(f"placement must be a Placement, got {type(placement).__name__}")
    started = time.perf_counter()
    run_dir = Path(run_dir)
    check_names(config)
    done = finished_result(config, run_dir)  # (needs no devices: any placement returns it)
    if done is not None:
        return done
    placement.check_divides(config.batch_size, "batch_size")
    run = RunDirectory(run_dir)
    exists = run.verify(config)
    if setup is None:
        with quiet_loading(quiet):  # (a quiet run's data loading shows no progress bar)
            setup = setup_run(config)  # loads the data; every error is raised before writing
    if exists:  # resumed: on the data it started with (data files are not in the config)
        run.refuse_other_data(setup.dataset.info)
        changed = run.version_changes()
        if changed:
            warnings.warn(
                f"{run_dir} is resumed with other library versions than it started with "
                f"({', '.join(changed)}): the run is no longer bit for bit the one an "
                "uninterrupted run would have given",
                stacklevel=2,
            )
    p = prepare(
        config, run, setup, supervision, exists=exists, started=started, placement=placement
    )
    try:
        status, position, signum = _epochs(p, restore_or_init(p), quiet=quiet)
    finally:
        p.store.close()
    variables = None if status == "preempted" else position.state.variables
    metrics = read_metrics(run_dir)
    return TrainResult(run_dir, status, position.completed, metrics, variables, signum)


def _epochs(p: Prepared, position: Position, *, quiet: bool) -> tuple[str, Position, int | None]:
    """The epochs after ``position``: train, evaluate, save (every ``checkpoint_every``-th and
    the last); on SIGTERM/SIGINT a checkpoint is saved and the loop stops. Returns the status,
    the final position and the signal received (None: none)."""
    config = p.config
    outer = tqdm(total=config.epochs, initial=position.completed, desc="epochs", unit="epoch",
                 disable=quiet)  # fmt: skip
    status = "completed"
    try:
        with StopRequest() as stop:
            for epoch in range(position.completed + 1, config.epochs + 1):
                sup_vars = p.supervision.epoch_variables(epoch)
                placed = None if sup_vars is None else p.placement.replicate(sup_vars)
                done = train_epoch(p, position, epoch, placed, stop, quiet=quiet)
                if done.preempted:
                    return "preempted", position._replace(state=done.state), stop.signum
                times = (done.seconds, done.images)
                record = evaluate_epoch(p, done.state, epoch, done.running, sup_vars, times)
                position = Position(done.state, zero_sums(p.placement), epoch, 0)
                saved = epoch % config.checkpoint_every == 0 or epoch == config.epochs
                if saved:
                    save(p, "epoch", position.state, position.running, epoch, 0)
                outer.update(1)
                if not quiet:
                    outer.write(_summary(record, config.epochs))
                if stop.signum is not None and epoch < config.epochs:
                    if not saved:
                        save(p, "preempt", position.state, position.running, epoch, 0)
                    status = "preempted"
                    break
    finally:
        outer.close()
    return status, position, stop.signum


def _summary(record: Mapping[str, Any], epochs: int) -> str:
    speed = record.get("images_per_s")
    return (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:.4f} | test loss {record['test_loss']:.4f} "
        f"acc {record['test_acc']:.4f} | lr {record['lr']:.4g}"
        + (f" | {speed:.0f} img/s" if speed else "")
    )
