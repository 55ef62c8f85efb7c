"""zigziik._net: the asyncio byte stream under httpx's own transport, against raw servers.

The rest of the suite runs every loopback test through it too (TLS, faults, timeouts,
cancellation); these tests pin what only a hand-written server can show.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import httpx
import pytest

from zigziik._net import AsyncioBackend, AsyncioStream, PoolTransport, default_ssl_context
from zigziik._request import default_client as _default_client

pytestmark = pytest.mark.asyncio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` on a loopback port; on exit, stop it and close every connection.

    On Python < 3.12 ``Server.wait_closed`` neither waits for the handlers nor closes their
    connections: a handler still running (or one the loop's shutdown cancels) would leave its
    socket to the garbage collector, which warns (``ResourceWarning``, an error here).
    """
    handlers: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return bool(head)


def _answer(body: bytes, *, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def test_the_default_client_streams_over_asyncio_protocol() -> None:
    streams: list[object] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await _read_request(reader):
            writer.write(_answer(b"x" * 10))
            await writer.drain()
        writer.close()

    async with raw_server(handler) as origin:
        client, transport = _default_client(httpx.Timeout(5.0))
        assert client._transport is transport  # type: ignore[attr-defined]
        async with client:
            response = await client.get(origin + "/")
            assert response.content == b"x" * 10
            pool = client._transport._pool  # type: ignore[attr-defined]
            streams = [c._connection._network_stream for c in pool.connections]
    assert streams and all(isinstance(s, AsyncioStream) for s in streams)


async def test_the_pool_is_built_with_the_asyncio_backend() -> None:
    transport = PoolTransport(ssl_context=default_ssl_context(), limits=httpx.Limits())
    assert type(transport.pool) is httpcore.AsyncConnectionPool
    assert isinstance(transport.pool._network_backend, AsyncioBackend)  # type: ignore[attr-defined]
    await transport.aclose()


@pytest.mark.parametrize(
    ("core", "expected"),
    [
        (httpcore.ConnectError, httpx.ConnectError),
        (httpcore.ConnectTimeout, httpx.ConnectTimeout),
        (httpcore.PoolTimeout, httpx.PoolTimeout),
        (httpcore.ReadTimeout, httpx.ReadTimeout),
        (httpcore.ReadError, httpx.ReadError),
        (httpcore.WriteError, httpx.WriteError),
        (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
        (httpcore.LocalProtocolError, httpx.LocalProtocolError),
        (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    ],
)
async def test_httpcore_errors_become_the_httpx_errors_of_the_same_name(
    core: type[Exception], expected: type[Exception]
) -> None:
    transport = PoolTransport(ssl_context=default_ssl_context(), limits=httpx.Limits())

    async def fail(request: httpcore.Request) -> httpcore.Response:
        raise core("broken")

    transport.pool.handle_async_request = fail  # type: ignore[method-assign]
    request = httpx.Request("GET", "http://127.0.0.1:9/")
    with pytest.raises(expected, match="broken") as caught:
        await transport.handle_async_request(request)
    assert type(caught.value) is expected
    assert caught.value.request is request  # type: ignore[attr-defined]
    assert isinstance(caught.value.__cause__, core)
    await transport.aclose()


async def test_a_body_sent_in_small_pieces_arrives_whole() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        answer = _answer(body)
        for start in range(0, len(answer), 50_000):
            writer.write(answer[start : start + 50_000])
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.close()

    async with raw_server(handler) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            chunks = []
            async with client.stream("GET", origin + "/") as response:
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
    assert b"".join(chunks) == body
    assert max(len(c) for c in chunks) <= (1 << 20) + 256 * 1024


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if await _read_request(reader):
            writer.write(_answer(b"ok"))  # keep-alive promised, then closed anyway
            await writer.drain()
        writer.close()

    async with raw_server(handler) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            for _ in range(3):
                response = await client.get(origin + "/")
                assert response.content == b"ok"
                await asyncio.sleep(0.05)  # let the close arrive
    assert connections == 3


async def test_a_body_cut_short_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_answer(b"y" * 100_000)[:50_000])
        await writer.drain()
        writer.close()

    async with raw_server(handler) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(origin + "/")


async def test_a_silent_server_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(2)
        writer.close()

    async with raw_server(handler) as origin:
        async with _default_client(httpx.Timeout(0.2))[0] as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(origin + "/")


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with raw_server(_never_called) as origin:
        pass  # closed: nothing listens there any more
    backend = AsyncioBackend()
    host, port = origin.removeprefix("http://").split(":")
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp(host, int(port), timeout=2.0)


async def _never_called(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()  # pragma: no cover


class _Stub:
    """A pool connection as `take_orphaned_connections` sees it."""

    def __init__(self, *, idle: bool = False, closed: bool = False, inner: object = None):
        self._connection = inner
        self._idle = idle
        self._closed = closed

    def is_idle(self) -> bool:
        return self._idle

    def is_closed(self) -> bool:
        return self._closed


class _Owner:
    def __init__(self, connection: object) -> None:
        self.connection = connection


async def test_orphaned_connections_are_taken_out_of_the_pool() -> None:
    """httpcore leaves the connection of a request cancelled before it started in the pool
    (encode/httpcore#1093): still connecting, or connected and NEW, owned by no request."""
    from zigziik._compat import take_orphaned_connections

    transport = httpx.AsyncHTTPTransport()
    pool = transport._pool  # type: ignore[attr-defined]
    connecting = httpcore.AsyncHTTPConnection(origin=httpcore.Origin(b"http", b"127.0.0.1", 80))
    new = httpcore.AsyncHTTP11Connection(
        origin=httpcore.Origin(b"http", b"127.0.0.1", 80),
        stream=None,  # type: ignore[arg-type]
    )
    connected_new = _Stub(inner=new)
    owned = httpcore.AsyncHTTPConnection(origin=httpcore.Origin(b"http", b"127.0.0.1", 81))
    idle = _Stub(idle=True)
    closed = _Stub(closed=True)
    in_use = _Stub(inner=object())  # started a request (not an HTTP/1.1 NEW connection)
    pool._connections.extend([connecting, connected_new, owned, idle, closed, in_use])
    pool._requests.append(_Owner(owned))
    taken = take_orphaned_connections(pool)
    assert taken == [connecting, connected_new]
    assert pool._connections == [owned, idle, closed, in_use]
    assert take_orphaned_connections(pool) == []
    pool._connections.clear()
    pool._requests.clear()


async def test_a_pool_of_another_shape_is_left_alone() -> None:
    from zigziik._compat import take_orphaned_connections

    assert take_orphaned_connections(httpx.MockTransport(lambda r: httpx.Response(200))) == []
