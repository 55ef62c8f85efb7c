"""zigziik._net and zigziik._http11: the transport of zigziik's own client, against raw
servers: the lean HTTP/1.1 pool under asyncio, httpcore's pool when respx patches it.

The rest of the suite runs every loopback test through it too (TLS, faults, timeouts,
cancellation, streaming); these tests pin what only a hand-written server can show.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import httpx
import pytest

from zigziik._http11 import Connection
from zigziik._net import PoolTransport, default_ssl_context, pool_untouched
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


class KeepAlive:
    """A handler that answers every request of a connection with ``body``; it counts the
    connections."""

    def __init__(self, body: bytes = b"ok") -> None:
        self.body = body
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while await _read_request(reader):
            writer.write(_answer(self.body))
            await writer.drain()


async def test_the_default_client_sends_through_the_lean_pool_and_reuses_its_connection() -> None:
    handler = KeepAlive(b"x" * 10)
    async with raw_server(handler) as origin:
        client, transport = _default_client(httpx.Timeout(5.0))
        assert client._transport is transport  # type: ignore[attr-defined]
        async with client:
            for _ in range(3):
                response = await client.get(origin + "/")
                assert response.content == b"x" * 10
                assert response.http_version == "HTTP/1.1"
            assert isinstance(transport, PoolTransport)
            assert [c.is_idle() for c in transport.connections] == [True]
            assert all(isinstance(c, Connection) for c in transport.connections)
            assert transport.pool.connections == []  # httpcore's pool sent nothing
    assert handler.connections == 1


async def test_a_patched_pool_gets_the_requests() -> None:
    import respx

    transport = PoolTransport(ssl_context=default_ssl_context(), limits=httpx.Limits())
    assert pool_untouched(httpcore, transport.pool)
    with respx.mock(using="httpcore") as router:
        router.get("http://127.0.0.1:9/x").respond(200, text="mocked")
        assert not pool_untouched(httpcore, transport.pool)
        response = await transport.handle_async_request(
            httpx.Request("GET", "http://127.0.0.1:9/x")
        )
        assert (await response.aread()) == b"mocked"
    assert pool_untouched(httpcore, transport.pool)
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
    async with _default_client(httpx.Timeout(2.0))[0] as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(origin + "/")


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


# -- the lean pool's HTTP/1.1, against hand-written answers -----------------------------------


def _serve_answers(*answers: bytes, seen: list[bytes] | None = None) -> Handler:
    """A handler that answers the requests of each connection with ``answers`` in turn (then
    closes it); what each request's head was goes to ``seen``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if seen is not None:
                seen.append(head)
            for start in range(0, len(answer), 7):  # in awkward pieces
                writer.write(answer[start : start + 7])
                await writer.drain()

    return handler


async def _get(origin: str, path: str = "/", **kwargs: object) -> httpx.Response:
    async with _default_client(httpx.Timeout(5.0))[0] as client:
        return await client.request("GET", origin + path, **kwargs)  # type: ignore[arg-type]


async def test_a_chunked_body_with_extensions_and_trailers_is_decoded() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    async with raw_server(_serve_answers(answer, answer)) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            for _ in range(2):  # the connection is reused after a complete chunked body
                response = await client.get(origin + "/")
                assert response.content == b"hello world"
            assert len(client._transport.connections) == 1  # type: ignore[attr-defined]


async def test_a_chunked_body_cut_short_is_a_protocol_error() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"
    async with raw_server(_serve_answers(answer)) as origin:
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            await _get(origin)


async def test_folded_headers_bare_line_feeds_and_a_missing_reason_are_read() -> None:
    answer = b"HTTP/1.1 200\nX-Folded: one\n  two\nContent-Length: 2\n\nok"
    async with raw_server(_serve_answers(answer)) as origin:
        response = await _get(origin)
    assert response.content == b"ok"
    assert response.headers["x-folded"] == "one two"
    assert response.reason_phrase == ""


