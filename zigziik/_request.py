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
]

logger = logging.getLogger("zigziik")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
"""zigziik's default: 30 s overall, 10 s to connect."""
USER_AGENT = (
    f"zigziik/{__version__} httpx/{httpx.__version__} "
    f"{platform.python_implementation()}/{platform.python_version()}"
)
JSON = "application/json"
_MERGED_HEADERS_KEPT = 16

TimeoutArg = float | httpx.Timeout | None


def make_timeout(timeout: TimeoutArg) -> httpx.Timeout:
    """Seconds or an `httpx.Timeout`; ``None`` is the default (30 s, 10 s to connect)."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
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


def default_client(timeout: httpx.Timeout | None) -> tuple[httpx.AsyncClient, PoolTransport]:
    """The client a transport makes for itself, and its transport: httpcore's own pool, with
    one TLS context per process and, under asyncio, the leaner byte stream of `zigziik._net`."""
    context = default_ssl_context()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = PoolTransport(ssl_context=context, limits=limits)
    client = httpx.AsyncClient(
        timeout=timeout,
        verify=context,
        transport=transport,
        follow_redirects=False,
        headers={"Accept": JSON, "User-Agent": USER_AGENT},
    )
    return client, transport


class RequestBuilder:
    """What ``client.build_request`` builds, made quicker in the usual case.

    With no query, upload or cookies, an absolute URL and httpx's own `build_request`, all
    that method adds is the client's headers and timeout: the merged headers are kept for the
    next request with the same ones (httpx merges them anew every time, about a third of its
    cost).
    """

    def __init__(self, client: httpx.AsyncClient, timeout: httpx.Timeout | None) -> None:
        self._client = client
        self._timeout = timeout
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
            or type(client).build_request is not httpx.AsyncClient.build_request
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
            merged = httpx.Headers(client.headers)
            merged.update(headers)
            if len(self._merged_headers) >= _MERGED_HEADERS_KEPT:
                self._merged_headers.clear()
            self._merged_headers[key] = merged
        return httpx.Request(
            method, url, content=content, headers=merged, extensions={"timeout": timeout.as_dict()}
        )


async def send_direct(
    transport: httpx.AsyncBaseTransport, request: httpx.Request
) -> httpx.Response:
    """``request`` straight to ``transport``, past the client's auth flow, redirect loop,
    event hooks and cookie extraction (for a client configured with none of them)."""
    response = await transport.handle_async_request(request)
    response.request = request
    return response


async def dispatch(
    client: httpx.AsyncClient, direct: PoolTransport | None, request: httpx.Request
) -> httpx.Response:
    """Send ``request`` (its body still to be read): through ``client.send``, or, on a client
    of zigziik's own, straight to its ``direct`` transport."""
    if direct is None:
        return await client.send(request, stream=True)
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
