"""A lean HTTP/1.1 connection pool for zigziik's own client under asyncio.

httpcore's pool and h11 were about half of the CPU time of a small call in a plain install:
locks and cancel scopes per request, an event object and a state machine step per part of
the message, a regular expression per header. This pool does what the requests zigziik
sends need and no more, on asyncio's own transports:

* one request at a time per connection, kept alive and reused (most recently used first);
  at most ``max_connections`` open, at most ``max_keepalive_connections`` idle, each idle
  for at most ``keepalive_expiry`` seconds; a connection the server closed (or that holds
  bytes nobody asked for) is never reused;
* the request's head (and a body given as bytes) goes out in one write; names must be
  tokens and values free of control characters, as h11 requires;
* the response's framing as RFC 9112 says: no body for HEAD, 1xx, 204 and 304;
  ``Transfer-Encoding: chunked``; ``Content-Length`` (conflicting values refused); else up
  to the end of the connection. A body cut short is a ``RemoteProtocolError``; bytes are
  handed on as they arrive (reading stops at about 1 MiB waiting: backpressure);
* httpx's timeouts (connect, read, write, pool) and its errors, those of the stack whose
  client this is (httpx or httpx2), with the request attached;
* a cancelled or failed request, or a body closed before its end, closes its connection
  at once, without an ``await``: nothing is left half-used in the pool.

Everything else (trio, a pool that respx or another double has patched) goes through
httpcore's pool as before; `zigziik._net.PoolTransport` chooses.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import select
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["Http11Pool"]

logger = logging.getLogger("zigziik.http11")

_HIGH_WATER = 1 << 20
"""Stop reading from the socket once this much is waiting (per connection)."""
_MAX_HEAD = 64 * 1024
"""The longest response head (status line and headers) accepted."""
_ONE_WRITE = 64 * 1024
"""A body shorter than this goes out in one write with the head."""
_HAPPY_EYEBALLS_DELAY = 0.25  # as anyio's connect_tcp

_TOKENS = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+)*")
"""Header names (or a method), one per line."""
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""What no header value may hold (h11's field-value: visible bytes, spaces and tabs)."""
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")


# --------------------------------------------------------------------------------------------
# The socket: an asyncio protocol that collects what arrives


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


def _socket_readable(sock: socket.socket | None) -> bool:
    """Whether ``recv`` would return at once (data, or the end): an idle connection the
    server has closed, before the event loop has seen it."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or getattr(select, "poll", None) is None:
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


async def _open(
    host: str, port: int, ssl_context: ssl.SSLContext | None, server_hostname: str | None
) -> tuple[asyncio.Transport, _Protocol]:
    """Resolve, connect and (with a context) shake hands. Happy eyeballs (racing IPv6 and
    IPv4) only when the name has addresses of both families: asyncio's race can leak a
    socket when it is cancelled."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    both = len({info[0] for info in infos}) > 1
    transport, protocol = await loop.create_connection(
        _Protocol, host, port, happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY if both else None
    )
    if ssl_context is None:
        return transport, protocol
    try:
        tls = await loop.start_tls(
            transport, protocol, ssl_context, server_hostname=server_hostname
        )
    except BaseException:
        transport.abort()
        raise
    if tls is None:  # pragma: no cover - the connection closed during the handshake
        raise ConnectionError("the connection closed during the TLS handshake")
    protocol.transport = tls
    return tls, protocol


# --------------------------------------------------------------------------------------------
# The messages: pure functions of bytes


