"""The pieces of a training run, in the order :func:`~sdcomplex.train.train` uses them.

:func:`prepare` builds everything that does not change during a run (:class:`Prepared`: the
data, the model, the optimiser, the compiled steps, the checkpoint store, the supervision);
:func:`restore_or_init` gives the state a run starts from (its newest intact checkpoint, or the
initialisation, evaluated and saved as epoch 0); :func:`train_epoch` runs the steps of one epoch;
:func:`evaluate_epoch` evaluates the state and appends the epoch's metrics line; :func:`save`
writes a checkpoint. Each is a plain function of the prepared run and the current state.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sdcomplex.data import Dataset, EpochBatcher
from sdcomplex.models import abstract_variables, count_params, init_variables
from sdcomplex.placement import Placement
from sdcomplex.train._checkpoint import CheckpointStore
from sdcomplex.train._config import TrainConfig
from sdcomplex.train._divergence import check_evaluated_losses, check_step_loss
from sdcomplex.train._inference import padded_batches
from sdcomplex.train._metrics import (
    append_metrics,
    epoch_fields,
    keep_metrics_lines,
    train_eval_indices,
    truncate_metrics,
)
from sdcomplex.train._optim import make_optimizer
from sdcomplex.train._resume import checkpoint_manifest, resume_point
from sdcomplex.train._rundir import RunDirectory
from sdcomplex.train._setup import RunSetup
from sdcomplex.train._step import (
    TrainState,
    init_train_state,
    make_eval_step,
    make_train_step,
    run_preprocess,
)
from sdcomplex.train._supervision import EpochInfo, Supervision

_STANDARD_FIELDS = frozenset(
    "epoch step train_loss train_acc test_loss test_acc batch_loss batch_acc lr time "
    "elapsed_s epoch_time_s eval_time_s images_per_s".split()
)


class Prepared(NamedTuple):
    """Everything of a run that stays fixed while it trains (built by :func:`prepare`)."""

    config: TrainConfig
    run_dir: Path
    chash: str
    store: CheckpointStore
    dataset: Dataset
    model: nn.Module
    batcher: EpochBatcher
    optimizer: Any
    schedule: Any
    step_fn: Any
    eval_step: Any
    eval_batch_size: int
    train_eval: np.ndarray | None  # the training examples evaluated (None: all)
    supervision: Supervision
    started: float
    placement: Placement


class Position(NamedTuple):
    """Where a run stands: its state, the running batch sums ``(loss, correct, count)`` of the
    epoch in progress, the epochs completed and the next batch of the next epoch."""

    state: TrainState
    running: jax.Array
    completed: int
    batch: int


class EpochRun(NamedTuple):
    """What :func:`train_epoch` did: the new state and running sums, the images it trained on,
    its seconds, and whether it stopped early on a signal (then saved as a preemption)."""

    state: TrainState
    running: jax.Array
    images: int
    seconds: float
    preempted: bool


class StopRequest:
    """Turns SIGTERM / SIGINT into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
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


