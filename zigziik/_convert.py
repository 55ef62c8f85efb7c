"""JSON <-> model conversion: the API-neutral converter core.

It knows no API: each API package builds its own `ModelConverter` from this core and its own
hooks (``zigna/_convert.py``, ``ziik/_convert.py``), and its client hands it to the transport.

Rules for both APIs (DESIGN.md):

* Unknown keys are ignored; missing keys take the field's default (``None``, or ``[]`` for
  list fields); ``null`` or ``{}`` in a list field is ``[]``.
* Primitive types are strict: ``"5"`` is not an int and ``5`` is not a str. The documented
  quirks are the only coercions, each a hook registered here or by an API's ``_hooks``.
* Models opt into key styles with `json_model` (in the leaf module ``_jsonstyle``).

`structure` is the fast path (no per-field bookkeeping); only when it fails is the same
input structured again with detailed validation, to say exactly where and what was wrong.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._checks import shorten
from ._jsonstyle import JsonStyle, camel_case, json_key, json_model, style_of
from ._redact import scrub
from .errors import DecodeError

__all__ = [
    "ApiHooks",
    "ModelConverter",
    "camel_case",
    "converter",
    "decode_json",
    "format_net_datetime",
    "json_model",
    "loads",
    "make_converter",
    "model_hook",
    "parse_net_datetime",
    "structure",
    "type_error",
    "unstructure",
]


# -- JSON text ---------------------------------------------------------------------------------


def _load_fast_parser() -> Callable[[bytes | str], Any] | None:
    """msgspec's JSON decoder (the ``fast`` extra), set to give what `json.loads` gives.

    With ``float_hook=Decimal`` it hands the hook each number's own text, exactly as
    ``json.loads(parse_float=Decimal)`` does, so prices keep every digit and the parsed values
    are the same objects, about twice as fast.
    """
    try:
        import msgspec
    except ImportError:
        return None
    decode: Callable[[bytes | str], Any] = msgspec.json.Decoder(float_hook=Decimal).decode
    return decode


_fast_loads = _load_fast_parser()


def use_fast_json(enabled: bool) -> bool:
    """Use msgspec when installed (the default) or always the standard parser; returns the old
    setting. Both give the same values; this exists for the benchmarks and the tests."""
    global _fast_loads
    previous = _fast_loads is not None
    _fast_loads = _load_fast_parser() if enabled else None
    return previous


def loads(body: bytes | str) -> Any:
    """Parse JSON; numbers with a fraction become `Decimal` (prices must not round).

    msgspec parses when it is installed; anything it refuses (``NaN``, a byte-order mark, a
    lone surrogate, malformed text) goes to `json.loads`, which then accepts it or raises
    exactly the error it always raised.
    """
    fast = _fast_loads
    if fast is not None:
        try:
            return fast(body)
        except Exception:
            pass  # the standard parser decides, and explains
    return json.loads(body, parse_float=Decimal)


def parse_json(body: bytes, *, method: str, url: str) -> Any:
    """Parse a response body, raising `DecodeError` when it is empty or not JSON."""
    try:
        return loads(body)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        if not body.strip():
            raise DecodeError(
                "the body is empty where JSON was expected", method=method, url=url
            ) from None
        raise DecodeError(f"the body is not JSON ({exc})", method=method, url=url) from None


def _format_exception(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    return cattrs.v.format_exception(exc, tp)


def _type_name(target: Any) -> str:
    return getattr(target, "__name__", None) or str(target).replace("typing.", "")


# -- strict primitives --------------------------------------------------------------------------


def type_error(value: Any, expected: str) -> TypeError:
    shown = shorten(scrub(repr(value)), 60)  # scrubbed first: a cut secret could not be found
    return TypeError(f"expected {expected}, got {type(value).__name__} {shown}")


def _structure_str(value: Any, _: type) -> str:
    if type(value) is str:
        return value
    raise type_error(value, "a string")


def _structure_int(value: Any, _: type) -> int:
    if type(value) is int:
        return value
    raise type_error(value, "an integer")


def _structure_float(value: Any, _: type) -> float:
    if type(value) in (int, float, Decimal):
        return float(value)
    raise type_error(value, "a number")


def _structure_bool(value: Any, _: type) -> bool:
    if type(value) is bool:
        return value
    raise type_error(value, "true or false")


def _structure_decimal(value: Any, _: type) -> Decimal:
    kind = type(value)
    if kind is Decimal:
        if not value.is_finite():
            raise type_error(value, "a finite number")
        return cast(Decimal, value)
    if kind is int:
        return Decimal(value)
    if kind is float:
        try:
            return Decimal(repr(value))
        except InvalidOperation:
            raise type_error(value, "a finite number") from None
    raise type_error(value, "a number")


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
    if len(text) == 19 and text[10] == "T" and text.isascii():  # the usual shape, at C speed
        if text == _NET_EMPTY_TEXT:
            return None
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # let the full parser explain what is wrong
    return _parse_net_datetime(text)


_NET_EMPTY_TEXT = "0001-01-01T00:00:00"


def _parse_net_datetime(text: str) -> datetime | None:
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
    return None if value.replace(tzinfo=None) == _NET_EMPTY_DATE else value


def format_net_datetime(value: datetime) -> str:
    """The API's ``yyyy-MM-ddTHH:mm:ss`` (an aware value is sent as Copenhagen wall time)."""
    if value.tzinfo is not None:
        from zoneinfo import ZoneInfo

        value = value.astimezone(ZoneInfo("Europe/Copenhagen")).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _structure_datetime(value: Any, _: type) -> datetime | None:
    if type(value) is not str:
        raise type_error(value, "a date string")
    return parse_net_datetime(value)


