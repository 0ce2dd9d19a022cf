"""The kinds of config fields: each checks and normalises a value, and writes its JSON form.

A kind is a small frozen object with ``check(where, value) -> value`` (``where`` names the
field in messages, e.g. ``"TrainConfig.epochs"``) and ``to_json(value)``. The rules are the
same for every config class:

* numbers: Python numbers and numpy scalars (``np.int64(3)``, ``np.float32(0.1)``) are
  accepted, bools and strings are not; integers stay integers, reals become ``float``;
* booleans: ``True``/``False`` and ``np.bool_``;
* tuples: any list or tuple (not a string), each item checked by the item kind;
* nested configs: an instance of the class, or a dict of its fields.

A wrong type is a ``TypeError``, a wrong value a ``ValueError``; both messages start with
``where``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdcomplex._checks import as_int
from sdcomplex._io import parse_csv_value, to_jsonable


class Kind:
    """Base of the field kinds (checks nothing, writes the value as it is)."""

    def check(self, where: str, value: Any) -> Any:
        """``value`` normalised; TypeError or ValueError naming ``where`` if it is invalid."""
        return value

    def to_json(self, value: Any) -> Any:
        """The JSON form of a checked value."""
        return value


def _scalar(value: Any) -> Any:
    """A numpy scalar or 0-d array as the Python value it holds; anything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


@dataclass(frozen=True)
class Int(Kind):
    """An integer (``np.int64`` too; not a bool, not a float) of at least ``minimum``."""

    minimum: int | None = None

    def check(self, where: str, value: Any) -> int:
        return as_int(where, value, minimum=self.minimum)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"lie in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f"be a finite number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"be a finite number {'<' if high_open else '<='} {high:g}"
    return "be a finite number"


@dataclass(frozen=True)
class Real(Kind):
    """A finite real number (ints and numpy scalars too; not a bool), stored as ``float``.

    ``low``/``high`` bound it (``None``: unbounded); ``low_open``/``high_open`` exclude the
    bounds. Messages: ``X must be a finite number > 0, got 0.0``, ``X must lie in [0, 1], got
    1.5``.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, where: str, value: Any) -> float:
        value = _scalar(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where} must be a number, got {value!r}")
        out = float(value)
        low, high = self.low, self.high
        bad = not math.isfinite(out)
        bad = bad or (low is not None and (out <= low if self.low_open else out < low))
        bad = bad or (high is not None and (out >= high if self.high_open else out > high))
        if bad:
            what = _interval(low, high, self.low_open, self.high_open)
            raise ValueError(f"{where} must {what}, got {out}")
        return out


@dataclass(frozen=True)
class Bool(Kind):
    """``True`` or ``False`` (``np.bool_`` too; not 0 or 1)."""

    def check(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{where} must be true or false, got {value!r}")
        return bool(value)


@dataclass(frozen=True)
class Text(Kind):
    """A string; ``nonempty``: not ``""``; ``identifier``: a Python identifier that does not
    read as a number or a boolean (``nan``, ``inf``, ``true``: a results CSV would parse it as
    one)."""

    nonempty: bool = True
    identifier: bool = False

    def check(self, where: str, value: Any) -> str:
        if not isinstance(value, str) or (self.nonempty and not value):
            what = "a non-empty string" if self.nonempty else "a string"
            raise TypeError(f"{where} must be {what}, got {value!r}")
        if self.identifier and not value.isidentifier():
            raise ValueError(f"{where} must be an identifier, got {value!r}")
        if self.identifier and not isinstance(parse_csv_value(value), str):
            raise ValueError(
                f"{where} must not read as a number or a boolean (results files would parse it "
                f"as one), got {value!r}"
            )
        return value


@dataclass(frozen=True)
class Choice(Kind):
    """One of ``values`` (strings). ``message``: a ``str.format`` template with ``{where}``,
    ``{value!r}`` and ``{values}`` for the ValueError (default: ``X must be one of a, b or c,
    got 'd'``)."""

    values: tuple[str, ...]
    message: str | None = None

    def check(self, where: str, value: Any) -> str:
        if isinstance(value, str) and value in self.values:
            return value
        listed = ", ".join(self.values[:-1]) + f" or {self.values[-1]}"
        if self.message is not None:
            raise ValueError(self.message.format(where=where, value=value, values=self.values))
        raise ValueError(f"{where} must be one of {listed}, got {value!r}")


@dataclass(frozen=True)
class Path(Kind):
    """A file system path (``str`` or ``os.PathLike``, not empty), stored as ``str``."""

    def check(self, where: str, value: Any) -> str:
        if not isinstance(value, str | os.PathLike) or not os.fspath(value):
            raise TypeError(f"{where} must be a path, got {value!r}")
        return str(os.fspath(value))


@dataclass(frozen=True)
class Options(Kind):
    """A dict with string keys and JSON values (numpy values converted, tuples become lists),
    e.g. a model's constructor overrides."""

    def check(self, where: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where} must be a dict with string keys")
        import json

        try:
            return json.loads(json.dumps(to_jsonable(dict(value)), allow_nan=False))
        except (TypeError, ValueError) as err:
            raise TypeError(f"config options must be JSON values: {err} ({where})") from None


@dataclass(frozen=True)
class Optional(Kind):
    """``None`` or a value of ``kind``."""

    kind: Kind

    def check(self, where: str, value: Any) -> Any:
        return None if value is None else self.kind.check(where, value)

    def to_json(self, value: Any) -> Any:
        return None if value is None else self.kind.to_json(value)


@dataclass(frozen=True)
class Tuple(Kind):
    """A tuple of ``item`` values (from any list or tuple; item ``i`` is named ``X[i]``).

    ``nonempty``: at least one item (``X is empty`` otherwise); ``sort_unique``: stored sorted
    with repeats removed (a set of values, e.g. temperatures).
    """

    item: Kind
    nonempty: bool = False
    sort_unique: bool = False

    def check(self, where: str, value: Any) -> tuple[Any, ...]:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            raise TypeError(f"{where} must be a list, got {value!r}")
        out = tuple(self.item.check(f"{where}[{i}]", v) for i, v in enumerate(value))
        if self.nonempty and not out:
            raise ValueError(f"{where} is empty")
        return tuple(sorted(set(out))) if self.sort_unique else out

    def to_json(self, value: Any) -> Any:
        return [self.item.to_json(v) for v in value]


@dataclass(frozen=True)
class Nested(Kind):
    """A config of class ``cls`` (a :class:`~sdcomplex._config_base.Config`), or a dict of its
    fields (missing fields take the defaults); ``None`` is refused (``X is required``)."""

    cls: type

    def check(self, where: str, value: Any) -> Any:
        if value is None:
            raise ValueError(f"{where} is required")
        if isinstance(value, Mapping):
            return self.cls.from_dict(value)  # type: ignore[attr-defined]
        if not isinstance(value, self.cls):
            raise TypeError(f"{where} must be a {self.cls.__name__}, got {type(value).__name__}")
        return value

    def to_json(self, value: Any) -> Any:
        return value.to_dict()
