"""Gram blocks of `empirical_ntk` computed on every device of a mesh at once.

With D devices and a per-device block of b examples (the planner's block: the memory budget is
per device), a row block holds G = D * b examples split over the data axis. Each device

* computes the features of its own b rows (`NTKImplementation.features` run per device by
  ``shard_map``: features are per example, so this is exact whatever their layout; every
  feature leaf gets a leading device axis, so the global features are sharded over the mesh);
* contracts them with the column block's features by a ring: it starts with its own b columns
  and passes them on to its neighbour (``ppermute``) D - 1 times, so it never holds the whole
  column block, only blocks of b examples: its rows, its columns, and the loop's two buffers
  (the columns it contracts and those arriving). For LeNet-5x8 at a 1 GiB budget this contraction
  program peaks at 0.88 GB per device against 0.44 GB on one device, where the features
  program (0.59 GB, plus the 0.22 GB row features kept meanwhile) is the peak
  (``benchmarks/ntk_sharded.py``).

Device d ends with its (b, G) rows of the (G, G) block (``mean``; ``diag`` (C, b, G), ``full``
(b, G, C, C)), i.e. a row-sharded block, gathered to the host of every process
(`Placement.gather`). Each (b, b) piece is the one-device program on the same b examples, so
the kernel equals the one-device kernel computed with block b to round-off.

Inputs are full host copies on every process; each process places only its devices' rows
(`Placement.put_rows`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.ntk._engine import NTKImplementation, OutputSpec, combine_callable
from sdcomplex.placement import Placement

_ROW_AXIS = {"mean": 0, "full": 0, "diag": 1}
"""The example axis of the first block in each form's Gram block."""


def _local_features(impl: NTKImplementation, static: Any, spec: OutputSpec) -> Any:
    def run(dynamic: list[Any], params: Any, x: jax.Array, part: jax.Array) -> Any:
        feats = impl.features(combine_callable(dynamic, static), params, x, part, spec)
        return jax.tree.map(lambda leaf: leaf[None], feats)

    return run


@functools.partial(jax.jit, static_argnames=("impl", "static", "spec", "placement"))
def sharded_features(
    impl: NTKImplementation,
    static: Any,
    spec: OutputSpec,
    placement: Placement,
    dynamic: list[Any],
    params: Any,
    x: jax.Array,
    part: jax.Array,
) -> Any:
    """Features of the rows of ``x`` (G, ...) on their devices: leaves (D, *local shape)."""
    run = placement.shard_map(
        _local_features(impl, static, spec),
        in_specs=(
            placement.data_spec(0),
            placement.data_spec(0),
            placement.data_spec(x.ndim),
            placement.data_spec(0),
        ),
        out_specs=placement.data_spec(1),
    )
    return run(dynamic, params, x, part)


def _ring(impl: NTKImplementation, static: Any, spec: OutputSpec, placement: Placement) -> Any:
    d_count = placement.num_devices
    axis = placement.axis
    perm = [(j, (j - 1) % d_count) for j in range(d_count)]  # device d receives from d + 1

    def run(dynamic: list[Any], params: Any, f1: Any, f2: Any, part: jax.Array) -> jax.Array:
        fn = combine_callable(dynamic, static)
        f1 = jax.tree.map(lambda leaf: leaf[0], f1)
        f2 = jax.tree.map(lambda leaf: leaf[0], f2)
        first = impl.contract(fn, params, f1, f2, part, spec)

        def step(carry: Any, _: Any) -> tuple[Any, jax.Array]:
            moved = jax.lax.ppermute(carry, axis, perm)
            return moved, impl.contract(fn, params, f1, moved, part, spec)

        if d_count > 1:
            _, rest = jax.lax.scan(step, f2, None, length=d_count - 1)
            pieces = jnp.concatenate([first[None], rest], axis=0)
        else:
            pieces = first[None]
        # pieces[k] holds the columns of device (d + k) % D: put device s's columns at s.
        pieces = jnp.roll(pieces, jax.lax.axis_index(axis), axis=0)
        return _join_columns(pieces, spec.outputs)

    return run


def _join_columns(pieces: jax.Array, outputs: str) -> jax.Array:
    """(D, *piece) column pieces -> one block with the D pieces side by side along columns."""
    d_count = pieces.shape[0]
    if outputs == "mean":  # (D, b1, b2) -> (b1, D * b2)
        _, b1, b2 = pieces.shape
        return pieces.transpose(1, 0, 2).reshape(b1, d_count * b2)
    if outputs == "diag":  # (D, C, b1, b2) -> (C, b1, D * b2)
        _, c, b1, b2 = pieces.shape
        return pieces.transpose(1, 2, 0, 3).reshape(c, b1, d_count * b2)
    _, b1, b2, c, c2 = pieces.shape  # full: (D, b1, b2, C, C) -> (b1, D * b2, C, C)
    return pieces.transpose(1, 0, 2, 3, 4).reshape(b1, d_count * b2, c, c2)


@functools.partial(jax.jit, static_argnames=("impl", "static", "spec", "placement"))
def sharded_contract(
    impl: NTKImplementation,
    static: Any,
    spec: OutputSpec,
    placement: Placement,
    dynamic: list[Any],
    params: Any,
    f1: Any,
    f2: Any,
    part: jax.Array,
) -> jax.Array:
    """The (G, G) Gram block of two sharded feature blocks, its rows split over the mesh."""
    ndim = {"mean": 2, "diag": 3, "full": 4}[spec.outputs]
    run = placement.shard_map(
        _ring(impl, static, spec, placement),
        in_specs=(
            placement.data_spec(0),
            placement.data_spec(0),
            placement.data_spec(1),
            placement.data_spec(1),
            placement.data_spec(0),
        ),
        out_specs=placement.data_spec(ndim, _ROW_AXIS[spec.outputs]),
    )
    return run(dynamic, params, f1, f2, part)


@dataclasses.dataclass(frozen=True)
class ShardedBlocks:
    """How `compute_with_plan` places, computes and fetches blocks on a mesh.

    Attributes:
      placement: the mesh.
      block: examples per block over all devices, D times the per-device block.
    """

    placement: Placement
    block: int

    @classmethod
    def plan(cls, placement: Placement, per_device: int, max_size: int) -> ShardedBlocks:
        """Blocks of ``per_device`` examples per device, shrunk so that padding stays small."""
        d_count = placement.num_devices
        b = max(1, min(per_device, math.ceil(max_size / d_count)))
        return cls(placement=placement, block=d_count * b)

    def pad(self, x: Any) -> tuple[np.ndarray, int]:
        """Host copy of ``x`` padded to whole blocks (repeating the first example)."""
        host = np.asarray(x)
        host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
        n = host.shape[0]
        pad = -n % self.block
        if pad:
            host = np.concatenate([host, np.repeat(host[:1], pad, axis=0)], axis=0)
        return host, n

    def replicate(self, tree: Any) -> Any:
        """Parameters and the function's arrays on every device."""
        return self.placement.replicate(tree)

    def rows(self, host: np.ndarray, start: int) -> jax.Array:
        """The block of rows from ``start``, split over the mesh."""
        return self.placement.put_rows(host[start : start + self.block])

    def fetch(self, block: jax.Array) -> np.ndarray:
        """A computed block as numpy on every process."""
        return np.asarray(self.placement.gather(block))
