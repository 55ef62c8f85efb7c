"""Ziik's quirks for the shared converter (pure functions plus their registration).

Structure (JSON -> model):

* weekdays ``"1"``..``"7"`` (or ints) -> ``int``;
* hours ``"900"``/``"0"``/``"1730"`` (or ints) -> `datetime.time`; ``"2400"`` -> ``time.max``
  (closing at midnight). Anything else (``"abc"``, ``"960"``, ``"2401"``, ``"9:00"``, a bool,
  a float) is an error;
* closed periods: unix timestamps (ints; a JSON number with a fraction keeps its microseconds)
  -> aware UTC datetimes. Strings are errors: the reference sends numbers;
* ``unit_type``: an ``int`` or a ``str``, kept as sent;
* ``relationships``: ``{}``, ``[]`` or ``null`` -> ``{}``; an object as it is; a non-empty list
  (a PHP array with keys 0..n-1) -> ``{"0": ..., "1": ...}``;
* image ``versions``: ``[]``/``null`` -> ``{}``, ``null`` URLs left out;
* ``parent``: ``null``, ``[]`` or ``{}`` -> ``None``;
* ``departments``: nested units (the recursive hook is built here, looked up lazily).

Unstructure (request model -> JSON): hours as 900-style ints, closed periods as unix seconds,
blocks without their ``None`` fields and empty lists, `NewUnit` without ``None`` fields and
`UnitPatch` with exactly the fields that were passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, time, timezone
from decimal import Decimal
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .._convert import model_hook, type_error
from .models import (
    ClosedPeriod,
    Contact,
    Delivery,
    FileVersions,
    Invoicing,
    NewUnit,
    OfficeHours,
    OpeningHours,
    ParentRef,
    Relationships,
    Unit,
    UnitAddress,
    UnitPatch,
    Unset,
)

__all__ = [
    "format_hours",
    "format_timestamp",
    "parse_hours",
    "parse_timestamp",
    "parse_weekday",
    "register_ziik_hooks",
]

_DIGITS = re.compile(r"[0-9]{1,4}", re.ASCII)
_WEEKDAY = re.compile(r"[1-7]", re.ASCII)


# -- pure conversions ----------------------------------------------------------------------------


def parse_weekday(value: Any) -> int:
    """``"1"`` or ``1`` (Monday) .. ``"7"`` or ``7`` (Sunday) -> int."""
    if type(value) is int and 1 <= value <= 7:
        return value
    if type(value) is str and _WEEKDAY.fullmatch(value):
        return int(value)
    raise type_error(value, "a weekday 1 (Monday) to 7 (Sunday)")


def parse_hours(value: Any) -> time:
    """Military time ``"900"``/``900`` -> ``time(9, 0)``; ``"2400"`` -> ``time.max``.

    Up to four digits (``"0"`` is midnight, ``"0930"`` is 09:30); minutes must be below 60
    and hours below 24 (except 2400, end of day).
    """
    if type(value) is int and 0 <= value <= 9999:
        number = value
    elif type(value) is str and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise type_error(value, "hours as HHMM like '900' or 1730")
    if number == 2400:
        return time.max
    hour, minute = divmod(number, 100)
    if hour > 23 or minute > 59:
        raise type_error(value, "hours as HHMM with hour < 24 and minute < 60")
    return time(hour, minute)


def format_hours(value: time) -> int:
    """``time(9, 0)`` -> ``900``; ``time.max`` -> ``2400``."""
    if value == time.max:
        return 2400
    if value.second or value.microsecond or value.tzinfo is not None:
        raise ValueError(f"hours must be whole minutes without a timezone, got {value!r}")
    return value.hour * 100 + value.minute


def parse_timestamp(value: Any) -> datetime:
    """Unix seconds -> an aware UTC datetime (a fraction keeps its microseconds)."""
    kind = type(value)
    if kind is int:
        seconds: int | float = value
    elif kind in (Decimal, float) and math.isfinite(value):
        seconds = float(value)
    else:
        raise type_error(value, "a unix timestamp (a number)")
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise type_error(value, "a unix timestamp within the years 1..9999") from None


def format_timestamp(value: datetime) -> int:
    """An aware datetime -> whole unix seconds (rounded down)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"a naive datetime cannot be sent as a unix timestamp: {value!r}")
    return math.floor(value.timestamp())


# -- structure hooks -----------------------------------------------------------------------------


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        return None if value is None else parse(value)

    return hook


def _structure_unit_type(value: Any, _: Any) -> int | str | None:
    if value is None or type(value) in (int, str):
        return value  # type: ignore[no-any-return]
    raise type_error(value, "an integer or a string unit type")


def _structure_relationships(value: Any, _: Any) -> Relationships:
    if value is None:
        return Relationships({})
    if type(value) is dict:
        return Relationships(dict(value))
    if type(value) is list:
        return Relationships({str(index): item for index, item in enumerate(value)})
    raise type_error(value, "an object (or [] / null) for relationships")


