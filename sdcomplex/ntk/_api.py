"""`empirical_ntk`: validation, planning, blocked assembly and dispatch to an implementation."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex._checks import as_int, as_real, check_finite
from sdcomplex.complexity._complexity import check_outputs
from sdcomplex.ntk._assemble import Stages, assemble, pad_to_blocks
from sdcomplex.ntk._engine import (
    NTKImplementation,
    OutputSpec,
    ProblemSize,
    available_implementations,
    combine_callable,
    get_implementation,
    partition_callable,
)
from sdcomplex.ntk._sharded import ShardedBlocks, sharded_contract, sharded_features
from sdcomplex.placement import Placement, as_placement

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
"""Memory budget (2 GiB) when the device's memory cannot be read (see `default_memory_budget`)."""

MIN_MEMORY_BUDGET = 1024**3
"""The smallest default memory budget (1 GiB)."""


def default_memory_budget(device: Any = None) -> int:
    """The default memory budget of `empirical_ntk`: a quarter of the device's memory.

    On an accelerator this is a quarter of the memory XLA may allocate there
    (``device.memory_stats()["bytes_limit"]``); on the CPU a quarter of the machine's physical
    memory. At least 1 GiB; `DEFAULT_MEMORY_BUDGET` (2 GiB) when neither can be read.

    Args:
      device: a ``jax.Device``; the default device when None.

    Returns:
      The budget in bytes.

    Example:
      >>> default_memory_budget() >= 1024**3
      True
    """
    device = jax.devices()[0] if device is None else device
    total = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics raise varied errors
        stats = None
    if stats and stats.get("bytes_limit"):
        total = int(stats["bytes_limit"])
    elif device.platform == "cpu":
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            total = None
    if not total or total <= 0:
        return DEFAULT_MEMORY_BUDGET
    return max(MIN_MEMORY_BUDGET, total // 4)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _AsMatrix:
    """Wraps ``fn`` whose output is (batch,) so that it returns (batch, 1)."""

    fn: Callable[..., Any]

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        return self.fn(params, x)[:, None]


@dataclasses.dataclass(frozen=True)
class NTKPlan:
    """How `empirical_ntk` will compute a kernel.

    Attributes:
      implementation: name of the chosen implementation.
      block_size: examples per block.
      num_blocks: number of (row, column) block pairs computed per part.
      num_parts: number of parts (e.g. logits) the Gram is summed over.
      flops: the implementation's estimate of floating-point operations.
      feature_bytes: estimated bytes of the features of two blocks held at once.
      estimates: ``{name: (flops, bytes_per_example)}`` for every implementation considered.
      size: the problem size the plan was made for.
      prepared: the chosen implementation as specialised for this problem by its optional
        ``specialize`` hook (see `sdcomplex.ntk._engine`), or None to use the registered one.
    """

    implementation: str
    block_size: int
    num_blocks: int
    num_parts: int
    flops: float
    feature_bytes: float
    estimates: dict[str, tuple[float, float]]
    size: ProblemSize
    prepared: NTKImplementation | None = dataclasses.field(default=None, repr=False, compare=False)


def _num_params(params: Any) -> tuple[int, int]:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params has no arrays to differentiate")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):  # (not complex either)
            raise TypeError(
                f"params must be real floating point, found a leaf of dtype {leaf.dtype}"
            )
    itemsize = max(jnp.result_type(leaf).itemsize for leaf in leaves)
    return int(sum(np.size(leaf) for leaf in leaves)), int(itemsize)


def _forward_flops(fn: Callable[..., Any], params: Any, x: Any) -> float:
    """XLA's count of floating-point operations for one forward pass of one example."""
    try:
        cost = jax.jit(fn).lower(params, x[:1]).cost_analysis()
        if isinstance(cost, list | tuple):
            cost = cost[0]
        flops = float(cost.get("flops", 0.0)) if cost else 0.0
    except Exception:  # noqa: BLE001 - cost analysis is optional on some backends
        flops = 0.0
    return flops if flops > 0 else 2.0 * _num_params(params)[0]


def _check_inputs(x1: Any, x2: Any) -> None:
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            continue
        if not hasattr(x, "shape") or len(x.shape) < 1:
            raise TypeError(f"{name} must be an array with a leading batch axis")
        if x.shape[0] < 1:
            raise ValueError(f"{name} is empty")
    if x2 is not None and tuple(x1.shape[1:]) != tuple(x2.shape[1:]):
        raise ValueError(
            f"x1 and x2 must have the same example shape, got {x1.shape[1:]} and {x2.shape[1:]}"
        )


def logits_shape(fn: Callable[..., Any], params: Any, x: Any) -> jax.ShapeDtypeStruct:
    """Shape and dtype of ``fn(params, x)``; a TypeError unless it is one array (not, e.g., a
    tuple of logits and auxiliary outputs)."""
    out = jax.eval_shape(fn, params, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            f"fn must return one array of logits (batch, C), got a {type(out).__name__}"
        )
    return out


def check_values(params: Any, *arrays: tuple[str, Any]) -> None:
    """NaN or inf in ``params`` or the named input arrays: a ValueError naming the leaf.

    Run at the top of every public NTK entry point, before any work (arrays stay on their
    device: the check uses each array's own namespace).
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        check_finite(f"params{jax.tree_util.keystr(path)}", leaf)
    for name, x in arrays:
        if x is not None:
            check_finite(name, x)


def plan_ntk(
    fn: Callable[..., Any],
    params: Any,
    x1: Any,
    x2: Any = None,
    *,
    outputs: str = "mean",
    implementation: str = "auto",
    block_size: int | None = None,
    memory_budget: float | None = None,
) -> NTKPlan:
    """Chooses the implementation and block size `empirical_ntk` will use (see there for args).

    ``"auto"`` estimates each supporting implementation's floating-point operations from the
    number of parameters, the number of logits and XLA's count of one forward pass, and picks
    the cheapest; block sizes are the largest whose features fit ``memory_budget``.
    """
    check_outputs(outputs)
    if implementation != "auto":
        get_implementation(implementation)  # raises on unknown names
    if block_size is not None:
        block_size = as_int("block_size", block_size, minimum=1)
    if memory_budget is None:
        memory_budget = default_memory_budget()
    memory_budget = as_real("memory_budget", memory_budget, low=0.0, low_open=True, finite=False)
    _check_inputs(x1, x2)
    check_values(params, ("x1", x1), ("x2", x2))
    out = logits_shape(fn, params, x1[:1])
    if len(out.shape) not in (1, 2) or out.shape[0] != 1:
        raise ValueError(f"fn must return logits of shape (batch, C); got {out.shape} for batch 1")
    num_params, itemsize = _num_params(params)
    n1 = int(x1.shape[0])
    size = ProblemSize(
        n1=n1,
        n2=n1 if x2 is None else int(x2.shape[0]),
        num_outputs=int(out.shape[1]) if len(out.shape) == 2 else 1,
        num_params=num_params,
        forward_flops=_forward_flops(fn, params, x1),
        itemsize=itemsize,
        outputs=outputs,
        symmetric=x2 is None,
    )
    names = available_implementations() if implementation == "auto" else (implementation,)
    candidates = [get_implementation(n) for n in names]
    candidates = [impl for impl in candidates if impl.supports(fn)]
    if not candidates:
        raise ValueError(f"implementation {implementation!r} does not support this function")
    prepared = []
    for impl in candidates:
        try:
            prepared.append(_specialize(impl, fn, params, x1, size, memory_budget))
        except TypeError:
            if implementation != "auto":
                raise
            # "auto": not a candidate (it cannot differentiate fn as it needs to, e.g. "ntvp"
            # in forward mode through a jax.custom_vjp); the Jacobian contraction always can
    candidates = prepared
    estimates = {impl.name: impl.estimate(size) for impl in candidates}
    max_size = max(size.n1, size.n2)

    def fits(name: str) -> bool:
        est = estimates[name]
        return est.fixed_bytes + 2 * est.bytes_per_example <= memory_budget

    if implementation == "auto":
        fitting = [impl for impl in candidates if fits(impl.name)] or candidates
        chosen = min(fitting, key=lambda impl: estimates[impl.name].flops)
    else:
        chosen = candidates[0]
    est = estimates[chosen.name]
    block = block_size or est.block_size(memory_budget, max_size=max_size)
    block = min(block, max_size)
    nb1, nb2 = math.ceil(size.n1 / block), math.ceil(size.n2 / block)
    num_blocks = nb1 * (nb1 + 1) // 2 if size.symmetric else nb1 * nb2
    return NTKPlan(
        implementation=chosen.name,
        block_size=block,
        num_blocks=num_blocks,
        num_parts=chosen.num_parts(size),
        flops=est.flops,
        feature_bytes=est.fixed_bytes + 2 * block * est.bytes_per_example,
        estimates={k: (v.flops, v.bytes_per_example) for k, v in estimates.items()},
        size=size,
        prepared=chosen,
    )


def _specialize(
    impl: NTKImplementation,
    fn: Callable[..., Any],
    params: Any,
    x: Any,
    size: ProblemSize,
    memory_budget: float,
) -> NTKImplementation:
    """The implementation planned for this problem by its optional ``specialize`` hook."""
    hook = getattr(impl, "specialize", None)
    if hook is None:
        return impl
    return hook(fn, params, x, size, memory_budget=memory_budget)


@functools.partial(jax.jit, static_argnames=("impl", "static", "spec"))
def _features(
    impl: NTKImplementation,
    static: Any,
    spec: OutputSpec,
    dynamic: list[Any],
    params: Any,
    x: jax.Array,
    part: jax.Array,
) -> Any:
    return impl.features(combine_callable(dynamic, static), params, x, part, spec)


@functools.partial(jax.jit, static_argnames=("impl", "static", "spec"))
def _contract(
    impl: NTKImplementation,
    static: Any,
    spec: OutputSpec,
    dynamic: list[Any],
    params: Any,
    f1: Any,
    f2: Any,
    part: jax.Array,
) -> jax.Array:
    return impl.contract(combine_callable(dynamic, static), params, f1, f2, part, spec)


def empirical_ntk(
    fn: Callable[..., Any],
    params: Any,
    x1: Any,
    x2: Any = None,
    *,
    outputs: str = "mean",
    implementation: str = "auto",
    block_size: int | None = None,
    memory_budget: float | None = None,
    progress: bool | None = None,
    mesh: Any = None,
) -> np.ndarray:
    """Empirical neural tangent kernel Theta(x, x') = J(x) J(x')^T of ``fn`` at ``params``.

    J(x) = d fn(params, x) / d params is the C x P Jacobian of the logits. The Gram is assembled
    block by block on the host, so peak accelerator memory stays near ``memory_budget`` whatever
    the number of examples; the symmetric case computes only the upper block triangle.

    Args:
      fn: pure function ``fn(params, x) -> logits`` of shape (batch, C) (or (batch,) for one
        output). For Flax models use `flax_ntk_fn`. Examples must not interact (BatchNorm in
        inference mode).
      params: pytree of floating-point arrays the Jacobian is taken with respect to.
      x1: (n1, ...) inputs.
      x2: (n2, ...) inputs, or None for the symmetric kernel of ``x1`` with itself.
      outputs: ``"mean"`` -> (n1, n2), (1/C) sum_c Theta_cc (neural-tangents' trace convention,
        a mean over logits); ``"full"`` -> (n1, n2, C, C); ``"diag"`` -> (C, n1, n2).
      implementation: ``"auto"`` (cheapest by estimate among those that fit the memory
        budget), ``"jacobian"``, ``"ntvp"`` or any registered implementation.
      block_size: examples per block; by default the largest that fits ``memory_budget``.
      memory_budget: bytes allowed for the features of the two blocks held at once; None for
        `default_memory_budget` (a quarter of the device's memory).
      progress: show a progress bar over blocks (None: only on a terminal, for > 4 blocks).
      mesh: the devices the blocks are computed on: None for every device
        (`sdcomplex.placement.make_placement`), a `sdcomplex.placement.Placement`, or a
        one-axis ``jax.sharding.Mesh``. With one device this is the one-device computation.
        With D > 1 devices a block holds D x ``block_size`` examples (``block_size`` and
        ``memory_budget`` are per device), split over the devices: each computes the features
        of its rows and contracts them with the column block passed round the devices in
        pieces of ``block_size`` examples (at most four such feature blocks per device during
        the contraction, see `sdcomplex.ntk._sharded`). With several processes every process must
        pass the same full ``x1`` and ``x2``; each places only its devices' rows, and the
        kernel is returned on every process. Equal to the one-device kernel to round-off.

    Returns:
      The kernel as a numpy array in the parameters' precision (float32 unless float64 is
      enabled), of the shape given by ``outputs``.

    Raises:
      TypeError: ``block_size`` not an integer, the budget not a number, or ``mesh`` not
        None, a `Placement` or a ``jax.sharding.Mesh``.
      ValueError: unknown ``outputs`` or ``implementation``, bad ``block_size`` or budget,
        NaN or inf in ``params``, ``x1`` or ``x2`` (checked before any work), empty or
        mismatched inputs, ``fn`` not returning (batch, C), or a kernel with NaN or inf
        (``fn`` or its derivative not finite at some examples, which the message names).

    Example:
      >>> import jax.numpy as jnp
      >>> fn = lambda w, x: x @ w  # linear model, Theta(x, x') = (x . x') I_C
      >>> k = empirical_ntk(fn, jnp.ones((3, 2)), jnp.eye(3))
      >>> k.shape, float(k[0, 0]), float(k[0, 1])
      ((3, 3), 1.0, 0.0)
    """
    as_placement(mesh)  # a wrong type is an error before any work
    plan = plan_ntk(
        fn,
        params,
        x1,
        x2,
        outputs=outputs,
        implementation=implementation,
        block_size=block_size,
        memory_budget=memory_budget,
    )
    return compute_with_plan(plan, fn, params, x1, x2, progress=progress, mesh=mesh)


def compute_with_plan(
    plan: NTKPlan,
    fn: Callable[..., Any],
    params: Any,
    x1: Any,
    x2: Any = None,
    *,
    progress: bool | None = None,
    mesh: Any = None,
) -> np.ndarray:
    """Runs a plan from `plan_ntk` (same ``fn``, ``params`` and inputs).

    ``mesh`` as for `empirical_ntk`: with several devices ``plan.block_size`` is the block of
    each device.

    Raises:
      TypeError: ``mesh`` neither None, a `Placement` nor a ``jax.sharding.Mesh``.
      ValueError: NaN or inf in ``params``, ``x1`` or ``x2``, or in the kernel (see
        `empirical_ntk`).
    """
    return run_plan(plan, fn, params, x1, x2, progress=progress, placement=as_placement(mesh))


def run_plan(
    plan: NTKPlan,
    fn: Callable[..., Any],
    params: Any,
    x1: Any,
    x2: Any,
    *,
    progress: bool | None,
    placement: Placement,
    force_mesh: bool = False,
) -> np.ndarray:
    """`compute_with_plan` on ``placement``; ``force_mesh`` takes the mesh code path even on
    one device (to measure its overhead: `benchmarks/ntk_sharded.py`)."""
    _check_inputs(x1, x2)
    check_values(params, ("x1", x1), ("x2", x2))
    if len(logits_shape(fn, params, x1[:1]).shape) == 1:
        fn = _AsMatrix(fn)
    impl = plan.prepared if plan.prepared is not None else get_implementation(plan.implementation)
    spec = plan.size.spec
    dynamic, static = partition_callable(fn)
    if placement.num_devices == 1 and not force_mesh:
        block = plan.block_size

        def local_feats(x: Any, part: jax.Array) -> Any:
            return _features(impl, static, spec, dynamic, params, x, part)

        def local_contract(f1: Any, f2: Any, part: jax.Array) -> jax.Array:
            return _contract(impl, static, spec, dynamic, params, f1, f2, part)

        stages = Stages(
            block=block,
            pad=lambda x: pad_to_blocks(x, block),
            take=lambda xp, i: xp[i : i + block],
            feats=local_feats,
            contract=local_contract,
            fetch=np.asarray,
        )
    else:
        stages = _sharded_stages(plan, impl, static, spec, dynamic, params, placement)
    return assemble(plan, params, x1, x2, stages, progress)


def _sharded_stages(
    plan: NTKPlan,
    impl: NTKImplementation,
    static: Any,
    spec: OutputSpec,
    dynamic: list[Any],
    params: Any,
    placement: Placement,
) -> Stages:
    """Blocks of D x the planned block, their rows split over the mesh (`_sharded`)."""
    blocks = ShardedBlocks.plan(placement, plan.block_size, max(plan.size.n1, plan.size.n2))
    dynamic, params = blocks.replicate((dynamic, params))

    def feats(x: Any, part: jax.Array) -> Any:
        return sharded_features(impl, static, spec, placement, dynamic, params, x, part)

    def contract(f1: Any, f2: Any, part: jax.Array) -> jax.Array:
        return sharded_contract(impl, static, spec, placement, dynamic, params, f1, f2, part)

    return Stages(
        block=blocks.block,
        pad=blocks.pad,
        take=blocks.rows,
        feats=feats,
        contract=contract,
        fetch=blocks.fetch,
    )
