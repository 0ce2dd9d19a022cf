"""Targets for supervision complexity, each recording how it was made.

Results depend on the choice of targets (one-hot, +-1, soft targets at a temperature, raw logits)
and on centering, so every `Targets` carries a description that complexity results record.

Example:
  >>> import numpy as np
  >>> t = soft_targets(np.array([[2.0, 0.0], [0.0, 2.0]]), temperature=2.0)
  >>> t.describe()["kind"], t.values.shape
  ('soft', (2, 2))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sdcomplex._checks import as_int, as_real, as_real_array, check_finite, check_real_dtype


@dataclasses.dataclass(frozen=True)
class Targets:
    """Target values with their provenance.

    Attributes:
      values: (n, C) float64 (or (n, 1) for +-1 binary targets).
      kind: ``"one_hot"``, ``"binary"``, ``"random_labels"``, ``"soft"``, ``"logits"``.
      params: how they were made (temperature, seed, classes, centering, ...).
    """

    values: np.ndarray
    kind: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (kind, parameters, shape), without the values."""
        return {"kind": self.kind, **self.params, "shape": list(self.values.shape)}

    @property
    def labels(self) -> np.ndarray:
        """Hard labels, argmax over classes (for binary targets: 1 where positive)."""
        if self.values.shape[1] == 1:
            return (self.values[:, 0] > 0).astype(np.int64)
        return np.argmax(self.values, axis=1)


def as_labels(labels: Any, num_classes: int | None = None) -> np.ndarray:
    """``labels`` as int64 ``(n,)`` class indices, checked: real, 1-d, non-empty, finite, whole
    numbers, ``>= 0`` (and ``< num_classes`` when given).

    Raises:
      TypeError: complex, non-numeric or fractional labels.
      ValueError: another shape, empty, NaN or inf, negative, or out of range.
    """
    y = np.asarray(labels)
    check_real_dtype("labels", y.dtype)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (n,), got {y.shape}")
    if y.size == 0:
        raise ValueError("labels are empty")
    check_finite("labels", y)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise TypeError(f"labels must be integers, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"labels must be >= 0, found {y.min()}")
    if num_classes is not None and y.max() >= num_classes:
        raise ValueError(f"label {y.max()} out of range for {num_classes} classes")
    return y.astype(np.int64)


def _num_classes(num_classes: int) -> int:
    return as_int("num_classes", num_classes, minimum=1)


def _maybe_center(values: np.ndarray, center: bool) -> np.ndarray:
    """Rows minus their mean (where the plain mean's sum overflows, for logits past 1e307, the
    mean summed from ``values / C``); a centred value beyond float64's range is an error."""
    if not center:
        return values
    with np.errstate(over="ignore"):  # checked below
        mean = values.mean(axis=1, keepdims=True)
        if not np.all(np.isfinite(mean)):  # the sum overflowed: the mean from values / C
            mean = np.sum(values / values.shape[1], axis=1, keepdims=True)
        out = values - mean
    check_finite("centred targets", out)
    return out


def one_hot(labels: Any, num_classes: int, *, center: bool = False) -> Targets:
    """One-hot targets e_{y_i}.

    Args:
      labels: (n,) integer labels in [0, num_classes).
      num_classes: C.
      center: subtract 1/C from every entry (rows then sum to zero).

    Returns:
      `Targets` with values (n, C) float64.
    """
    c = _num_classes(num_classes)
    y = as_labels(labels, c)
    center = bool(center)
    values = _maybe_center(np.eye(c)[y], center)
    return Targets(values, "one_hot", {"num_classes": c, "centered": center})


def binary_targets(labels: Any, positive_classes: Any = None) -> Targets:
    """+-1 targets of a binary task, shape (n, 1).

    Args:
      labels: (n,) integer labels.
      positive_classes: classes mapped to +1 (at least one); by default the labels must already be
        0/1 (1 -> +1) or -1/+1.

    Returns:
      `Targets` with values in {-1, +1}, shape (n, 1).
    """
    y = np.asarray(labels)
    check_real_dtype("labels", y.dtype)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty (n,) array, got shape {y.shape}")
    check_finite("labels", y)
    if positive_classes is None:
        values = set(np.unique(y).tolist())
        if values <= {0, 1}:
            pm = np.where(y == 1, 1.0, -1.0)
        elif values <= {-1, 1}:
            pm = y.astype(np.float64)
        else:
            raise ValueError(
                "labels must be 0/1 or -1/+1 unless positive_classes is given; "
                f"found {sorted(values)[:10]}"
            )
        positive = [1]
    else:
        classes = np.atleast_1d(positive_classes)
        positive = sorted(as_int("positive_classes", c) for c in classes.tolist())
        if not positive:
            raise ValueError("positive_classes must name at least one class, got none")
        pm = np.where(np.isin(as_labels(y), positive), 1.0, -1.0)
    return Targets(pm[:, None], "binary", {"positive_classes": positive})


def random_labels(n: int, num_classes: int, *, seed: int, center: bool = False) -> Targets:
    """One-hot targets of labels drawn uniformly at random (a reference for complexity plots).

    Args:
      n: number of examples (int or numpy integer, as are the others).
      num_classes: C.
      seed: seed >= 0 of numpy's PCG64 generator (results are reproducible).
      center: as in `one_hot`.
    """
    n = as_int("n", n, minimum=1)
    seed = as_int("seed", seed, minimum=0)
    center = bool(center)
    c = _num_classes(num_classes)
    y = np.random.default_rng(seed).integers(0, c, size=n)
    values = _maybe_center(np.eye(c)[y], center)
    return Targets(values, "random_labels", {"num_classes": c, "seed": seed, "centered": center})


def _logits(logits: Any) -> np.ndarray:
    z = np.asarray(logits)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"logits must have shape (n, C) with n, C >= 1, got {np.shape(logits)}")
    return as_real_array("logits", z)


