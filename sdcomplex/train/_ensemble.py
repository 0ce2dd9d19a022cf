"""Several independent students of one architecture trained together in one compiled step.

Small models leave a CPU mostly idle between dispatches; training ``S`` of them with
``jax.vmap`` over their training states, batches and keys runs ``S`` updates per dispatch.
Member ``m`` of an ensemble is the run ``config.replace(seed=seeds[m])``: its initial variables
are :func:`~sdcomplex.models.init_variables` of that seed, its batches of epoch ``e`` are
``EpochBatcher(seed).batches(e)``, its step keys ``EpochBatcher(seed).step_key(e, s)``, its
optimiser state its own; so each member follows the trajectory of its own
:func:`~sdcomplex.train.train` run (equal up to the float summation order of the batched
kernels, measured in ``tests/train/test_ensemble.py``).

Distillation: the supervision's variables (e.g. a teacher checkpoint,
:attr:`~sdcomplex.train.Supervision.variables` of the epoch) are shared by all members at a
given epoch (``in_axes=None``); the KD temperature is a per-member vmapped scalar, so that
students at ``tau = 1`` and ``tau = 4`` train in the same compiled step. One
compilation serves every seed and temperature of an architecture and mode.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdcomplex._kd import kd_loss_terms
from sdcomplex.data import Dataset, EpochBatcher
from sdcomplex.models import init_variables
from sdcomplex.train._config import TrainConfig
from sdcomplex.train._divergence import TrainingDiverged, check_evaluated_losses
from sdcomplex.train._inference import padded_batches
from sdcomplex.train._metrics import epoch_fields, train_eval_indices
from sdcomplex.train._optim import make_optimizer
from sdcomplex.train._setup import setup_run
from sdcomplex.train._step import (
    Preprocess,
    TrainState,
    init_train_state,
    make_eval_step,
    make_train_step,
    run_preprocess,
)
from sdcomplex.train._supervision import Supervision, cross_entropy_loss, resolve_supervision

BATCHINGS = ("vmap", "unroll")


class EnsembleStep(NamedTuple):
    """A vmapped, jitted training step and the number of times it was traced.

    Attributes:
        step: ``step(states, running, raw_x, y, keys, sup_vars, temperatures) -> (states,
            running, losses)``: ``states`` a :class:`TrainState` with a leading member axis
            ``S`` on every leaf, ``running`` float32 ``(S, 3)``, ``raw_x`` ``(S, B, ...)``,
            ``y`` int32 ``(S, B)``, ``keys`` ``(S,)`` PRNG keys, ``sup_vars`` the supervision's
            variables, shared by all members (not batched), ``temperatures`` float32 ``(S,)``
            (ignored without KD);
            returns the new states, running sums and float32 ``(S,)`` batch losses.
        traces: ``traces()`` is the number of times ``step`` was traced (one per compilation:
            ``jax.jit`` traces a function once per new input signature).
    """

    step: Callable[..., Any]
    traces: Callable[[], int]


class EnsembleResult(NamedTuple):
    """Outcome of :func:`train_students`.

    Attributes:
        seeds: member ``m``'s seed.
        temperatures: member ``m``'s KD temperature (``None`` without KD).
        variables: member ``m``'s final variables ``{'params'[, 'batch_stats']}`` (NumPy).
        metrics: ``metrics[m][e]`` is member ``m``'s metrics after epoch ``e`` (0 =
            initialisation), with the trainer's non-timing fields (``epoch``, ``step``,
            ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``batch_loss``,
            ``batch_acc``, ``lr``) in the trainer's units.
        compilations: traces of the training step during the run (1 when nothing recompiled).
        train_time_s: seconds spent in training steps (all members together).
        eval_time_s: seconds spent evaluating (all members together).
    """

    seeds: tuple[int, ...]
    temperatures: tuple[float, ...] | None
    variables: list[dict[str, Any]]
    metrics: list[list[dict[str, Any]]]
    compilations: int
    train_time_s: float
    eval_time_s: float


def traced_kd_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    temperature: jax.Array,
    alpha: float,
) -> jax.Array:
    """:func:`sdcomplex.distill.kd_loss` with a traced temperature (a vmapped scalar).

    ``mean_i [(1 - alpha) tau^2 KL(softmax(z_t,i / tau) || softmax(z_s,i / tau)) + alpha
    CE(softmax(z_s,i), y_i)]``, the same operations in the same order as ``kd_loss``.

    Args:
        student_logits: ``(B, C)`` float32.
        teacher_logits: ``(B, C)`` float32 (no gradient flows into them).
        labels: ``(B,)`` int (used when ``alpha > 0``).
        temperature: float32 scalar ``tau > 0`` (may be traced).
        alpha: Python float in ``[0, 1]``.

    Returns:
        float32 scalar.
    """
    return jnp.mean(kd_loss_terms(student_logits, teacher_logits, labels, temperature, alpha))


def _member_supervision(supervision: Supervision | None, alpha: float) -> Supervision:
    """The solo step's supervision of a member whose supervision variables are ``(teacher,
    temperature)``: :func:`traced_kd_loss` against the teacher's logits at that temperature
    (without ``supervision``: the cross-entropy with the labels, the temperature unused)."""
    if supervision is None:
        return Supervision()
    apply = supervision.apply or (lambda teacher, x: teacher)
    return Supervision(
        loss=lambda logits, labels, out: traced_kd_loss(logits, out[0], labels, out[1], alpha),
        apply=lambda sup, x: (apply(sup[0], x), sup[1]),
    )


def make_ensemble_step(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    preprocess: Preprocess,
    *,
    supervision: Supervision | None = None,
    alpha: float = 0.0,
    batching: str = "vmap",
) -> EnsembleStep:
    """The trainer's step (:func:`~sdcomplex.train.make_train_step`) vmapped over members.

    ``jax.jit(jax.vmap(step, in_axes=(0, 0, 0, 0, 0, (None, 0))))`` over the solo step, whose
    supervision variables are ``(shared variables, the member's temperature)``, with the states
    and running sums donated. Without ``supervision`` the loss is the cross-entropy with the
    labels; with one it is :func:`traced_kd_loss` of the student logits against
    ``supervision.apply(variables, x)`` (or the shared ``variables`` themselves) at the
    member's temperature.

    Args:
        model: the students' Flax module.
        optimizer: their optax transformation (one state per member).
        preprocess: see :func:`~sdcomplex.train.make_preprocess`.
        supervision: the teacher (only its ``apply`` is used here); ``None``: no KD.
        alpha: weight of the label cross-entropy in the KD loss.
        batching: ``"vmap"`` (batched kernels over the member axis) or ``"unroll"`` (the
            solo step written out once per member inside the one jitted program: one dispatch
            for all members, each member's arithmetic that of its solo run).

    Returns:
        :class:`EnsembleStep`.
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {list(BATCHINGS)}, got {batching!r}")
    count = [0]
    solo = _member_supervision(supervision, alpha)
    single = make_train_step(model, optimizer, preprocess, supervision=solo, jit=False)

    def step(states, running, raw_x, y, keys, sup_vars, temperatures):
        count[0] += 1  # runs at trace time only
        if batching == "vmap":
            batched = jax.vmap(single, in_axes=(0, 0, 0, 0, 0, (None, 0)))
            return batched(states, running, raw_x, y, keys, (sup_vars, temperatures))
        outs = []
        for m in range(y.shape[0]):  # one copy of the solo step per member, in one program
            mine = jax.tree.map(lambda leaf, m=m: leaf[m], (states, running, raw_x, y, keys))
            outs.append(single(*mine[:5], (sup_vars, temperatures[m])))
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outs)

    return EnsembleStep(jax.jit(step, donate_argnums=(0, 1)), lambda: count[0])


def _make_epoch_keys(seeds: Sequence[int], steps: int) -> Callable[[int], jax.Array]:
    """``keys(epoch)[s, m] = EpochBatcher(seeds[m]).step_key(epoch, s)``, shape ``(steps, S)``
    (one compilation for every epoch)."""

    def key(seed: jax.Array, epoch: jax.Array, step: jax.Array) -> jax.Array:
        return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), step)

    grid = jax.jit(jax.vmap(jax.vmap(key, in_axes=(0, None, None)), in_axes=(None, None, 0)))
    members = jnp.asarray(seeds, jnp.int32)
    step_numbers = jnp.arange(steps, dtype=jnp.int32)
    return lambda epoch: grid(members, jnp.int32(epoch), step_numbers)


