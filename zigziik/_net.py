"""The transport of zigziik's own client: the lean HTTP/1.1 pool under asyncio, httpcore's
pool anywhere else.

`PoolTransport` plays the part of the stack's ``AsyncHTTPTransport`` (httpx's or httpx2's)
for an HTTP/1.1 pool without proxies. Under asyncio it sends through `zigziik._http11`, a
connection pool of zigziik's own on asyncio's transports (half the CPU time of httpcore's
pool and h11 per small call, and large bodies handed on in one piece per read). Under trio,
or when something has patched the stack's httpcore pool (respx, pytest-httpx2), it sends
through that pool, made with its public constructor: respx mocks zigziik's own client as
it mocks any httpx client.
"""

from __future__ import annotations

import functools
import os
import ssl
import types
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ._http11 import Http11Pool
from ._loops import on_asyncio
from ._stacks import HTTPX, Stack

__all__ = ["PoolTransport", "default_ssl_context"]


def pool_untouched(core: Any, pool: object) -> bool:
    """Whether ``pool``'s ``handle_async_request`` is httpcore's own: neither its class's
    nor its own replaced by a double (respx patches the class)."""
    method = core.AsyncConnectionPool.handle_async_request
    return (
        isinstance(method, types.FunctionType)
        and method.__module__.startswith(core.__name__ + ".")
        and "handle_async_request" not in vars(pool)
    )


class PoolTransport(httpx.AsyncBaseTransport):
    """A stack's transport role: the lean pool under asyncio, else the stack's httpcore pool.

    The httpcore pool (httpcore for httpx, httpcore2 for httpx2; what respx patches) is made
    through its public constructor; for it this class does what the stack's
    ``AsyncHTTPTransport`` does for an HTTP/1.1 pool without proxies: it hands requests to
    the pool and maps the pool's errors to the stack's errors of the same name. The lean
    pool raises the stack's errors itself.
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits, stack: Stack = HTTPX
    ) -> None:
        core = stack.core
        self._http = stack.http
        self._stream = _stream_class(stack.async_stream)
        self._core = core
        self._errors: tuple[type[Exception], ...] = (
            core.TimeoutException,
            core.NetworkError,
            core.ProtocolError,
            core.ProxyError,
            core.UnsupportedProtocol,
        )
        self._pool = core.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
        )
        self._lean = Http11Pool(ssl_context=ssl_context, limits=limits, http=stack.http)

    @property
    def pool(self) -> Any:
        """httpcore's pool (trio, or a patched pool)."""
        return self._pool

    @property
    def lean_pool(self) -> Http11Pool:
        """The lean pool (asyncio)."""
        return self._lean

    @property
    def connections(self) -> list[Any]:
        """Every open connection of both pools, each with ``is_idle()`` and ``is_closed()``."""
        return [*self._lean.connections, *self._pool.connections]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if on_asyncio() and pool_untouched(self._core, self._pool):
            return await self._lean.handle_async_request(request)
        return await self._through_pool(request)

    async def _through_pool(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = self._core
        core_request = core.Request(
            method=request.method,
            url=core.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except Exception as exc:
            raise self._mapped(exc, request) from exc
        result: httpx.Response = self._http.Response(
            status_code=response.status,
            headers=response.headers,
            stream=self._stream(response.stream, request, self),
            extensions=response.extensions,
        )
        return result

    async def aclose(self) -> None:
        try:
            await self._lean.aclose()
        finally:
            await self._pool.aclose()

    def _mapped(self, exc: Exception, request: httpx.Request) -> Exception:
        """The stack's error of the same name as the pool's (httpx mirrors httpcore's
        hierarchy name for name); any other exception as it is."""
        if not isinstance(exc, self._errors):
            return exc
        for kind in type(exc).__mro__:
            mapped = getattr(self._http, kind.__name__, None)
            if isinstance(mapped, type) and issubclass(mapped, self._http.TransportError):
                error: Exception = mapped(str(exc), request=request)
                return error
        return exc  # pragma: no cover - every error of the pool has a namesake


class _MappedStream:
    """The pool's response body with its errors mapped to the stack's (mixed into the stack's
    own ``AsyncByteStream``, which its ``Response`` checks for)."""

    def __init__(self, stream: Any, request: httpx.Request, transport: PoolTransport) -> None:
        self._stream = stream
        self._request = request
        self._transport = transport

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            raise self._transport._mapped(exc, self._request) from exc

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except Exception as exc:
            raise self._transport._mapped(exc, self._request) from exc


@functools.cache
def _stream_class(byte_stream: type) -> type[_MappedStream]:
    """`_MappedStream` as a subclass of one stack's ``AsyncByteStream``."""
    return type("ResponseStream", (_MappedStream, byte_stream), {})


_ssl_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once per process (not once per client).

    Loading the CA bundle costs tens of milliseconds; the context is keyed by
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``, which httpx reads, so changing them still counts.
    """
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _ssl_contexts.get(key)
    if context is None:
        context = _ssl_contexts[key] = httpx.create_ssl_context()
    return context