def request_head(request: httpx.Request) -> bytes:
    """``METHOD target HTTP/1.1``, the request's headers, the blank line; `ValueError` for
    a method or header name that is no token, or a value with a control character."""
    url = request.url
    raw = request.headers.raw
    names = b"\n".join([request.method.encode("ascii", "replace"), *(k for k, _ in raw)])
    if _TOKENS.fullmatch(names) is None:
        raise ValueError(f"an illegal method or header name in {names!r}")
    values = b"".join([url.raw_path, *(v for _, v in raw)])
    if _BAD_VALUE.search(values) is not None or b" " in url.raw_path:
        raise ValueError("a header value or the target holds a control character")
    lines = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in raw:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class Head:
    """A parsed response head."""

    __slots__ = ("headers", "reason", "status", "version")

    def __init__(
        self, version: bytes, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers


def find_head_end(buffer: bytes | bytearray) -> tuple[int, int]:
    """(where the head ends, where the body starts) in ``buffer``, or (-1, -1)."""
    end = buffer.find(b"\r\n\r\n")
    if end >= 0 and buffer.count(b"\n", 0, end) == buffer.count(b"\r\n", 0, end):
        return end, end + 4  # no bare LF before it, so no blank line before it either
    match = _HEAD_END.search(buffer)  # bare LF line ends, as h11 accepts
    if match is None:
        return -1, -1
    return match.start(), match.end()


def parse_head(data: bytes) -> Head:
    """The status line and headers (without the blank line); `ValueError` names a flaw."""
    lines = data.split(b"\r\n") if b"\n" not in data.replace(b"\r\n", b"") else None
    if lines is None:
        lines = _LINE_END.split(data)
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    major, minor, code, reason = match.groups()
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):  # obsolete line folding: part of the previous value
            if not headers:
                raise ValueError("a continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" "))
            continue
        name, colon, value = line.partition(b":")
        if not colon or _TOKENS.fullmatch(name) is None:
            raise ValueError(f"not a header line: {line[:100]!r}")
        headers.append((name, value.strip(b" \t")))
    if _BAD_VALUE.search(b"".join(v for _, v in headers)) is not None:
        raise ValueError("a header value holds a control character")
    return Head(b"HTTP/" + major + b"." + minor, int(code), reason or b"", headers)


CHUNKED = -1
UNTIL_CLOSE = -2


def body_length(method: str, head: Head) -> int:
    """The body's length, `CHUNKED` or `UNTIL_CLOSE`: RFC 9112 section 6.3."""
    status = head.status
    if method == "HEAD" or status < 200 or status in (204, 304):
        return 0
    lengths: list[bytes] = []
    chunked = False
    for name, value in head.headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            codings = [c.strip().lower() for c in value.split(b",") if c.strip()]
            if codings != [b"chunked"] or chunked:
                raise ValueError(f"unsupported Transfer-Encoding: {value!r}")
            chunked = True
        elif lowered == b"content-length":
            lengths += (v.strip() for v in value.split(b","))
    if chunked:
        return CHUNKED
    if not lengths:
        return UNTIL_CLOSE
    if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
        raise ValueError(f"bad Content-Length: {b', '.join(lengths)!r}")
    return int(lengths[0])


def keeps_alive(request: httpx.Request, head: Head) -> bool:
    """Whether the connection may serve another request after this exchange."""
    if head.version != b"HTTP/1.1" or head.status == 101:
        return False
    for name, value in (*head.headers, *request.headers.raw):
        if name.lower() == b"connection" and b"close" in value.lower():
            return False
    return True


class ChunkedDecoder:
    """``Transfer-Encoding: chunked`` to the bytes it carries, fed as they arrive."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._left = 0  # bytes of the current chunk still to come
        self._state = "size"  # size, data, data-end, trailers, done
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        """The body bytes in ``data`` (and what came before it); `ValueError` if malformed."""
        out: list[bytes] = []
        buffer = self._buffer
        buffer += data
        while buffer and not self.done:
            if self._state == "data":
                piece = bytes(buffer[: self._left])
                del buffer[: len(piece)]
                self._left -= len(piece)
                out.append(piece)
                if self._left:
                    break
                self._state = "data-end"
            elif self._state == "data-end":
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                elif buffer[:1] == b"\n":
                    del buffer[:1]
                elif len(buffer) < 2 and buffer == b"\r":
                    break
                else:
                    raise ValueError("a chunk does not end with CRLF")
                self._state = "size"
            elif self._state == "size":
                end = buffer.find(b"\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise ValueError("a chunk size line is too long")
                    break
                match = _CHUNK_SIZE.fullmatch(buffer, 0, end + 1)
                if match is None:
                    raise ValueError(f"bad chunk size line: {bytes(buffer[: end + 1])[:80]!r}")
                self._left = int(match.group(1), 16)  # before the buffer changes under it
                del buffer[: end + 1]
                self._state = "data" if self._left else "trailers"
            else:  # trailers: header lines up to a blank one, ignored
                end = buffer.find(b"\n")
                if end < 0:
                    if len(buffer) > _MAX_HEAD:
                        raise ValueError("the trailers are too long")
                    break
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[: end + 1]
                if not line:
                    self.done = True
        return [piece for piece in out if piece]

    @property
    def leftover(self) -> bool:
        """Whether bytes beyond the end of the body arrived."""
        return bool(self._buffer)


# --------------------------------------------------------------------------------------------
# Connections and the pool


class Connection:
    """One keep-alive connection to one origin."""

    __slots__ = ("_pool", "idle_since", "key", "protocol", "state", "transport")

    def __init__(
        self, pool: Http11Pool, key: tuple[bytes, bytes, int], transport: asyncio.Transport
    ) -> None:
        self._pool = pool
        self.key = key
        self.transport = transport
        self.protocol: _Protocol = transport.get_protocol()  # type: ignore[assignment]
        self.state = "active"  # active, idle, closed
        self.idle_since = 0.0

    def __repr__(self) -> str:
        scheme, host, port = self.key
        return f"<Connection {scheme.decode()}://{host.decode()}:{port} {self.state}>"

    def is_idle(self) -> bool:
        return self.state == "idle"

    def is_closed(self) -> bool:
        return self.state == "closed"

    def reusable(self, now: float, expiry: float | None) -> bool:
        """Whether an idle connection can serve a request: not expired, not closed by the
        server, holding no bytes nobody asked for."""
        protocol = self.protocol
        if protocol.eof or protocol.chunks or self.transport.is_closing():
            return False
        if expiry is not None and now - self.idle_since > expiry:
            return False
        return not _socket_readable(self.transport.get_extra_info("socket"))

    def abort(self) -> None:
        """Close at once (no ``await``: safe while being cancelled)."""
        if self.state != "closed":
            self.state = "closed"
            self.transport.abort()

    async def write(self, data: bytes, timeout: float | None) -> None:
        protocol = self.protocol
        if protocol.lost or self.transport.is_closing():
            raise ConnectionError(_closed_detail(protocol.error))
        self.transport.write(data)
        if protocol.writing_paused:
            try:
                await _wait(protocol, "write_waiter", timeout)
            except TimeoutError:
                raise _WriteTimeout from None
            if protocol.lost:
                raise ConnectionError(_closed_detail(protocol.error))

    async def read(self, timeout: float | None) -> bytes:
        """Everything waiting (at least one byte), or ``b""`` at the end of the stream."""
        protocol = self.protocol
        if not protocol.chunks:
            if protocol.eof:
                return self._end()
            try:
                await _wait(protocol, "read_waiter", timeout)
            except TimeoutError:
                raise _ReadTimeout from None
            if not protocol.chunks:
                return self._end()
        chunks = protocol.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        protocol.chunks = []
        protocol.size = 0
        if protocol.reading_paused:
            protocol.reading_paused = False
            self.transport.resume_reading()
        return data

    def _end(self) -> bytes:
        error = self.protocol.error
        if error is not None:
            raise ConnectionError(str(error) or type(error).__name__)
        return b""


class _ReadTimeout(Exception):
    pass


class _WriteTimeout(Exception):
    pass


def _closed_detail(error: BaseException | None) -> str:
    return str(error) if error else "the connection is closed"


class Http11Pool:
    """Keep-alive HTTP/1.1 connections, at most ``max_connections`` of them.

    ``http`` is the stack's module (httpx or httpx2): its errors are raised and its
    ``Response`` returned, with ``stream_type`` (a subclass of its ``AsyncByteStream``) as
    the body. Use it from one asyncio event loop.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        http: Any = httpx,
    ) -> None:
        self._ssl_context = ssl_context
        self._http = http
        self._max = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._idle: dict[tuple[bytes, bytes, int], list[Connection]] = {}
        self._all: set[Connection] = set()
        self._opening = 0  # connections being made (they count against the limit)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._body = _body_class(http.AsyncByteStream)
        ssl_context.set_alpn_protocols(["http/1.1"])  # as httpcore does without HTTP/2

    @property
    def connections(self) -> list[Connection]:
        """The open connections (idle or busy)."""
        return [c for c in self._all if c.state != "closed"]

    async def aclose(self) -> None:
        self._closed = True
        for connection in list(self._all):
            connection.abort()
        self._all.clear()
        self._idle.clear()
        for waiter in self._waiters:
            _wake(waiter)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read the response's head; its body streams."""
        answer, stream = await self.exchange(request)
        response: httpx.Response = self._http.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=stream,
            extensions={"http_version": answer.version, "reason_phrase": answer.reason},
        )
        return response

    async def exchange(self, request: httpx.Request) -> tuple[Head, _Body]:
        """Send ``request`` and read the response's head: the head and the body to stream
        (given back to the pool already when empty). `handle_async_request` without the
        ``Response``, for a caller that needs none (`zigziik._request.LeanSender`)."""
        http = self._http
        timeouts = request.extensions.get("timeout") or {}
        try:
            head = request_head(request)
        except ValueError as exc:
            raise http.LocalProtocolError(str(exc), request=request) from None
        try:
            body: bytes | None = request.content
        except http.RequestNotRead:
            body = None
        connection = await self._acquire(request, timeouts)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("send %s %r on %r", request.method, request.url.raw_path, connection)
        try:
            try:
                await self._send(connection, request, head, body, timeouts.get("write"))
            except OSError as exc:
                raise http.WriteError(str(exc) or type(exc).__name__, request=request) from exc
            answer, rest = await self._read_head(connection, timeouts.get("read"))
            length = body_length(request.method, answer)
            reusable = keeps_alive(request, answer)
        except BaseException as exc:
            self._discard(connection)
            mapped = self._mapped(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        stream = self._body(self, connection, request, rest, length, reusable, timeouts.get("read"))
        if length == 0:
            stream.finish()
        return answer, stream

    async def _send(
        self,
        connection: Connection,
        request: httpx.Request,
        head: bytes,
        body: bytes | None,
        timeout: float | None,
    ) -> None:
        """The head, then the body: bytes (with the head in one write when small), or the
        request's stream (chunk-encoded if its headers say so)."""
        if body is not None:
            if len(body) < _ONE_WRITE:
                await connection.write(head + body, timeout)
            else:
                await connection.write(head, timeout)
                await connection.write(body, timeout)
            return
        await connection.write(head, timeout)
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        async for piece in request.stream:  # type: ignore[union-attr]
            if not piece:
                continue
            if chunked:
                piece = b"%x\r\n%b\r\n" % (len(piece), piece)
            await connection.write(piece, timeout)
        if chunked:
            await connection.write(b"0\r\n\r\n", timeout)

    async def _read_head(self, connection: Connection, timeout: float | None) -> tuple[Head, bytes]:
        """The final response's head (1xx ones skipped) and the bytes after it."""
        buffer = b""
        while True:
            data = await connection.read(timeout)
            if not data:
                if buffer:
                    raise _BrokenHTTP("the server closed the connection in the response head")
                raise _BrokenHTTP("Server disconnected without sending a response.")
            buffer = buffer + data if buffer else data
            while True:
                end, start = find_head_end(buffer)
                if end < 0:
                    break
                try:
                    head = parse_head(buffer[:end])
                except ValueError as exc:
                    raise _BrokenHTTP(str(exc)) from None
                buffer = buffer[start:]
                if 100 <= head.status < 200 and head.status != 101:
                    continue  # 100 Continue, 103 Early Hints: the real answer follows
                return head, buffer
            if len(buffer) > _MAX_HEAD:
                raise _BrokenHTTP(f"the response head is longer than {_MAX_HEAD} bytes")

    async def _acquire(self, request: httpx.Request, timeouts: dict[str, Any]) -> Connection:
        url = request.url
        scheme = url.raw_scheme
        port = url.port or (443 if scheme == b"https" else 80)
        key = (scheme, url.raw_host, port)
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            if self._closed:
                raise self._http.ConnectError("the connection pool is closed", request=request)
            idle = self._idle.get(key)
            now = loop.time()
            while idle:
                connection = idle.pop()
                if connection.reusable(now, self._expiry):
                    connection.state = "active"
                    return connection
                self._forget(connection)
            if self._max is None or len(self._all) + self._opening < self._max or self._evict():
                break
            pool_timeout = timeouts.get("pool")
            if deadline is None and pool_timeout is not None:
                deadline = now + pool_timeout
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(
                    waiter, None if deadline is None else max(deadline - now, 0.0)
                )
            except asyncio.TimeoutError:
                raise self._http.PoolTimeout(
                    "timed out waiting for a connection from the pool", request=request
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._opening += 1
        try:
            connection = await self._connect(key, request, timeouts.get("connect"))
        finally:
            self._opening -= 1
        self._all.add(connection)
        return connection

    async def _connect(
        self, key: tuple[bytes, bytes, int], request: httpx.Request, timeout: float | None
    ) -> Connection:
        scheme, raw_host, port = key
        host = raw_host.decode("ascii")
        tls = self._ssl_context if scheme == b"https" else None
        hostname = request.extensions.get("sni_hostname") or host
        try:
            transport, _ = await asyncio.wait_for(_open(host, port, tls, hostname), timeout)
        except asyncio.TimeoutError:
            self._wake_one()
            raise self._http.ConnectTimeout(
                f"timed out connecting to {host}:{port}", request=request
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self._wake_one()
            raise self._http.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        except BaseException:
            self._wake_one()
            raise
        if self._closed:
            transport.abort()
            raise self._http.ConnectError("the connection pool is closed", request=request)
        connection = Connection(self, key, transport)
        logger.debug("connected %r", connection)
        return connection

    def _evict(self) -> bool:
        """Close the longest idle connection (of any origin) to make room; whether one was."""
        oldest: Connection | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest.idle_since):
                oldest = connections[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        self._forget(oldest)
        return True

    def _forget(self, connection: Connection) -> None:
        connection.abort()
        self._all.discard(connection)
        logger.debug("closed %r", connection)

    def _discard(self, connection: Connection) -> None:
        """A busy connection that will serve nothing more."""
        self._forget(connection)
        self._wake_one()

    def release(self, connection: Connection, reusable: bool) -> None:
        """A connection whose response is complete: idle again, or closed."""
        if connection.state != "active":
            return
        if not reusable or self._closed or connection.protocol.eof or connection.protocol.chunks:
            self._discard(connection)
            return
        connection.state = "idle"
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(connection.key, []).append(connection)
        if self._max_idle is not None:
            idle = sum(len(c) for c in self._idle.values())
            while idle > self._max_idle and self._evict():
                idle -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def _mapped(self, exc: BaseException, request: httpx.Request) -> Any:
        """The stack's error for what went wrong (anything else as it is)."""
        http = self._http
        if isinstance(exc, http.TransportError):
            return exc
        if isinstance(exc, _ReadTimeout):
            return http.ReadTimeout("timed out while receiving data", request=request)
        if isinstance(exc, _WriteTimeout):
            return http.WriteTimeout("timed out while sending data", request=request)
        if isinstance(exc, _BrokenHTTP):
            return http.RemoteProtocolError(str(exc), request=request)
        if isinstance(exc, ValueError):
            return http.RemoteProtocolError(str(exc), request=request)
        if isinstance(exc, OSError):
            return http.ReadError(str(exc) or type(exc).__name__, request=request)
        return exc


class _BrokenHTTP(Exception):
    """The server broke HTTP/1.1."""


class _Body:
    """A response body read from its connection as it arrives (mixed into the stack's own
    ``AsyncByteStream``, which its ``Response`` checks for)."""

    def __init__(
        self,
        pool: Http11Pool,
        connection: Connection,
        request: httpx.Request,
        rest: bytes,
        length: int,
        reusable: bool,
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._request = request
        self._rest = rest
        self._length = length
        self._reusable = reusable
        self._timeout = timeout

    def finish(self) -> None:
        """The body is complete: give the connection back (bytes left over: closed)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection, self._reusable and not self._rest)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        try:
            length = self._length
            if length == CHUNKED:
                async for piece in self._chunked(connection):
                    yield piece
            elif length == UNTIL_CLOSE:
                self._reusable = False
                rest, self._rest = self._rest, b""
                if rest:
                    yield rest
                while data := await connection.read(self._timeout):
                    yield data
            else:
                async for piece in self._sized(connection, length):
                    yield piece
        except BaseException as exc:
            self.close()
            mapped = self._pool._mapped(exc, self._request)
            if mapped is exc:
                raise
            raise mapped from exc
        self.finish()

    async def _sized(self, connection: Connection, length: int) -> AsyncIterator[bytes]:
        left = length
        data, self._rest = self._rest, b""
        while True:
            if data:
                if len(data) > left:  # more than the body: the connection is not reused
                    data, self._rest = data[:left], data[left:]
                left -= len(data)
                yield data
            if left <= 0:
                return
            data = await connection.read(self._timeout)
            if not data:
                raise _BrokenHTTP(
                    "peer closed connection without sending complete message body: "
                    f"received {length - left} bytes, expected {length}"
                )

    async def _chunked(self, connection: Connection) -> AsyncIterator[bytes]:
        decoder = ChunkedDecoder()
        data, self._rest = self._rest, b""
        while True:
            try:
                pieces = decoder.feed(data) if data else []
            except ValueError as exc:
                raise _BrokenHTTP(str(exc)) from None
            for piece in pieces:
                yield piece
            if decoder.done:
                if decoder.leftover:
                    self._reusable = False
                return
            data = await connection.read(self._timeout)
            if not data:
                raise _BrokenHTTP(
                    "peer closed connection without sending complete message body: "
                    "incomplete chunked read"
                )

    def close(self) -> None:
        """Closed before its end: the connection goes (nothing half-read is reused); after
        its end, nothing to do. Synchronous: safe while being cancelled."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._discard(connection)

    async def aclose(self) -> None:
        """`close`."""
        self.close()


_body_classes: dict[type, type[_Body]] = {}


def _body_class(byte_stream: type) -> type[_Body]:
    """`_Body` as a subclass of one stack's ``AsyncByteStream``."""
    made = _body_classes.get(byte_stream)
    if made is None:
        made = _body_classes[byte_stream] = type("ResponseBody", (_Body, byte_stream), {})
    return made