def _unused_keys(seeds: Sequence[int], steps: int) -> Callable[[int], jax.Array]:
    """Keys for a preprocessing that draws no random numbers (no augmentation): any keys give
    the same step, and these need no compilation of the threefry generator."""
    keys = jax.random.wrap_key_data(jnp.zeros((steps, len(seeds), 2), jnp.uint32))
    return lambda epoch: keys


def _check_members(
    config: TrainConfig, seeds: Sequence[int], temperatures: Sequence[float] | None, alpha: float
) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= s < 2**31:
            raise ValueError(f"every seed must be an integer in [0, 2**31), got {s!r}")
    if temperatures is None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha != 0:
            raise ValueError(
                f"alpha weighs the label term of the KD loss, but there is no KD (no "
                f"temperatures); got alpha={alpha!r}"
            )
        return tuple(int(s) for s in seeds), None
    if isinstance(temperatures, str | bytes) or not isinstance(temperatures, Sequence):
        raise TypeError(f"temperatures must be a sequence of numbers, got {temperatures!r}")
    if len(temperatures) != len(seeds):
        raise ValueError(
            f"one temperature per member: {len(temperatures)} temperatures for {len(seeds)} seeds"
        )
    for t in temperatures:
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < math.inf:
            raise ValueError(f"every temperature must be a finite number > 0, got {t!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    return tuple(int(s) for s in seeds), tuple(float(t) for t in temperatures)


def _check_supervision(supervision: Any, temperatures: tuple[float, ...] | None) -> None:
    if supervision is not None:
        resolve_supervision(supervision)  # (a TypeError for anything but a Supervision)
    if (supervision is None) != (temperatures is None):
        raise ValueError("KD needs a supervision (the teacher) and one temperature per member")
    if supervision is not None and (
        supervision.variables is None
        or supervision.loss is not cross_entropy_loss
        or supervision.diagnostics is not None
    ):
        raise ValueError(
            "the supervision of train_students needs variables (epoch -> the teacher's) and "
            "no loss or diagnostics of its own (each member's loss is KD at its temperature)"
        )


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _member(tree: Any, m: int) -> Any:
    return jax.tree.map(lambda leaf: np.asarray(leaf[m]), tree)


def _make_evaluate(model: nn.Module, preprocess: Preprocess, batch_size: int) -> Callable:
    """``evaluate(variables (S, ...), x, y) -> (loss (S,), acc (S,))`` as the trainer does it:
    padded batches of ``batch_size``, float32 sums accumulated batch by batch."""
    single = make_eval_step(model, preprocess, jit=False)
    batched = jax.jit(
        jax.vmap(lambda v, x, y, mask: single(v, x, y, mask)[0], (0, None, None, None))
    )

    def evaluate(variables: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sums = None
        for (xb, yb), mask in padded_batches([x, y], batch_size):
            batch_sums = batched(variables, xb, yb, mask)
            sums = batch_sums if sums is None else sums + batch_sums
        total = np.asarray(sums, np.float64)
        return total[:, 0] / len(y), total[:, 1] / len(y)

    return evaluate


def train_students(
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    supervision: Supervision | None = None,
    temperatures: Sequence[float] | None = None,
    alpha: float = 0.0,
    batching: str = "vmap",
) -> EnsembleResult:
    """Trains ``len(seeds)`` students ``config.replace(seed=s)`` together, in memory.

    Each member follows its own :func:`~sdcomplex.train.train` run (initialisation, batch
    order, step keys, optimiser state; ``config.seed`` is not used); all members share one
    compiled step (:func:`make_ensemble_step`) and one vmapped evaluation. Nothing is written
    to disk.

    Args:
        config: the students' config (model, data, optimiser, schedule, epochs).
        seeds: member ``m``'s seed; a seed may repeat with another temperature.
        supervision: the teacher of KD, as for the trainer (:class:`~sdcomplex.train.
            Supervision`) but without its own ``loss`` or ``diagnostics``: its ``variables``
            (``epoch (1-based) -> pytree``, required) are shared by all members in that epoch
            (offline KD: always the same teacher; online KD: the schedule's checkpoint), its
            ``apply`` gives the teacher logits. ``None``: the cross-entropy with the labels
            (no KD).
        temperatures: member ``m``'s KD temperature (one per seed, given exactly when there
            is a ``supervision``): its loss is :func:`traced_kd_loss` against the teacher
            logits ``apply(variables(epoch), x)``.
        alpha: weight of the label cross-entropy in the KD loss (0 without KD).
        batching: ``"vmap"`` or ``"unroll"``, see :func:`make_ensemble_step`.

    Returns:
        :class:`EnsembleResult`.

    Raises:
        ValueError: bad seeds or temperatures, temperatures without a supervision or the
            other way round, an ``alpha`` other than 0 without KD, a supervision without
            ``variables`` or with its own ``loss`` or ``diagnostics``, every error of
            :func:`~sdcomplex.train.setup_run`; :class:`~sdcomplex.train.TrainingDiverged`
            when a member's loss is not finite.

    Example:
        >>> cfg = TrainConfig(model="mlp", dataset="digits", epochs=2, augment=False)
        >>> result = train_students(cfg, seeds=[0, 1, 2])  # doctest: +SKIP
        >>> [m[-1]["test_acc"] for m in result.metrics]  # doctest: +SKIP
        [0.93, 0.94, 0.92]
    """
    seeds, temps = _check_members(config, seeds, temperatures, alpha)
    _check_supervision(supervision, temps)
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {list(BATCHINGS)}, got {batching!r}")
    setup = setup_run(config)
    dataset, model = setup.dataset, setup.model
    info = dataset.info
    batchers = [EpochBatcher(info.n_train, config.batch_size, seed=s) for s in seeds]
    spe = batchers[0].batches_per_epoch
    optimizer, schedule = make_optimizer(config, spe)
    preprocess, plain = run_preprocess(config, info)
    ens = make_ensemble_step(
        model, optimizer, preprocess, supervision=supervision, alpha=float(alpha), batching=batching
    )
    train_eval = train_eval_indices(info.n_train, config.eval_train_examples)
    n_eval = info.n_train if train_eval is None else len(train_eval)
    evaluate = _make_evaluate(model, plain, min(config.eval_batch_size, max(n_eval, info.n_test)))
    initial = [init_variables(model, s, info.input_shape) for s in seeds]  # one compilation
    states = _stack([init_train_state(v, optimizer) for v in initial])
    return _epochs(
        config,
        dataset,
        seeds,
        temps,
        batchers,
        ens,
        evaluate,
        states,
        schedule,
        resolve_supervision(supervision),
        train_eval,
    )


def _check_finite(
    running: np.ndarray, seeds: Sequence[int], epoch: int, steps: int, learning_rate: float
) -> None:
    """Raises :class:`~sdcomplex.train.TrainingDiverged` naming the first member whose summed
    loss over the epoch's steps (``running[m, 0]``) is not finite."""
    for m, seed in enumerate(seeds):
        value = float(running[m, 0])
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged: the loss of the student with seed {seed} is {value} in "
                f"epoch {epoch} (global steps {(epoch - 1) * steps + 1}-{epoch * steps}); "
                f"lower the learning rate (now {learning_rate:g})",
                epoch=epoch,
                step=None,
                global_step=epoch * steps,
                value=value,
            )


def _epochs(
    config: TrainConfig,
    dataset: Dataset,
    seeds: tuple[int, ...],
    temps: tuple[float, ...] | None,
    batchers: list[EpochBatcher],
    ens: EnsembleStep,
    evaluate: Callable,
    states: TrainState,
    schedule: Any,
    supervision: Supervision,
    train_eval: np.ndarray | None,
) -> EnsembleResult:
    size, spe = len(seeds), batchers[0].batches_per_epoch
    x_train, y_train = dataset.x_train, dataset.y_train
    x_eval, y_eval = x_train, y_train  # the training examples evaluated after each epoch
    if train_eval is not None:
        x_eval, y_eval = x_train[train_eval], y_train[train_eval]
    tau = jnp.asarray(temps if temps is not None else (1.0,) * size, jnp.float32)
    metrics: list[list[dict[str, Any]]] = [[] for _ in seeds]
    times = [0.0, 0.0]
    traces0 = ens.traces()
    epoch_keys = (_make_epoch_keys if config.augment else _unused_keys)(seeds, spe)

    def record(epoch: int, running: Any) -> None:
        t0 = time.perf_counter()
        variables = states.variables
        train = evaluate(variables, x_eval, y_eval)
        test = evaluate(variables, dataset.x_test, dataset.y_test)
        sums = None if running is None else np.asarray(running, np.float64)
        step = epoch * spe
        for m in range(size):
            check_evaluated_losses(
                {
                    f"train loss of seed {seeds[m]}": float(train[0][m]),
                    f"test loss of seed {seeds[m]}": float(test[0][m]),
                },
                epoch=epoch,
                global_step=step,
                learning_rate=config.learning_rate,
            )
            mine = (train[0][m], train[1][m]), (test[0][m], test[1][m])
            member_sums = None if sums is None else sums[m]
            metrics[m].append(epoch_fields(epoch, step, *mine, member_sums, schedule))
        times[1] += time.perf_counter() - t0

    record(0, None)
    for epoch in range(1, config.epochs + 1):
        sup_vars = supervision.epoch_variables(epoch)
        t0 = time.perf_counter()
        keys = epoch_keys(epoch)
        orders = np.stack([b.permutation(epoch) for b in batchers])
        running = jnp.zeros((size, 3), jnp.float32)
        for s in range(spe):
            idx = orders[:, s * config.batch_size : (s + 1) * config.batch_size]
            states, running, _ = ens.step(
                states, running, x_train[idx], y_train[idx], keys[s], sup_vars, tau
            )
        jax.block_until_ready(states)
        times[0] += time.perf_counter() - t0
        _check_finite(np.asarray(running), seeds, epoch, spe, config.learning_rate)
        record(epoch, running)
    return EnsembleResult(
        seeds,
        temps,
        [_member(states.variables, m) for m in range(size)],
        metrics,
        ens.traces() - traces0,
        times[0],
        times[1],
    )
