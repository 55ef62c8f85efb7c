"""How a model's fields are spelled in JSON: `json_model`, camelCase names, explicit keys.

A leaf module (it imports nothing of zigziik): the models of both APIs import it, and so does
the converter that reads the marks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import attrs

__all__ = ["KEY_METADATA", "JsonStyle", "camel_case", "json_key", "json_model", "style_of"]

C = TypeVar("C", bound=type)

_STYLE_ATTR = "__zigziik_json__"

KEY_METADATA = "zigziik_key"
"""``attrs.field(metadata={KEY_METADATA: "starthours"})`` names a field's JSON key explicitly."""


@attrs.frozen
class JsonStyle:
    """A model's key style (see `json_model`)."""

    camel_case: bool = False
    php_arrays: bool = False
    omit_none: bool = False


def json_model(
    *, camel_case: bool = False, php_arrays: bool = False, omit_none: bool = False
) -> Callable[[C], C]:
    """Mark an attrs class with its JSON key style.

    ``camel_case=True`` generates the Zigna spelling of every field (``status_id`` ->
    ``statusID``); ``php_arrays=True`` also accepts ``[]`` where an object is expected (PHP
    encodes an empty associative array as a JSON list); ``omit_none`` leaves ``None`` fields
    out when the model is unstructured (request bodies).
    """

    def mark(cls: C) -> C:
        setattr(cls, _STYLE_ATTR, JsonStyle(camel_case, php_arrays, omit_none))
        return cls

    return mark


def style_of(cls: type) -> JsonStyle:
    """The style `json_model` gave ``cls`` (the plain style when it gave none)."""
    return cast(JsonStyle, getattr(cls, _STYLE_ATTR, _PLAIN))


_PLAIN = JsonStyle()


def camel_case(name: str) -> str:
    """``pictures_taken_date`` -> ``picturesTakenDate``; a trailing ``_id`` part -> ``ID``."""
    head, *rest = name.split("_")
    return head + "".join("ID" if part == "id" else part[:1].upper() + part[1:] for part in rest)


def json_key(field: attrs.Attribute[Any], style: JsonStyle) -> str:
    """The JSON key of a model field: explicit metadata, else the style's spelling."""
    explicit = field.metadata.get(KEY_METADATA)
    if explicit is not None:
        return str(explicit)
    return camel_case(field.name) if style.camel_case else field.name