_PRIMITIVE_HOOKS: dict[Any, Callable[[Any, Any], Any]] = {
    str: _structure_str,
    int: _structure_int,
    float: _structure_float,
    bool: _structure_bool,
    Decimal: _structure_decimal,
    datetime: _structure_datetime,
}


def _is_optional_primitive(tp: Any) -> bool:
    args = get_args(tp)
    return (
        len(args) == 2 and type(None) in args and any(a in _PRIMITIVE_HOOKS for a in args)
    ) and get_origin(tp) in (typing.Union, types.UnionType)


def _optional_primitive_factory(tp: Any) -> Callable[[Any, Any], Any]:
    """``X | None`` in one call (the hot path of every model), not cattrs' nested wrapper."""
    (inner,) = (a for a in get_args(tp) if a is not type(None))
    exact: type = inner
    hook = _PRIMITIVE_HOOKS[inner]
    if inner in (str, int, bool):

        def structure_exact(value: Any, _: Any) -> Any:
            if value is None or type(value) is exact:
                return value
            return hook(value, inner)

        return structure_exact

    def structure_optional(value: Any, _: Any) -> Any:
        return None if value is None else hook(value, inner)

    return structure_optional


# -- containers ---------------------------------------------------------------------------------


def _is_list(tp: Any) -> bool:
    return get_origin(tp) in (list, typing.List)  # noqa: UP006


def _list_hook_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], list[Any]]:
    (item_type,) = get_args(tp) or (Any,)
    item_hook = conv.get_structure_hook(item_type)
    if item_hook is _structure_str:

        def structure_str_list(value: Any, _: Any) -> list[Any]:
            # One loop with the check inline, instead of a hook call per item.
            if type(value) is list:
                for item in value:
                    if item.__class__ is not str:
                        raise type_error(item, "a string")
                return value.copy()
            if value is None or (type(value) is dict and not value):
                return []
            raise type_error(value, "a list")

        return structure_str_list

    def structure_list(value: Any, _: Any) -> list[Any]:
        if type(value) is list:
            return [item_hook(item, item_type) for item in value]
        if value is None or (type(value) is dict and not value):
            return []
        raise type_error(value, "a list")

    return structure_list