def prepare(
    config: TrainConfig,
    run: RunDirectory,
    setup: RunSetup,
    supervision: Supervision,
    *,
    exists: bool,
    started: float,
    placement: Placement,
) -> Prepared:
    """Creates the run directory (``config.json``, ``run.json``) unless ``exists``, builds the
    optimiser and the compiled steps, and opens the checkpoint store (close it when done).

    With a ``placement`` of several devices the steps are data-parallel (see
    :func:`make_train_step`) and the evaluation batch is rounded up to a multiple of the
    device count; with several processes only process 0 writes files."""
    dataset, model = setup.dataset, setup.model
    info = dataset.info
    batcher = EpochBatcher(info.n_train, config.batch_size, seed=config.seed, drop_last=True)
    steps_per_epoch = batcher.batches_per_epoch
    if placement.writes_files:
        if not exists:
            run.create(config)
        if not run.run_file.exists():  # (also after a kill between the two writes)
            abstract = abstract_variables(model, info.input_shape)
            run.write_record(
                config,
                dataset=info.to_dict(),
                num_params=count_params(abstract["params"]),
                steps_per_epoch=steps_per_epoch,
                placement=placement.describe(),
            )
    placement.sync("run directory")
    optimizer, schedule = make_optimizer(config, steps_per_epoch)
    preprocess, plain = run_preprocess(config, info)
    step_fn = make_train_step(
        model, optimizer, preprocess, supervision=supervision, placement=placement
    )
    train_eval = train_eval_indices(info.n_train, config.eval_train_examples)
    n_train_eval = info.n_train if train_eval is None else len(train_eval)
    eval_bs = min(config.eval_batch_size, max(n_train_eval, info.n_test))
    eval_bs = -(-eval_bs // placement.num_devices) * placement.num_devices  # padded rows
    store = CheckpointStore(run.path, keep=config.keep_checkpoints, placement=placement)
    return Prepared(
        config,
        run.path,
        config.hash(),
        store,
        dataset,
        model,
        batcher,
        optimizer,
        schedule,
        step_fn,
        make_eval_step(model, plain, placement=placement),
        eval_bs,
        train_eval,
        supervision,
        started,
        placement,
    )


def evaluate(
    p: Prepared, variables: Any, x: np.ndarray, y: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """``(mean loss, accuracy, (n, C) float32 logits)`` of the model in inference mode on
    ``(x, y)``: padded batches of ``p.eval_batch_size``, float32 sums accumulated in order;
    each batch split over the placement's devices (each process gathers only its rows)."""
    sums = p.placement.replicate(jnp.zeros(2, jnp.float32))
    logits = []
    size = p.eval_batch_size
    rows = p.placement.local_rows(size)
    for (xb, yb), mask in padded_batches([x, y], size):
        batch = p.placement.put_step_batch((xb[rows], yb[rows], mask[rows]), global_size=size)
        batch_sums, batch_logits = p.eval_step(variables, *batch)
        sums = sums + batch_sums
        logits.append(batch_logits)
    total = np.asarray(sums, np.float64)
    outputs = np.concatenate([np.asarray(b) for b in logits])[: len(y)].astype(np.float32)
    return float(total[0] / len(y)), float(total[1] / len(y)), outputs


def evaluate_epoch(
    p: Prepared,
    state: TrainState,
    epoch: int,
    running: Any,
    sup_vars: Any,
    times: tuple[float, int],
) -> dict[str, Any]:
    """Evaluates the state on the training examples and the test set, adds the supervision's
    diagnostics, appends the epoch's metrics line and returns it (``sup_vars``: the
    supervision's variables of the epoch).

    Raises:
        TrainingDiverged: a non-finite loss; ValueError: the diagnostics returned reserved names.
    """
    t_eval = time.perf_counter()
    ds, rows = p.dataset, p.train_eval
    variables = state.variables
    x_train, y_train = ds.x_train, ds.y_train
    if rows is not None:
        x_train, y_train = x_train[rows], y_train[rows]
    train_loss, train_acc, train_logits = evaluate(p, variables, x_train, y_train)
    test_loss, test_acc, test_logits = evaluate(p, variables, ds.x_test, ds.y_test)
    step = int(state.step)
    check_evaluated_losses(
        {"train loss": train_loss, "test loss": test_loss},
        epoch=epoch,
        global_step=step,
        learning_rate=p.config.learning_rate,
    )
    sums = np.asarray(running, np.float64) if running is not None else None
    train, test = (train_loss, train_acc), (test_loss, test_acc)
    record = epoch_fields(epoch, step, train, test, sums, p.schedule)
    if p.supervision.diagnostics is not None:
        info = EpochInfo(
            epoch, step, variables, sup_vars, p.model, ds, p.config, p.run_dir,
            train_logits, test_logits, rows,
        )  # fmt: skip
        extra = dict(p.supervision.diagnostics(info))
        clash = sorted(set(extra) & _STANDARD_FIELDS)
        if clash:
            raise ValueError(f"Supervision.diagnostics returned reserved metric names {clash}")
        record.update(extra)
    train_time, images = times
    now = time.perf_counter()
    record.update(
        time=time.time(),
        elapsed_s=now - p.started,
        epoch_time_s=train_time,
        eval_time_s=now - t_eval,
        images_per_s=images / train_time if train_time > 0 else None,
    )
    if p.placement.writes_files:
        append_metrics(p.run_dir, record)
    p.placement.sync(f"metrics {epoch}")
    return record


def save(p: Prepared, kind: str, state: TrainState, running: Any, completed: int, batch: int):
    """Saves a checkpoint: ``kind="epoch"`` after ``completed`` epochs (and removes any
    preemption checkpoint), ``"preempt"`` at ``batch`` of the next epoch."""
    step = int(state.step)
    manifest = checkpoint_manifest(p.run_dir, kind, completed, batch, step, p.chash, p.config)
    manifest["placement"] = p.placement.describe()
    number = completed if kind == "epoch" else step
    items = {"step": state.step, "opt_state": state.opt_state, "running": running}
    p.store.save(kind, number, state.variables, items, manifest)
    if kind == "epoch":
        p.store.delete_preempt()


def zero_sums(placement: Placement | None = None) -> jax.Array:
    """The running batch sums ``(loss, correct, count)`` at the start of an epoch (replicated
    on the ``placement``'s devices when one is given)."""
    sums = jnp.zeros(3, jnp.float32)
    return sums if placement is None else placement.replicate(sums)


def restore_or_init(p: Prepared) -> Position:
    """The newest intact checkpoint (metrics lines cut back to it), or a fresh run: the
    initialisation of the config's seed, evaluated and saved as epoch 0."""
    info, placement = p.dataset.info, p.placement
    point = resume_point(p.store, p.run_dir, p.chash)
    if point is None:
        if placement.writes_files:
            keep_metrics_lines(p.run_dir, 0)
        p.store.delete_preempt()
        variables = init_variables(p.model, p.config.seed, info.input_shape)
        state = placement.replicate(init_train_state(variables, p.optimizer))
        evaluate_epoch(p, state, 0, None, None, (0.0, 0))
        save(p, "epoch", state, zero_sums(placement), 0, 0)
        return Position(state, zero_sums(placement), 0, 0)
    abstract = abstract_variables(p.model, info.input_shape)
    abstract_state = jax.eval_shape(lambda v: init_train_state(v, p.optimizer), abstract)
    abstract_train = {
        "step": abstract_state.step,
        "opt_state": abstract_state.opt_state,
        "running": jax.ShapeDtypeStruct((3,), jnp.float32),
    }
    kind, number = point
    variables, items, manifest = p.store.restore(  # on any device count: into this placement
        kind,
        number,
        placement.abstract_replicated(abstract),
        placement.abstract_replicated(abstract_train),
    )
    state = TrainState(
        step=items["step"],
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        opt_state=items["opt_state"],
    )
    completed, batch = int(manifest["epoch"]), int(manifest["batch"])
    if not placement.writes_files:
        pass
    elif "metrics_sha256" in manifest:
        keep_metrics_lines(p.run_dir, len(manifest["metrics_sha256"]))
    else:  # a checkpoint written before the metrics lines were recorded
        truncate_metrics(p.run_dir, completed)
    placement.sync("restored")
    return Position(state, items["running"], completed, batch)


def train_epoch(
    p: Prepared,
    position: Position,
    epoch: int,
    sup_vars: Any,
    stop: StopRequest,
    *,
    quiet: bool,
) -> EpochRun:
    """The steps of ``epoch`` from ``position.batch`` on; stops early, saving a preemption
    checkpoint, when a signal arrived and steps remain.

    At most one step is in flight: the loss of step ``s`` is checked (it is due) after step
    ``s + 1`` was dispatched, and a non-finite one raises :class:`TrainingDiverged`.
    """
    spe, lr = p.batcher.batches_per_epoch, p.config.learning_rate

    def check(pending: tuple[int, int, Any]) -> None:
        check_step_loss(pending[2], epoch=pending[0], step=pending[1], steps_per_epoch=spe,
                        learning_rate=lr)  # fmt: skip

    state, running, start = position.state, position.running, position.batch
    bar = tqdm(total=spe, initial=start, desc=f"epoch {epoch}", unit="step", leave=False,
               disable=quiet)  # fmt: skip
    t0 = time.perf_counter()
    images = 0
    previous: tuple[int, int, Any] | None = None  # (epoch, step, loss) in flight
    placement, size = p.placement, p.batcher.batch_size
    rows = placement.local_rows(size)  # this process's rows of every global batch
    ds = p.dataset
    batches = p.batcher.batches(epoch, ds.x_train, ds.y_train, start=start, rows=rows)
    for b, local in enumerate(batches, start=start):
        xb, yb = placement.put_step_batch(local, global_size=size)
        key = placement.replicate_key(p.batcher.step_key(epoch, b))
        state, running, loss = p.step_fn(state, running, xb, yb, key, sup_vars)
        if previous is not None:  # keep at most one step in flight
            check(previous)  # waits for that step's loss (already due)
        previous = (epoch, b + 1, loss)
        images += len(yb)
        bar.update(1)
        if stop.signum is not None and b + 1 < spe:
            bar.close()
            check(previous)
            save(p, "preempt", state, running, epoch - 1, b + 1)
            return EpochRun(state, running, images, time.perf_counter() - t0, True)
    bar.close()
    if previous is not None:
        check(previous)
    jax.block_until_ready(state)
    return EpochRun(state, running, images, time.perf_counter() - t0, False)
