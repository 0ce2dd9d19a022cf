"""Matrix-free supervision complexity: conjugate gradients on NTK-vector products.

The (nC x nC) Gram is never formed. A kernel-vector product is Theta v = J (J^T v): one
reverse-mode pass (vjp) accumulates J^T v over blocks of examples, one forward-mode pass (jvp)
maps it back, so memory is a few parameter vectors plus one block's activations.

* full kernel: s(Y) = vec(Y)^T Theta^{-1} vec(Y), one right-hand side, one vjp + jvp per
  product;
* diag kernels: s(Y) = sum_c Y_c^T Theta_cc^{-1} Y_c, C independent systems solved together
  (C vjps + jvps per product);
* mean kernel: s(Y) = sum_c Y_c^T K^{-1} Y_c with K = (1/C) sum_d Theta_dd, C systems whose
  products need C vjps + jvps each (C^2 per iteration), the costliest form.

Preconditioner (documented choice): ``"jacobi"`` uses the exact diagonal of the solved matrix,
computed per example (the C x C blocks Theta(x_i, x_i) from the structured engine for Flax
models, per-example Jacobians otherwise); for the full kernel it is block-Jacobi with those
C x C blocks. ``"none"`` runs plain CG. The trace tr K needed by the adjusted complexity is
estimated by Hutchinson's method, tr Theta = E ||J^T z||^2 over Rademacher z in R^{n x C} (one
vjp per sample), with its standard error; the exact trace is reported too when the Jacobi
diagonal was computed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex._checks import as_real_array
from sdcomplex.complexity._complexity import check_outputs
from sdcomplex.ntk import _matfree_sharded as sharded
from sdcomplex.ntk._api import (
    DEFAULT_MEMORY_BUDGET,
    _num_params,
    check_values,
    logits_shape,
    plan_ntk,
)
from sdcomplex.ntk._assemble import non_finite_error, some_indices
from sdcomplex.ntk._contract import HIGHEST
from sdcomplex.ntk._engine import OutputSpec, combine_callable, partition_callable
from sdcomplex.placement import Placement, as_placement

PRECONDITIONERS = ("jacobi", "none")


# --- NTK-vector products ------------------------------------------------------------------------


def _cotangents(mode: str, v: jax.Array, c: int) -> jax.Array:
    """(Q, b, C) cotangents for a block of right-hand sides ``v`` (b, R)."""
    if mode == "full":
        return v[None]
    eye = jnp.eye(c, dtype=v.dtype)
    if mode == "diag":  # right-hand side k lives on logit k
        return v.T[:, :, None] * eye[:, None, :]
    b, r = v.shape  # mean: right-hand side r on every logit d, separately
    return (v.T[:, None, :, None] * eye[None, :, None, :]).reshape(r * c, b, c)


def _collect(mode: str, out: jax.Array, c: int) -> jax.Array:
    """(b, R) products from the (Q, b, C) forward-mode outputs."""
    if mode == "full":
        return out[0]
    if mode == "diag":
        return jnp.einsum("kik->ik", out)
    q, b, _ = out.shape
    per = out.reshape(q // c, c, b, c)
    return jnp.einsum("rdid->ir", per) / c


@functools.partial(jax.jit, static_argnames=("mode", "static"))
def _vjp_block(
    mode: str, static: Any, dynamic: list[Any], params: Any, x: jax.Array, v: jax.Array
) -> Any:
    fn = combine_callable(dynamic, static)
    out, pullback = jax.vjp(lambda p: fn(p, x), params)
    cot = _cotangents(mode, v.astype(out.dtype), out.shape[-1])
    return jax.vmap(pullback)(cot)[0]


@functools.partial(jax.jit, static_argnames=("mode", "static"))
def _jvp_block(
    mode: str, static: Any, dynamic: list[Any], params: Any, x: jax.Array, u: Any
) -> jax.Array:
    fn = combine_callable(dynamic, static)
    out, push = jax.linearize(lambda p: fn(p, x), params)
    return _collect(mode, jax.vmap(push)(u), out.shape[-1])


@jax.jit
def _add(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.add, a, b)


@jax.jit
def _squared_norms(u: Any) -> jax.Array:
    norms = [jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree.leaves(u)]
    return functools.reduce(jnp.add, norms)


@dataclasses.dataclass
class _Operator:
    fn: Callable[..., Any]
    params: Any
    x: np.ndarray
    block: int
    num_outputs: int
    memory_budget: float
    placement: Placement | None = None

    def __post_init__(self) -> None:
        self.dynamic, self.static = partition_callable(self.fn)
        self.n = int(self.x.shape[0])
        self.num_params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(self.params))
        self.itemsize = max(jnp.result_type(leaf).itemsize for leaf in jax.tree.leaves(self.params))
        if self.placement is not None and self.placement.num_devices == 1:
            self.placement = None  # one device: the one-device programs, bit for bit
        self.device_block = self.block
        if self.placement is not None:
            d_count = self.placement.num_devices
            self.device_block = max(1, min(self.block, math.ceil(self.n / d_count)))
            self.block = d_count * self.device_block
            self.dynamic, self.params = self.placement.replicate((self.dynamic, self.params))

    def _vjp(self, mode: str, xb: np.ndarray, vb: np.ndarray) -> Any:
        if self.placement is None:
            return _vjp_block(mode, self.static, self.dynamic, self.params, xb, vb)
        put = self.placement.put_rows
        return sharded.vjp_block(
            mode, self.static, self.placement, self.dynamic, self.params, put(xb), put(vb)
        )

    def _jvp(self, mode: str, xb: np.ndarray, u: Any) -> np.ndarray:
        if self.placement is None:
            return np.asarray(_jvp_block(mode, self.static, self.dynamic, self.params, xb, u))
        out = sharded.jvp_block(
            mode,
            self.static,
            self.placement,
            self.dynamic,
            self.params,
            self.placement.put_rows(xb),
            u,
        )
        return np.asarray(self.placement.gather(out))

    def _vjp_probes(self, xb: np.ndarray, zb: np.ndarray) -> Any:
        if self.placement is None:
            return _vjp_many(self.static, self.dynamic, self.params, xb, zb)
        put = self.placement.put_rows
        return sharded.vjp_many(
            self.static, self.placement, self.dynamic, self.params, put(xb), put(zb, axis=1)
        )

    def fetch(self, value: Any) -> np.ndarray:
        """A device value as numpy (on every process)."""
        if self.placement is None:
            return np.asarray(value)
        return np.asarray(self.placement.gather(value))

    def _blocks(self) -> list[tuple[int, int]]:
        return [(i, min(i + self.block, self.n)) for i in range(0, self.n, self.block)]

    def _padded(self, a: np.ndarray, lo: int, hi: int, *, zeros: bool = False) -> np.ndarray:
        """Rows lo:hi padded to a whole block (inputs repeat the first example, vectors 0)."""
        part = a[lo:hi]
        pad = self.block - (hi - lo)
        if pad:
            fill = np.zeros((pad, *a.shape[1:]), a.dtype) if zeros else np.repeat(a[:1], pad, 0)
            part = np.concatenate([part, fill], axis=0)
        return part

    def pullback(self, mode: str, v: np.ndarray) -> Any:
        """J^T applied to the cotangents of ``v`` (n, R), summed over examples."""
        total = None
        for lo, hi in self._blocks():
            xb = self._padded(self.x, lo, hi)
            vb = self._padded(v, lo, hi, zeros=True)
            u = self._vjp(mode, xb, vb)
            total = u if total is None else _add(total, u)
        return total

    def push(self, mode: str, u: Any) -> np.ndarray:
        outs = []
        for lo, hi in self._blocks():
            xb = self._padded(self.x, lo, hi)
            out = self._jvp(mode, xb, u)
            outs.append(np.asarray(out, np.float64)[: hi - lo])
        return np.concatenate(outs, axis=0)

    def matvec(self, mode: str, v: np.ndarray) -> np.ndarray:
        """Theta v (full, v of shape (n, C)), Theta_kk v_k (diag) or K v (mean, v (n, R))."""
        if v.shape[1] == 0:  # no right-hand sides (mean form, R = 0): the empty product
            return np.zeros((self.n, 0))
        v32 = np.asarray(v, dtype=np.dtype(jnp.result_type(*jax.tree.leaves(self.params))))
        if mode != "mean":
            return self.push(mode, self.pullback(mode, v32))
        # Mean: R * C parameter vectors per product; process right-hand sides in groups.
        per_column = self.num_outputs * self.num_params * self.itemsize
        group = int(max(1, min(v.shape[1], (self.memory_budget / 4) // max(per_column, 1))))
        cols = [
            self.push(mode, self.pullback(mode, v32[:, r : r + group]))
            for r in range(0, v.shape[1], group)
        ]
        return np.concatenate(cols, axis=1)

    def hutchinson(self, samples: int, seed: int) -> np.ndarray:
        """``samples`` draws of ||J^T z||^2 for Rademacher z (n, C): unbiased for tr Theta."""
        rng = np.random.default_rng(seed)
        per = self.num_params * self.itemsize
        group = int(max(1, min(samples, (self.memory_budget / 4) // max(per, 1))))
        draws = []
        dtype = np.dtype(jnp.result_type(*jax.tree.leaves(self.params)))
        for start in range(0, samples, group):
            q = min(group, samples - start)
            z = rng.choice(np.array([-1.0, 1.0], dtype), size=(q, self.n, self.num_outputs))
            total = None
            for lo, hi in self._blocks():
                xb = self._padded(self.x, lo, hi)
                zb = np.zeros((q, self.block, self.num_outputs), dtype)
                zb[:, : hi - lo] = z[:, lo:hi]
                u = self._vjp_probes(xb, zb)
                total = u if total is None else _add(total, u)
            draws.append(np.asarray(self.fetch(_squared_norms(total)), np.float64))
        return np.concatenate(draws)


@functools.partial(jax.jit, static_argnames=("static",))
def _vjp_many(static: Any, dynamic: list[Any], params: Any, x: jax.Array, z: jax.Array) -> Any:
    fn = combine_callable(dynamic, static)
    _, pullback = jax.vjp(lambda p: fn(p, x), params)
    return jax.vmap(pullback)(z)[0]


def ntk_vector_product(
    fn: Callable[..., Any],
    params: Any,
    x: Any,
    v: Any,
    *,
    outputs: str = "full",
    block_size: int | None = None,
    memory_budget: float = DEFAULT_MEMORY_BUDGET,
    mesh: Any = None,
) -> np.ndarray:
    """NTK-vector product without forming the Gram: Theta v = J (J^T v).

    Args:
      fn: ``fn(params, x) -> (batch, C)`` logits (e.g. from `flax_ntk_fn`).
      params: parameters the Jacobian is taken with respect to.
      x: (n, ...) inputs.
      v: ``"full"``: (n, C), the vector in the example-major flattening; ``"diag"``: (n, C),
        column k multiplied by Theta_kk; ``"mean"``: (n, R), each column multiplied by the
        mean kernel K = (1/C) sum_c Theta_cc (R = 0 is allowed: K times no columns is the
        empty (n, 0) product, returned without a pass over the examples).
      outputs: ``"full"``, ``"diag"`` or ``"mean"``.
      block_size: examples per vjp/jvp pass (default min(n, 256)).
      memory_budget: bytes for the parameter-sized vectors held at once (mean kernel).
      mesh: devices the examples are split over, as for `empirical_ntk` (None: every
        device); with D > 1 devices a pass covers D x ``block_size`` examples, J^T v is
        summed over the devices and J u computed on each device's rows. With several
        processes every process passes the same full ``x`` and ``v`` and gets the product.

    Returns:
      float64 array of the shape of ``v``.

    Raises:
      TypeError: ``mesh`` neither None, a `Placement` nor a ``jax.sharding.Mesh``; ``v``
        complex or not numeric.
      ValueError: unknown ``outputs``, empty ``x``, bad ``block_size``, ``v`` of the wrong
        shape or with NaN or inf, or a product with NaN or inf (``fn`` or its derivative
        not finite at some examples).

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> fn = lambda w, x: x @ w  # linear model: Theta = (X X^T) kron I_C
      >>> x = np.eye(3, dtype=np.float32)
      >>> ntk_vector_product(fn, jnp.ones((3, 2)), x, np.ones((3, 2))).tolist()
      [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    op, _ = _operator(fn, params, x, outputs, block_size, memory_budget, mesh)
    v = np.asarray(v)
    c = op.num_outputs
    if v.ndim != 2 or v.shape[0] != op.n or (outputs != "mean" and v.shape[1] != c):
        want = "(n, R)" if outputs == "mean" else f"(n, {c})"
        raise ValueError(f"v must have shape {want} with n = {op.n}, got {v.shape}")
    v = as_real_array("v", v, allow_empty=True)
    product = op.matvec(outputs, v)
    if not np.all(np.isfinite(product)):
        raise non_finite_error("the kernel-vector product", "some examples of x")
    return product


def _operator(
    fn: Callable[..., Any],
    params: Any,
    x: Any,
    outputs: str,
    block_size: int | None,
    memory_budget: float,
    mesh: Any = None,
) -> tuple[_Operator, Any]:
    placement = as_placement(mesh)
    check_outputs(outputs)
    if not hasattr(x, "shape") or len(x.shape) < 1 or x.shape[0] < 1:
        raise ValueError("x must be a non-empty array with a leading batch axis")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    _num_params(params)  # floating-point leaves (an integer leaf has no derivative)
    check_values(params, ("x", x))
    out = logits_shape(fn, params, jnp.asarray(x[:1]))
    if len(out.shape) == 1:
        inner = fn

        def fn(p: Any, xs: Any) -> Any:
            return inner(p, xs)[:, None]

        out = jax.eval_shape(fn, params, jnp.asarray(x[:1]))
    if len(out.shape) != 2:
        raise ValueError(f"fn must return logits of shape (batch, C); got {out.shape}")
    x = np.asarray(x)
    block = min(block_size or 256, x.shape[0])
    num_outputs = int(out.shape[1])
    return _Operator(fn, params, x, block, num_outputs, memory_budget, placement), fn


# --- per-example diagonal blocks (Jacobi) --------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("impl", "static", "spec"))
def _structured_blocks(
    impl: Any, static: Any, spec: OutputSpec, dynamic: list[Any], params: Any, x: jax.Array
) -> jax.Array:
    fn = combine_callable(dynamic, static)
    feats = impl.features(fn, params, x, jnp.asarray(0, jnp.int32), spec)
    return impl.self_blocks(fn, params, feats, spec)


@functools.partial(jax.jit, static_argnames=("static",))
def _jacobian_blocks(static: Any, dynamic: list[Any], params: Any, x: jax.Array) -> jax.Array:
    fn = combine_callable(dynamic, static)

    def one(xi: jax.Array) -> jax.Array:
        jac = jax.jacrev(lambda p: fn(p, xi[None])[0])(params)
        rows = [leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree.leaves(jac)]
        return functools.reduce(jnp.add, [jnp.matmul(r, r.T, precision=HIGHEST) for r in rows])

    return jax.lax.map(one, x)


def ntk_diagonal_blocks(
    fn: Callable[..., Any],
    params: Any,
    x: Any,
    *,
    block_size: int | None = None,
    memory_budget: float = DEFAULT_MEMORY_BUDGET,
    mesh: Any = None,
) -> np.ndarray:
    """Per-example C x C blocks Theta(x_i, x_i) of the full NTK, shape (n, C, C), float64.

    Where the planner picks the structured engine its features are used (cheap: no pairwise
    contraction); otherwise one per-example Jacobian at a time. ``mesh`` as for
    `ntk_vector_product`: each device computes the blocks of its rows.

    Raises:
      ValueError: a block with NaN or inf (``fn`` or its derivative not finite at the
        examples the message names).
    """
    op, fn = _operator(fn, params, x, "full", block_size, memory_budget, mesh)
    c = op.num_outputs
    blocks = []
    xb0 = op.x[: op.device_block]
    plan = plan_ntk(
        fn, params, xb0, outputs="full", block_size=op.device_block, memory_budget=memory_budget
    )
    impl, spec = plan.prepared, OutputSpec("full", c)
    structured = plan.implementation == "structured"
    for lo, hi in op._blocks():
        xb = op._padded(op.x, lo, hi)
        if op.placement is not None:
            xs, place = op.placement.put_rows(xb), op.placement
            if structured:
                out = sharded.structured_blocks(
                    impl, op.static, spec, place, op.dynamic, op.params, xs
                )
            else:
                out = sharded.jacobian_blocks(op.static, place, op.dynamic, op.params, xs)
        elif structured:
            out = _structured_blocks(impl, op.static, spec, op.dynamic, op.params, xb)
        else:
            out = _jacobian_blocks(op.static, op.dynamic, op.params, xb)
        blocks.append(np.asarray(op.fetch(out), np.float64)[: hi - lo])
    diagonal = np.concatenate(blocks, axis=0)
    bad = np.flatnonzero(~np.isfinite(diagonal.reshape(op.n, -1)).all(axis=1)).tolist()
    if bad:
        raise non_finite_error("the kernel's diagonal", f"examples {some_indices(bad)} of x")
    return diagonal
