"""JSON <-> model conversion: one cattrs converter configuration, with a hook for each quirk.

Rules for both APIs (DESIGN.md):

* Unknown keys are ignored; missing keys take the field's default (``None``, or ``[]`` for
  list fields); ``null`` or ``{}`` in a list field is ``[]``.
* Primitive types are strict: ``"5"`` is not an int and ``5`` is not a str. The documented
  quirks are the only coercions, each a hook registered here or by an API's ``_hooks``.
* Models opt into key styles with `json_model`: ``camel_case=True`` generates the Zigna
  spelling of every field (``status_id`` -> ``statusID``, ``pictures_taken_date`` ->
  ``picturesTakenDate``); ``php_arrays=True`` also accepts ``[]`` where an object is expected
  (PHP encodes an empty associative array as a JSON list).

`structure` is the fast path (no per-field bookkeeping); only when it fails is the same
input structured again with detailed validation, to say exactly where and what was wrong.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, TypeVar, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import DecodeError

T = TypeVar("T")
C = TypeVar("C", bound=type)

__all__ = [
    "camel_case",
    "converter",
    "decode_json",
    "format_net_datetime",
    "json_model",
    "loads",
    "parse_net_datetime",
    "structure",
    "unstructure",
]

_STYLE_ATTR = "__zigziik_json__"


@attrs.frozen
class _Style:
    camel_case: bool = False
    php_arrays: bool = False
    omit_none: bool = False


def json_model(
    *, camel_case: bool = False, php_arrays: bool = False, omit_none: bool = False
) -> Callable[[C], C]:
    """Mark an attrs class with its JSON key style (see the module docstring).

    ``omit_none`` leaves ``None`` fields out when the model is unstructured (request bodies).
    """

    def mark(cls: C) -> C:
        setattr(cls, _STYLE_ATTR, _Style(camel_case, php_arrays, omit_none))
        return cls

    return mark


def _style(cls: type) -> _Style:
    return cast(_Style, getattr(cls, _STYLE_ATTR, _Style()))


def camel_case(name: str) -> str:
    """``pictures_taken_date`` -> ``picturesTakenDate``; a trailing ``_id`` part -> ``ID``."""
    head, *rest = name.split("_")
    return head + "".join("ID" if part == "id" else part[:1].upper() + part[1:] for part in rest)


# -- JSON text ---------------------------------------------------------------------------------


def loads(body: bytes | str) -> Any:
    """Parse JSON; numbers with a fraction become `Decimal` (prices must not round)."""
    return json.loads(body, parse_float=Decimal)


def decode_json(body: bytes, target: Any, *, method: str, url: str) -> Any:
    """Parse and convert a response body, raising `DecodeError` for anything unexpected."""
    if not body.strip():
        raise DecodeError("the body is empty where JSON was expected", method=method, url=url)
    try:
        data = loads(body)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise DecodeError(f"the body is not JSON ({exc})", method=method, url=url) from None
    return structure(data, target, method=method, url=url)


def structure(data: Any, target: Any, *, method: str = "", url: str = "") -> Any:
    """Convert parsed JSON to ``target``; any failure is a `DecodeError` saying where."""
    try:
        return converter.structure(data, target)
    except Exception:
        reason = _explain(data, target)
    raise DecodeError(reason, method=method or None, url=url or None)


def _explain(data: Any, target: Any) -> str:
    try:
        _detailed_converter().structure(data, target)
    except cattrs.BaseValidationError as exc:
        messages = cattrs.transform_error(
            exc, path=_type_name(target), format_exception=_format_exception
        )
        shown = "; ".join(messages[:5])
        more = f" (and {len(messages) - 5} more)" if len(messages) > 5 else ""
        return f"unexpected JSON: {shown}{more}"
    except Exception as exc:
        return f"unexpected JSON for {_type_name(target)}: {type(exc).__name__}: {exc}"
    return f"unexpected JSON for {_type_name(target)}"


def _format_exception(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    return cattrs.v.format_exception(exc, tp)


def _type_name(target: Any) -> str:
    return getattr(target, "__name__", None) or str(target).replace("typing.", "")


def unstructure(value: Any) -> Any:
    """A request model as JSON-ready data, in the API's key style."""
    return converter.unstructure(value)


# -- strict primitives --------------------------------------------------------------------------


def _type_error(value: Any, expected: str) -> TypeError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return TypeError(f"expected {expected}, got {type(value).__name__} {shown}")


def _structure_str(value: Any, _: type) -> str:
    if type(value) is str:
        return value
    raise _type_error(value, "a string")


def _structure_int(value: Any, _: type) -> int:
    if type(value) is int:
        return value
    raise _type_error(value, "an integer")


def _structure_float(value: Any, _: type) -> float:
    if type(value) in (int, float, Decimal):
        return float(value)
    raise _type_error(value, "a number")


def _structure_bool(value: Any, _: type) -> bool:
    if type(value) is bool:
        return value
    raise _type_error(value, "true or false")


