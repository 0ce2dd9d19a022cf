"""The jitted training step and evaluation: pure functions of the state and the batch.

The step takes an optional *supervision* pytree (a jit argument, e.g. a teacher's variables)
and computes its loss as a :class:`~sdcomplex.train.Supervision` says; knowledge distillation
plugs in here without changing the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from sdcomplex.data import augment_batch, input_statistics, normalise
from sdcomplex.train._supervision import Supervision, resolve_supervision

Preprocess = Callable[[jax.Array, jax.Array], jax.Array]
"""``preprocess(key, raw_batch) -> float32 model inputs`` (augmentation and normalisation)."""


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree; checkpointed whole).

    Attributes:
        step: number of optimiser updates done, int32 scalar.
        params: ``variables['params']``.
        batch_stats: ``variables['batch_stats']`` (BatchNorm running averages; ``{}`` for models
            without BatchNorm).
        opt_state: the optax state.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict[str, Any]:
        """The Flax variable dict ``{'params': ..., 'batch_stats': ...}`` (no empty entries)."""
        out = {"params": self.params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out


def init_train_state(variables: Mapping[str, Any], optimizer: optax.GradientTransformation):
    """A :class:`TrainState` at step 0 from initial variables.

    Example:
        >>> import jax, optax
        >>> from sdcomplex.models import create_model, init_variables
        >>> v = init_variables(create_model("mlp", 3, hidden_sizes=(4,)), jax.random.key(0), (5,))
        >>> int(init_train_state(v, optax.sgd(0.1)).step)
        0
    """
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=optimizer.init(params),
    )


def make_preprocess(
    *,
    mean: Any,
    std: Any,
    pixel_max: float,
    augment: bool,
    padding: int = 4,
    flip: bool = True,
) -> Preprocess:
    """Raw batch -> model inputs: optional crop/flip augmentation, then normalisation.

    Args:
        mean: per-channel mean of ``x / pixel_max`` (``info.mean``; zeros to skip).
        std: per-channel std (``info.std``; ones to skip).
        pixel_max: ``info.pixel_max``.
        augment: random crop (``padding``) and flip (``flip``) with the step's key; images only.
        padding: crop padding per side.
        flip: random horizontal flips.

    Returns:
        ``preprocess(key, raw) -> float32`` of the raw batch's shape.
    """
    mean = tuple(float(m) for m in mean)
    std = tuple(float(s) for s in std)

    def preprocess(key: jax.Array, raw: jax.Array) -> jax.Array:
        if augment:
            return augment_batch(key, raw, mean, std, pixel_max, padding=padding, flip=flip)
        return normalise(raw, mean, std, pixel_max)

    return preprocess


def run_preprocess(config: Any, info: Any) -> tuple[Preprocess, Preprocess]:
    """The training and the evaluation preprocessing of a run.

    Args:
        config: a :class:`~sdcomplex.train.TrainConfig` (augmentation resolved from the data set).
        info: the data set's ``DatasetInfo`` (mean, std, pixel range, channels).

    Returns:
        ``(train_preprocess, eval_preprocess)``: the first augments as the config says, the
        second only normalises.
    """
    mean, std = input_statistics(info, normalise=config.normalise)
    train_preprocess = make_preprocess(
        mean=mean,
        std=std,
        pixel_max=info.pixel_max,
        augment=bool(config.augment),  # (resolved from the data set: never None here)
        padding=int(config.crop_padding or 0),
        flip=bool(config.flip),
    )
    eval_preprocess = make_preprocess(mean=mean, std=std, pixel_max=info.pixel_max, augment=False)
    return train_preprocess, eval_preprocess


def make_train_step(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    preprocess: Preprocess,
    *,
    supervision: Supervision | None = None,
    jit: bool = True,
    placement: Any = None,
):
    """The training step ``(state, running, raw_x, y, key, sup_vars) -> (state, running, loss)``.

    One update: ``x = preprocess(key, raw_x)``; ``out = supervision.outputs(sup_vars, x)`` (no
    gradient flows into it); ``loss = supervision.loss(model(params, x, train=True), y,
    out)``; BatchNorm normalises with the
    batch statistics and its running averages are updated; the optimiser applies the gradient.

    Args:
        model: the Flax module (``train=True`` mode, ``batch_stats`` mutable).
        optimizer: the optax transformation.
        preprocess: see :func:`make_preprocess`.
        supervision: the :class:`~sdcomplex.train.Supervision` whose ``loss`` and ``apply``
            the step uses (its ``variables`` and ``diagnostics`` are the trainer's; default:
            the cross-entropy with the labels).
        jit: return the ``jax.jit``-compiled step (state and running sums donated).
        placement: a :class:`~sdcomplex.placement.Placement` for data-parallel steps: the
            batch split over its data axis (:meth:`~sdcomplex.placement.Placement.put_batch`),
            state, running sums and supervision replicated; the outputs are replicated. XLA
            partitions the step: gradients, the loss and BatchNorm's batch statistics are
            means over the global batch. ``None``: wherever the inputs are (one device).

    ``key`` is a PRNG key or its raw ``uint32`` data (:func:`jax.random.key_data`, e.g.
    :meth:`~sdcomplex.placement.Placement.replicate_key`), wrapped again inside the step.

    Returns:
        ``step(state, running, raw_x, y, key, sup_vars)`` (``sup_vars``, a jit argument: the
        supervision's variables of this step) returning the new
        :class:`TrainState`, the new running sums ``running + [B * loss, correct, B]``
        (float32 ``(3,)``) and the batch loss (float32 scalar).

    Raises:
        TypeError: a ``supervision`` that is not a :class:`~sdcomplex.train.Supervision`.
    """
    supervision = resolve_supervision(supervision)

    def step(state: TrainState, running: jax.Array, raw_x, y, key, sup_vars):
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        x = preprocess(key, raw_x)
        sup_out = supervision.outputs(sup_vars, x)

        def objective(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            if not state.batch_stats:
                variables = {"params": params}
            logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
            loss = supervision.loss(logits, y, sup_out)
            return loss, (logits, updates.get("batch_stats", state.batch_stats))

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        batch = jnp.float32(y.shape[0])
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
        running = running + jnp.stack([loss.astype(jnp.float32) * batch, correct, batch])
        new_state = TrainState(state.step + 1, params, batch_stats, opt_state)
        return new_state, running, loss

    if not jit:
        return step
    if placement is None:
        return jax.jit(step, donate_argnums=(0, 1))
    return jax.jit(step, donate_argnums=(0, 1), out_shardings=placement.replicated())


def make_eval_step(
    model: nn.Module, preprocess: Preprocess, *, jit: bool = True, placement: Any = None
):
    """Evaluation of one padded batch in inference mode.

    ``eval_step(variables, raw_x (B, ...), y (B,), mask (B,) bool) -> (sums, logits)``:
    ``sums`` float32 (2,) is the summed cross-entropy with the labels and the number of correct
    argmax predictions over the examples with ``mask`` True, ``logits`` (B, C) the model's
    outputs (BatchNorm uses its running averages). With a ``placement`` the batch is split
    over its data axis (``B`` a multiple of the device count) and both outputs are replicated.
    """
    zero_key = jax.random.key(0)

    def eval_step(variables, raw_x, y, mask):
        x = preprocess(zero_key, raw_x)
        logits = model.apply(variables, x, train=False)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = jnp.argmax(logits, axis=-1) == y
        sums = jnp.stack(
            [jnp.sum(jnp.where(mask, losses, 0.0)), jnp.sum(mask & correct).astype(jnp.float32)]
        )
        return sums, logits

    if not jit:
        return eval_step
    if placement is None:
        return jax.jit(eval_step)
    return jax.jit(eval_step, out_shardings=placement.replicated())
