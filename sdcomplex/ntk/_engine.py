"""The interface every empirical-NTK implementation satisfies, and the registry of them.

An implementation writes the Gram as a sum over ``num_parts`` parts (for example one part per
logit, so that only one logit's Jacobian is held at a time) and splits each part into two
jit-compiled stages:

* ``features(fn, params, x, part)``: per-example quantities computed once for a block of inputs
  (Jacobian rows for the Jacobian contraction; layer inputs and output cotangents for a
  layer-structured engine; just the inputs for NTK-vector products);
* ``contract(fn, params, f1, f2, part, outputs)``: that part's contribution to the Gram block
  between two blocks of features.

``part`` is a traced integer scalar, so all parts share one compilation. `empirical_ntk` plans
block sizes from ``estimate`` (floating-point operations and bytes per example and part), keeps
the features of a row block while it sweeps the column blocks, and sums the parts on the host.

A new implementation (for example a faster layer-structured one) is a frozen,
hashable object with these methods, registered with `register_implementation`; callers of
`empirical_ntk` do not change.

Optional hook: an implementation may define
``specialize(fn, params, x, size, *, memory_budget) -> NTKImplementation``, returning a
(hashable) copy planned for this model and problem, e.g. with per-layer choices; `plan_ntk`
calls it before asking for the estimate, and the plan runs the specialised copy. A hook that
raises TypeError (the implementation cannot differentiate ``fn`` as it needs to) takes the
implementation out of ``"auto"``'s candidates; asked for by name, the error is raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from sdcomplex.complexity._complexity import OUTPUTS as OUTPUTS  # the kernel forms


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """Which kernel is computed: ``outputs`` form and C, the number of logits (static under jit)."""

    outputs: str
    num_outputs: int


@dataclasses.dataclass(frozen=True)
class ProblemSize:
    """What a cost estimate needs to know about one kernel computation.

    Attributes:
      n1: number of examples in ``x1``.
      n2: number of examples in ``x2`` (``n1`` when the kernel is symmetric).
      num_outputs: C, the number of logits.
      num_params: P, the number of parameters the Jacobian is taken with respect to.
      forward_flops: floating-point operations of one forward pass of one example.
      itemsize: bytes per scalar of the parameters (4 for float32).
      outputs: ``"mean"``, ``"full"`` or ``"diag"``.
      symmetric: True when ``x2`` is ``x1`` (only the upper block triangle is computed).
    """

    n1: int
    n2: int
    num_outputs: int
    num_params: int
    forward_flops: float
    itemsize: int
    outputs: str
    symmetric: bool

    @property
    def spec(self) -> OutputSpec:
        """The static output specification."""
        return OutputSpec(self.outputs, self.num_outputs)

    @property
    def num_pairs(self) -> float:
        """Number of (i, j) example pairs actually contracted."""
        if self.symmetric:
            return self.n1 * (self.n1 + 1) / 2
        return float(self.n1 * self.n2)

    @property
    def num_feature_examples(self) -> int:
        """Number of examples whose features must be computed at least once."""
        return self.n1 if self.symmetric else self.n1 + self.n2

    @property
    def output_products(self) -> int:
        """Logit pairs (c, c') per example pair: C*C for the full kernel, C otherwise."""
        return self.num_outputs**2 if self.outputs == "full" else self.num_outputs


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    """Estimated cost of an implementation on a problem.

    Attributes:
      flops: total floating-point operations (features plus contractions).
      bytes_per_example: memory of one example's features (held for a whole block).
      fixed_bytes: memory that does not grow with the block size.
    """

    flops: float
    bytes_per_example: float
    fixed_bytes: float = 0.0

    def block_size(self, budget_bytes: float, *, max_size: int) -> int:
        """Largest block size whose two feature blocks fit in ``budget_bytes`` (at least 1)."""
        free = budget_bytes - self.fixed_bytes
        if self.bytes_per_example <= 0:
            return max_size
        return int(max(1, min(max_size, free // (2 * self.bytes_per_example))))


@runtime_checkable
class NTKImplementation(Protocol):
    """A way of computing blocks of the empirical NTK (see the module docstring).

    Implementations must be hashable (frozen dataclasses): they are static arguments of the
    jit-compiled stages.
    """

    @property
    def name(self) -> str:
        """Registry name of the implementation."""
        ...

    def supports(self, fn: Callable[..., Any]) -> bool:
        """Whether this implementation can handle ``fn`` at all."""
        ...

    def estimate(self, size: ProblemSize) -> CostEstimate:
        """Cost and memory estimate for ``size`` (memory per example is for one part)."""
        ...

    def num_parts(self, size: ProblemSize) -> int:
        """How many parts the Gram is summed over."""
        ...

    def features(
        self, fn: Callable[..., Any], params: Any, x: jax.Array, part: jax.Array, spec: OutputSpec
    ) -> Any:
        """Per-example features of part ``part`` for a block of inputs ``x`` of shape (b, ...)."""
        ...

    def contract(
        self,
        fn: Callable[..., Any],
        params: Any,
        f1: Any,
        f2: Any,
        part: jax.Array,
        spec: OutputSpec,
    ) -> jax.Array:
        """Part's Gram block: (b1, b2) mean, (b1, b2, C, C) full, (C, b1, b2) diag."""
        ...


_REGISTRY: dict[str, NTKImplementation] = {}


def register_implementation(impl: NTKImplementation, *, overwrite: bool = False) -> None:
    """Makes ``impl`` available to `empirical_ntk` under ``impl.name``.

    Args:
      impl: a hashable object satisfying `NTKImplementation`.
      overwrite: replace an implementation already registered under the same name.

    Raises:
      TypeError: if ``impl`` does not satisfy the protocol or is not hashable.
      ValueError: if the name is taken (and ``overwrite`` is False) or is ``"auto"``.
    """
    if not isinstance(impl, NTKImplementation):
        raise TypeError(f"{impl!r} does not implement the NTKImplementation protocol")
    try:
        hash(impl)
    except TypeError as err:
        raise TypeError(f"NTK implementation {impl.name!r} must be hashable") from err
    if impl.name == "auto":
        raise ValueError("'auto' is reserved for automatic selection")
    if impl.name in _REGISTRY and not overwrite:
        raise ValueError(f"an NTK implementation named {impl.name!r} is already registered")
    _REGISTRY[impl.name] = impl


def available_implementations() -> tuple[str, ...]:
    """Names accepted by ``empirical_ntk(..., implementation=...)`` besides ``"auto"``."""
    return tuple(_REGISTRY)


def get_implementation(name: str) -> NTKImplementation:
    """The registered implementation called ``name``.

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    if name not in _REGISTRY:
        known = ", ".join(["auto", *_REGISTRY])
        raise ValueError(f"unknown NTK implementation {name!r}; known: {known}")
    return _REGISTRY[name]


# --- passing callables through jit ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _StaticPart:
    """The non-array part of a callable pytree: its structure and its non-array leaves."""

    treedef: Any
    leaves: tuple[Any, ...]

    def __hash__(self) -> int:
        return hash((self.treedef, tuple(_hash_or_id(leaf) for leaf in self.leaves)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _StaticPart) or self.treedef != other.treedef:
            return False
        return all(_same(a, b) for a, b in zip(self.leaves, other.leaves, strict=True))


def _hash_or_id(obj: Any) -> int:
    try:
        return hash(obj)
    except TypeError:
        return id(obj)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - objects with odd __eq__ are simply not equal
        return False


def partition_callable(fn: Callable[..., Any]) -> tuple[list[Any], _StaticPart]:
    """Splits ``fn`` into array leaves (traced by jit) and a hashable static part.

    A plain function is entirely static (compiled once per function object). A callable pytree,
    such as the Flax adapter's function, keeps its arrays (e.g. BatchNorm statistics) dynamic, so
    new statistics do not trigger recompilation.
    """
    leaves, treedef = jax.tree.flatten(fn)
    is_array = [isinstance(leaf, jax.Array | np.ndarray) for leaf in leaves]
    dynamic = [leaf for leaf, a in zip(leaves, is_array, strict=True) if a]
    static = tuple(None if a else leaf for leaf, a in zip(leaves, is_array, strict=True))
    return dynamic, _StaticPart(treedef, static)


def combine_callable(dynamic: list[Any], static: _StaticPart) -> Callable[..., Any]:
    """Inverse of `partition_callable`."""
    it = iter(dynamic)
    leaves = [next(it) if leaf is None else leaf for leaf in static.leaves]
    return jax.tree.unflatten(static.treedef, leaves)
