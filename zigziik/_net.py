"""A leaner network layer under httpx's own transport, for asyncio.

httpx's default ``AsyncHTTPTransport`` stays in charge (connection pool, HTTP/1.1 with h11,
proxies, TLS settings; respx patches it as usual): only the byte stream under each connection
changes. httpcore's default stream goes through anyio's socket stream, which stops the
socket's reader after every wait and hands out at most 64 KiB a call, each call in its own
timeout scope; with a 2 MB picture that is more than thirty round trips through the event loop
and the stack. `AsyncioBackend` reads with a plain `asyncio.Protocol` that keeps reading until
about 1 MiB is waiting, and hands everything waiting to the next read in one piece (h11 takes
any amount). Per-request CPU time falls by about a fifth and large bodies stream about twice
as fast.

Under any event loop other than asyncio's (trio), every call goes to httpcore's own backend.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import ssl
import sys
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["AsyncioBackend", "default_ssl_context", "install"]

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

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

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
                raise httpcore.ReadTimeout("timed out while receiving data") from None
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
            raise httpcore.ReadError(str(error) or type(error).__name__) from error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise httpcore.WriteError(_closed_detail(protocol.error))
        self._transport.write(buffer)
        if protocol.writing_paused:
            try:
                await _wait(protocol, "write_waiter", timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out while sending data") from None
            if protocol.lost:
                raise httpcore.WriteError(_closed_detail(protocol.error))

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
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from None
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # pragma: no cover - the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

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


def _on_asyncio() -> bool:
    """Whether this runs in an asyncio task (under trio there is no running asyncio loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """`AsyncioStream` connections under asyncio; httpcore's own backend anywhere else."""

    def __init__(self) -> None:
        self._fallback = httpcore.AnyIOBackend()
        self._trio: httpcore.AsyncNetworkBackend | None = None

    def _other(self) -> httpcore.AsyncNetworkBackend:
        """httpcore's own backends: anyio's under asyncio (Unix sockets), trio's otherwise."""
        if _on_asyncio():
            return self._fallback
        if self._trio is None:
            self._trio = httpcore.TrioBackend()
        return self._trio

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not _on_asyncio():
            return await self._other().connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        try:
            transport, protocol = await asyncio.wait_for(
                _connect(host, port, local_address), timeout
            )
        except asyncio.TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._other().connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        if not _on_asyncio():
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


def install(transport: httpx.AsyncHTTPTransport) -> bool:
    """Put an `AsyncioBackend` under ``transport``'s connection pool; False if it has none.

    The pool is httpx's and httpcore's own (and what respx patches); only its network backend
    changes. Should a future httpx build its pool differently, nothing is changed.
    """
    pool = getattr(transport, "_pool", None)
    if type(pool) is not httpcore.AsyncConnectionPool or not hasattr(pool, "_network_backend"):
        return False
    pool._network_backend = AsyncioBackend()
    return True


_MISSING = object()


def _never_used(connection: Any) -> bool:
    """Whether a pool connection has not started a request: still connecting, or connected
    and ``NEW`` (an HTTP/2 connection or anything unknown counts as used: left alone)."""
    inner = getattr(connection, "_connection", _MISSING)
    if inner is _MISSING:
        return False
    if inner is None:
        return True  # connecting (a failed connect reports itself closed)
    state = getattr(inner, "_state", None)
    return type(inner) is httpcore.AsyncHTTP11Connection and getattr(state, "name", "") == "NEW"


def take_orphaned_connections(transport: httpx.AsyncBaseTransport) -> list[Any]:
    """Take out of the pool the connections a cancelled request left behind; the caller
    closes them.

    httpcore 1.0 leaves a connection in its pool when the request it was made for is
    cancelled after the connection was assigned but before the request started
    (encode/httpcore#1093): still connecting, or connected and ``NEW``. It is never idle,
    closed or expired, so the pool neither reuses nor closes it; it holds a pool slot, and
    once connected a socket, until the client closes. Such a connection is owned by none of
    the pool's pending requests and has served none. Anything that does not look like
    httpcore 1.0's pool is left alone.
    """
    pool = getattr(transport, "_pool", None)
    connections = getattr(pool, "_connections", None)
    requests = getattr(pool, "_requests", None)
    lock = getattr(pool, "_optional_thread_lock", None)
    if not isinstance(connections, list) or not isinstance(requests, list) or lock is None:
        return []
    with lock:
        owned = {id(getattr(request, "connection", None)) for request in requests}
        orphans = [
            c
            for c in connections
            if id(c) not in owned and not c.is_idle() and not c.is_closed() and _never_used(c)
        ]
        for connection in orphans:
            connections.remove(connection)
    return orphans


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