def soft_targets(logits: Any, temperature: float = 1.0, *, center: bool = False) -> Targets:
    """Teacher soft targets softmax(z / tau), computed stably in float64.

    p_ic = exp((z_ic - max_d z_id) / tau) / sum_c' exp((z_ic' - max_d z_id) / tau): the maximum is
    subtracted (after dividing by tau when tau >= 1, before it when tau < 1, so nothing finite
    overflows), hence every exponent is <= 0 (an overflow can only give -inf, where the true
    exponent is below -1.7e308 and its exponential 0) and the largest is exactly 0, making every
    denominator >= 1.
    The values are never NaN, for any finite logits and any finite tau > 0 (1e-30 gives the
    one-hot argmax, ties shared; 1e30 gives the uniform distribution).

    Args:
      logits: (n, C) real, finite teacher logits z (any precision; computed in float64).
      temperature: tau > 0, finite; any real number type (e.g. ``np.float32(4.0)``).
      center: subtract 1/C from every entry.

    Returns:
      `Targets` with rows on the probability simplex (before centering).

    Raises:
      TypeError: complex logits, temperature not a real number.
      ValueError: logits not (n, C), empty, NaN or inf; temperature not finite and > 0.
    """
    tau = as_real("temperature", temperature, low=0.0, low_open=True)
    center = bool(center)
    z = _logits(logits)
    with np.errstate(over="ignore"):
        if tau >= 1.0:  # dividing first cannot overflow; a difference that does is < -1.7e308
            scaled = z / tau
            exponent = scaled - scaled.max(axis=1, keepdims=True)
        else:  # subtracting first: an overflow to -inf stays -inf after dividing by tau < 1
            exponent = (z - z.max(axis=1, keepdims=True)) / tau
    p = np.exp(exponent)
    p /= p.sum(axis=1, keepdims=True)
    params = {"temperature": tau, "centered": center}
    return Targets(_maybe_center(p, center), "soft", params)


def logit_targets(logits: Any, *, center: bool = False) -> Targets:
    """Raw teacher logits as targets (optionally centred per example)."""
    z = _logits(logits)
    center = bool(center)
    return Targets(_maybe_center(z, center), "logits", {"centered": center})
