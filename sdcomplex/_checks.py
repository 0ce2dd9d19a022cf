"""Validation of config fields shared by the config dataclasses."""

from __future__ import annotations

from typing import Any


def check_int_field(
    owner: str, name: str, value: Any, *, minimum: int, optional: bool = False
) -> None:
    """Checks that ``owner.name`` is an integer (not a bool) of at least ``minimum``.

    Args:
      owner: the config class name used in the message, e.g. ``"DistillConfig"``.
      name: the field name.
      value: the field's value.
      minimum: the smallest allowed value.
      optional: None is allowed too.

    Raises:
      TypeError: not an integer.
      ValueError: below ``minimum``.

    Example:
      >>> check_int_field("Config", "epochs", 3, minimum=1)
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value}")
