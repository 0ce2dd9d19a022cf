"""Assembly of `empirical_ntk`'s Gram from block pairs, on one device or on a mesh.

`Stages` says where blocks are padded, placed, computed and fetched; `assemble` sweeps the
(row, column) block pairs (the upper block triangle when the kernel is symmetric, mirrored) and
sums the parts on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm


class Stages(NamedTuple):
    """Where `_assemble` pads, places, computes and fetches the blocks (one device or a mesh)."""

    block: int
    pad: Callable[[Any], tuple[Any, int]]
    take: Callable[[Any, int], Any]
    feats: Callable[[Any, jax.Array], Any]
    contract: Callable[[Any, Any, jax.Array], jax.Array]
    fetch: Callable[[Any], np.ndarray]


def pad_to_blocks(x: Any, block: int) -> tuple[jax.Array, int]:
    """Pads the batch axis to a multiple of ``block`` (repeating the first example)."""
    x = jnp.asarray(x)
    n = x.shape[0]
    pad = -n % block
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)], axis=0)
    return x, n


def _accumulate(out: np.ndarray, blk: np.ndarray, rows: slice, cols: slice, outputs: str) -> None:
    if outputs == "diag":
        out[:, rows, cols] += blk
    else:
        out[rows, cols] += blk


def _mirror(blk: np.ndarray, outputs: str) -> np.ndarray:
    if outputs == "mean":
        return blk.T
    if outputs == "diag":
        return blk.transpose(0, 2, 1)
    return blk.transpose(1, 0, 3, 2)


def assemble(
    plan: Any, params: Any, x1: Any, x2: Any, stages: Stages, progress: bool | None
) -> np.ndarray:
    """The Gram from its block pairs (upper block triangle when symmetric), summed over parts."""
    size, block, outputs = plan.size, stages.block, plan.size.outputs
    xa, n1 = stages.pad(x1)
    xb, n2 = (xa, n1) if x2 is None else stages.pad(x2)
    c = size.num_outputs
    shape = {"mean": (n1, n2), "full": (n1, n2, c, c), "diag": (c, n1, n2)}[outputs]
    dtype = np.dtype(jnp.result_type(*jax.tree.leaves(params)))
    out = np.zeros(shape, dtype=dtype)
    rows = range(0, xa.shape[0], block)
    cols = range(0, xb.shape[0], block)
    pairs = [(i, j) for i in rows for j in cols if x2 is not None or j >= i]
    bar = tqdm(
        total=len(pairs) * plan.num_parts,
        desc=f"NTK {outputs} ({plan.implementation})",
        unit="block",
        disable=(len(pairs) * plan.num_parts <= 4 or None) if progress is None else not progress,
        leave=False,
    )
    with bar:
        for part in range(plan.num_parts):
            part_index = jnp.asarray(part, dtype=jnp.int32)
            for i in rows:
                f1 = stages.feats(stages.take(xa, i), part_index)
                r = slice(i, min(i + block, n1))
                for j in (j for (ii, j) in pairs if ii == i):
                    f2 = (
                        f1
                        if (x2 is None and j == i)
                        else stages.feats(stages.take(xb, j), part_index)
                    )
                    blk = stages.fetch(stages.contract(f1, f2, part_index))
                    cl = slice(j, min(j + block, n2))
                    if outputs == "diag":
                        blk = blk[:, : r.stop - r.start, : cl.stop - cl.start]
                    else:
                        blk = blk[: r.stop - r.start, : cl.stop - cl.start]
                    _accumulate(out, blk, r, cl, outputs)
                    if x2 is None and j != i:
                        _accumulate(out, _mirror(blk, outputs), cl, r, outputs)
                    bar.update()
    check_finite_kernel(np.moveaxis(out, 0, -1) if outputs == "diag" else out, x2 is not None)
    return out


def check_finite_kernel(kernel: np.ndarray, cross: bool, rows_per_check: int = 1024) -> None:
    """Raises ValueError if ``kernel`` ((n1, n2, ...): examples of x1, then of x2) holds NaN
    or inf, naming the examples where ``fn`` or its derivative is not finite: those whose row
    (or, of x2, column) is non-finite throughout (the parameters and inputs were checked
    finite before). Checked a slab of rows at a time (no n1 x n2 mask)."""
    n1, n2 = kernel.shape[:2]
    rows_any: list[int] = []
    rows_all: list[int] = []
    cols_all = np.ones(n2, bool)
    for start in range(0, n1, rows_per_check):
        bad = ~np.isfinite(kernel[start : start + rows_per_check])
        flat = bad.reshape(bad.shape[0], -1)
        rows_any.extend((start + np.flatnonzero(flat.any(axis=1))).tolist())
        rows_all.extend((start + np.flatnonzero(flat.all(axis=1))).tolist())
        cols_all &= bad.reshape(bad.shape[0], n2, -1).all(axis=(0, 2))
    if not rows_any:
        return
    cols = np.flatnonzero(cols_all).tolist() if cross else []
    where = [f"examples {some_indices(rows_all)} of x1"] if rows_all else []
    where += [f"examples {some_indices(cols)} of x2"] if cols else []
    if not where:  # no example is non-finite throughout
        where = [f"some pairs in the rows of examples {some_indices(rows_any)} of x1"]
    raise non_finite_error("the kernel", " and ".join(where))


def non_finite_error(what: str, where: str) -> ValueError:
    """The error for NaN or inf in ``what`` (a kernel, its diagonal, a kernel-vector product)
    at ``where`` (examples, e.g. ``"examples [2] of x1"``)."""
    return ValueError(
        f"{what} holds NaN or inf: fn(params, x) or its derivative with respect to the "
        f"parameters is not finite at {where}, though the parameters and the inputs are "
        "(e.g. the log of a negative input)"
    )


def some_indices(indices: list[int]) -> str:
    """The first five indices, and how many there are in all when more."""
    return str(indices[:5]) + (f" ({len(indices)} in all)" if len(indices) > 5 else "")
