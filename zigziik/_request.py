"""Building a request and handing it to the network: timeouts, the headers every request
sends, JSON and multipart bodies, the quick path past httpx's client layer.

`Transport` builds every attempt here and dispatches it with `dispatch`; `send_direct` is also
the aiohttp client's own direct path (``zigziik.transports``).
"""

from __future__ import annotations

import json
import logging
import platform
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

import anyio
import attrs
import httpx

from ._checks import is_int
from ._compat import take_orphaned_connections
from ._http11 import Head, Http11Pool
from ._loops import on_asyncio
from ._net import PoolTransport, default_ssl_context, pool_untouched
from ._stacks import HTTPX, Stack, timeout_types
from ._version import __version__
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_TIMEOUT",
    "JSON",
    "USER_AGENT",
    "FileUpload",
    "LeanSender",
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


# -- the direct GET of zigziik's own client (zigziik._direct) --------------------------------

_PLAIN_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
"""A path httpx sends as it is: nothing to percent-encode, no query, no fragment."""
_ORIGINS_KEPT = 16


class LeanSender:
    """A `zigziik._direct.DirectSender` for zigziik's own client: a download's GET straight
    to the lean HTTP/1.1 pool (`zigziik._http11`), with no ``httpx.Request`` or
    ``httpx.Response`` made for it.

    The request sends the bytes httpx's would: the client's headers updated with the
    request's, and ``Host``, exactly as an ``httpx.Request`` of the same origin has them
    (made once per origin and set of headers). It goes direct only where the lean pool is
    the one httpx's objects would reach (asyncio, the httpcore pool not patched) and the URL
    is one httpx sends unchanged; anything else takes httpx's path. Errors are the stack's,
    each with an ``httpx.Request`` of the GET attached, as the generic path's are.
    """

    def __init__(self, client: httpx.AsyncClient, transport: PoolTransport, stack: Stack) -> None:
        self._client = client
        self._transport = transport
        self._pool: Http11Pool = transport.lean_pool
        self._stack = stack
        self._http = stack.http
        self._origins: dict[str, tuple[Any, ...]] = {}
        self._heads: dict[tuple[Any, ...], list[tuple[bytes, bytes]]] = {}
        self._timeout: tuple[Any, dict[str, Any]] | None = None

    def direct_ready(self, url: str) -> bool:
        client = self._client
        return (
            on_asyncio()
            and pool_untouched(self._stack.core, self._transport.pool)
            and not client.is_closed
            and not client.params
            and not client.cookies
            and self._split(url) is not None
        )

    def _split(self, url: str) -> tuple[str, str] | None:
        """(origin, path) of an absolute ``http(s)`` URL httpx sends as it is, else ``None``."""
        if not url.isascii() or not url.startswith(("https://", "http://")):
            return None
        slash = url.find("/", url.index("://") + 3)
        if slash < 0:
            return None
        origin, path = url[:slash], url[slash:]
        if "@" in origin or _PLAIN_PATH.fullmatch(path) is None or "/." in path:
            return None  # user info, or a path httpx would encode or normalise
        return origin, path

    def _origin(self, origin: str) -> tuple[Any, ...]:
        """(scheme, host, port) of ``origin``, as httpx's URL has them."""
        known = self._origins.get(origin)
        if known is None:
            parsed = self._http.URL(origin)
            known = (parsed.raw_scheme, parsed.raw_host, parsed.port)
            if len(self._origins) >= _ORIGINS_KEPT:
                self._origins.clear()
            self._origins[origin] = known
        return known

    def _head(self, origin: str, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
        """The headers an ``httpx.Request`` to ``origin`` would send (made once per set)."""
        client = self._client
        key = (origin, tuple(client.headers.raw), tuple(headers.items()))
        raw = self._heads.get(key)
        if raw is None:
            merged = self._http.Headers(client.headers)
            merged.update(headers)
            raw = list(self._http.Request("GET", origin + "/", headers=merged).headers.raw)
            if len(self._heads) >= _MERGED_HEADERS_KEPT:
                self._heads.clear()
            self._heads[key] = raw
        return raw

    def _timeouts(self, timeout: Any) -> dict[str, Any]:
        """httpx's ``timeout`` extension for ``timeout`` (``None``: the client's)."""
        spec = self._client.timeout if timeout is None else timeout
        kept = self._timeout
        if kept is None or kept[0] is not spec:
            kept = self._timeout = (spec, spec.as_dict())
        return kept[1]

    def prepare(self, url: str, headers: Mapping[str, str], timeout: Any) -> _LeanGet:
        """What the lean pool is handed for ``GET url`` (a URL `direct_ready` accepts)."""
        split = self._split(url)
        assert split is not None  # direct_ready said so
        origin, path = split
        scheme, host, port = self._origin(origin)
        return _LeanGet(
            _LeanURL(scheme, host, port, path.encode("ascii")),
            _LeanHeaders(self._head(origin, headers)),
            {"timeout": self._timeouts(timeout)},
        )

    async def direct_get(
        self,
        url: str,
        headers: Mapping[str, str],
        timeout: Any,  # noqa: ASYNC109 - an httpx.Timeout, as DirectSender's signature has it
    ) -> LeanReply:
        """``GET url`` straight to the lean pool (see `zigziik._direct.DirectSender`)."""
        request = self.prepare(url, headers, timeout)
        try:
            head, body = await self._pool.exchange(cast("httpx.Request", request))
        except self._http.TransportError as exc:
            exc.request = self._request(url, request)
            raise
        return LeanReply(self, url, request, head, body)

    def _request(self, url: str, lean: _LeanGet) -> httpx.Request:
        """The ``httpx.Request`` of the same GET (for an error, an error status, a fallback)."""
        made: httpx.Request = self._http.Request(
            "GET", url, headers=lean.headers.raw, extensions=lean.extensions
        )
        return made


class _LeanURL:
    """What the lean pool reads of a request's URL."""

    __slots__ = ("port", "raw_host", "raw_path", "raw_scheme")

    def __init__(self, raw_scheme: bytes, raw_host: bytes, port: int | None, raw_path: bytes):
        self.raw_scheme = raw_scheme
        self.raw_host = raw_host
        self.port = port
        self.raw_path = raw_path


class _LeanHeaders:
    """What the lean pool reads of a request's headers."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, name: str, default: str = "") -> str:
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default


class _LeanGet:
    """What the lean pool reads of a request: a GET with no body."""

    __slots__ = ("extensions", "headers", "url")
    method = "GET"
    content = b""

    def __init__(self, url: _LeanURL, headers: _LeanHeaders, extensions: dict[str, Any]) -> None:
        self.url = url
        self.headers = headers
        self.extensions = extensions


class ReplyHeaders(dict[str, str]):
    """A response's headers by lower-case name (repeated ones joined with ", ", as httpx
    joins them); lookups ignore case."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        for key, value in raw:
            name, text = key.decode("latin-1").lower(), value.decode("latin-1")
            had = dict.get(self, name)
            dict.__setitem__(self, name, text if had is None else f"{had}, {text}")

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)


class LeanReply:
    """A `zigziik._direct.DirectReply` from the lean pool."""

    __slots__ = ("_body", "_head", "_lean", "_sender", "_url", "headers", "status_code")

    def __init__(self, sender: LeanSender, url: str, lean: _LeanGet, head: Head, body: Any) -> None:
        self._sender = sender
        self._url = url
        self._lean = lean
        self._head = head
        self._body = body
        self.status_code = head.status
        self.headers = ReplyHeaders(head.headers)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._body:
                yield piece
        except self._sender._http.TransportError as exc:
            exc.request = self._sender._request(self._url, self._lean)
            raise

    def release(self) -> None:
        self._body.close()

    def as_response(self) -> httpx.Response:
        head = self._head
        response: httpx.Response = self._sender._http.Response(
            status_code=head.status,
            headers=head.headers,
            stream=self._body,
            extensions={"http_version": head.version, "reason_phrase": head.reason},
        )
        response.request = self._sender._request(self._url, self._lean)
        return response
