"""Argument checks and message text shared by the clients and models (bad input gets an error
naming what was wrong, shown short)."""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["check_int", "is_int", "one_line", "shorten"]


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
