"""The training loop: run directory, resume, per-epoch evaluation, checkpoints, signals, hooks."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sdcomplex.data import Dataset, EpochBatcher
from sdcomplex.models import abstract_variables, count_params, init_variables
from sdcomplex.train._checkpoint import CheckpointStore, load_checkpoint
from sdcomplex.train._config import TrainConfig, config_hash
from sdcomplex.train._divergence import check_evaluated_losses, check_step_loss
from sdcomplex.train._inference import padded_batches
from sdcomplex.train._integrity import DamagedFile
from sdcomplex.train._metrics import (
    append_metrics,
    check_metrics_lines,
    keep_metrics_lines,
    read_metrics,
    truncate_metrics,
)
from sdcomplex.train._optim import make_optimizer
from sdcomplex.train._resume import checkpoint_manifest, resume_point
from sdcomplex.train._rundir import RunDirectory
from sdcomplex.train._setup import check_names, setup_run
from sdcomplex.train._step import (
    LossFn,
    SupervisionApply,
    TrainState,
    init_train_state,
    make_eval_step,
    make_train_step,
    run_preprocess,
)

_STANDARD_FIELDS = frozenset(
    "epoch step train_loss train_acc test_loss test_acc batch_loss batch_acc lr time "
    "elapsed_s epoch_time_s eval_time_s images_per_s".split()
)


class EpochInfo(NamedTuple):
    """What the diagnostics hook sees after each evaluated epoch (and at epoch 0).

    Attributes:
        epoch: epochs trained so far (0 = initialisation).
        step: optimiser updates so far.
        variables: the model's variables ``{'params', 'batch_stats'}`` after the epoch.
        supervision: what ``supervision_fn(epoch)`` returned for this epoch (``None`` at 0).
        model: the Flax module.
        dataset: the run's data set (raw arrays and metadata).
        config: the run's config.
        run_dir: the run directory.
        train_logits: (n_eval, C) float32 outputs of the model (inference mode, no
            augmentation) on the first ``n_eval`` training examples, the ones the epoch's
            train metrics are computed on.
        test_logits: (n_test, C) float32 outputs on the test set.
    """

    epoch: int
    step: int
    variables: dict[str, Any]
    supervision: Any
    model: nn.Module
    dataset: Dataset
    config: TrainConfig
    run_dir: Path
    train_logits: np.ndarray | None = None
    test_logits: np.ndarray | None = None


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


SupervisionFn = Callable[[int], Any]
DiagnosticsFn = Callable[[EpochInfo], Mapping[str, Any]]


class _StopRequest:
    """Turns SIGTERM / SIGINT into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def finished_result(config: TrainConfig, run_dir: str | Path) -> TrainResult | None:
    """The result (``status="already_complete"``) of a finished run in ``run_dir`` whose final
    checkpoint and metrics lines are intact; ``None`` otherwise (not finished, or damaged: the
    run is then resumed from its newest intact checkpoint by training it again).

    Raises:
        ValueError: the directory holds a different config, or edited or damaged records.
    """
    run_dir = Path(run_dir)
    run = RunDirectory(run_dir)
    if not run.verify(config) or not run.checkpoint_dir.is_dir():
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
    quiet: bool = False,
    loss_fn: LossFn | None = None,
    supervision_apply: SupervisionApply | None = None,
    supervision_fn: SupervisionFn | None = None,
    diagnostics_fn: DiagnosticsFn | None = None,
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
        quiet: no progress bars and no per-epoch lines.
        loss_fn: training objective ``(student_logits, labels, supervision_outputs) ->
            scalar`` (default: cross-entropy with the labels). Evaluation always reports the
            cross-entropy with the labels.
        supervision_apply: ``(supervision, x) -> supervision_outputs`` computed inside the
            jitted step on the augmented, normalised batch, e.g. a teacher's forward pass.
        supervision_fn: ``epoch -> supervision`` pytree used for the steps of that epoch
            (1-based), e.g. the teacher checkpoint online distillation replays; it must be a
            deterministic function of the epoch for resumption to be exact.
        diagnostics_fn: ``EpochInfo -> dict`` merged into each epoch's metrics line, called at
            epoch 0 before training and after every epoch.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: unknown model or data set, missing data, wrong number of classes, a run
            directory holding a different config or other files, a ``config.json`` edited
            after the run started (all before any training or writing).
        DamagedFile: a damaged ``run.json`` (a ``ValueError``).
        TrainingDiverged: a non-finite loss (a ``ValueError``; nothing of it is saved).

    Example:
        >>> cfg = TrainConfig(model="mlp", dataset="digits", epochs=2, augment=False)
        >>> result = train(cfg, "/tmp/runs/mlp_digits", quiet=True)  # doctest: +SKIP
        >>> result.metrics[-1]["test_acc"]  # doctest: +SKIP
        0.95
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    started = time.perf_counter()
    run_dir = Path(run_dir)
    check_names(config)
    done = finished_result(config, run_dir)
    if done is not None:
        return done
    run = RunDirectory(run_dir)
    exists = run.verify(config)
    chash = config_hash(config)

    setup = setup_run(config)  # loads the data; every error is raised before writing
    dataset, model = setup.dataset, setup.model
    info = dataset.info
    batcher = EpochBatcher(info.n_train, config.batch_size, seed=config.seed, drop_last=True)
    steps_per_epoch = batcher.batches_per_epoch
    if not exists:
        run.create(config)
    if not run.run_file.exists():  # (also after a kill between the two writes)
        abstract = abstract_variables(model, info.input_shape)
        run.write_run_info(
            config,
            dataset=info.to_dict(),
            num_params=count_params(abstract["params"]),
            steps_per_epoch=steps_per_epoch,
        )

    optimizer, schedule = make_optimizer(config, steps_per_epoch)
    preprocess, plain = run_preprocess(config, info)
    step_fn = make_train_step(
        model, optimizer, preprocess, loss_fn=loss_fn, supervision_apply=supervision_apply
    )
    eval_step = make_eval_step(model, plain)
    n_train_eval = info.n_train
    if config.eval_train_examples is not None:
        n_train_eval = min(config.eval_train_examples, info.n_train)
    eval_bs = min(config.eval_batch_size, max(n_train_eval, info.n_test))

    def evaluate(variables: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        sums = jnp.zeros(2, jnp.float32)
        logits = []
        for (xb, yb), mask in padded_batches([x, y], eval_bs):
            batch_sums, batch_logits = eval_step(variables, xb, yb, mask)
            sums = sums + batch_sums
            logits.append(batch_logits)
        total = np.asarray(sums, np.float64)
        outputs = np.concatenate([np.asarray(b) for b in logits])[: len(y)].astype(np.float32)
        return float(total[0] / len(y)), float(total[1] / len(y)), outputs

    store = CheckpointStore(run_dir, keep=config.keep_checkpoints)
    try:
        return _loop(
            config=config,
            run_dir=run_dir,
            chash=chash,
            store=store,
            dataset=dataset,
            model=model,
            batcher=batcher,
            optimizer=optimizer,
            schedule=schedule,
            step_fn=step_fn,
            evaluate=evaluate,
            n_train_eval=n_train_eval,
            supervision_fn=supervision_fn,
            diagnostics_fn=diagnostics_fn,
            quiet=quiet,
            started=started,
        )
    finally:
        store.close()


def _loop(
    *,
    config: TrainConfig,
    run_dir: Path,
    chash: str,
    store: CheckpointStore,
    dataset: Dataset,
    model: nn.Module,
    batcher: EpochBatcher,
    optimizer: Any,
    schedule: Any,
    step_fn: Any,
    evaluate: Callable[[Any, np.ndarray, np.ndarray], tuple[float, float, np.ndarray]],
    n_train_eval: int,
    supervision_fn: SupervisionFn | None,
    diagnostics_fn: DiagnosticsFn | None,
    quiet: bool,
    started: float,
) -> TrainResult:
    info = dataset.info
    spe = batcher.batches_per_epoch
    x_train, y_train = dataset.x_train, dataset.y_train

    def train_items(state: TrainState, running: Any) -> dict[str, Any]:
        return {"step": state.step, "opt_state": state.opt_state, "running": running}

    def record_epoch(state: TrainState, epoch: int, running: Any, supervision: Any, times: Any):
        t_eval = time.perf_counter()
        variables = state.variables
        train_loss, train_acc, train_logits = evaluate(
            variables, x_train[:n_train_eval], y_train[:n_train_eval]
        )
        test_loss, test_acc, test_logits = evaluate(variables, dataset.x_test, dataset.y_test)
        step = int(state.step)
        check_evaluated_losses(
            {"train loss": train_loss, "test loss": test_loss},
            epoch=epoch,
            global_step=step,
            learning_rate=config.learning_rate,
        )
        sums = np.asarray(running, np.float64) if running is not None else None
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "batch_loss": float(sums[0] / sums[2]) if sums is not None and sums[2] else None,
            "batch_acc": float(sums[1] / sums[2]) if sums is not None and sums[2] else None,
            "lr": schedule.numpy(max(step - 1, 0)),
        }
        if diagnostics_fn is not None:
            extra = dict(
                diagnostics_fn(
                    EpochInfo(
                        epoch,
                        step,
                        variables,
                        supervision,
                        model,
                        dataset,
                        config,
                        run_dir,
                        train_logits,
                        test_logits,
                    )
                )
            )
            clash = sorted(set(extra) & _STANDARD_FIELDS)
            if clash:
                raise ValueError(f"diagnostics_fn returned reserved metric names {clash}")
            record.update(extra)
        train_time, images = times
        now = time.perf_counter()
        record.update(
            time=time.time(),
            elapsed_s=now - started,
            epoch_time_s=train_time,
            eval_time_s=now - t_eval,
            images_per_s=images / train_time if train_time > 0 else None,
        )
        append_metrics(run_dir, record)
        return record

    def save(kind: str, state: TrainState, running: Any, completed: int, batch: int) -> None:
        step = int(state.step)
        manifest = checkpoint_manifest(run_dir, kind, completed, batch, step, chash, config)
        number = completed if kind == "epoch" else step
        store.save(kind, number, state.variables, train_items(state, running), manifest)
        if kind == "epoch":
            store.delete_preempt()

    def zeros() -> jax.Array:
        return jnp.zeros(3, jnp.float32)

    # --- start or resume -------------------------------------------------------------------
    abstract = abstract_variables(model, info.input_shape)
    abstract_state = jax.eval_shape(lambda v: init_train_state(v, optimizer), abstract)
    abstract_train = {
        "step": abstract_state.step,
        "opt_state": abstract_state.opt_state,
        "running": jax.ShapeDtypeStruct((3,), jnp.float32),
    }
    point = resume_point(store, run_dir, chash)
    if point is None:
        keep_metrics_lines(run_dir, 0)
        store.delete_preempt()
        state = init_train_state(init_variables(model, config.seed, info.input_shape), optimizer)
        record_epoch(state, 0, None, None, (0.0, 0))
        save("epoch", state, zeros(), 0, 0)
        completed, start_batch, running = 0, 0, zeros()
    else:
        kind, number = point
        variables, train_items_, manifest = store.restore(kind, number, abstract, abstract_train)
        state = TrainState(
            step=train_items_["step"],
            params=variables["params"],
            batch_stats=variables.get("batch_stats", {}),
            opt_state=train_items_["opt_state"],
        )
        running = train_items_["running"]
        completed, start_batch = int(manifest["epoch"]), int(manifest["batch"])
        if "metrics_sha256" in manifest:
            keep_metrics_lines(run_dir, len(manifest["metrics_sha256"]))
        else:  # a checkpoint written before the metrics lines were recorded
            truncate_metrics(run_dir, completed)

    def check(pending: tuple[int, int, Any]) -> None:
        epoch, step, loss = pending
        lr = config.learning_rate
        check_step_loss(loss, epoch=epoch, step=step, steps_per_epoch=spe, learning_rate=lr)

    # --- epochs ----------------------------------------------------------------------------
    outer = tqdm(total=config.epochs, initial=completed, desc="epochs", unit="epoch", disable=quiet)
    status = "completed"
    try:
        with _StopRequest() as stop:
            for epoch in range(completed + 1, config.epochs + 1):
                supervision = supervision_fn(epoch) if supervision_fn is not None else None
                inner = tqdm(
                    total=spe,
                    initial=start_batch,
                    desc=f"epoch {epoch}",
                    unit="step",
                    leave=False,
                    disable=quiet,
                )
                t0 = time.perf_counter()
                images = 0
                previous: tuple[int, int, Any] | None = None  # (epoch, step, loss) in flight
                batches = batcher.batches(epoch, x_train, y_train, start=start_batch)
                for b, (xb, yb) in enumerate(batches, start=start_batch):
                    key = batcher.step_key(epoch, b)
                    state, running, loss = step_fn(state, running, xb, yb, key, supervision)
                    if previous is not None:  # keep at most one step in flight
                        check(previous)  # waits for that step's loss (already due)
                    previous = (epoch, b + 1, loss)
                    images += len(yb)
                    inner.update(1)
                    if stop.signum is not None and b + 1 < spe:
                        inner.close()
                        check(previous)
                        save("preempt", state, running, epoch - 1, b + 1)
                        status = "preempted"
                        break
                inner.close()
                if status == "preempted":
                    break
                if previous is not None:
                    check(previous)
                jax.block_until_ready(state)
                train_time = time.perf_counter() - t0
                record = record_epoch(state, epoch, running, supervision, (train_time, images))
                running, start_batch, completed = zeros(), 0, epoch
                saved = epoch % config.checkpoint_every == 0 or epoch == config.epochs
                if saved:
                    save("epoch", state, running, epoch, 0)
                outer.update(1)
                if not quiet:
                    outer.write(_summary(record, config.epochs))
                if stop.signum is not None and epoch < config.epochs:
                    if not saved:
                        save("preempt", state, running, epoch, 0)
                    status = "preempted"
                    break
    finally:
        outer.close()
    variables = None if status == "preempted" else state.variables
    metrics = read_metrics(run_dir)
    return TrainResult(run_dir, status, completed, metrics, variables, stop.signum)


def _summary(record: Mapping[str, Any], epochs: int) -> str:
    speed = record.get("images_per_s")
    return (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:.4f} | test loss {record['test_loss']:.4f} "
        f"acc {record['test_acc']:.4f} | lr {record['lr']:.4g}"
        + (f" | {speed:.0f} img/s" if speed else "")
    )
