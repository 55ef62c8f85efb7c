"""A leaner network layer for zigziik's own client, for asyncio.

httpcore's connection pool stays in charge (HTTP/1.1 with h11, keep-alive, TLS settings;
respx patches it as usual), made through its public constructor with a network backend of
our own (`PoolTransport`, which plays the part of httpx's ``AsyncHTTPTransport``): only the
byte stream under each connection changes. httpcore's default stream goes through anyio's
socket stream, which stops the socket's reader after every wait and hands out at most 64 KiB
a call, each call in its own timeout scope; with a 2 MB picture that is more than thirty
round trips through the event loop and the stack. `AsyncioBackend` reads with a plain
`asyncio.Protocol` that keeps reading until about 1 MiB is waiting, and hands everything
waiting to the next read in one piece (h11 takes any amount). Per-request CPU time falls by
about a fifth and large bodies stream about twice as fast.

Under any event loop other than asyncio's (trio), every call goes to httpcore's own backend.
"""

from __future__ import annotations

import asyncio
import functools
import os
import select
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore
import httpx

from ._loops import on_asyncio
from ._stacks import HTTPX, Stack

__all__ = ["AsyncioBackend", "AsyncioStream", "PoolTransport", "default_ssl_context"]

_HIGH_WATER = 1 << 20
"""Stop reading from the socket once this much is waiting (per connection)."""

_HAPPY_EYEBALLS_DELAY = 0.25  # as anyio's connect_tcp

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _Protocol(asyncio.Protocol):
    """Collects what arrives; wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size >= _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.read_waiter)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.read_waiter)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        _wake(self.read_waiter)
        _wake(self.write_waiter)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.write_waiter)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _wait(protocol: _Protocol, attr: str, timeout: float | None) -> None:
    """Wait until the protocol wakes ``attr`` (raises `TimeoutError` after ``timeout``)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    setattr(protocol, attr, waiter)
    handle = loop.call_later(timeout, _time_out, waiter) if timeout is not None else None
    try:
        await waiter
    finally:
        setattr(protocol, attr, None)
        if handle is not None:
            handle.cancel()


def _is_socket_readable(sock: socket.socket | None) -> bool:
    """Whether ``recv`` would return at once (data, or the end): an idle connection the
    server has closed. The same check as httpcore's own streams."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or getattr(select, "poll", None) is None:
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection's bytes over an asyncio transport."""

    def __init__(
        self, transport: asyncio.Transport, protocol: _Protocol, core: Any = httpcore
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._core = core  # httpcore or httpcore2: whose errors to raise

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Everything waiting (at least one byte, possibly more than ``max_bytes``: h11 and h2
        take any amount, and one large read is far cheaper than many small ones), or ``b""``
        at the end of the stream."""
        protocol = self._protocol
        if not protocol.chunks:
            if protocol.eof:
                return self._end()
            try:
                await _wait(protocol, "read_waiter", timeout)
            except TimeoutError:
                raise self._core.ReadTimeout("timed out while receiving data") from None
            if not protocol.chunks:
                return self._end()
        chunks = protocol.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        protocol.chunks = []
        protocol.size = 0
        if protocol.reading_paused:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    def _end(self) -> bytes:
        error = self._protocol.error
        if error is not None:
            raise self._core.ReadError(str(error) or type(error).__name__) from error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise self._core.WriteError(_closed_detail(protocol.error))
        self._transport.write(buffer)
        if protocol.writing_paused:
            try:
                await _wait(protocol, "write_waiter", timeout)
            except TimeoutError:
                raise self._core.WriteTimeout("timed out while sending data") from None
            if protocol.lost:
                raise self._core.WriteError(_closed_detail(protocol.error))

    async def aclose(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        transport.close()
        if not self._protocol.lost:
            # Let the loop run the close callback, so the socket is gone when we return.
            try:
                await asyncio.sleep(0)
            finally:
                transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            self._transport.abort()
            raise self._core.ConnectTimeout("timed out during the TLS handshake") from None
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            self._transport.abort()
            raise self._core.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # pragma: no cover - the connection closed during the handshake
            raise self._core.ConnectError("the connection closed during the TLS handshake")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol, self._core)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            protocol = self._protocol
            if protocol.eof or protocol.chunks:
                return True
            return _is_socket_readable(transport.get_extra_info("socket"))
        return None


def _closed_detail(error: BaseException | None) -> str:
    return str(error) if error else "the connection is closed"


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """`AsyncioStream` connections under asyncio; httpcore's own backend anywhere else.

    ``core`` is the httpcore whose pool it serves (httpcore, or httpcore2 for httpx2): its
    errors are the ones raised, its backends the ones fallen back on.
    """

    def __init__(self, core: Any = httpcore) -> None:
        self._core = core
        self._fallback: httpcore.AsyncNetworkBackend = core.AnyIOBackend()
        self._trio: httpcore.AsyncNetworkBackend | None = None

    def _other(self) -> httpcore.AsyncNetworkBackend:
        """httpcore's own backends: anyio's under asyncio (Unix sockets), trio's otherwise."""
        if on_asyncio():
            return self._fallback
        if self._trio is None:
            self._trio = self._core.TrioBackend()
        return self._trio

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not on_asyncio():
            return await self._other().connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        try:
            transport, protocol = await asyncio.wait_for(
                _connect(host, port, local_address), timeout
            )
        except asyncio.TimeoutError:
            raise self._core.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise self._core.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol, self._core)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._other().connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        if not on_asyncio():
            await self._other().sleep(seconds)
        else:
            await asyncio.sleep(seconds)


async def _connect(
    host: str, port: int, local_address: str | None
) -> tuple[asyncio.Transport, _Protocol]:
    """Resolve, then connect. Happy eyeballs (racing IPv6 and IPv4) only when the name has
    addresses of both families: asyncio's race can leak a socket when it is cancelled."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    local = (local_address, 0) if local_address else None
    both = len({info[0] for info in infos}) > 1
    return await loop.create_connection(
        _Protocol,
        host,
        port,
        local_addr=local,
        happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY if both else None,
    )


class PoolTransport(httpx.AsyncBaseTransport):
    """A stack's transport role over its httpcore pool built with `AsyncioBackend`.

    The pool is the stack's own httpcore pool (httpcore for httpx, httpcore2 for httpx2; what
    respx patches), made through its public constructor; this class does what the stack's
    ``AsyncHTTPTransport`` does for an HTTP/1.1 pool without proxies: it hands requests to
    the pool and maps the pool's errors to the stack's errors of the same name.
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
            network_backend=AsyncioBackend(core),
        )

    @property
    def pool(self) -> Any:
        return self._pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
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
