"""Small purpose-built HTTP/1.1 servers for fault tests, on raw loopback sockets.

Each `RawServer` runs its own asyncio loop in a background thread, so the tests that talk to it
may run under asyncio or trio. A *behaviour* decides what happens to each request: answer it,
answer the headers and stall, cut the body with a FIN or an RST, or say nothing at all. The
server records every request and connection, and on exit closes whatever is still open.

Unlike the uvicorn-served fakes, nothing here parses or fixes up what a behaviour writes: a
``Content-Length`` that lies, a reset in the middle of a body, or bytes after the end of a
response reach the client exactly as written.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Connection",
    "RawRequest",
    "RawServer",
    "closed_port",
    "head",
    "headers_then_stall",
    "long_body",
    "reset_mid_body",
    "respond",
    "scripted",
    "short_body",
    "silent",
    "trickle",
    "unaccepted_listener",
]


@dataclass(frozen=True)
class RawRequest:
    """One request as it arrived: method, target, lower-cased headers and the body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class Connection:
    """One accepted connection, as a behaviour sees it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._stop = stop
        self.closed = False

    async def read_request(self) -> RawRequest | None:
        """The next request on this connection, or ``None`` when the peer closed it."""
        try:
            head_bytes = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return None
        lines = head_bytes.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        try:
            body = await self.reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return RawRequest(method, target, headers, body)

    async def send(self, data: bytes) -> None:
        if self.closed:
            return
        self.writer.write(data)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def wait_for_peer(self) -> None:
        """Wait until the client closes the connection (or the server stops)."""
        eof = asyncio.ensure_future(self._read_to_eof())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({eof, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (eof, stop):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task

    async def _read_to_eof(self) -> None:
        while await self.reader.read(65536):
            pass

    def close(self) -> None:
        """A clean close (FIN)."""
        if not self.closed:
            self.closed = True
            self.writer.close()

    async def reset(self) -> None:
        """Abort with an RST, after what was written so far has left."""
        if self.closed:
            return
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        await asyncio.sleep(0.02)  # let the bytes reach the client before the RST overtakes them
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True
        self.writer.transport.abort()


Behaviour = Callable[[Connection, RawRequest], Awaitable[None]]
"""What to do with one request. The server reads the next request on the same connection
afterwards, unless the behaviour closed it."""


@dataclass
class RawServer:
    """Serve ``behaviour`` on ``127.0.0.1`` in a thread; use as a context manager."""

    behaviour: Behaviour
    requests: list[RawRequest] = field(default_factory=list)
    connections: int = 0
    open_connections: int = 0
    origin: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> RawServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready), name=f"raw-server-{self.origin}", daemon=True
        )
        self._thread.start()
        if not ready.wait(5.0):  # pragma: no cover - a broken machine
            raise RuntimeError("the raw server did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        asyncio.run(self._main(sock, ready))

    async def _main(self, sock: socket.socket, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            with self._lock:
                self.connections += 1
                self.open_connections += 1
            connection = Connection(reader, writer, stop)
            try:
                while not connection.closed:
                    request = await connection.read_request()
                    if request is None:
                        break
                    with self._lock:
                        self.requests.append(request)
                    await self.behaviour(connection, request)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                if not connection.closed:
                    connection.close()
                with self._lock:
                    self.open_connections -= 1
                handlers.discard(task)

        server = await asyncio.start_server(on_connect, sock=sock)
        ready.set()
        try:
            await stop.wait()
        finally:
            server.close()
            for task in list(handlers):
                task.cancel()
            if handlers:
                await asyncio.wait(list(handlers), timeout=2.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)


# -- behaviours -----------------------------------------------------------------------------------


def head(
    status: int = 200,
    headers: Sequence[tuple[str, str]] = (),
    *,
    reason: str = "Whatever",
) -> bytes:
    """A status line and headers, as raw bytes (nothing added, nothing checked)."""
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(
    status: int = 200,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
) -> Behaviour:
    """A complete, well-formed answer."""

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        all_headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *headers,
        ]
        await connection.send(head(status, all_headers) + body)

    return behaviour


def silent() -> Behaviour:
    """Read the request, then never answer (until the client gives up)."""

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        await connection.wait_for_peer()
        connection.close()

    return behaviour


def headers_then_stall(
    length: int = 1000, prefix: bytes = b"", content_type: str = "image/jpeg"
) -> Behaviour:
    """Answer 200 with ``Content-Length: length`` and ``prefix`` of the body, then stall."""

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        await connection.send(
            head(200, [("Content-Type", content_type), ("Content-Length", str(length))]) + prefix
        )
        await connection.wait_for_peer()
        connection.close()

    return behaviour


def reset_mid_body(body: bytes, sent: int, content_type: str = "image/jpeg") -> Behaviour:
    """Promise ``body``, send ``sent`` bytes of it, then abort with an RST."""

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        await connection.send(
            head(200, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            + body[:sent]
        )
        await connection.reset()

    return behaviour


def short_body(body: bytes, declared: int, content_type: str = "image/jpeg") -> Behaviour:
    """``Content-Length: declared`` (more than ``len(body)``), the whole body, then a FIN."""

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        await connection.send(
            head(200, [("Content-Type", content_type), ("Content-Length", str(declared))]) + body
        )
        connection.close()

    return behaviour


def long_body(body: bytes, declared: int, content_type: str = "image/jpeg") -> Behaviour:
    """``Content-Length: declared`` (less than ``len(body)``), then every byte of ``body``.

    The connection stays open: the extra bytes sit where the next response would start.
    """

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        await connection.send(
            head(200, [("Content-Type", content_type), ("Content-Length", str(declared))]) + body
        )

    return behaviour


def trickle(body: bytes, every: float, content_type: str = "image/jpeg") -> Behaviour:
    """Answer ``body`` one byte every ``every`` seconds (each read succeeds in time)."""

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        await connection.send(
            head(200, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        )
        for index in range(len(body)):
            await asyncio.sleep(every)
            if connection.closed or connection.writer.is_closing():
                return
            await connection.send(body[index : index + 1])

    return behaviour


def scripted(*behaviours: Behaviour) -> Behaviour:
    """The n-th request gets the n-th behaviour; the last one repeats."""
    if not behaviours:
        raise ValueError("give at least one behaviour")
    count = 0
    lock = threading.Lock()

    async def behaviour(connection: Connection, request: RawRequest) -> None:
        nonlocal count
        with lock:
            index = min(count, len(behaviours) - 1)
            count += 1
        await behaviours[index](connection, request)

    return behaviour


# -- sockets without a server ---------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released: connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def unaccepted_listener() -> Iterator[str]:
    """A listening socket that never accepts and whose backlog is already full.

    The kernel drops further SYNs, so a client's connect attempt times out: the request
    provably never reaches a server.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):  # fill the accept queue (its size is backlog + 1 on Linux)
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect(address)
            fillers.append(filler)
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
