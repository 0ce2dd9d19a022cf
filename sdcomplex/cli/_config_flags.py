"""Command line flags derived from a config class's fields, and ``--set FIELD=VALUE``.

Every field of a config (``sdcomplex._config_base.Config``) with a scalar, tuple or options
kind gets a flag: ``--<field-name>`` (dashes for underscores) or the name in the field's
metadata (``--lr`` for ``learning_rate``, then also accepted as ``--learning-rate``), typed by
its kind (``int``, ``float``, ``--x/--no-x`` for booleans, several values for tuples,
``KEY=VALUE`` pairs for option dicts), with the help of the class docstring and the default.
A field added to a config therefore needs no edit here. Nested configs get no flags of their
own (the command adds the nested class's flags with another prefix, as ``distill`` does for its
student).

Config classes import JAX through their packages, so the flags are added when the subcommand is
used (:func:`add_on_use`), not when ``sdcomplex --help`` lists the subcommands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sdcomplex import _config_kinds as kinds
from sdcomplex._config_base import field_docs, kind_of


def parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` as ``{"a": 1, "b": "x"}``: each VALUE parsed as JSON, else a string.

    Raises:
        ValueError: an item without ``=`` or without a key.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text  # a bare string
    return out


def _inner(kind: kinds.Kind) -> kinds.Kind:
    return kind.kind if isinstance(kind, kinds.Optional) else kind


def parse_value(kind: kinds.Kind, text: str) -> Any:
    """A ``--set`` value for a field of this kind: the text itself for strings and paths
    (``null`` is None where None is allowed), else the text parsed as JSON (a bare word stays
    a string, which the field's check then refuses by name)."""
    if isinstance(_inner(kind), kinds.Text | kinds.Choice | kinds.Path):
        return None if isinstance(kind, kinds.Optional) and text == "null" else text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_pairs(pairs: list[str], flag: str = "--set") -> dict[str, str]:
    """``["a=1", "b=x"]`` as ``{"a": "1", "b": "x"}`` (the texts unparsed; the last wins).

    Raises:
        ValueError: an item without ``=`` or without a key (one line naming ``flag``).
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key] = text
    return out


def parse_set(texts: Mapping[str, str], cls: type, *, what: str | None = None) -> dict[str, Any]:
    """``--set`` texts (field -> text, from :func:`split_pairs`) as field values of config class
    ``cls``, each parsed by its field's kind (:func:`parse_value`).

    Raises:
        ValueError: an unknown field (the message lists the valid ones; ``what`` names the
            config in it, e.g. ``"student config"``).
    """
    cls.check_names(texts, what)  # type: ignore[attr-defined]
    kinds = {f.name: kind_of(f) for f in dataclasses.fields(cls)}
    return {key: parse_value(kinds[key], text) for key, text in texts.items()}


def _flag_fields(cls: type) -> Iterator[dataclasses.Field[Any]]:
    """The fields that get a flag: the class's own first, then those it inherits."""
    own = set(cls.__dict__.get("__annotations__", {}))
    fields = sorted(dataclasses.fields(cls), key=lambda f: f.name not in own)
    for f in fields:
        inner = _inner(kind_of(f))
        item = inner.item if isinstance(inner, kinds.Tuple) else inner
        if not isinstance(item, kinds.Nested):
            yield f


def _argparse_options(kind: kinds.Kind) -> dict[str, Any]:
    inner = _inner(kind)
    if isinstance(inner, kinds.Bool):
        return {"action": argparse.BooleanOptionalAction}
    if isinstance(inner, kinds.Options):
        return {"action": "append", "metavar": "KEY=VALUE"}
    if isinstance(inner, kinds.Tuple):
        return {"nargs": "+", **_argparse_options(inner.item)}
    if isinstance(inner, kinds.Int):
        return {"type": int}
    if isinstance(inner, kinds.Real):
        return {"type": float}
    if isinstance(inner, kinds.Choice):
        return {"metavar": "{" + ",".join(inner.values) + "}"}
    return {}


def _help(field: dataclasses.Field[Any], docs: Mapping[str, str], given: str | None) -> str:
    """The field's help (``given`` as it is, else the metadata's or the docstring's, with the
    default)."""
    if given is not None:
        return given.replace("%", "%%")
    text = field.metadata.get("help") or docs.get(field.name, "")
    default = field.default
    if default is not dataclasses.MISSING and default is not None and default != ():
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{text} (default {shown})" if text else f"default {shown}"
    return text.replace("%", "%%")


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str,
    flags: Mapping[str, str] | None = None,
    helps: Mapping[str, str] | None = None,
) -> None:
    """Adds a flag for every scalar, tuple and option field of config class ``cls``.

    Args:
        parser: where the flags go.
        cls: the config class.
        prefix: prefix of the destinations in the namespace (read back with
            :func:`flag_values` and the same prefix).
        flags: field -> flag name, overriding the field's metadata (then without the alias
            spelled like the field).
        helps: field -> help, overriding the docstring's.
    """
    docs = field_docs(cls)
    for f in _flag_fields(cls):
        names = [f"--{(flags or {}).get(f.name) or f.metadata.get('flag') or f.name}"]
        spelled = f"--{f.name}".replace("_", "-")
        if not (flags and f.name in flags):
            names[0] = names[0].replace("_", "-")
            if spelled not in names:
                names.append(spelled)
        options: dict[str, Any] = {"metavar": names[0][2:].replace("-", "_").upper()}
        options.update(_argparse_options(kind_of(f)))
        if f.metadata.get("metavar"):
            options["metavar"] = f.metadata["metavar"]
        if options.get("action") == argparse.BooleanOptionalAction:
            del options["metavar"]
        given = (helps or {}).get(f.name)
        parser.add_argument(
            *names, dest=f"{prefix}{f.name}", default=None, help=_help(f, docs, given), **options
        )


def flag_values(
    args: argparse.Namespace,
    cls: type,
    current: Mapping[str, Any],
    *,
    prefix: str,
    flags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (flags of :func:`add_config_flags`).

    Option pairs (``--model-option KEY=VALUE``) are merged into the field's value in
    ``current`` (the config so far, as a dict). ``prefix`` and ``flags`` as given to
    :func:`add_config_flags`.
    """
    out: dict[str, Any] = {}
    for f in _flag_fields(cls):
        value = getattr(args, f"{prefix}{f.name}", None)
        if value is None:
            continue
        if isinstance(_inner(kind_of(f)), kinds.Options):
            name = (flags or {}).get(f.name) or f.metadata.get("flag") or f.name
            flag = "--" + name.replace("_", "-")
            value = {**(current.get(f.name) or {}), **parse_pairs(value, flag)}
        out[f.name] = value
    return out


def add_on_use(parser: argparse.ArgumentParser, add: Callable[[], None]) -> None:
    """Runs ``add()`` (which adds flags to the subcommand's ``parser``) just before ``parser``
    parses its arguments, once: the config classes, and JAX with them, are imported only when
    their subcommand is used (``--help`` included)."""
    parse = parser.parse_known_args
    added: list[bool] = []

    def parse_known_args(*a: Any, **kw: Any) -> Any:
        if not added:
            add()
            added.append(True)
        return parse(*a, **kw)

    setattr(parser, "parse_known_args", parse_known_args)  # noqa: B010  (an instance hook)
