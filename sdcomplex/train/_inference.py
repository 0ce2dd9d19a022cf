"""Padded batched inference: fixed-size batches (the last one padded), so shapes compile once.

Every evaluation of a model on a whole array (the trainer's per-epoch evaluation, the students
trained together, a distillation's teacher and student logits) cuts the examples into
consecutive batches of ``batch_size`` rows; the last batch is padded with zero rows and a
mask marks the real ones, so a jitted function sees one shape whatever the number of examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def padded_batches(
    arrays: Sequence[np.ndarray], batch_size: int
) -> Iterator[tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """Consecutive row batches of equally long arrays, the last one padded with zeros.

    Args:
        arrays: arrays with the same number ``n`` of rows (e.g. inputs and labels).
        batch_size: rows per batch, ``B >= 1``.

    Yields:
        ``(batch, mask)``: one ``(B, ...)`` array per input array, in their dtypes, and the
        ``(B,)`` bool mask of the real (not padded) rows; ``ceil(n / B)`` batches.

    Raises:
        ValueError: a batch size below 1 or arrays of different lengths.

    Example:
        >>> x = np.arange(5.0)
        >>> [(b.tolist(), m.tolist()) for (b,), m in padded_batches([x], 3)]
        [([0.0, 1.0, 2.0], [True, True, True]), ([3.0, 4.0, 0.0], [True, True, False])]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"arrays of different lengths {sorted(lengths)} cannot be batched")
    n = lengths.pop() if lengths else 0
    for start in range(0, n, batch_size):
        batch = tuple(a[start : start + batch_size] for a in arrays)
        valid = len(batch[0])
        mask = np.ones(batch_size, bool)
        if valid < batch_size:
            mask[valid:] = False
            pad = batch_size - valid
            batch = tuple(
                np.concatenate([b, np.zeros((pad, *b.shape[1:]), b.dtype)]) for b in batch
            )
        yield batch, mask


def batched_apply(
    apply_fn: Callable[[Any, np.ndarray], Any], variables: Any, x: np.ndarray, batch_size: int
) -> np.ndarray:
    """``apply_fn(variables, x)`` computed over padded batches of ``batch_size`` rows.

    Args:
        apply_fn: ``(variables, (B, ...) inputs) -> (B, ...)`` outputs, e.g. a jitted
            ``model.apply(v, x, train=False)``; it only ever sees batches of ``B`` rows, so it
            compiles once. Rows must not depend on each other (inference mode).
        variables: its first argument, passed as is.
        x: ``(n, ...)`` inputs, ``n >= 1``.
        batch_size: ``B``; padded rows are dropped from the result.

    Returns:
        ``(n, ...)`` NumPy outputs in the dtype ``apply_fn`` returns.

    Raises:
        ValueError: no inputs or a batch size below 1.

    Example:
        >>> out = batched_apply(lambda w, xb: xb * w, 2.0, np.arange(5.0), batch_size=2)
        >>> out.tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    if len(x) == 0:
        raise ValueError("batched_apply needs at least one input row")
    batches = padded_batches([x], batch_size)
    outputs = [np.asarray(apply_fn(variables, xb))[mask] for (xb,), mask in batches]
    return np.concatenate(outputs)
