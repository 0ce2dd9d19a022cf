"""`supervision_complexity_matfree`: s(Y) by preconditioned conjugate gradients, no Gram matrix.

See `sdcomplex.ntk._matfree` for the kernel-vector products, the preconditioner and the trace
estimate. CG runs on the host in float64 on vectors of size n*C; the products are computed in
the parameters' precision (float32), which limits the attainable relative residual to about
1e-7 times the condition number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from sdcomplex._checks import as_int, as_real, as_real_array
from sdcomplex.complexity._complexity import check_outputs
from sdcomplex.complexity._psd import machine_epsilon, psd_tolerance
from sdcomplex.ntk._api import DEFAULT_MEMORY_BUDGET
from sdcomplex.ntk._assemble import non_finite_error
from sdcomplex.ntk._matfree import PRECONDITIONERS, _operator, ntk_diagonal_blocks


@dataclasses.dataclass(frozen=True)
class MatrixFreeComplexity:
    """Supervision complexity from conjugate gradients (compare `ComplexityResult`).

    Attributes:
      value: s(Y) = sum_k y_k^T alpha_k with alpha solving K alpha = y by CG.
      adjusted: sqrt(value * trace) / n with the Hutchinson ``trace``.
      adjusted_stderr: standard error of ``adjusted`` from that of the trace (delta method).
      trace: Hutchinson estimate of the trace of the kernel used (mean: tr K; full: tr Theta;
        diag: sum_c tr Theta_cc), before the ridge.
      trace_stderr: its standard error (sample standard deviation / sqrt(samples)).
      trace_samples: number of Rademacher probes.
      trace_exact: the exact trace when the Jacobi diagonal was computed, else None.
      iterations: kernel-vector products the solve used, at most ``max_iters``: one per CG
        step and one per fresh residual check (restarts included; the start needs none).
      relative_residual: final ||y - K alpha|| / ||y||, recomputed from a fresh product (largest
        over right-hand sides for the mean and diag forms).
      tol: the tolerance it met.
      n, num_outputs, outputs, ridge: as in `ComplexityResult`.
      preconditioner: ``"jacobi"`` or ``"none"``.
      residual: True when an offset f0 was subtracted.
      targets: description of the targets, when known.
    """

    value: float
    adjusted: float
    adjusted_stderr: float
    trace: float
    trace_stderr: float
    trace_samples: int
    trace_exact: float | None
    iterations: int
    relative_residual: float
    tol: float
    n: int
    num_outputs: int
    outputs: str
    ridge: float
    preconditioner: str
    residual: bool = False
    targets: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


class _Reducer:
    """Inner products per right-hand side: over everything (full) or per column."""

    def __init__(self, outputs: str) -> None:
        self.whole = outputs == "full"

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.whole:
            return np.full((1, 1), np.sum(a * b))
        return np.sum(a * b, axis=0, keepdims=True)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _curvature_error(q: float, rho: float, tolerance: float) -> ValueError:
    return ValueError(
        "the kernel is not positive semi-definite: conjugate gradients found a direction with "
        f"p^T K p / p^T p = {q:.6g} (so lambda_min <= {q:.6g}), {q / rho:.6g} times the largest "
        f"Rayleigh quotient seen ({rho:.6g}, a lower bound on lambda_max), below the round-off "
        f"tolerance -{tolerance:.3g}"
    )


def _pcg(
    apply: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    precondition: Callable[[np.ndarray], np.ndarray],
    dot: _Reducer,
    tol: float,
    max_iters: int,
    *,
    psd_tol: float = 0.0,
    lam_floor: float | np.ndarray = 0.0,
    shift: float = 0.0,
) -> tuple[np.ndarray, int, float]:
    """Preconditioned CG, restarted from the current iterate when the recomputed residual is
    above ``tol``; returns (solution, kernel-vector products used, relative residual).

    At most ``max_iters`` products in all: each CG step is one, and so is each fresh residual
    check b - K x that ends a cycle (the start x = 0 needs none: its residual is b). The last
    product is kept for that check, and a restart only begins while a step and a check remain.

    ``apply`` is v -> (K + shift I) v. Negative curvature of the kernel itself,
    p^T K p < -psd_tol * rho * p^T p with rho the largest Rayleigh quotient of K seen for that
    right-hand side's system (and at least ``lam_floor``, e.g. the largest diagonal entry of its
    kernel, scalar or one per column), is the PSD rule of
    `sdcomplex.complexity._psd` and a ValueError; a non-positive p^T (K + shift I) p within that
    tolerance is a breakdown (RuntimeError).
    """
    bnorm = np.sqrt(dot(b, b))
    rho = np.broadcast_to(np.asarray(lam_floor, dtype=np.float64), dot(b, b).shape)
    x = np.zeros_like(b)
    iterations = 0
    r = b.copy()
    while True:
        z = precondition(r)
        p, rz = z, dot(r, z)
        while iterations < max_iters - 1:  # (one product is kept for the check below)
            ap = apply(p)
            iterations += 1
            pap, pp = dot(p, ap), dot(p, p)
            quotient = _divide(pap, pp) - shift
            moving = pp > 0  # (a zero right-hand side, or a solved one, has no direction)
            rho = np.where(moving, np.maximum(rho, quotient), rho)
            bad = moving & (rho > 0) & (quotient < -psd_tol * rho)
            if np.any(bad):
                worst = np.argmax(np.where(bad, -quotient / np.where(rho > 0, rho, 1.0), -np.inf))
                raise _curvature_error(float(quotient.flat[worst]), float(rho.flat[worst]), psd_tol)
            if np.any(pap < 0):
                raise RuntimeError(
                    "conjugate gradients broke down (p^T K p < 0): the kernel-vector products are "
                    "not positive semi-definite at float32 precision; add a ridge"
                )
            alpha = _divide(rz, pap)
            x = x + alpha * p
            r = r - alpha * ap
            if np.max(_divide(np.sqrt(dot(r, r)), bnorm)) <= tol:
                break
            z = precondition(r)
            rz_new = dot(r, z)
            p = z + _divide(rz_new, rz) * p
            rz = rz_new
        r = b - apply(x)  # the recursive residual drifts: check it against a fresh product
        iterations += 1
        residual = float(np.max(_divide(np.sqrt(dot(r, r)), bnorm)))
        if residual <= tol or iterations >= max_iters - 1:  # (a restart needs a step and a check)
            break
    return x, iterations, residual


def supervision_complexity_matfree(
    fn: Callable[..., Any],
    params: Any,
    x: Any,
    targets: Any,
    *,
    outputs: str = "mean",
    offset: Any = None,
    ridge: float = 0.0,
    tol: float = 1e-5,
    max_iters: int = 1000,
    preconditioner: str = "jacobi",
    trace_samples: int = 64,
    seed: int = 0,
    block_size: int | None = None,
    memory_budget: float = DEFAULT_MEMORY_BUDGET,
    mesh: Any = None,
) -> MatrixFreeComplexity:
    """Supervision complexity s(Y) of targets under the empirical NTK, without forming the Gram.

    Solves K alpha = y (K + ridge * n * I with a ridge) by preconditioned conjugate gradients
    whose products are NTK-vector products J (J^T v), then s(Y) = sum_k y_k^T alpha_k
    (PAPER.md section 2). tr K for the adjusted complexity sqrt(s tr K) / n is estimated by
    Hutchinson's method with a standard error.

    Args:
      fn, params: as for `empirical_ntk` (e.g. from `flax_ntk_fn`).
      x: (n, ...) inputs.
      targets: (n,) or (n, C) array, or a `sdcomplex.targets.Targets`.
      outputs: kernel form: ``"mean"`` (C systems with K), ``"full"`` (one system with the
        (nC x nC) Theta) or ``"diag"`` (system c with Theta_cc).
      offset: optional f0 of the shape of ``targets`` for residual targets Y - f0.
      ridge: lambda >= 0 (kernel ridge variant s_lambda).
      tol: relative residual ||y - K alpha|| / ||y|| to reach (every right-hand side).
      max_iters: most kernel-vector products of the solve in all: one per CG step and one
        per fresh residual check ||y - K alpha|| that ends each cycle (the start alpha = 0
        needs none); the trace estimate's products are not counted.
      preconditioner: ``"jacobi"`` (exact per-example diagonal; block-Jacobi for full) or
        ``"none"``.
      trace_samples: Rademacher probes for the trace (0: use the exact trace, computing the
        diagonal if needed; the standard error is then 0).
      seed: seed of the probes.
      block_size: examples per vjp/jvp pass (default min(n, 256)).
      memory_budget: bytes for parameter-sized vectors held at once; also the budget of the
        Jacobi diagonal (`ntk_diagonal_blocks`).
      mesh: devices the examples are split over, as for `ntk_vector_product` (None: every
        device). Each kernel-vector product sums J^T v over the devices' rows and computes
        J u on each device's rows; CG itself runs on the host (on every process, with the
        same iterates), so the iterates equal the one-device ones to round-off.

    Returns:
      A `MatrixFreeComplexity`.

    Raises:
      TypeError: complex targets or offset, scalar arguments not numbers, ``mesh`` of a
        wrong type.
      ValueError: unknown outputs or preconditioner, bad tolerance, iteration count, ridge or
        sample count, targets or offset of the wrong shape or empty, NaN or inf in targets,
        offset, ``x`` or ``params`` (checked before any work), NaN or inf in the kernel
        (``fn`` or its derivative not finite at some examples, named where the diagonal is
        computed), or negative curvature beyond round-off (the PSD rule of
        `supervision_complexity`, with the Rayleigh quotient found).
      RuntimeError: CG did not reach ``tol`` within ``max_iters`` products, or broke down.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> fn = lambda w, x: x @ w  # linear model: K = X X^T for every logit
      >>> x, y = np.eye(3, dtype=np.float32), np.array([[1.0], [-1.0], [2.0]])
      >>> r = supervision_complexity_matfree(fn, jnp.ones((3, 1)), x, y, trace_samples=0)
      >>> round(r.value, 6), r.trace
      (6.0, 3.0)
    """
    check_outputs(outputs)
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(
            f"unknown preconditioner {preconditioner!r}; expected one of "
            f"{', '.join(PRECONDITIONERS)}"
        )
    tol = as_real("tol", tol, low=0.0, high=1.0, low_open=True, high_open=True)
    max_iters = as_int("max_iters", max_iters, minimum=1)
    trace_samples = as_int("trace_samples", trace_samples, minimum=0)
    if trace_samples == 1:
        raise ValueError("trace_samples must be 0 (exact) or at least 2 (for a standard error)")
    ridge = as_real("ridge", ridge, low=0.0)
    seed = as_int("seed", seed, minimum=0)
    if block_size is not None:
        block_size = as_int("block_size", block_size, minimum=1)
    memory_budget = as_real("memory_budget", memory_budget, low=0.0, low_open=True, finite=False)
    if not hasattr(x, "shape") or len(x.shape) < 1 or x.shape[0] < 1:
        raise ValueError("x must be a non-empty array with a leading batch axis")

    metadata = None
    if hasattr(targets, "values") and hasattr(targets, "describe"):
        metadata = targets.describe()
        targets = targets.values
    op, fn = _operator(fn, params, x, outputs, block_size, memory_budget, mesh)
    n, c = op.n, op.num_outputs
    y = _as_targets("targets", targets, n)
    if offset is not None:
        y = y - _as_targets("offset", offset, n, like=y)
    if y.shape[1] != c and outputs != "mean":
        raise ValueError(f"targets have {y.shape[1]} columns but the model has {c} outputs")

    shift = ridge * n
    leaves = jax.tree.leaves(params)
    eps = machine_epsilon(np.result_type(*(np.asarray(leaf).dtype for leaf in leaves)))
    order = n * c if outputs == "full" else n
    blocks = None
    if preconditioner == "jacobi" or trace_samples == 0:
        blocks = ntk_diagonal_blocks(
            fn, params, op.x, block_size=op.device_block, memory_budget=memory_budget, mesh=mesh
        )

    def apply(v: np.ndarray) -> np.ndarray:
        return op.matvec(outputs, v) + shift * v

    precondition = _preconditioner(preconditioner, outputs, blocks, shift, c)
    lam_floor = 0.0 if blocks is None else _largest_diagonal(blocks, outputs)
    alpha, iterations, residual = _pcg(
        apply,
        y,
        precondition,
        _Reducer(outputs),
        tol,
        max_iters,
        psd_tol=psd_tolerance(order, eps),
        lam_floor=lam_floor,
        shift=shift,
    )
    if not math.isfinite(residual):
        raise non_finite_error("a kernel-vector product", "some examples of x")
    if residual > tol:
        raise RuntimeError(
            f"conjugate gradients did not reach the relative residual {tol:g} in {iterations} "
            f"kernel-vector products (max_iters={max_iters}; reached {residual:.3g}); the kernel "
            "is probably "
            "ill-conditioned: raise max_iters, add a ridge, or loosen tol (float32 products "
            "limit the attainable residual to about 1e-7 times the condition number)"
        )
    value = max(float(np.sum(y * alpha)), 0.0)

    scale = 1.0 / c if outputs == "mean" else 1.0
    trace_exact = (
        None if blocks is None else scale * float(np.trace(blocks, axis1=1, axis2=2).sum())
    )
    if trace_samples:
        draws = op.hutchinson(trace_samples, seed) * scale
        trace = float(np.mean(draws))
        trace_stderr = float(np.std(draws, ddof=1) / math.sqrt(trace_samples))
    else:
        assert trace_exact is not None
        trace, trace_stderr = trace_exact, 0.0
    adjusted = math.sqrt(value * max(trace, 0.0)) / n
    adjusted_stderr = adjusted * trace_stderr / (2 * trace) if trace > 0 else math.inf
    return MatrixFreeComplexity(
        value=value,
        adjusted=adjusted,
        adjusted_stderr=adjusted_stderr,
        trace=trace,
        trace_stderr=trace_stderr,
        trace_samples=trace_samples,
        trace_exact=trace_exact,
        iterations=iterations,
        relative_residual=residual,
        tol=float(tol),
        n=n,
        num_outputs=int(y.shape[1]),
        outputs=outputs,
        ridge=float(ridge),
        preconditioner=preconditioner,
        residual=offset is not None,
        targets=metadata,
    )


def _as_targets(name: str, values: Any, n: int, like: np.ndarray | None = None) -> np.ndarray:
    y = as_real_array(name, values)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape (n,) or (n, C) with n = {n}, got {y.shape}")
    if like is not None and y.shape != like.shape:
        raise ValueError(f"{name} has shape {y.shape}, targets have shape {like.shape}")
    return y


def _preconditioner(
    name: str, outputs: str, blocks: np.ndarray | None, shift: float, c: int
) -> Callable[[np.ndarray], np.ndarray]:
    if name == "none":
        return lambda r: r
    assert blocks is not None
    diag = np.diagonal(blocks, axis1=1, axis2=2)  # (n, C): Theta_cc(x_i, x_i)
    if outputs == "mean":
        inv = 1.0 / _positive(diag.mean(axis=1, keepdims=True) + shift)
        return lambda r: r * inv
    if outputs == "diag":
        inv = 1.0 / _positive(diag + shift)
        return lambda r: r * inv
    # Full: block-Jacobi with the per-example C x C blocks (pseudo-inverse of tiny pivots).
    values, vectors = np.linalg.eigh(blocks + shift * np.eye(c))
    floor = 1e-12 * max(float(values.max()), 1e-300)
    inv_values = np.where(values > floor, 1.0 / np.maximum(values, floor), 0.0)
    inverse = np.einsum("icd,id,ied->ice", vectors, inv_values, vectors)
    return lambda r: np.einsum("icd,id->ic", inverse, r)


def _largest_diagonal(blocks: np.ndarray, outputs: str) -> float | np.ndarray:
    """max_i K_ii of the kernel of each system (a lower bound on its lambda_max): (1, C) for the
    per-logit systems, a scalar for the mean and full kernels."""
    diag = np.diagonal(blocks, axis1=1, axis2=2)  # (n, C): Theta_cc(x_i, x_i)
    if outputs == "diag":
        return np.max(diag, axis=0, keepdims=True)
    return float(np.max(diag.mean(axis=1) if outputs == "mean" else diag))


def _positive(d: np.ndarray) -> np.ndarray:
    floor = 1e-12 * max(float(np.max(d)), 1e-300)
    return np.maximum(d, floor)