def _structure_decimal(value: Any, _: type) -> Decimal:
    kind = type(value)
    if kind is Decimal:
        if not value.is_finite():
            raise _type_error(value, "a finite number")
        return cast(Decimal, value)
    if kind is int:
        return Decimal(value)
    if kind is float:
        try:
            return Decimal(repr(value))
        except InvalidOperation:
            raise _type_error(value, "a finite number") from None
    raise _type_error(value, "a number")


_NET_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)


_NET_EMPTY_DATE = datetime(1, 1, 1)


def parse_net_datetime(text: str) -> datetime | None:
    """Parse the API's ``yyyy-MM-ddTHH:mm:ss`` (fractions and an offset tolerated).

    Without an offset the result is naive, as the API sends it. .NET's empty date
    ``0001-01-01T00:00:00`` (``DateTime.MinValue``) means "not set" and becomes ``None``.
    """
    match = _NET_DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a date like 2016-01-31T12:00:00, got {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = None
    if offset:
        if offset == "Z":
            tz = timezone.utc
        else:
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = timezone(-delta if offset[0] == "-" else delta)
    value = datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )
    if (
        value.year == 1
        and value.month == 1
        and value.day == 1
        and value.time() == datetime.min.time()
    ):
        return None
    return value


def format_net_datetime(value: datetime) -> str:
    """The API's ``yyyy-MM-ddTHH:mm:ss`` (an aware value is sent as Copenhagen wall time)."""
    if value.tzinfo is not None:
        from zoneinfo import ZoneInfo

        value = value.astimezone(ZoneInfo("Europe/Copenhagen")).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _structure_datetime(value: Any, _: type) -> datetime | None:
    if type(value) is not str:
        raise _type_error(value, "a date string")
    return parse_net_datetime(value)


# -- containers ---------------------------------------------------------------------------------


def _is_list(tp: Any) -> bool:
    return get_origin(tp) in (list, typing.List)  # noqa: UP006


def _list_hook_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], list[Any]]:
    (item_type,) = get_args(tp) or (Any,)
    item_hook = conv.get_structure_hook(item_type)

    def structure_list(value: Any, _: Any) -> list[Any]:
        if type(value) is list:
            return [item_hook(item, item_type) for item in value]
        if value is None or (type(value) is dict and not value):
            return []
        raise _type_error(value, "a list")

    return structure_list


def _attrs_structure_factory(cls: type, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    style = _style(cls)
    overrides: dict[str, Any] = {}
    if style.camel_case:
        overrides = {
            a.name: override(rename=camel_case(a.name))
            for a in attrs.fields(cls)
            if camel_case(a.name) != a.name
        }
    inner: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, conv, **overrides)
    php = style.php_arrays

    def structure_model(value: Any, tp: Any) -> Any:
        if type(value) is not dict:
            if php and type(value) is list and not value:
                value = {}
            else:
                raise _type_error(value, f"a JSON object for {cls.__name__}")
        return inner(value, tp)

    return structure_model


def _attrs_unstructure_factory(cls: type, conv: cattrs.Converter) -> Callable[[Any], Any]:
    style = _style(cls)
    overrides: dict[str, Any] = {}
    if style.camel_case:
        overrides = {a.name: override(rename=camel_case(a.name)) for a in attrs.fields(cls)}
    inner: Callable[[Any], Any] = make_dict_unstructure_fn(cls, conv, **overrides)
    if not style.omit_none:
        return inner

    def unstructure_model(value: Any) -> Any:
        return {k: v for k, v in inner(value).items() if v is not None}

    return unstructure_model


# -- the converter -----------------------------------------------------------------------------

_ApiHooks = Callable[[cattrs.Converter], None]


def _api_hooks() -> list[_ApiHooks]:
    from .zigna._hooks import register_zigna_hooks

    hooks: list[_ApiHooks] = [register_zigna_hooks]
    try:
        from .ziik._hooks import register_ziik_hooks
    except ImportError:  # pragma: no cover - only while the Ziik client is being written
        pass
    else:
        hooks.append(register_ziik_hooks)
    return hooks


def make_converter(*, detailed_validation: bool = False) -> cattrs.Converter:
    """Build the converter: strict primitives, list and model hooks, then each API's quirks."""
    conv = cattrs.Converter(detailed_validation=detailed_validation, forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(Decimal, _structure_decimal)
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_unstructure_hook(datetime, format_net_datetime)
    conv.register_unstructure_hook(Decimal, str)
    conv.register_structure_hook_factory(_is_list, _list_hook_factory)
    conv.register_structure_hook_factory(attrs.has, _attrs_structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, _attrs_unstructure_factory)
    for register in _api_hooks():
        register(conv)
    return conv


class _LazyConverter:
    """The module-level converter, built on first use (the model modules import this one)."""

    @cache  # noqa: B019 - one instance for the life of the process
    def get(self) -> cattrs.Converter:
        return make_converter()

    def structure(self, data: Any, target: Any) -> Any:
        return self.get().structure(data, target)

    def unstructure(self, value: Any) -> Any:
        return self.get().unstructure(value)


@cache
def _detailed_converter() -> cattrs.Converter:
    return make_converter(detailed_validation=True)


converter = _LazyConverter()
