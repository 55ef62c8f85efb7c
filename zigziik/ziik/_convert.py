"""Ziik's converter (the core's rules plus Ziik's quirks, ``_hooks``), and the parsing of what
Ziik wraps around its models: list and object envelopes, login tokens, ``Location`` headers.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import attrs

from .._convert import ModelConverter
from ..errors import DecodeError
from ._hooks import register_ziik_hooks

__all__ = [
    "TOKEN_CHARS",
    "Token",
    "converter",
    "decode_json",
    "parse_location",
    "parse_token",
    "structure",
    "unstructure",
    "unwrap_list",
    "unwrap_object",
]

converter = ModelConverter(register_ziik_hooks)

structure = converter.structure
unstructure = converter.unstructure
decode_json = converter.decode_json

_ID_SEGMENT = re.compile(r"[0-9]{1,18}", re.ASCII)
TOKEN_CHARS = re.compile(r"[\x21-\x7e]+", re.ASCII)
"""What a bearer token may consist of: printable ASCII without spaces."""


@attrs.frozen
class Token:
    """A JWT and its expiry (unix seconds; ``inf`` when the server gave none)."""

    jwt: str = attrs.field(repr=False)
    expires: float


def parse_token(data: Any, *, method: str, url: str) -> Token:
    """``[{"jwt", "expires"}]`` (also a bare object or a ``{"data": ...}`` envelope) -> `Token`.

    Error messages never contain the token.
    """
    if type(data) is dict and "data" in data and "jwt" not in data:
        data = data["data"]
    if type(data) is list and len(data) == 1:
        data = data[0]
    if type(data) is not dict:
        raise DecodeError(
            'expected [{"jwt": ..., "expires": ...}] from the login', method=method, url=url
        )
    jwt = data.get("jwt")
    if type(jwt) is not str or not TOKEN_CHARS.fullmatch(jwt):
        raise DecodeError(
            "the login response has no usable jwt (missing, not a string, or not printable)",
            method=method,
            url=url,
        )
    expires = data.get("expires")
    if expires is None:
        return Token(jwt, math.inf)
    if type(expires) is str and expires.isascii() and expires.isdigit():
        expires = int(expires)
    if isinstance(expires, bool) or (not isinstance(expires, (int, float, Decimal))):
        raise DecodeError(
            f"the login response's expires is not a unix time (got {type(expires).__name__})",
            method=method,
            url=url,
        )
    try:
        value = float(expires)
    except OverflowError:  # an int beyond a float's range: as unusable as infinity
        value = math.inf
    if not math.isfinite(value):
        raise DecodeError("the login response's expires is not finite", method=method, url=url)
    return Token(jwt, value)


def parse_location(location: str | None, *, method: str, url: str) -> int:
    """The new unit's id from a ``Location`` header (absolute or relative URL)."""
    if location is None or not location.strip():
        raise DecodeError(
            "the response has no Location header with the new id", method=method, url=url
        )
    try:
        path = urlsplit(location.strip()).path
    except ValueError:
        path = ""
    segments = [segment for segment in path.split("/") if segment]
    if not segments or not _ID_SEGMENT.fullmatch(segments[-1]):
        raise DecodeError(
            f"the Location header does not end with a unit id: {location[:200]!r}",
            method=method,
            url=url,
        )
    return int(segments[-1])


def unwrap_list(data: Any, *, method: str, url: str) -> tuple[Any, str | None]:
    """A bare list (one page) or ``{"data": [...], "links": {"next": ...}}`` -> items, next."""
    if type(data) is list:
        return data, None
    if type(data) is dict and "data" in data:
        links = data.get("links")
        next_link: Any = links.get("next") if type(links) is dict else None
        if next_link is not None and type(next_link) is not str:
            raise DecodeError(
                f"links.next must be a URL string or null, got {type(next_link).__name__}",
                method=method,
                url=url,
            )
        return data["data"], next_link or None
    raise DecodeError(
        'expected a JSON list or a {"data": [...], "links": ...} envelope, '
        f"got {type(data).__name__}",
        method=method,
        url=url,
    )


def unwrap_object(data: Any) -> Any:
    """A bare object, or the ``data`` of a ``{"data": {...}}`` envelope."""
    if type(data) is dict and "data" in data and "id" not in data:
        return data["data"]
    return data