async def test_a_body_up_to_the_close_is_read_and_its_connection_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
            await writer.drain()

    async with raw_server(handler) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            response = await client.get(origin + "/")
            assert response.content == b"all of it"
            assert client._transport.connections == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\n\r\n", "control character"),
        (b"ICY 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, "longer than"),
    ],
)
async def test_a_malformed_answer_is_a_protocol_error(head: bytes, message: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(head)
            await writer.drain()
            await asyncio.sleep(1)

    async with raw_server(handler) as origin:
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await _get(origin)


async def test_informational_answers_are_skipped_and_bodiless_ones_keep_the_connection() -> None:
    answers = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",  # the answer to a HEAD
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    async with raw_server(_serve_answers(*answers)) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            assert (await client.get(origin + "/")).content == b"final"
            assert (await client.get(origin + "/")).status_code == 204
            assert (await client.get(origin + "/")).status_code == 304
            assert (await client.head(origin + "/")).content == b""
            assert (await client.get(origin + "/")).content == b"ok"
            assert len(client._transport.connections) == 1  # type: ignore[attr-defined]


async def test_a_header_that_would_inject_a_line_is_refused_before_sending() -> None:
    seen: list[bytes] = []
    async with raw_server(_serve_answers(_answer(b"ok"), seen=seen)) as origin:
        for headers in ({"X-Bad": "a\r\nX-Injected: 1"}, {"X-Bad": "a\nb"}, {"Bad Name": "x"}):
            with pytest.raises(httpx.LocalProtocolError):
                await _get(origin, headers=headers)
    assert seen == []


async def test_request_bodies_arrive_whole_as_bytes_and_as_a_chunked_stream() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if b"chunked" in head.lower():
                body = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    data = await reader.readexactly(size + 2)
                    if not size:
                        break
                    body += data[:-2]
            else:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
            received.append(body)
            writer.write(_answer(b"ok"))
            await writer.drain()

    big = bytes(range(256)) * 1024  # 256 KiB: not in one write with the head

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"", b"cd" * 40_000):
            yield piece

    async with raw_server(handler) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            await client.post(origin + "/", content=b"small")
            await client.post(origin + "/", content=big)
            await client.post(origin + "/", content=pieces())
    assert received == [b"small", big, b"ab" + b"cd" * 40_000]


async def test_at_most_max_connections_are_open_and_the_pool_timeout_holds() -> None:
    release = asyncio.Event()
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await _read_request(reader):
            await release.wait()
            writer.write(_answer(b"ok"))
            await writer.drain()

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    transport = PoolTransport(ssl_context=default_ssl_context(), limits=limits)
    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
            first = asyncio.ensure_future(client.get(origin + "/"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await client.get(origin + "/", timeout=httpx.Timeout(5.0, pool=0.1))
            second = asyncio.ensure_future(client.get(origin + "/"))
            await asyncio.sleep(0.05)
            release.set()
            assert [(await first).content, (await second).content] == [b"ok", b"ok"]
    assert connections == 1


async def test_an_idle_connection_past_its_expiry_is_not_reused() -> None:
    handler = KeepAlive()
    limits = httpx.Limits(keepalive_expiry=0.05)
    transport = PoolTransport(ssl_context=default_ssl_context(), limits=limits)
    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
            await client.get(origin + "/")
            await client.get(origin + "/")  # at once: reused
            await asyncio.sleep(0.1)
            await client.get(origin + "/")
    assert handler.connections == 2


@pytest.mark.parametrize("how", ["cancel", "close early", "extra bytes"])
async def test_a_connection_left_mid_body_or_with_extra_bytes_is_closed(how: str) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await _read_request(reader):
            answer = _answer(b"z" * 200_000)
            writer.write(answer[:1000] if how == "cancel" and connections == 1 else answer)
            if how == "extra bytes":
                writer.write(b"HTTP/1.1 200 OK\r\n")  # nobody asked for it
            await writer.drain()

    async with raw_server(handler) as origin:
        async with _default_client(httpx.Timeout(5.0))[0] as client:
            transport = client._transport  # type: ignore[attr-defined]
            if how == "cancel":
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2) if hasattr(asyncio, "timeout") else _timeout():
                        await client.get(origin + "/")
            elif how == "close early":
                async with client.stream("GET", origin + "/") as response:
                    async for _ in response.aiter_raw():
                        break
            else:
                assert len((await client.get(origin + "/")).content) == 200_000
            assert transport.connections == []
            assert len((await client.get(origin + "/")).content) == 200_000
    assert connections == 2


@contextlib.asynccontextmanager
async def _timeout() -> AsyncIterator[None]:  # Python 3.10: asyncio.timeout is 3.11+
    task = asyncio.current_task()
    assert task is not None
    handle = asyncio.get_running_loop().call_later(0.2, task.cancel)
    try:
        yield
    except asyncio.CancelledError:
        raise TimeoutError from None
    finally:
        handle.cancel()


async def test_a_server_that_closes_without_answering_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    async with raw_server(handler) as origin:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await _get(origin)


async def test_a_body_read_cancelled_closes_its_connection_at_once_without_aclose() -> None:
    """The lean pool's own guarantee, below httpx (which closes a response anyway): the
    cancelled read itself closes the connection, so nothing half-read stays in the pool."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(_answer(b"z" * 100_000)[:1000])
            await writer.drain()
            await asyncio.sleep(2)

    transport = PoolTransport(ssl_context=default_ssl_context(), limits=httpx.Limits())
    async with raw_server(handler) as origin:
        request = httpx.Request("GET", origin + "/", extensions={"timeout": {"read": 5.0}})
        response = await transport.handle_async_request(request)
        assert [c.is_idle() for c in transport.connections] == [False]

        async def read() -> None:
            async for _ in response.stream:  # type: ignore[union-attr]
                pass

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert transport.connections == []
    await transport.aclose()
