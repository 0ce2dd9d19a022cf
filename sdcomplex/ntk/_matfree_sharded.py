"""NTK-vector products of `sdcomplex.ntk._matfree` with the examples split over a device mesh.

Each device holds the rows of a block of G = D x b examples that the mesh gives it
(`Placement.put_rows`). J^T v is each device's vjp over its rows, summed over the devices
(``psum``: replicated parameter-shaped cotangents); J u is each device's jvp over its rows
(row-sharded). Only the summation order differs from one device, so iterates agree to round-off.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from sdcomplex.ntk._engine import OutputSpec, combine_callable
from sdcomplex.placement import Placement


def _local_vjp(mode: str, static: Any, axis: str) -> Any:
    from sdcomplex.ntk._matfree import _cotangents

    def run(dynamic: list[Any], params: Any, x: jax.Array, v: jax.Array) -> Any:
        fn = combine_callable(dynamic, static)
        out, pullback = jax.vjp(lambda p: fn(p, x), params)
        cot = _cotangents(mode, v.astype(out.dtype), out.shape[-1])
        return jax.lax.psum(jax.vmap(pullback)(cot)[0], axis)

    return run


@functools.partial(jax.jit, static_argnames=("mode", "static", "placement"))
def vjp_block(
    mode: str,
    static: Any,
    placement: Placement,
    dynamic: list[Any],
    params: Any,
    x: jax.Array,
    v: jax.Array,
) -> Any:
    """J^T of the cotangents of ``v`` (G, R) over the G rows of ``x``, summed over devices."""
    rep = placement.data_spec(0)
    run = placement.shard_map(
        _local_vjp(mode, static, placement.axis),
        in_specs=(rep, rep, placement.data_spec(x.ndim), placement.data_spec(2)),
        out_specs=rep,
    )
    return run(dynamic, params, x, v)


def _local_jvp(mode: str, static: Any) -> Any:
    from sdcomplex.ntk._matfree import _collect

    def run(dynamic: list[Any], params: Any, x: jax.Array, u: Any) -> jax.Array:
        fn = combine_callable(dynamic, static)
        out, push = jax.linearize(lambda p: fn(p, x), params)
        return _collect(mode, jax.vmap(push)(u), out.shape[-1])

    return run


@functools.partial(jax.jit, static_argnames=("mode", "static", "placement"))
def jvp_block(
    mode: str,
    static: Any,
    placement: Placement,
    dynamic: list[Any],
    params: Any,
    x: jax.Array,
    u: Any,
) -> jax.Array:
    """J u on the G rows of ``x``: (G, R), rows split over the mesh."""
    rep = placement.data_spec(0)
    run = placement.shard_map(
        _local_jvp(mode, static),
        in_specs=(rep, rep, placement.data_spec(x.ndim), rep),
        out_specs=placement.data_spec(2),
    )
    return run(dynamic, params, x, u)


def _local_vjp_many(static: Any, axis: str) -> Any:
    def run(dynamic: list[Any], params: Any, x: jax.Array, z: jax.Array) -> Any:
        fn = combine_callable(dynamic, static)
        _, pullback = jax.vjp(lambda p: fn(p, x), params)
        return jax.lax.psum(jax.vmap(pullback)(z)[0], axis)

    return run


@functools.partial(jax.jit, static_argnames=("static", "placement"))
def vjp_many(
    static: Any, placement: Placement, dynamic: list[Any], params: Any, x: jax.Array, z: Any
) -> Any:
    """J^T z_q for probes ``z`` (Q, G, C) split over the mesh along axis 1, summed over devices."""
    rep = placement.data_spec(0)
    run = placement.shard_map(
        _local_vjp_many(static, placement.axis),
        in_specs=(rep, rep, placement.data_spec(x.ndim), placement.data_spec(3, 1)),
        out_specs=rep,
    )
    return run(dynamic, params, x, z)


@functools.partial(jax.jit, static_argnames=("impl", "static", "spec", "placement"))
def structured_blocks(
    impl: Any,
    static: Any,
    spec: OutputSpec,
    placement: Placement,
    dynamic: list[Any],
    params: Any,
    x: jax.Array,
) -> jax.Array:
    """Per-example C x C blocks from the structured engine, rows split over the mesh."""

    def run(dynamic: list[Any], params: Any, x: jax.Array) -> jax.Array:
        fn = combine_callable(dynamic, static)
        feats = impl.features(fn, params, x, jnp.asarray(0, jnp.int32), spec)
        return impl.self_blocks(fn, params, feats, spec)

    rep = placement.data_spec(0)
    sharded = placement.shard_map(
        run, in_specs=(rep, rep, placement.data_spec(x.ndim)), out_specs=placement.data_spec(3)
    )
    return sharded(dynamic, params, x)


@functools.partial(jax.jit, static_argnames=("static", "placement"))
def jacobian_blocks(
    static: Any, placement: Placement, dynamic: list[Any], params: Any, x: jax.Array
) -> jax.Array:
    """Per-example C x C blocks from per-example Jacobians, rows split over the mesh."""
    from sdcomplex.ntk._matfree import _jacobian_blocks

    def run(dynamic: list[Any], params: Any, x: jax.Array) -> jax.Array:
        return _jacobian_blocks(static, dynamic, params, x)

    rep = placement.data_spec(0)
    sharded = placement.shard_map(
        run, in_specs=(rep, rep, placement.data_spec(x.ndim)), out_specs=placement.data_spec(3)
    )
    return sharded(dynamic, params, x)
