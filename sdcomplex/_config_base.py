"""Config classes written once: typed fields, validation, JSON round trip, hash, differences.

A config is a frozen dataclass deriving from :class:`Config` whose fields are declared with
:func:`option`, which names the field's kind (:mod:`sdcomplex._config_kinds`: ``Int``,
``Real``, ``Bool``, ``Text``, ``Choice``, ``Path``, ``Options``, ``Optional``, ``Tuple``,
``Nested``). Building one checks and normalises every field in one place (numpy scalars become
Python numbers, lists become tuples, nested dicts become nested configs), then runs the class's
own cross-field checks (:meth:`Config.validate`). Every config has the same methods:

* :meth:`~Config.to_dict` / :meth:`~Config.from_dict` / :meth:`~Config.to_json` /
  :meth:`~Config.from_json`: a JSON round trip (missing fields take the defaults, unknown ones
  are an error listing the valid names);
* :meth:`~Config.hash`: 16 hex digits of the SHA-256 of the canonical JSON form (sorted keys,
  no spaces), the same on every platform; equal configs (``1`` vs ``1.0`` in a float field,
  lists vs tuples) hash alike;
* :meth:`~Config.differences`: ``"field: old -> new"`` lines, ``"student.seed: 0 -> 1"`` inside
  nested configs;
* :meth:`~Config.replace`: a validated copy with some fields changed.

Example:
    >>> from dataclasses import dataclass
    >>> from sdcomplex._config_kinds import Int, Real
    >>> @dataclass(frozen=True)
    ... class Toy(Config):
    ...     steps: int = option(Int(minimum=1), 10)
    ...     rate: float = option(Real(low=0.0, low_open=True), 0.1)
    >>> Toy(steps=np.int64(3)).to_dict()
    {'steps': 3, 'rate': 0.1}
    >>> Toy().differences(Toy(rate=1))
    ['rate: 0.1 -> 1.0']
    >>> Toy(steps=0)
    Traceback (most recent call last):
    ...
    ValueError: Toy.steps must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np  # noqa: F401  (used by the doctest)

from sdcomplex._config_kinds import Kind

C = TypeVar("C", bound="Config")

KIND = "kind"
"""Field metadata key of a field's :class:`~sdcomplex._config_kinds.Kind`."""


def option(
    kind: Kind,
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    metavar: str | None = None,
    help: str | None = None,  # noqa: A002  (the argparse name)
    kw_only: bool | Any = dataclasses.MISSING,
) -> Any:
    """A config field of the given kind (a ``dataclasses.field`` carrying it in its metadata).

    Args:
        kind: how the field is checked and written to JSON.
        default: the default value (none: the field is required).
        default_factory: builds the default (mutable defaults such as dicts).
        flag: the command line flag's name if it is not the field's (e.g. ``"lr"``).
        metavar: the flag's placeholder in ``--help``.
        help: the flag's help (default: the first sentence of the field's entry in the class
            docstring's ``Attributes`` section).
        kw_only: a keyword-only field (see ``dataclasses.field``).
    """
    meta = {KIND: kind, "flag": flag, "metavar": metavar, "help": help}
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata=meta, kw_only=kw_only
    )


def kind_of(field: dataclasses.Field[Any]) -> Kind:
    """The kind of a config field (a plain :class:`Kind`, which checks nothing, if none)."""
    kind = field.metadata.get(KIND)
    return kind if isinstance(kind, Kind) else Kind()


