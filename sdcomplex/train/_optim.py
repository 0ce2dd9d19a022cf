"""Learning-rate schedules and optax optimisers built from a :class:`TrainConfig`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdcomplex.train._config import TrainConfig

Schedule = Callable[[Any], jax.Array]


def make_schedule(config: TrainConfig, steps_per_epoch: int) -> Schedule:
    """The learning rate of update ``t`` (0-based optimiser step count), as a jnp function.

    With ``lr0 = config.learning_rate``, ``S = steps_per_epoch``, ``W = warmup_epochs * S``
    warm-up steps and ``T = epochs * S`` steps in all:

    * warm-up (``t < W``): ``lr0 * (t + 1) / W``;
    * ``"constant"``: ``lr0``;
    * ``"cosine"``: ``lr0 * (f + (1 - f) * (1 + cos(pi * u)) / 2)`` with
      ``u = min(t - W, T - W) / (T - W)`` and ``f = final_lr_fraction``;
    * ``"step"``: ``lr0 * lr_decay_factor ** k`` with ``k`` the number of milestones ``m``
      with ``t >= m * S`` (updates of epochs after epoch ``m`` use the decayed rate).

    Args:
        config: the run's config.
        steps_per_epoch: optimiser steps per epoch (>= 1).

    Returns:
        ``schedule(t) -> float32 scalar`` usable by optax (``t`` int or int array);
        ``schedule.numpy(t)`` evaluates the same closed form in float64 NumPy (for logging,
        with no JAX dispatch).

    Example:
        >>> cfg = TrainConfig(epochs=10, learning_rate=0.1)
        >>> lr = make_schedule(cfg, steps_per_epoch=5)
        >>> round(float(lr(0)), 6), round(float(lr(25)), 6), round(float(lr(50)), 6)
        (0.1, 0.05, 0.0)
    """
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int):
        raise TypeError(f"steps_per_epoch must be an integer, got {steps_per_epoch!r}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    lr0 = config.learning_rate
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    frac = config.final_lr_fraction
    milestones = [m * steps_per_epoch for m in config.lr_milestones]
    factor = config.lr_decay_factor
    kind = config.schedule

    def value(t: Any, xp: Any) -> Any:
        if kind == "constant":
            lr = xp.full_like(t, lr0)
        elif kind == "cosine":
            u = xp.clip((t - warmup) / max(total - warmup, 1), 0.0, 1.0)
            lr = lr0 * (frac + (1.0 - frac) * 0.5 * (1.0 + xp.cos(xp.pi * u)))
        else:
            k = sum((t >= m).astype(t.dtype) for m in milestones)
            lr = lr0 * xp.power(xp.asarray(factor, t.dtype), k)
        if warmup:
            lr = xp.where(t < warmup, lr0 * (t + 1.0) / warmup, lr)
        return lr

    def schedule(count: Any) -> jax.Array:
        return value(jnp.asarray(count, jnp.float32), jnp).astype(jnp.float32)

    def numpy_schedule(count: Any) -> float:
        return float(value(np.asarray(count, np.float64), np))

    schedule.numpy = numpy_schedule  # type: ignore[attr-defined]
    return schedule


def _decay_mask(config: TrainConfig) -> Any:
    if config.decay_norm_and_bias:
        return None

    def mask(params: Any) -> Any:
        def is_kernel(path: tuple[Any, ...], _leaf: Any) -> bool:
            last = path[-1] if path else None
            return getattr(last, "key", None) == "kernel"

        return jax.tree_util.tree_map_with_path(is_kernel, params)

    return mask


def make_optimizer(
    config: TrainConfig, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, Schedule]:
    """The optax optimiser of a config and its learning-rate schedule.

    * ``"sgd"``: ``v <- momentum * v + (g + wd * w)``; ``w <- w - lr * v`` (PyTorch's SGD with
      ``dampening=0``; Nesterov: ``w <- w - lr * (g' + momentum * v)``);
    * ``"adam"``: Adam on ``g + wd * w`` (PyTorch's ``Adam(weight_decay=wd)``);
    * ``"adamw"``: decoupled decay, ``w <- w - lr * (adam(g) + wd * w)``.

    With ``decay_norm_and_bias=False`` the decay applies to parameters named ``kernel`` only.

    Args:
        config: the run's config.
        steps_per_epoch: optimiser steps per epoch (sets the schedule's time axis).

    Returns:
        ``(optimizer, schedule)``.

    Example:
        >>> import jax.numpy as jnp
        >>> tx, lr = make_optimizer(TrainConfig(momentum=0.0, weight_decay=0.0, epochs=1), 1)
        >>> params = {"w": jnp.ones(2)}
        >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
        >>> [round(u, 6) for u in updates["w"].tolist()]  # -learning rate * gradient
        [-0.1, -0.1]
    """
    schedule = make_schedule(config, steps_per_epoch)
    wd = config.weight_decay
    mask = _decay_mask(config)
    if config.optimizer == "adamw":
        tx = optax.adamw(
            schedule,
            b1=config.adam_b1,
            b2=config.adam_b2,
            eps=config.adam_eps,
            weight_decay=wd,
            mask=mask,
        )
        return tx, schedule
    parts = []
    if wd > 0:
        parts.append(optax.add_decayed_weights(wd, mask))
    if config.optimizer == "sgd":
        momentum = config.momentum if config.momentum > 0 else None
        parts.append(optax.sgd(schedule, momentum=momentum, nesterov=config.nesterov))
    else:
        parts.append(
            optax.adam(schedule, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
        )
    return optax.chain(*parts), schedule