def _structure_versions(value: Any, _: Any) -> FileVersions:
    if value is None or (type(value) is list and not value):
        return FileVersions({})
    if type(value) is not dict:
        raise type_error(value, "an object of version URLs")
    versions: dict[str, str] = {}
    for key, url in value.items():
        if url is None:
            continue
        if type(url) is not str:
            raise type_error(url, f"a URL string for version {key!r}")
        versions[key] = url
    return FileVersions(versions)


def _make_parent_hook(conv: cattrs.Converter) -> Callable[[Any, Any], ParentRef | None]:
    inner = conv.get_structure_hook(ParentRef)

    def hook(value: Any, _: Any) -> ParentRef | None:
        if value is None or (type(value) in (list, dict) and not value):
            return None
        return inner(value, ParentRef)  # type: ignore[no-any-return]

    return hook


def _make_departments_hook(conv: cattrs.Converter) -> Callable[[Any, Any], list[Unit]]:
    """``departments``: a list of units, the `Unit` hook looked up on first use.

    Looking it up lazily is what lets the recursive model be generated at all: an eager
    lookup would generate `Unit` again while generating `Unit`.
    """
    unit_hook: Callable[[Any, Any], Unit] | None = None

    def hook(value: Any, _: Any) -> list[Unit]:
        nonlocal unit_hook
        if type(value) is list:
            if unit_hook is None:
                unit_hook = conv.get_structure_hook(Unit)
            return [unit_hook(item, Unit) for item in value]
        if value is None or (type(value) is dict and not value):
            return []
        raise type_error(value, "a list of units")

    return hook


# -- unstructure hooks ---------------------------------------------------------------------------


def _compact(conv: cattrs.Converter, cls: type, **overrides: Any) -> Callable[[Any], Any]:
    """Unstructure ``cls`` without ``None`` fields, empty lists or empty objects (never sent)."""
    inner: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, conv, **overrides)

    def unstructure(value: Any) -> dict[str, Any]:
        return {k: v for k, v in inner(value).items() if v is not None and v != [] and v != {}}

    return unstructure


def _request_body(conv: cattrs.Converter, cls: type, *, skip_none: bool) -> Callable[[Any], Any]:
    """Only the fields given: `UNSET` always left out, ``None`` too when ``skip_none``."""
    names = [a.name for a in attrs.fields(cls)]

    def unstructure(value: Any) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name in names:
            field = getattr(value, name)
            if isinstance(field, Unset) or (skip_none and field is None):
                continue
            body[name] = None if field is None else conv.unstructure(field)
        return body

    return unstructure


def register_ziik_hooks(conv: cattrs.Converter) -> None:
    """Register Ziik's quirks (see the module docstring) on the shared converter."""
    conv.register_structure_hook(int | str | None, _structure_unit_type)
    conv.register_structure_hook(Relationships, _structure_relationships)
    conv.register_structure_hook(FileVersions, _structure_versions)
    unit = make_dict_structure_fn(
        Unit,
        conv,
        parent=override(struct_hook=_make_parent_hook(conv)),
        departments=override(struct_hook=_make_departments_hook(conv)),
    )
    conv.register_structure_hook(Unit, model_hook(Unit, unit))

    hours = _optional(parse_hours)
    office_hours = make_dict_structure_fn(
        OfficeHours,
        conv,
        day=override(struct_hook=_optional(parse_weekday)),
        start=override(rename="starthours", struct_hook=hours),
        end=override(rename="endhours", struct_hook=hours),
    )
    conv.register_structure_hook(OfficeHours, model_hook(OfficeHours, office_hours))
    stamp = _optional(parse_timestamp)
    closed = make_dict_structure_fn(
        ClosedPeriod,
        conv,
        start=override(struct_hook=stamp),
        end=override(struct_hook=stamp),
    )
    conv.register_structure_hook(ClosedPeriod, model_hook(ClosedPeriod, closed))

    def unstructure_hours(value: time | None) -> int | None:
        return None if value is None else format_hours(value)

    def unstructure_stamp(value: datetime | None) -> int | None:
        return None if value is None else format_timestamp(value)

    conv.register_unstructure_hook(
        OfficeHours,
        _compact(
            conv,
            OfficeHours,
            start=override(rename="starthours", unstruct_hook=unstructure_hours),
            end=override(rename="endhours", unstruct_hook=unstructure_hours),
        ),
    )
    conv.register_unstructure_hook(
        ClosedPeriod,
        _compact(
            conv,
            ClosedPeriod,
            start=override(unstruct_hook=unstructure_stamp),
            end=override(unstruct_hook=unstructure_stamp),
        ),
    )
    for block in (Contact, UnitAddress, Delivery, Invoicing, OpeningHours):
        conv.register_unstructure_hook(block, _compact(conv, block))
    conv.register_unstructure_hook(NewUnit, _request_body(conv, NewUnit, skip_none=True))
    conv.register_unstructure_hook(UnitPatch, _request_body(conv, UnitPatch, skip_none=False))