def json_hash(data: Any, *, default: Any = None, allow_nan: bool = False) -> str:
    """The first 16 hex digits of the SHA-256 of ``data``'s canonical JSON text (sorted keys,
    no spaces; ``default`` and ``allow_nan`` as for ``json.dumps``)."""
    text = json.dumps(
        data, sort_keys=True, separators=(",", ":"), default=default, allow_nan=allow_nan
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_hash(config: Config | Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of a config (or of its dict form): :func:`json_hash` of its
    JSON form."""
    return json_hash(config.to_dict() if isinstance(config, Config) else dict(config))


class Config:
    """Base of the frozen config dataclasses (see the module docstring).

    Subclasses are ``@dataclass(frozen=True)`` classes whose fields are declared with
    :func:`option`; they may override :meth:`validate` for checks across fields and set
    ``_what`` (the name used in messages, e.g. ``"distillation config"``).
    """

    _what: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = kind_of(f).check(f"{owner}.{f.name}", getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields, run after every field is checked (override; default: none)."""

    @classmethod
    def field_names(cls) -> list[str]:
        """The field names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def check_names(cls, names: Any, what: str | None = None) -> None:
        """Raises ValueError listing the valid names if any of ``names`` is not a field."""
        valid = cls.field_names()
        unknown = sorted(set(names) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown {what or cls._what} field(s) {unknown}; valid fields: {valid}"
            )

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again).

        Raises:
            ValueError: unknown field names.
        """
        self.check_names(changes)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists, nested configs dicts); inverse of
        :meth:`from_dict`."""
        out = {
            f.name: kind_of(f).to_json(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }
        return json.loads(json.dumps(out, allow_nan=False))

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Builds a config from a (possibly partial) dict; missing fields take the defaults.

        Raises:
            TypeError: ``data`` is not a dict.
            ValueError: unknown field names (the message lists the valid ones), a missing
                required field, invalid values.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a config must be a JSON object / dict, got {type(data).__name__}")
        cls.check_names(data)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            required = f.default is dataclasses.MISSING
            if required and f.default_factory is dataclasses.MISSING and f.name not in data:
                raise ValueError(f"a {cls._what} needs a {f.name!r} field")
        return cls(**dict(data))

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        """Builds a config from JSON text (an object of fields; see :meth:`from_dict`)."""
        return cls.from_dict(json.loads(text))

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, indented, a final newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def hash(self) -> str:
        """Stable 16-hex-digit hash of the canonical JSON form (see :func:`config_hash`)."""
        return config_hash(self)

    def differences(self, other: Config) -> list[str]:
        """``"field: old -> new"`` for every field that differs from ``other`` (``self`` is the
        old one), ``"parent.field: ..."`` inside nested configs; empty if they are equal."""
        old, new = self.to_dict(), other.to_dict()
        out = []
        for name in sorted(set(old) | set(new)):
            if old.get(name) == new.get(name):
                continue
            a, b = getattr(self, name, None), getattr(other, name, None)
            if isinstance(a, Config) and isinstance(b, Config) and type(a) is type(b):
                out += [f"{name}.{line}" for line in a.differences(b)]
            else:
                out.append(f"{name}: {old.get(name)!r} -> {new.get(name)!r}")
        return out


def field_docs(cls: type) -> dict[str, str]:
    """The first sentence of each entry of the ``Attributes:`` sections of the docstrings of
    ``cls`` and its bases (markup such as double backquotes and ``:func:`` roles removed)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = inspect.cleandoc(klass.__dict__.get("__doc__") or "")
        lines = text.splitlines()
        if "Attributes:" not in lines:
            continue
        entries: dict[str, list[str]] = {}
        current = None
        for line in lines[lines.index("Attributes:") + 1 :]:
            if line and not line.startswith(" "):
                break
            match = re.match(r"^ {4}(\w+): (.*)$", line)
            if match:
                current = match.group(1)
                entries[current] = [match.group(2)]
            elif current is not None and line.strip():
                entries[current].append(line.strip())
        for name, parts in entries.items():
            docs[name] = _first_sentence(" ".join(parts))
    return docs


def _first_sentence(text: str) -> str:
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([\w]+)`", r"\1", text).replace("``", "")
    first = re.split(r"(?<=[a-z0-9)])\.\s+(?=[A-Z])", text, maxsplit=1)[0]
    return first.removesuffix(".")
