"""Building a request and handing it to the network: timeouts, the headers every request
sends, JSON and multipart bodies, the quick path past httpx's client layer.

`Transport` builds every attempt here and dispatches it with `dispatch`; `send_direct` is also
the aiohttp client's own direct path (``zigziik.transports``).
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import attrs
import httpx

from ._checks import is_int
from ._compat import take_orphaned_connections
from ._net import PoolTransport, default_ssl_context
from ._stacks import HTTPX, Stack, timeout_types
from ._version import __version__
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_TIMEOUT",
    "JSON",
    "USER_AGENT",
    "FileUpload",
    "RequestBuilder",
    "TimeoutArg",
    "default_client",
    "dispatch",
    "encode_json",
    "make_timeout",
    "send_direct",
    "user_agent",
]

logger = logging.getLogger("zigziik")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
"""zigziik's default: 30 s overall, 10 s to connect."""


def user_agent(stack: Stack = HTTPX) -> str:
    """``zigziik/<version> <stack>/<version> <Python implementation>/<version>``."""
    return (
        f"zigziik/{__version__} {stack.name}/{stack.http.__version__} "
        f"{platform.python_implementation()}/{platform.python_version()}"
    )


USER_AGENT = user_agent()
JSON = "application/json"
_MERGED_HEADERS_KEPT = 16

TimeoutArg = float | httpx.Timeout | None
"""Seconds, or an ``httpx.Timeout`` (or an ``httpx2.Timeout``)."""


def make_timeout(timeout: TimeoutArg) -> httpx.Timeout:
    """Seconds or a ``Timeout`` of either stack; ``None`` is the default (30 s, 10 s to
    connect). A ``Timeout`` is returned as given (the transport converts it to its stack's)."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, timeout_types()):
        return timeout  # type: ignore[return-value]  # httpx's, or httpx2's of the same API
    if not (is_int(timeout) or isinstance(timeout, float)) or timeout <= 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return httpx.Timeout(float(timeout), connect=min(float(timeout), 10.0))


@attrs.frozen
class FileUpload:
    """A file to send as one multipart part; opened afresh for every attempt."""

    path: Path
    field: str = "file"
    filename: str | None = None
    content_type: str = "application/octet-stream"

    def open(self) -> tuple[BinaryIO, dict[str, Any]]:
        """The open file (the caller closes it) and httpx's ``files`` argument for it."""
        handle = self.path.open("rb")
        return handle, {self.field: (self.filename or self.path.name, handle, self.content_type)}


def encode_json(body: Any) -> bytes:
    """A request body as compact UTF-8 JSON."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def default_client(
    timeout: httpx.Timeout | None, stack: Stack = HTTPX
) -> tuple[httpx.AsyncClient, httpx.AsyncBaseTransport]:
    """The client a transport makes for itself, and its transport, with one TLS context per
    process: `zigziik._net.PoolTransport` (the lean HTTP/1.1 pool under asyncio, the
    stack's httpcore pool under trio or when respx patches it), for httpx and httpx2."""
    context = default_ssl_context()
    http = stack.http
    limits = http.Limits(max_connections=100, max_keepalive_connections=20)
    transport = PoolTransport(ssl_context=context, limits=limits, stack=stack)
    client = http.AsyncClient(
        timeout=timeout,
        verify=context,
        transport=transport,
        follow_redirects=False,
        headers={"Accept": JSON, "User-Agent": user_agent(stack)},
    )
    return client, transport


class RequestBuilder:
    """What ``client.build_request`` builds, made quicker in the usual case.

    With no query, upload or cookies, an absolute URL and httpx's own `build_request`, all
    that method adds is the client's headers and timeout: the merged headers are kept for the
    next request with the same ones (httpx merges them anew every time, about a third of its
    cost).
    """

    def __init__(
        self, client: httpx.AsyncClient, timeout: httpx.Timeout | None, stack: Stack = HTTPX
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._http = stack.http
        self._build_request = stack.client.build_request
        self._merged_headers: dict[tuple[Any, ...], httpx.Headers] = {}

    def build(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        content: bytes | None,
        files: Any,
        headers: dict[str, str],
    ) -> httpx.Request:
        client = self._client
        timeout = self._timeout if self._timeout is not None else client.timeout
        if (
            params
            or files is not None
            or client.params
            or client.cookies
            or type(client).build_request is not self._build_request
            or not url.startswith(("https://", "http://"))
        ):
            return client.build_request(
                method,
                url,
                params=params,
                content=content,
                files=files,
                headers=headers,
                timeout=timeout,
            )
        key = (tuple(client.headers.raw), tuple(headers.items()))
        merged = self._merged_headers.get(key)
        if merged is None:
            merged = self._http.Headers(client.headers)
            merged.update(headers)
            if len(self._merged_headers) >= _MERGED_HEADERS_KEPT:
                self._merged_headers.clear()
            self._merged_headers[key] = merged
        request: httpx.Request = self._http.Request(
            method, url, content=content, headers=merged, extensions={"timeout": timeout.as_dict()}
        )
        return request


async def send_direct(
    transport: httpx.AsyncBaseTransport, request: httpx.Request
) -> httpx.Response:
    """``request`` straight to ``transport``, past the client's auth flow, redirect loop,
    event hooks and cookie extraction (for a client configured with none of them)."""
    response = await transport.handle_async_request(request)
    response.request = request
    return response


async def dispatch(
    client: httpx.AsyncClient, direct: httpx.AsyncBaseTransport | None, request: httpx.Request
) -> httpx.Response:
    """Send ``request`` (its body still to be read): through ``client.send``, or, on a client
    of zigziik's own, straight to its ``direct`` transport."""
    if direct is None:
        return await client.send(request, stream=True)
    if not isinstance(direct, PoolTransport):  # httpcore2 needs no cleanup (see below)
        return await send_direct(direct, request)
    try:
        return await send_direct(direct, request)
    except BaseException:
        # A request cancelled between its connection's assignment and its start leaves that
        # connection in httpcore 1.0's pool for good.
        await _close_connections(take_orphaned_connections(direct.pool))
        raise


async def _close_connections(connections: list[Any]) -> None:
    """Close httpcore connections taken out of a pool, even while being cancelled."""
    if not connections:
        return
    with anyio.CancelScope(shield=True):
        for connection in connections:
            try:
                await connection.aclose()
            except Exception:
                logger.debug("closing an orphaned connection failed", exc_info=True)