def _attrs_structure_factory(cls: type, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    style = style_of(cls)
    attrs.resolve_types(cls)
    if not conv.detailed_validation:
        return _generate_structure_fn(cls, conv, style)
    overrides: dict[str, Any] = {
        a.name: override(rename=json_key(a, style))
        for a in attrs.fields(cls)
        if json_key(a, style) != a.name
    }
    return model_hook(cls, make_dict_structure_fn(cls, conv, **overrides))


def model_hook(cls: type, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``inner`` (a dict-structuring function for ``cls``) behind the model's object check."""
    as_object = _object_check(cls, style_of(cls))

    def structure_model(value: Any, tp: Any) -> Any:
        return inner(as_object(value), tp)

    return structure_model


def _object_check(cls: type, style: JsonStyle) -> Callable[[Any], dict[str, Any]]:
    """The check every model input passes: a JSON object (or PHP's ``[]`` for an empty one)."""

    def as_object(value: Any) -> dict[str, Any]:
        if value.__class__ is dict:
            return cast(dict[str, Any], value)
        if style.php_arrays and value.__class__ is list and not value:
            return {}
        raise type_error(value, f"a JSON object for {cls.__name__}")

    return as_object


def _optional_inner(tp: Any) -> Any:
    """``X`` for ``X | None`` (one non-None member), else ``None``."""
    if get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 and len(get_args(tp)) == 2 else None


def _generate_structure_fn(
    cls: type, conv: cattrs.Converter, style: JsonStyle
) -> Callable[[Any, Any], Any]:
    """The fast path: one generated function per model, primitive checks inlined.

    It accepts exactly what the detailed (cattrs-generated) path accepts: every non-trivial
    field goes through the same registered hook, and ``str``/``int``/``bool`` (optional or
    not) are checked inline exactly as their hooks check them.
    """
    _GENERATING.add(cls)
    try:
        return _generate(cls, conv, style)
    finally:
        _GENERATING.discard(cls)


_GENERATING: set[type] = set()
"""Models whose structure function is being generated right now (to cut recursion)."""


def _hook_for(conv: cattrs.Converter, target: Any) -> Callable[[Any, Any], Any]:
    """The hook for ``target``; looked up on first use when ``target`` refers to a model still
    being generated (``Unit.departments: list[Unit]``), where an eager lookup would recurse
    forever."""
    if not any(t in _GENERATING for t in (target, *get_args(target))):
        return conv.get_structure_hook(target)
    resolved: list[Callable[[Any, Any], Any]] = []

    def lazy(value: Any, tp: Any) -> Any:
        if not resolved:
            resolved.append(conv.get_structure_hook(target))
        return resolved[0](value, tp)

    return lazy


def _generate(cls: type, conv: cattrs.Converter, style: JsonStyle) -> Callable[[Any, Any], Any]:
    namespace: dict[str, Any] = {
        "_cls": cls,
        "_MISSING": _MISSING,
        "_wrong": _wrong_type,
        "_as_object": _object_check(cls, style),
    }
    body = ["    if o.__class__ is not dict:", "        o = _as_object(o)"]
    arguments: list[tuple[attrs.Attribute[Any], str]] = []
    for index, field in enumerate(attrs.fields(cls)):
        key = json_key(field, style)
        var = f"v{index}"
        inner = _optional_inner(field.type)
        default = field.default
        if default is None:
            body.append(f"    {var} = o.get({key!r})")  # missing and null are the same
            present = f"{var} is not None"
        else:
            body.append(f"    {var} = o.get({key!r}, _MISSING)")
            if default is attrs.NOTHING:
                body.append(f"    if {var} is _MISSING: raise _wrong(_MISSING, {key!r}, _cls)")
            elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                namespace[f"d{index}"] = default.factory
                body.append(f"    if {var} is _MISSING: {var} = d{index}()")
            else:
                namespace[f"d{index}"] = default
                body.append(f"    if {var} is _MISSING: {var} = d{index}")
            present = f"{var} is not d{index}" if default is not attrs.NOTHING else "True"
        if inner in (str, int, bool) or field.type in (str, int, bool):
            namespace[f"t{index}"] = inner or field.type
            nullable = f"{var} is not None and " if inner is not None else ""
            body.append(f"    if {nullable}{var}.__class__ is not t{index}:")
            body.append(f"        raise _wrong({var}, {key!r}, _cls)")
        else:
            target = inner if inner is not None else field.type
            hook = _hook_for(conv, target)
            namespace[f"h{index}"] = hook
            namespace[f"t{index}"] = target
            condition = f"{var} is not None" if inner is not None else present
            if hook is _structure_datetime:
                # parse_net_datetime's usual case inline: the call only for anything else.
                namespace["_fromiso"] = datetime.fromisoformat
                namespace["_EMPTY"] = _NET_EMPTY_TEXT
                body.append(f"    if {condition}:")
                body.append(
                    f"        if {var}.__class__ is str and len({var}) == 19 and "
                    f"{var}[10] == 'T' and {var}.isascii():"
                )
                body.append(f"            if {var} == _EMPTY:")
                body.append(f"                {var} = None")
                body.append("            else:")
                body.append("                try:")
                body.append(f"                    {var} = _fromiso({var})")
                body.append("                except ValueError:")
                body.append(f"                    {var} = h{index}({var}, t{index})")
                body.append("        else:")
                body.append(f"            {var} = h{index}({var}, t{index})")
            elif hook is _structure_decimal:
                namespace["_Decimal"] = Decimal
                body.append(f"    if {condition}:")
                body.append(f"        if {var}.__class__ is not _Decimal or not {var}.is_finite():")
                body.append(f"            {var} = h{index}({var}, t{index})")
            else:
                body.append(f"    if {condition}: {var} = h{index}({var}, t{index})")
        arguments.append((field, var))
    if _can_bypass_init(cls):
        # A frozen slotted __init__ sets each field through object.__setattr__; the slot
        # descriptors do the same work in about half the time (no validators to skip here).
        namespace["_new"] = object.__new__
        body.append("    i = _new(_cls)")
        for index, (field, var) in enumerate(arguments):
            namespace[f"s{index}"] = cls.__dict__[field.name].__set__
            body.append(f"    s{index}(i, {var})")
        body.append("    return i")
    else:
        call = ", ".join(f"{field.alias}={var}" for field, var in arguments)
        body.append(f"    return _cls({call})")
    bound = ", ".join(f"{name}={name}" for name in namespace)
    source = f"def structure(o, _, *, {bound}):\n" + "\n".join(body)
    exec(compile(source, f"<zigziik structure {cls.__qualname__}>", "exec"), namespace)
    return cast(Callable[[Any, Any], Any], namespace["structure"])


def _can_bypass_init(cls: type) -> bool:
    """Whether a model can be built slot by slot: plain fields, no hooks of its own."""
    fields = attrs.fields(cls)
    slots = getattr(cls, "__slots__", None)
    return (
        slots is not None
        and not hasattr(cls, "__attrs_post_init__")
        and not hasattr(cls, "__attrs_pre_init__")
        and all(
            f.validator is None
            and f.converter is None
            and f.init
            and type(cls.__dict__.get(f.name)).__name__ == "member_descriptor"
            for f in fields
        )
    )


_MISSING: Any = object()


def _wrong_type(value: Any, key: str, cls: type) -> TypeError:
    if value is _MISSING:
        return TypeError(f"{cls.__name__} needs the key {key!r}")
    return type_error(value, f"another type for {cls.__name__}.{key}")


def _attrs_unstructure_factory(cls: type, conv: cattrs.Converter) -> Callable[[Any], Any]:
    style = style_of(cls)
    attrs.resolve_types(cls)
    overrides: dict[str, Any] = {
        a.name: override(rename=json_key(a, style))
        for a in attrs.fields(cls)
        if json_key(a, style) != a.name
    }
    inner: Callable[[Any], Any] = make_dict_unstructure_fn(cls, conv, **overrides)
    if not style.omit_none:
        return inner

    def unstructure_model(value: Any) -> Any:
        return {k: v for k, v in inner(value).items() if v is not None}

    return unstructure_model


# -- the converter -----------------------------------------------------------------------------

ApiHooks = Callable[[cattrs.Converter], None]
"""Registers an API's quirks on a converter (after the core's hooks)."""


def make_converter(
    *, detailed_validation: bool = False, hooks: tuple[ApiHooks, ...] = ()
) -> cattrs.Converter:
    """A converter: strict primitives, list and model hooks, then ``hooks`` (an API's quirks)."""
    conv = cattrs.Converter(detailed_validation=detailed_validation, forbid_extra_keys=False)
    for primitive, hook in _PRIMITIVE_HOOKS.items():
        conv.register_structure_hook(primitive, hook)
    conv.register_structure_hook_factory(_is_optional_primitive, _optional_primitive_factory)
    conv.register_unstructure_hook(datetime, format_net_datetime)
    conv.register_unstructure_hook(Decimal, str)
    conv.register_structure_hook_factory(_is_list, _list_hook_factory)
    conv.register_structure_hook_factory(attrs.has, _attrs_structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, _attrs_unstructure_factory)
    for register in hooks:
        register(conv)
    return conv


class ModelConverter:
    """One API's conversion: a fast converter, and a detailed one only to explain a failure.

    Both are built on first use from the same hooks, so they accept exactly the same input.
    """

    def __init__(self, *hooks: ApiHooks) -> None:
        self._hooks = hooks
        self._fast: cattrs.Converter | None = None
        self._detailed: cattrs.Converter | None = None

    @property
    def fast(self) -> cattrs.Converter:
        """The converter `structure` tries first (generated functions, no bookkeeping)."""
        if self._fast is None:
            self._fast = make_converter(hooks=self._hooks)
        return self._fast

    @property
    def detailed(self) -> cattrs.Converter:
        """cattrs' detailed validation over the same hooks (names the failing field)."""
        if self._detailed is None:
            self._detailed = make_converter(detailed_validation=True, hooks=self._hooks)
        return self._detailed

    def structure(self, data: Any, target: Any, *, method: str = "", url: str = "") -> Any:
        """Convert parsed JSON to ``target``; any failure is a `DecodeError` saying where."""
        try:
            return self.fast.structure(data, target)
        except Exception:
            reason = self._explain(data, target)
        raise DecodeError(reason, method=method or None, url=url or None)

    def unstructure(self, value: Any) -> Any:
        """A request model as JSON-ready data, in the API's key style."""
        return self.fast.unstructure(value)

    def decode_json(self, body: bytes, target: Any, *, method: str, url: str) -> Any:
        """Parse and convert a response body, raising `DecodeError` for anything unexpected."""
        return self.structure(
            parse_json(body, method=method, url=url), target, method=method, url=url
        )

    def _explain(self, data: Any, target: Any) -> str:
        try:
            self.detailed.structure(data, target)
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


converter = ModelConverter()
"""The core alone (no API's quirks): for models that need none."""

structure = converter.structure
unstructure = converter.unstructure
decode_json = converter.decode_json
