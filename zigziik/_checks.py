"""Argument checks shared by the clients (bad input gets an error naming what was wrong)."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``; else a named error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value
