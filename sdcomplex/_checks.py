"""Validation at the public boundary, shared by every module: scalars and arrays (config fields
get theirs from their field kinds, `sdcomplex._config_kinds`).

One rule per kind of input, so every entry point rejects the same things the same way:

* scalars: Python numbers, numpy scalars (``np.float32(4.0)``, ``np.int64(3)``) and 0-d real
  arrays are accepted wherever a number is; bools and strings are not numbers;
* arrays: complex values are a `TypeError` (never silently dropped), so are non-numeric dtypes;
  empty arrays and NaN or inf are a `ValueError` naming the argument.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _real_scalar(name: str, value: Any, kind: str) -> Any:
    """``value`` as a 0-d numpy scalar of integer (kind "integer") or real kind, else TypeError."""
    if isinstance(value, bool | np.bool_) or isinstance(value, str | bytes):
        raise TypeError(
            f"{name} must be {'an integer' if kind == 'integer' else 'a number'}, got {value!r}"
        )
    try:
        arr = np.asarray(value)
    except Exception as err:  # objects numpy cannot read as an array
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from err
    ok = arr.ndim == 0 and (
        np.issubdtype(arr.dtype, np.integer)
        or (kind == "real" and np.issubdtype(arr.dtype, np.floating))
    )
    if not ok:
        what = "an integer" if kind == "integer" else "a real number"
        shown = repr(value) if arr.ndim == 0 else f"an array of shape {arr.shape}"
        raise TypeError(f"{name} must be {what}, got {shown}")
    return arr[()]


def as_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as a Python int; numpy integer scalars are accepted, bools and floats are not.

    Raises:
      TypeError: not an integer.
      ValueError: below ``minimum``.

    Example:
      >>> as_int("seed", np.int64(3), minimum=0)
      3
    """
    out = int(_real_scalar(name, value, "integer"))
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    return out


def as_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a Python float; any real numpy scalar or 0-d array is accepted.

    Args:
      name: the argument's name, used in messages.
      value: the value to check.
      low, high: bounds (None: unbounded); ``low_open`` / ``high_open`` exclude them.
      finite: reject NaN and inf (NaN is always rejected).

    Raises:
      TypeError: not a real number (bools, strings, complex and arrays are not).
      ValueError: NaN, inf when ``finite``, or outside the bounds.

    Example:
      >>> as_real("temperature", np.float32(4.0), low=0.0, low_open=True)
      4.0
    """
    out = float(_real_scalar(name, value, "real"))
    if math.isnan(out) or (finite and math.isinf(out)):
        raise ValueError(f"{name} must be a finite number, got {out}")
    if low is not None and (out <= low if low_open else out < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {out:g}")
    if high is not None and (out >= high if high_open else out > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {out:g}")
    return out


def check_finite(name: str, array: Any) -> None:
    """Raises ValueError naming ``name`` if ``array`` holds NaN or inf.

    numpy arrays are checked with numpy; arrays of another array library (e.g. a JAX array on an
    accelerator) with their own namespace, so nothing is copied to the host.
    """
    if hasattr(array, "__array_namespace__") and not isinstance(array, np.ndarray):
        xp = array.__array_namespace__()
        if bool(xp.all(xp.isfinite(array))):
            return
        bad = "NaN" if bool(xp.any(xp.isnan(array))) else "inf"
    else:
        a = np.asarray(array)
        if not np.issubdtype(a.dtype, np.inexact) or np.all(np.isfinite(a)):
            return
        bad = "NaN" if np.any(np.isnan(a)) else "inf"
    raise ValueError(f"{name} contains {bad} values")


def check_real_dtype(name: str, dtype: Any) -> None:
    """Raises TypeError unless ``dtype`` is a real (bool, integer or floating) dtype."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.complexfloating):
        raise TypeError(
            f"{name} must be real, got complex dtype {dt}; the imaginary part would be dropped"
        )
    if not (np.issubdtype(dt, np.number) or dt == np.bool_ or is_extended_float(dt)):
        raise TypeError(f"{name} must be numeric, got dtype {dt}")


def is_extended_float(dtype: Any) -> bool:
    """True for the floating types numpy does not know as such (ml_dtypes: bfloat16, float8)."""
    dt = np.dtype(dtype)
    return dt.kind == "V" and dt.name.startswith(("bfloat", "float"))


def as_real_array(name: str, value: Any, *, allow_empty: bool = False) -> np.ndarray:
    """A float64 copy of a real, finite array.

    Raises:
      TypeError: complex or non-numeric values.
      ValueError: empty (unless ``allow_empty``), NaN or inf.

    Example:
      >>> as_real_array("targets", [1, 2]).dtype
      dtype('float64')
    """
    arr = np.asarray(value)
    check_real_dtype(name, arr.dtype)
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    out = arr.astype(np.float64)
    check_finite(name, out)
    return out
