"""Non-overlapping max pooling with a select-by-mask derivative, for the structured engine.

``lax.reduce_window`` max pooling (``reduce_window_max``) differentiates through XLA's
select-and-scatter; batched over logits, as the engine's backward passes are, XLA:CPU runs it
as a scatter with one index row per cotangent element, about 15x slower than the rest of the
pooling's backward pass (LeNet-5x8's first pooling: 0.90 s of CPU time against 0.06 s at 64
examples and 10 logits). When the windows do not overlap (strides equal to the window, no
padding or dilation), `window_max` computes the same primal by the same primitive and the same
derivative as a mask: the tangent of each window's first maximum in row-major window order,
which is the element XLA's ``ge`` selection picks. The mask is a comparison and a select,
which XLA fuses; the kernel is unchanged, bit for bit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def is_disjoint_window_max(name: str, params: Mapping[str, Any]) -> bool:
    """Whether a ``reduce_window_max`` equation's windows tile its operand without overlap."""
    if name != "reduce_window_max":
        return False
    window = tuple(params["window_dimensions"])
    return (
        tuple(params["window_strides"]) == window
        and all(tuple(p) == (0, 0) for p in params["padding"])
        and all(d == 1 for d in params["base_dilation"])
        and all(d == 1 for d in params["window_dilation"])
    )


def _windows(x: jax.Array, window: Sequence[int]) -> jax.Array:
    """(*pooled shape, prod(window)): each window's elements in row-major order."""
    counts = [d // w for d, w in zip(x.shape, window, strict=True)]
    x = x[tuple(slice(0, n * w) for n, w in zip(counts, window, strict=True))]
    x = x.reshape([s for n, w in zip(counts, window, strict=True) for s in (n, w)])
    rank = len(window)
    x = jnp.transpose(x, (*range(0, 2 * rank, 2), *range(1, 2 * rank, 2)))
    return x.reshape(*counts, math.prod(window))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def window_max(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    """Max over non-overlapping windows (stride = window, remainders dropped).

    Args:
      x: the operand, any rank and floating dtype.
      window: window size per axis (1 for axes that are not pooled).

    Returns:
      ``lax.reduce_window(x, -inf, lax.max, window, window, "VALID")``.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 3.0, 2.0, 2.0]])
      >>> window_max(x, (1, 2)).tolist()
      [[3.0, 2.0]]
      >>> jax.grad(lambda x: window_max(x, (1, 2)).sum())(x).tolist()  # first maximum
      [[0.0, 1.0, 1.0, 0.0]]
    """
    return _reduce(x, window)


def _reduce(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    return lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")


@window_max.defjvp
def _window_max_jvp(
    window: tuple[int, ...], primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    windows = _windows(x, window)
    first = jnp.argmax(windows, axis=-1)
    chosen = first[..., None] == jnp.arange(windows.shape[-1])
    t_windows = _windows(t, window)
    tangent = jnp.sum(jnp.where(chosen, t_windows, jnp.zeros_like(t_windows)), axis=-1)
    return _reduce(x, window), tangent
