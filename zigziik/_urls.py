"""Base-URL checks, path building and pagination-link resolution. Pure functions."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from ._checks import is_int
from .errors import ConfigurationError

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1`` (brackets allowed)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_base_url(url: object, *, what: str = "base_url") -> str:
    """Return ``url`` without a trailing slash, or raise `ConfigurationError`.

    It must be ``https://``; ``http://`` is accepted only for a loopback host. User info,
    a query or a fragment are refused (credentials in a URL end up in logs).
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{what} must be a non-empty URL string, got {url!r}")
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{what} is not a valid URL: {text!r} ({exc})") from None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"{what} must be an https:// URL with a host, got {text!r}")
    if scheme == "http" and not is_loopback_host(host):
        raise ConfigurationError(
            f"{what} must use https:// (plain http is allowed only for loopback hosts), "
            f"got {text!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{what} must not contain user info; pass credentials apart")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{what} must not have a query or fragment, got {text!r}")
    netloc = parts.netloc.lower() if port is None else parts.netloc
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def path_segment(value: object, *, what: str) -> str:
    """One URL path segment from a user-given id: non-empty, percent-encoded, never ``..``."""
    if not (is_int(value) or isinstance(value, str)):
        raise TypeError(f"{what} must be an int or str, got {type(value).__name__}")
    text = str(value).strip()
    if not text or text in (".", ".."):
        raise ValueError(f"{what} must be a non-empty id, got {value!r}")
    return quote(text, safe="")


def with_params(url: str, params: Mapping[str, Any] | None) -> str:
    """``url`` with ``params`` merged into its query (``httpx.URL(url, params=None)`` drops it)."""
    if not params:
        return url
    return str(httpx.URL(url).copy_merge_params(params))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    return origin(a) == origin(b)


def resolve_link(base_url: str, link: str) -> str:
    """Resolve a pagination link the API returned against the client's base URL.

    * An absolute URL is returned as it is (the caller checks its origin).
    * A path from the host root (``/v2/orders?skip=50``) is joined to the base's origin. When
      the base URL has a path prefix that the link does not repeat (a proxy mounting the API
      at ``https://host/zigna/v2`` while the API still says ``/v2/...``), the overlap between
      the end of the base path and the start of the link is joined once, not twice.
    * Anything else is relative to the base URL as a folder.

    A link with a control character inside is refused (`ValueError`): urllib would quietly
    drop a tab or a line break and fetch another URL than the one the server gave.
    """
    link = link.strip()
    if any(char < " " or char == "\x7f" for char in link):
        raise ValueError(f"a control character in the link {link[:200]!r}")
    parts = urlsplit(link)
    if parts.scheme:
        return link
    base = urlsplit(base_url)
    if link.startswith("//"):
        return urlunsplit((base.scheme, *urlsplit(base.scheme + ":" + link)[1:]))
    base_path = base.path.rstrip("/")
    if link.startswith("/"):
        path = parts.path
        if not base_path or path == base_path or path.startswith(base_path + "/"):
            joined = path
        else:
            joined = _join_overlapping(base_path, path)
    else:
        joined = f"{base_path}/{parts.path}" if parts.path else base_path or "/"
    return urlunsplit((base.scheme, base.netloc, joined, parts.query, ""))


def _join_overlapping(base_path: str, path: str) -> str:
    base_segments = base_path.strip("/").split("/")
    link_segments = path.lstrip("/").split("/")
    for size in range(min(len(base_segments), len(link_segments)), 0, -1):
        if base_segments[-size:] == link_segments[:size]:
            return "/" + "/".join(base_segments[:-size] + link_segments)
    return path
