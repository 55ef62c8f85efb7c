"""Argument checks and message text shared by the clients and models (bad input gets an error
naming what was wrong, shown short)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

__all__ = ["check_int", "describe", "instance_of", "is_int", "one_line", "shorten"]


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (``True`` is an int to Python, not to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``; else a named error."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def shorten(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with ``...`` when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (runs of white space as one space), then `shorten`ed."""
    return shorten(" ".join(text.split()), limit)


def describe(value: object) -> str:
    """A value for an error message: its type and its (shortened) repr."""
    return f"{type(value).__name__} {shorten(repr(value), 60)}"


Validator = Callable[[Any, Any, Any], None]
"""An attrs validator: ``(instance, attribute, value)``."""


def instance_of(
    kind: type | tuple[type, ...],
    what: str | None = None,
    *,
    optional: bool = False,
    minimum: int | None = None,
) -> Validator:
    """An attrs validator for request models: an instance of ``kind`` (a bool is never an
    int), ``None`` too when ``optional``, at least ``minimum`` for a number; the error names
    the field and ``what`` it must be (by default the type's name)."""
    label: str = what or str(getattr(kind, "__name__", kind))
    if optional:
        label += " or None"

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise TypeError(f"{attribute.name} must be {label}, got {describe(value)}")
        if minimum is not None and isinstance(value, int) and value < minimum:
            raise ValueError(f"{attribute.name} must be at least {minimum}, got {value!r}")

    return check
