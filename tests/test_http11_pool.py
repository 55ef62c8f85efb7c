"""zigziik._http11's pool against raw loopback servers, beyond test_net.py: backpressure on a
body nobody reads, a write that cannot leave, an idle connection the server closed while
the event loop was busy, making room in a full pool, TLS (ALPN and SNI), and what its
errors and its debug log say."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import resource
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import _servers as raw_servers
import httpx
import pytest
import trustme
from test_net import Handler, KeepAlive, _answer, _read_request, _serve_answers, raw_server

from zigziik import _http11
from zigziik._http11 import _HIGH_WATER, _MAX_HEAD, Connection
from zigziik._net import PoolTransport, default_ssl_context

pytestmark = pytest.mark.asyncio


def transport(
    *, ssl_context: ssl.SSLContext | None = None, **limits: float | int | None
) -> PoolTransport:
    return PoolTransport(
        ssl_context=ssl_context or default_ssl_context(), limits=httpx.Limits(**limits)
    )


def lean(client: httpx.AsyncClient) -> list[Connection]:
    connections = client._transport.connections  # type: ignore[attr-defined]
    assert all(isinstance(c, Connection) for c in connections)
    return connections


# -- reading and writing -----------------------------------------------------------------------


async def test_a_body_nobody_reads_stops_the_socket_at_about_a_mebibyte() -> None:
    body = bytes(range(256)) * (32 * 1024)  # 8 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(_answer(body))
            await writer.drain()
            await reader.read()  # until the client closes

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            async with client.stream("GET", origin + "/") as response:
                (connection,) = lean(client)
                protocol = connection.protocol
                for _ in range(500):  # until the socket is paused (or 5 s have passed)
                    if protocol.reading_paused:
                        break
                    await asyncio.sleep(0.01)
                assert protocol.reading_paused
                waiting = protocol.size
                await asyncio.sleep(0.1)
                # Paused: nothing more arrives, however long nobody reads.
                assert protocol.size == waiting
                assert _HIGH_WATER <= waiting < _HIGH_WATER + (1 << 20)
                received = b"".join([chunk async for chunk in response.aiter_raw()])
                assert not protocol.reading_paused
    assert received == body


async def test_a_request_body_the_server_never_reads_is_a_write_timeout() -> None:
    stop = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop.wait()  # reads nothing: the client's socket buffers fill up

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(httpx.WriteTimeout, match="^timed out while sending data$"):
                await client.post(
                    origin + "/", content=b"x" * (64 << 20), timeout=httpx.Timeout(5.0, write=0.2)
                )
            assert lean(client) == []
        stop.set()


async def test_a_read_timeout_says_so() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(2)

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout, match="^timed out while receiving data$"):
                await client.get(origin + "/")
            assert lean(client) == []


async def test_a_body_cut_short_says_how_much_of_it_came() -> None:
    answer = _answer(b"y" * 100_000)
    head_length = len(answer) - 100_000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(answer[: head_length + 30_000])
            await writer.drain()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(
                httpx.RemoteProtocolError,
                match="^peer closed connection without sending complete message body: "
                "received 30000 bytes, expected 100000$",
            ):
                await client.get(origin + "/")


async def test_a_server_that_closes_in_the_middle_of_the_head_says_so() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
            await writer.drain()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(
                httpx.RemoteProtocolError,
                match="^the server closed the connection in the response head$",
            ):
                await client.get(origin + "/")


async def test_a_head_is_read_while_what_has_come_of_it_is_at_most_the_longest_size() -> None:
    """64 KiB of a head without its end yet is still a head; more is refused (test_net)."""
    filler = b"X-Fill: "
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    head += filler + b"f" * (_MAX_HEAD + 1 - len(head) - len(filler) - 4) + b"\r\n\r\n"
    assert len(head) == _MAX_HEAD + 1

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(head[:-1])  # exactly _MAX_HEAD bytes, the blank line not ended
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(head[-1:] + b"ok")
            await writer.drain()
            await reader.read()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            assert (await client.get(origin + "/")).content == b"ok"


# -- idle connections and the pool's room -------------------------------------------------------


@contextmanager
def threaded_server_answering_once_per_connection() -> Iterator[
    tuple[str, list[int], threading.Semaphore]
]:
    """A server in its own thread: it answers one request per connection with keep-alive
    promised, then closes it (while the client's event loop may be blocked); the semaphore
    is released once for each connection it has closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted: list[int] = []
    closed = threading.Semaphore(0)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            with sock:
                accepted.append(1)
                sock.settimeout(5.0)
                data = b""
                while b"\r\n\r\n" not in data:
                    more = sock.recv(65536)
                    if not more:
                        break
                    data += more
                if data:
                    sock.sendall(_answer(b"ok"))
            closed.release()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted, closed
    finally:
        stop.set()
        thread.join(5.0)
        listener.close()


@pytest.mark.parametrize("poll", [True, False], ids=["poll", "select"])
async def test_an_idle_connection_closed_while_the_loop_was_busy_is_not_reused(
    poll: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not poll:  # as on a platform without poll()
        monkeypatch.delattr(_http11.select, "poll")
    with threaded_server_answering_once_per_connection() as (origin, accepted, closed):
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            assert (await client.get(origin + "/")).content == b"ok"
            # The loop is blocked: it has not seen the server's close when the next request
            # looks for an idle connection; only the socket itself can tell.
            assert closed.acquire(timeout=10)
            time.sleep(0.05)  # noqa: ASYNC251 - blocking the loop is the point (the FIN lands)
            (connection,) = lean(client)
            assert not connection.protocol.eof
            assert (await client.get(origin + "/")).content == b"ok"
    assert len(accepted) == 2


async def test_a_full_pool_closes_an_idle_connection_of_another_origin_to_make_room() -> None:
    first, second = KeepAlive(b"a"), KeepAlive(b"b")
    async with raw_server(first) as origin_a, raw_server(second) as origin_b:
        pool = transport(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(5.0, pool=0.5)) as c:
            assert (await c.get(origin_a + "/")).content == b"a"
            (idle_a,) = lean(c)
            assert (await c.get(origin_b + "/")).content == b"b"  # no PoolTimeout
            assert idle_a.is_closed()
            (idle_b,) = lean(c)
            assert idle_b.key[2] != idle_a.key[2]
            assert (await c.get(origin_b + "/")).content == b"b"  # reused
    assert (first.connections, second.connections) == (1, 1)


async def test_at_most_max_keepalive_connections_stay_idle_the_oldest_closed_first() -> None:
    release = asyncio.Event()
    handler_calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal handler_calls
        while await _read_request(reader):
            handler_calls += 1
            if handler_calls <= 3:
                await release.wait()
            writer.write(_answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as origin:
        pool = transport(max_connections=5, max_keepalive_connections=2)
        async with httpx.AsyncClient(transport=pool, timeout=5.0) as client:
            tasks = [asyncio.ensure_future(client.get(origin + "/")) for _ in range(3)]
            for _ in range(500):
                if handler_calls == 3:
                    break
                await asyncio.sleep(0.01)
            assert len(lean(client)) == 3
            release.set()
            assert [(await t).content for t in tasks] == [b"ok"] * 3
            idle = lean(client)
            assert len(idle) == 2 and all(c.is_idle() for c in idle)
            # Two requests at once are served by the two idle connections, no new one.
            answers = await asyncio.gather(client.get(origin + "/"), client.get(origin + "/"))
            assert [a.content for a in answers] == [b"ok"] * 2
            assert sorted(map(id, lean(client))) == sorted(map(id, idle))


async def test_a_closed_pool_refuses_new_requests() -> None:
    handler = KeepAlive()
    async with raw_server(handler) as origin:
        pool = transport()
        async with httpx.AsyncClient(transport=pool, timeout=5.0) as client:
            await client.get(origin + "/")
            lean_pool = pool.lean_pool
            await lean_pool.aclose()
            assert lean_pool.connections == []
            with pytest.raises(httpx.ConnectError, match="^the connection pool is closed$"):
                await client.get(origin + "/")


async def test_a_pool_timeout_says_what_it_waited_for() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await _read_request(reader):
            await release.wait()
            writer.write(_answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as origin:
        pool = transport(max_connections=1)
        async with httpx.AsyncClient(transport=pool, timeout=5.0) as client:
            busy = asyncio.ensure_future(client.get(origin + "/"))
            await asyncio.sleep(0.05)
            with pytest.raises(
                httpx.PoolTimeout, match="^timed out waiting for a connection from the pool$"
            ):
                await client.get(origin + "/", timeout=httpx.Timeout(5.0, pool=0.05))
            release.set()
            assert (await busy).content == b"ok"


# -- what it says --------------------------------------------------------------------------------


async def test_a_connection_names_its_origin_and_state_and_the_debug_log_follows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = KeepAlive()
    async with raw_server(handler) as origin:
        port = int(origin.rsplit(":", 1)[1])
        name = f"http://127.0.0.1:{port}"
        with caplog.at_level(logging.DEBUG, logger="zigziik.http11"):
            async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
                await client.get(origin + "/a?b=1")
                (connection,) = lean(client)
                assert repr(connection) == f"<Connection {name} idle>"
                connection.abort()
                assert repr(connection) == f"<Connection {name} closed>"
    # As written when logged (a record formats its connection only when read).
    logged = [
        line.partition(".py:")[2].split(" ", 1)[1]
        for line in caplog.text.splitlines()
        if "zigziik.http11" in line
    ]
    assert logged == [
        f"connected <Connection {name} active>",
        f"send GET b'/a?b=1' on <Connection {name} active>",
    ]


# -- TLS -----------------------------------------------------------------------------------------


async def test_tls_offers_only_http_1_1_and_sends_the_requested_server_name() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "zigna.test").configure_cert(server_context)
    server_context.set_alpn_protocols(["h2", "http/1.1"])
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)  # type: ignore[assignment,misc,return-value]
    alpn: list[str | None] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        alpn.append(writer.get_extra_info("ssl_object").selected_alpn_protocol())
        try:
            while await _read_request(reader):
                writer.write(_answer(b"secure"))
                await writer.drain()
        finally:
            writer.close()

    handlers: list[asyncio.Task[None]] = []

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.ensure_future(handler(reader, writer)))

    server = await asyncio.start_server(run, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client_context = ssl.create_default_context()  # not the shared default: it trusts the CA
    ca.configure_trust(client_context)
    url = f"https://127.0.0.1:{port}/"
    try:
        answers = []
        for extensions in ({}, {"sni_hostname": "zigna.test"}):  # a connection each
            async with httpx.AsyncClient(transport=transport(ssl_context=client_context)) as c:
                answers.append(await c.get(url, extensions=extensions))
        assert [a.content for a in answers] == [b"secure", b"secure"]
        assert answers[0].http_version == "HTTP/1.1"
    finally:
        server.close()
        # Each handler ends at the client's close (and closes its side; Python 3.10's
        # wait_closed neither waits for handlers nor closes their connections).
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 10)
        await server.wait_closed()
    assert alpn == ["http/1.1", "http/1.1"]
    assert names == [None, "zigna.test"]  # an IP address is never sent as a server name


# -- connecting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://example.test/x", (b"http", b"example.test", 80)),
        ("https://example.test/x", (b"https", b"example.test", 443)),
        ("http://example.test:8080/x", (b"http", b"example.test", 8080)),
    ],
)
async def test_a_connection_is_keyed_by_scheme_host_and_the_default_port(
    url: str, key: tuple[bytes, bytes, int]
) -> None:
    pool = transport().lean_pool
    asked: list[tuple[bytes, bytes, int]] = []

    async def connect(
        key: tuple[bytes, bytes, int], request: httpx.Request, timeout: object
    ) -> Connection:
        asked.append(key)
        raise httpx.ConnectError("no network in this test", request=request)

    pool._connect = connect  # type: ignore[method-assign]
    with pytest.raises(httpx.ConnectError):
        await pool.handle_async_request(httpx.Request("GET", url))
    assert asked == [key]
    await pool.aclose()


async def test_a_failed_connect_lets_the_next_waiter_try_at_once() -> None:
    """With one connection allowed, a refused connect must wake the request waiting behind
    it (which is refused too), not leave it to wait for the pool's timeout."""
    port = raw_servers.closed_port()
    pool = transport(max_connections=1)
    async with httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(5.0, pool=3.0)) as client:
        results = await asyncio.gather(
            *(client.get(f"http://127.0.0.1:{port}/") for _ in range(2)), return_exceptions=True
        )
    assert [type(r) for r in results] == [httpx.ConnectError, httpx.ConnectError]
    assert pool.lean_pool._waiters == collections.deque()


async def test_a_connect_timeout_names_the_address_and_wakes_the_next_waiter() -> None:
    with raw_servers.unaccepted_listener() as origin:
        address = origin.removeprefix("http://")
        pool = transport(max_connections=1)
        timeout = httpx.Timeout(5.0, connect=0.3, pool=3.0)
        async with httpx.AsyncClient(transport=pool, timeout=timeout) as client:
            results = await asyncio.gather(
                *(client.get(origin + "/") for _ in range(2)), return_exceptions=True
            )
    assert [type(r) for r in results] == [httpx.ConnectTimeout, httpx.ConnectTimeout]
    assert [str(r) for r in results] == [f"timed out connecting to {address}"] * 2


async def test_a_request_waiting_for_the_pool_ends_when_the_pool_closes() -> None:
    """The one connection is held by a response whose body nobody reads: closing the pool
    must wake the request waiting for it (nothing else will)."""
    async with raw_server(KeepAlive(b"z" * 100_000)) as origin:
        pool = transport(max_connections=1)
        async with httpx.AsyncClient(transport=pool, timeout=5.0) as client:
            async with client.stream("GET", origin + "/"):
                waiting = asyncio.ensure_future(client.get(origin + "/"))
                await asyncio.sleep(0.05)
                await pool.lean_pool.aclose()
                with pytest.raises(httpx.ConnectError, match="^the connection pool is closed$"):
                    await asyncio.wait_for(waiting, 2.0)


async def test_a_pool_timeout_leaves_no_waiter_behind() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await _read_request(reader):
            await release.wait()
            writer.write(_answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as origin:
        pool = transport(max_connections=1)
        async with httpx.AsyncClient(transport=pool, timeout=5.0) as client:
            busy = asyncio.ensure_future(client.get(origin + "/"))
            await asyncio.sleep(0.05)
            for _ in range(3):
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(origin + "/", timeout=httpx.Timeout(5.0, pool=0.02))
            assert pool.lean_pool._waiters == collections.deque()
            release.set()
            await busy


async def test_the_longest_idle_connection_is_the_one_closed_to_make_room() -> None:
    a, b, c = KeepAlive(b"a"), KeepAlive(b"b"), KeepAlive(b"c")
    async with raw_server(a) as origin_a, raw_server(b) as origin_b, raw_server(c) as origin_c:
        pool = transport(max_connections=2)
        async with httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(5.0, pool=0.5)) as c_:
            await c_.get(origin_a + "/")
            await asyncio.sleep(0.01)
            await c_.get(origin_b + "/")
            (first, second) = sorted(lean(c_), key=lambda conn: conn.idle_since)
            assert (await c_.get(origin_c + "/")).content == b"c"
            assert first.is_closed() and second.is_idle()
            assert (await c_.get(origin_b + "/")).content == b"b"  # B's still reused
    assert (a.connections, b.connections, c.connections) == (1, 1, 1)


# -- answers the pool must frame right -----------------------------------------------------------


async def test_switching_protocols_is_the_answer_and_its_connection_is_not_reused() -> None:
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    async with raw_server(_serve_answers(answer)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            response = await client.get(origin + "/")
            assert response.status_code == 101
            assert lean(client) == []


async def test_a_chunked_body_followed_by_bytes_nobody_asked_for_closes_its_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA"
    async with raw_server(_serve_answers(answer, answer)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            assert (await client.get(origin + "/")).content == b"ok"
            assert lean(client) == []


async def test_a_bodiless_answer_left_unread_still_frees_its_connection() -> None:
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"  # no body: a HEAD's
    async with raw_server(_serve_answers(head_answer, _answer(b"x" * 10))) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            async with client.stream("HEAD", origin + "/"):
                pass  # nothing read: there is nothing to read
            (connection,) = lean(client)
            assert connection.is_idle()
            assert (await client.get(origin + "/")).content == b"x" * 10
            assert lean(client) == [connection]


# -- uploads that meet a slow or vanishing server ------------------------------------------------


async def test_a_large_upload_to_a_slow_reader_waits_for_room_and_arrives_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than the socket buffers hold
    received: list[bytes] = []
    paused: list[bool] = []
    pause_writing = _http11._Protocol.pause_writing

    def spy(protocol: _http11._Protocol) -> None:
        paused.append(True)
        pause_writing(protocol)

    monkeypatch.setattr(_http11._Protocol, "pause_writing", spy)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            await asyncio.sleep(0.2)  # the client's writes back up meanwhile
            received.append(await reader.readexactly(len(body)))
            writer.write(_answer(b"ok"))
            await writer.drain()
            await reader.read()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            response = await client.post(origin + "/", content=body)
            assert response.content == b"ok"
            (connection,) = lean(client)
            assert connection.is_idle() and not connection.protocol.writing_paused
    assert paused  # the test is about waiting for room: it must have had to
    assert received == [body]


def _go_away(how: str) -> Handler:
    """A handler that reads a request's head, then ends its side cleanly ("end": a FIN, and
    it reads on) or resets the connection ("reset"), without answering."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await _read_request(reader):
            return
        if how == "end":
            writer.write_eof()
            while await reader.read(65536):
                pass
        else:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    return handler


@pytest.mark.parametrize(
    ("how", "content", "message"),
    [
        ("end", "stream", "^the connection is closed$"),
        ("reset", "stream", "Connection reset by peer|Broken pipe"),
        # 64 MiB at once: the reset comes while the write waits for room in the socket.
        ("reset", "bytes", "Connection reset by peer|Broken pipe"),
    ],
)
async def test_a_server_that_goes_away_mid_upload_is_a_write_error_that_says_how(
    how: str, content: str, message: str
) -> None:
    sent = 0

    async def pieces() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(300):  # 3 s at most: an upload into the void must not go on
            sent += 1
            yield b"u" * 1000
            await asyncio.sleep(0.01)

    body = pieces() if content == "stream" else b"u" * (64 << 20)
    async with raw_server(_go_away(how)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(httpx.WriteError, match=message):
                await client.post(origin + "/", content=body)
            assert lean(client) == []
    assert sent < 300


async def test_a_malformed_chunk_in_a_body_says_what_was_wrong() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"
    async with raw_server(_serve_answers(answer)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(
                httpx.RemoteProtocolError, match=r"^bad chunk size line: b'zz\\r\\n'$"
            ):
                await client.get(origin + "/")
            assert lean(client) == []


# -- the end of the stream, and errors that come with it -----------------------------------------


async def test_the_protocol_notes_the_end_of_the_stream_at_once_and_asks_for_the_close() -> None:
    protocol = _http11._Protocol()
    protocol.read_waiter = asyncio.get_running_loop().create_future()
    assert protocol.eof_received() is False  # False: asyncio closes the transport
    assert protocol.eof is True  # before connection_lost: release() reads it
    assert protocol.read_waiter.done()


async def test_an_idle_connection_the_server_ends_is_closed_on_this_side_too() -> None:
    """Not left half-closed (CLOSE_WAIT) until a request for its origin comes along."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(_answer(b"ok"))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write_eof()
            await reader.read()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            assert (await client.get(origin + "/")).content == b"ok"
            (connection,) = lean(client)
            for _ in range(200):
                if connection.protocol.lost:
                    break
                await asyncio.sleep(0.01)
            assert connection.protocol.lost and connection.transport.is_closing()


class _Transport:
    """Just enough of an asyncio transport for a `Connection` that never touches a socket."""

    def __init__(self, protocol: _http11._Protocol, *, closing: bool = False) -> None:
        self.protocol = protocol
        self.closing = closing
        self.written: list[bytes] = []
        self.resumed = 0

    def get_protocol(self) -> _http11._Protocol:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        self.resumed += 1

    def abort(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            ConnectionResetError(104, "Connection reset by peer"),
            "[Errno 104] Connection reset by peer",
        ),
        (ConnectionResetError(), "ConnectionResetError"),  # no text: its type says what
        (None, None),  # a clean end: b""
    ],
)
async def test_reading_at_the_end_of_a_broken_stream_says_what_broke_it(
    error: BaseException | None, message: str | None
) -> None:
    protocol = _http11._Protocol()
    protocol.connection_lost(error)  # type: ignore[arg-type]
    pool = transport().lean_pool
    connection = Connection(pool, (b"http", b"example.test", 80), _Transport(protocol))  # type: ignore[arg-type]
    if message is None:
        assert await connection.read(1.0) == b""
    else:
        with pytest.raises(ConnectionError, match=f"^{re.escape(message)}$"):
            await connection.read(1.0)
    await pool.aclose()


def _reset_after(data: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.05)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    return handler


@pytest.mark.parametrize(
    "answer",
    [
        _answer(b"y" * 100_000)[:50_000],
        b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 50_000,  # a body up to the close: a reset is no end
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" + b"y" * 50_000,
    ],
    ids=["sized", "until-close", "chunked"],
)
async def test_a_reset_in_the_middle_of_a_body_is_a_read_error_that_says_so(answer: bytes) -> None:
    async with raw_server(_reset_after(answer)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(httpx.ReadError, match=r"^\[Errno 104\] Connection reset by peer$"):
                await client.get(origin + "/")
            assert lean(client) == []


# -- chunked bodies that arrive in parts ---------------------------------------------------------


def _in_parts(*parts: bytes, pause: float = 0.05) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await _read_request(reader):
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(pause)

    return handler


def _stall_then_close(first: bytes) -> Handler:
    """Send ``first``, stall for a second, close (a read without its timeout ends at the
    close, not in a read timeout)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(first)
            await writer.drain()
            await asyncio.sleep(1.0)

    return handler


async def test_a_chunked_body_that_arrives_in_parts_is_read_whole_and_its_connection_reused() -> (
    None
):
    parts = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"lo\r\n6\r\n world\r",
        b"\n0\r\n",
        b"\r\n",
    )
    async with raw_server(_in_parts(*parts)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            for _ in range(2):
                assert (await client.get(origin + "/")).content == b"hello world"
            (connection,) = lean(client)
            assert connection.is_idle()


async def test_a_chunked_body_that_stalls_is_a_read_timeout() -> None:
    first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"
    async with raw_server(_stall_then_close(first)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout, match="^timed out while receiving data$"):
                await client.get(origin + "/")
            assert lean(client) == []


async def test_a_chunked_body_cut_short_says_so_whole() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"
    async with raw_server(_serve_answers(answer)) as origin:  # then it closes
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(
                httpx.RemoteProtocolError,
                match="^peer closed connection without sending complete message body: "
                "incomplete chunked read$",
            ):
                await client.get(origin + "/")


async def test_an_idle_connection_that_receives_bytes_nobody_asked_for_is_not_reused() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        while await _read_request(reader):
            writer.write(_answer(b"ok" if first else b"fresh"))
            await writer.drain()
            if first:
                await asyncio.sleep(0.05)
                writer.write(_answer(b"junk"))  # while the connection is idle
                await writer.drain()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            assert (await client.get(origin + "/")).content == b"ok"
            (idle,) = lean(client)
            for _ in range(200):  # until the junk has arrived (the loop has read it)
                if idle.protocol.chunks:
                    break
                await asyncio.sleep(0.01)
            assert idle.protocol.chunks and not idle.transport.is_closing()
            assert (await client.get(origin + "/")).content == b"fresh"
            assert idle.is_closed()
    assert connections == 2


# -- whether an idle socket was closed: the check itself -----------------------------------------


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


@contextmanager
def _idle_socket_at(fd: int) -> Iterator[socket.socket]:
    """A connected socket with nothing to read whose descriptor is ``fd`` (whatever was at
    ``fd`` is put back after); yields its peer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if fd >= soft:  # a descriptor that high needs room for it
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd + 1, hard))
    ours, peer = socket.socketpair()
    saved = None
    try:
        saved = os.dup(fd)
    except OSError:
        pass
    os.dup2(ours.fileno(), fd)
    try:
        yield peer
    finally:
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)
        else:
            os.close(fd)
        ours.close()
        peer.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_no_socket_or_a_closed_one_is_never_reused() -> None:
    assert _http11._socket_readable(None) is True
    closed = socket.socket()
    closed.close()  # fileno() is -1 now
    assert _http11._socket_readable(closed) is True


@pytest.mark.parametrize(
    ("fd", "poll"),
    [(0, True), (0, False), (1, True), (1, False), (1500, True)],
    ids=["stdin's-poll", "stdin's-select", "stdout's-poll", "stdout's-select", "beyond-1024"],
)
async def test_an_idle_socket_is_readable_only_once_its_peer_sends_or_closes(
    fd: int, poll: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any descriptor is a socket's (a daemon without stdin hands out 0); poll() takes
    descriptors beyond select()'s 1,024, so select() is only where poll() is missing."""
    if not poll:  # as on a platform without poll()
        monkeypatch.delattr(_http11.select, "poll")
    real_select = select.select

    def select_(readable: list[int], writable: list[int], errors: list[int], *_: object) -> object:
        return real_select(readable, writable, errors, 0)  # whether it waits: the next test

    monkeypatch.setattr(_http11.select, "select", select_)
    with _idle_socket_at(fd) as peer:
        assert _http11._socket_readable(_Fd(fd)) is False  # type: ignore[arg-type]
        if fd == 1:
            assert _http11._socket_readable(None) is True  # not stdout's socket instead
        peer.send(b"x")
        assert _http11._socket_readable(_Fd(fd)) is True  # type: ignore[arg-type]
    with _idle_socket_at(fd) as peer:
        peer.close()
        assert _http11._socket_readable(_Fd(fd)) is True  # type: ignore[arg-type]


@pytest.mark.parametrize("poll", [True, False], ids=["poll", "select"])
async def test_the_check_never_waits(poll: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """It runs on the event loop before every reuse: a timeout of 0, never a wait."""
    timeouts: list[object] = []
    real_select, real_poll = select.select, getattr(select, "poll", None)

    def select_(*args: object) -> object:
        timeouts.append(args[3] if len(args) > 3 else "none")
        return real_select(*args[:3], 0)  # type: ignore[call-overload]

    class Poll:
        def __init__(self) -> None:
            assert real_poll is not None
            self.poller = real_poll()

        def register(self, fd: int, events: int) -> None:
            self.poller.register(fd, events)

        def poll(self, *args: object) -> object:
            timeouts.append(args[0] if args else "none")
            return self.poller.poll(0)

    monkeypatch.setattr(_http11.select, "select", select_)
    if poll:
        monkeypatch.setattr(_http11.select, "poll", Poll)
    else:
        monkeypatch.delattr(_http11.select, "poll")
    ours, peer = socket.socketpair()
    with ours, peer:
        assert _http11._socket_readable(ours) is False
    assert timeouts == [0]


# -- reading a body as it comes -------------------------------------------------------------------


async def test_the_socket_pauses_once_exactly_the_high_water_mark_is_waiting() -> None:
    class Transport:
        paused = 0

        def pause_reading(self) -> None:
            self.paused += 1

    protocol = _http11._Protocol()
    protocol.connection_made(Transport())  # type: ignore[arg-type]
    protocol.data_received(b"x" * (_HIGH_WATER - 1))
    assert not protocol.reading_paused
    protocol.data_received(b"x")
    assert protocol.reading_paused and protocol.transport.paused == 1  # type: ignore[union-attr]
    protocol.data_received(b"x")  # already paused: not again
    assert protocol.transport.paused == 1  # type: ignore[union-attr]


async def test_a_sized_body_whose_last_byte_comes_late_is_read_to_its_last_byte() -> None:
    body = b"0123456789" * 1000
    answer = _answer(body)
    async with raw_server(_in_parts(answer[:-1], answer[-1:])) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            for _ in range(2):
                assert (await client.get(origin + "/")).content == body
            (connection,) = lean(client)  # complete: reused
            assert connection.is_idle()


@pytest.mark.parametrize(
    "first",
    [
        _answer(b"y" * 100_000)[:50_000],
        b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 50_000,  # a body up to the close
    ],
    ids=["sized", "until-close"],
)
async def test_a_body_that_stalls_is_a_read_timeout(first: bytes) -> None:
    async with raw_server(_stall_then_close(first)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout, match="^timed out while receiving data$"):
                await client.get(origin + "/")
            assert lean(client) == []


async def test_a_connection_the_server_ended_while_its_body_waited_is_not_put_back() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(_answer(b"ok"))  # keep-alive promised
            await writer.drain()
            writer.write_eof()  # but ended: nothing more comes
            await reader.read()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            async with client.stream("GET", origin + "/") as response:
                (connection,) = lean(client)
                for _ in range(200):
                    if connection.protocol.eof:
                        break
                    await asyncio.sleep(0.01)
                assert connection.protocol.eof and not connection.protocol.chunks
                assert await response.aread() == b"ok"
            assert lean(client) == []


# -- the pool's count of its connections ----------------------------------------------------------


async def test_connections_closed_after_their_answer_leave_room_for_new_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if await _read_request(reader):
            writer.write(_answer(b"bye", close=True))
            await writer.drain()

    async with raw_server(handler) as origin:
        name = "http://" + origin.removeprefix("http://")
        pool = transport(max_connections=1)
        with caplog.at_level(logging.DEBUG, logger="zigziik.http11"):
            async with httpx.AsyncClient(transport=pool, timeout=httpx.Timeout(5.0, pool=1.0)) as c:
                for _ in range(3):  # never a PoolTimeout: each closed one is forgotten
                    assert (await c.get(origin + "/")).content == b"bye"
                assert lean(c) == [] and pool.lean_pool._all == set()
    assert connections == 3
    closed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed")]
    assert closed == [f"closed <Connection {name} closed>"] * 3


# -- every error names the request it is about ----------------------------------------------------


async def _stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(2)


async def _never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(2)


@pytest.mark.parametrize(
    ("handler", "content", "error"),
    [
        (_stall, None, httpx.ReadTimeout),
        (_never_read, b"x" * (64 << 20), httpx.WriteTimeout),
        (_serve_answers(b"ICY 200 OK\r\n\r\n"), None, httpx.RemoteProtocolError),
        (
            _serve_answers(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            None,
            httpx.RemoteProtocolError,
        ),
        (_stall_then_close(_answer(b"y" * 1000)[:100]), None, httpx.ReadTimeout),
        (_serve_answers(_answer(b"y" * 1000)[:100]), None, httpx.RemoteProtocolError),
        (_reset_after(_answer(b"y" * 1000)[:100]), None, httpx.ReadError),
    ],
    ids=[
        "head timeout",
        "write timeout",
        "bad head",
        "bad length",
        "body timeout",
        "body cut",
        "body reset",
    ],
)
async def test_every_error_names_its_request(
    handler: Handler, content: bytes | None, error: type[Exception]
) -> None:
    pool = transport().lean_pool
    async with raw_server(handler) as origin:
        request = httpx.Request(
            "GET" if content is None else "POST",
            origin + "/",
            content=content,
            extensions={"timeout": {"read": 0.2, "write": 0.2}},
        )

        async def exchange() -> None:
            response = await pool.handle_async_request(request)
            await response.aread()

        with pytest.raises(error) as caught:
            await exchange()
        assert type(caught.value) is error
        assert caught.value.request is request  # type: ignore[attr-defined]
    await pool.aclose()


def _connection(protocol: _http11._Protocol, **kwargs: bool) -> tuple[Connection, _Transport]:
    fake = _Transport(protocol, **kwargs)
    protocol.connection_made(fake)  # type: ignore[arg-type]
    pool = _http11.Http11Pool(ssl_context=default_ssl_context(), limits=httpx.Limits())
    return Connection(pool, (b"http", b"example.test", 80), fake), fake  # type: ignore[arg-type]


async def test_a_protocol_nobody_waits_on_takes_data_the_end_and_the_loss() -> None:
    protocol = _http11._Protocol()
    protocol.data_received(b"early")
    protocol.eof_received()
    protocol.connection_lost(None)
    assert (protocol.chunks, protocol.eof, protocol.lost) == ([b"early"], True, True)


async def test_a_write_to_a_connection_that_is_closing_is_refused_before_it_is_lost() -> None:
    connection, fake = _connection(_http11._Protocol(), closing=True)
    with pytest.raises(ConnectionError, match="^the connection is closed$"):
        await connection.write(b"GET / HTTP/1.1\r\n\r\n", 1.0)
    assert fake.written == []


async def test_a_read_takes_everything_waiting_and_starts_the_count_again() -> None:
    protocol = _http11._Protocol()
    connection, fake = _connection(protocol)
    protocol.data_received(b"one")
    protocol.data_received(b"two")  # two pieces waiting: both are the read's
    assert await connection.read(1.0) == b"onetwo"
    protocol.data_received(b"x" * (_HIGH_WATER - 1))
    assert not protocol.reading_paused  # the count starts from nothing after each read
    protocol.data_received(b"x")
    assert protocol.reading_paused
    assert await connection.read(1.0) == b"x" * _HIGH_WATER
    assert not protocol.reading_paused and fake.resumed == 1


async def test_a_client_without_timeouts_reads_and_writes_without_them() -> None:
    async with raw_server(KeepAlive(b"untimed")) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=None) as client:
            for _ in range(2):
                assert (await client.post(origin + "/", content=b"x")).content == b"untimed"


async def test_a_server_that_closes_without_answering_says_so_whole() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)  # then it closes

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(
                httpx.RemoteProtocolError,
                match=r"^Server disconnected without sending a response\.$",
            ):
                await client.get(origin + "/")


async def test_an_answer_that_starts_with_a_blank_line_is_refused_at_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(b"\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(1.0)  # not an answer that more bytes could complete
            writer.write(_answer(b"late"))
            await writer.drain()
            await reader.read()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(
                httpx.RemoteProtocolError, match=r"^not an HTTP/1\.x status line: b''$"
            ):
                await client.get(origin + "/")


async def test_a_head_with_bare_line_feeds_and_a_body_with_crlfs_is_read_as_h11_reads_it() -> None:
    answer = b"HTTP/1.1 200 OK\nContent-Length: 8\n\nab\r\n\r\ncd"  # one read: head and body
    async with raw_server(_serve_answers(answer)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            assert (await client.get(origin + "/")).content == b"ab\r\n\r\ncd"


# -- connecting: happy eyeballs only where it can help ---------------------------------------------


async def test_happy_eyeballs_only_for_a_name_with_addresses_of_both_families(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Racing IPv6 and IPv4 only helps a name that has both (asyncio's race can leak a
    socket when it is cancelled); the name and port asked for are the ones connected to."""
    loop = asyncio.get_running_loop()
    resolved: list[tuple[object, ...]] = []
    connected: list[tuple[object, object, object]] = []
    real_getaddrinfo, real_connect = loop.getaddrinfo, loop.create_connection

    async def getaddrinfo(host: str, port: int, **kwargs: object) -> list[Any]:
        resolved.append((host, port, kwargs))
        if host == "dual.test":
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return await real_getaddrinfo(host, port, **kwargs)  # type: ignore[arg-type]

    async def create_connection(factory: Any, host: str, port: int, **kwargs: Any) -> Any:
        connected.append((host, port, kwargs.get("happy_eyeballs_delay", "missing")))
        if host == "dual.test":
            raise ConnectionRefusedError(111, "no dual.test here")
        return await real_connect(factory, host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(loop, "create_connection", create_connection)
    async with raw_server(KeepAlive()) as origin:
        port = int(origin.rsplit(":", 1)[1])
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            assert (await client.get(origin + "/")).content == b"ok"
            with pytest.raises(httpx.ConnectError, match="no dual.test here"):
                await client.get("http://dual.test:8080/")
    stream = {"type": socket.SOCK_STREAM}
    assert resolved == [("127.0.0.1", port, stream), ("dual.test", 8080, stream)]
    assert connected == [("127.0.0.1", port, None), ("dual.test", 8080, 0.25)]


# -- sending: how the request goes out --------------------------------------------------------------


async def test_a_body_shorter_than_one_write_goes_out_with_its_head_in_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[int] = []
    write = Connection.write

    async def spy(self: Connection, data: bytes, timeout: float | None) -> None:
        writes.append(len(data))
        await write(self, data, timeout)

    monkeypatch.setattr(Connection, "write", spy)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(_answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            for size in (_http11._ONE_WRITE - 1, _http11._ONE_WRITE):
                writes.clear()
                await client.post(origin + "/", content=b"b" * size)
                assert len(writes) == (1 if size < _http11._ONE_WRITE else 2)
                assert writes[-1] >= size


async def test_a_streamed_body_with_a_content_length_goes_out_as_it_is() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower()
        received.append(await reader.readexactly(6))
        writer.write(_answer(b"ok"))
        await writer.drain()
        await reader.read()

    async def pieces() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            response = await client.post(
                origin + "/", content=pieces(), headers={"Content-Length": "6"}
            )
            assert response.content == b"ok"
    assert received == [b"abcdef"]


async def _read_nothing_then_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await asyncio.sleep(1.0)  # a write without its timeout ends at the close, not in a timeout


_HUGE = 32 << 20  # more than the socket buffers take


async def _one_huge_piece() -> AsyncIterator[bytes]:
    yield b"p" * _HUGE


@pytest.mark.parametrize(
    ("method", "header", "content"),
    [
        ("GET", _HUGE, None),  # the head and its empty body in one write
        ("POST", _HUGE, b"b" * (1 << 20)),  # the head, then the body
        ("POST", _HUGE, "stream"),  # the head of a streamed body
        ("POST", 0, "huge piece"),  # a piece of a streamed body
    ],
    ids=["head and body", "head before a body", "head before a stream", "a piece"],
)
async def test_every_write_of_a_request_has_the_write_timeout(
    method: str, header: int, content: object
) -> None:
    headers = {"X-Big": "h" * header} if header else {}
    body: object = content
    if content == "stream":
        body = pieces_of(b"s")
    elif content == "huge piece":
        body = _one_huge_piece()
    async with raw_server(_read_nothing_then_close) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            with pytest.raises(httpx.WriteTimeout):
                await client.request(
                    method,
                    origin + "/",
                    headers=headers,
                    content=body,  # type: ignore[arg-type]
                    timeout=httpx.Timeout(5.0, write=0.2),
                )


async def pieces_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_tls_body_nobody_reads_stops_the_socket_at_about_a_mebibyte() -> None:
    """Backpressure through TLS too: the protocol pauses the TLS transport it reads from."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    body = bytes(range(256)) * (32 * 1024)  # 8 MiB
    handlers: list[asyncio.Task[None]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await _read_request(reader):
                writer.write(_answer(body))
                await writer.drain()
                await reader.read()
        finally:
            writer.close()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.ensure_future(handler(reader, writer)))

    server = await asyncio.start_server(run, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        async with httpx.AsyncClient(transport=transport(ssl_context=client_context)) as client:
            async with client.stream("GET", url) as response:
                (connection,) = lean(client)
                protocol = connection.protocol
                assert protocol.transport is connection.transport  # the TLS one
                for _ in range(500):
                    if protocol.reading_paused:
                        break
                    await asyncio.sleep(0.01)
                assert protocol.reading_paused
                waiting = protocol.size
                await asyncio.sleep(0.1)
                assert _HIGH_WATER <= protocol.size < _HIGH_WATER + (1 << 20)
                assert protocol.size - waiting < (1 << 20)
                received = b"".join([chunk async for chunk in response.aiter_raw()])
        assert received == body
    finally:
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 10)
        await server.wait_closed()


# -- connecting: what its errors say, and a pool closed meanwhile ---------------------------------


async def test_connect_errors_say_what_failed_and_name_their_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = raw_servers.closed_port()
    pool = transport(max_connections=1).lean_pool
    refused = httpx.Request("GET", f"http://127.0.0.1:{port}/")
    with pytest.raises(httpx.ConnectError) as caught:
        await pool.handle_async_request(refused)
    assert str(caught.value) == f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    assert caught.value.request is refused

    async def silent_failure(*args: object) -> object:
        raise OSError  # no text: its type says what

    monkeypatch.setattr(_http11, "_open", silent_failure)
    untold = httpx.Request("GET", "http://127.0.0.1:9/")
    with pytest.raises(httpx.ConnectError, match="^OSError$") as caught:
        await pool.handle_async_request(untold)
    assert caught.value.request is untold
    monkeypatch.undo()

    with raw_servers.unaccepted_listener() as origin:
        slow = httpx.Request("GET", origin + "/", extensions={"timeout": {"connect": 0.2}})
        with pytest.raises(httpx.ConnectTimeout) as timed_out:
            await pool.handle_async_request(slow)
        assert timed_out.value.request is slow

    await pool.aclose()
    late = httpx.Request("GET", f"http://127.0.0.1:{port}/")
    with pytest.raises(httpx.ConnectError, match="^the connection pool is closed$") as closed:
        await pool.handle_async_request(late)
    assert closed.value.request is late


async def test_a_connection_made_after_its_pool_closed_is_closed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connecting, go_on = asyncio.Event(), asyncio.Event()
    opened: list[asyncio.Transport] = []
    real_open = _http11._open

    async def slow_open(*args: Any) -> Any:
        connecting.set()
        await go_on.wait()
        transport_, protocol = await real_open(*args)
        opened.append(transport_)
        return transport_, protocol

    monkeypatch.setattr(_http11, "_open", slow_open)
    async with raw_server(KeepAlive()) as origin:
        pool = transport().lean_pool
        request = httpx.Request("GET", origin + "/", extensions={"timeout": {"connect": 5.0}})
        sending = asyncio.ensure_future(pool.handle_async_request(request))
        await connecting.wait()
        await pool.aclose()
        go_on.set()
        with pytest.raises(httpx.ConnectError, match="^the connection pool is closed$") as caught:
            await sending
        assert caught.value.request is request
        (made,) = opened
        assert made.is_closing()
        assert pool.connections == [] and pool._all == set()


async def test_the_end_of_a_chunked_upload_is_written_with_the_write_timeout_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any write may have to wait for room (the socket's buffer can be just below its mark
    when the last 5 bytes go): every one of them gets the request's write timeout."""
    writes: list[tuple[bytes, float | None]] = []
    write = Connection.write

    async def spy(self: Connection, data: bytes, timeout: float | None) -> None:
        writes.append((data[-5:], timeout))
        await write(self, data, timeout)

    monkeypatch.setattr(Connection, "write", spy)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"0\r\n\r\n")  # the head, the chunk, the end
        writer.write(_answer(b"ok"))
        await writer.drain()
        await reader.read()

    async with raw_server(handler) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            response = await client.post(
                origin + "/", content=pieces_of(b"s"), timeout=httpx.Timeout(5.0, write=0.75)
            )
            assert response.content == b"ok"
    assert writes[-1] == (b"0\r\n\r\n", 0.75)
    assert [timeout for _, timeout in writes] == [0.75] * len(writes) and len(writes) == 3


async def test_without_a_pool_timeout_a_request_waits_for_a_connection_as_long_as_it_takes() -> (
    None
):
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await _read_request(reader):
            await release.wait()
            writer.write(_answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as origin:
        pool = transport(max_connections=1)
        timeout = httpx.Timeout(5.0, pool=None)
        async with httpx.AsyncClient(transport=pool, timeout=timeout) as client:
            busy = asyncio.ensure_future(client.get(origin + "/"))
            await asyncio.sleep(0.05)
            waiting = asyncio.ensure_future(client.get(origin + "/"))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            release.set()
            assert [(await busy).content, (await waiting).content] == [b"ok", b"ok"]


async def test_connections_being_made_at_once_all_count_against_the_limit() -> None:
    release = asyncio.Event()
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await _read_request(reader):
            await release.wait()
            writer.write(_answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as origin:
        pool = transport(max_connections=2)
        async with httpx.AsyncClient(transport=pool, timeout=5.0) as client:
            tasks = [asyncio.ensure_future(client.get(origin + "/")) for _ in range(3)]
            for _ in range(500):
                if connections == 2:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # time for a third connection, were one allowed
            assert connections == 2
            release.set()
            assert [(await t).content for t in tasks] == [b"ok"] * 3
    assert connections == 2


async def test_a_pool_timeout_comes_when_it_is_due_and_names_its_request() -> None:
    """Not a moment later: the busy connection is freed soon after the wait's timeout, and a
    waiter still waiting then would get it."""
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await _read_request(reader):
            await release.wait()
            writer.write(_answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as origin:
        pool = transport(max_connections=1)
        async with httpx.AsyncClient(transport=pool, timeout=5.0) as client:
            busy = asyncio.ensure_future(client.get(origin + "/"))
            await asyncio.sleep(0.05)
            request = httpx.Request("GET", origin + "/", extensions={"timeout": {"pool": 0.05}})
            asyncio.get_running_loop().call_later(0.75, release.set)
            with pytest.raises(httpx.PoolTimeout) as caught:  # the pool's own error
                await pool.lean_pool.handle_async_request(request)
            assert caught.value.request is request
            assert not release.is_set()
            assert (await busy).content == b"ok"


async def test_a_request_that_would_break_the_message_is_refused_saying_why_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(*args: object) -> object:
        raise AssertionError("connected for a request that cannot be sent")  # pragma: no cover

    pool = transport().lean_pool
    monkeypatch.setattr(pool, "_acquire", never)
    request = httpx.Request("GET", "http://example.test/", headers={"X-Bad": "a\r\nX-In: 1"})
    with pytest.raises(
        httpx.LocalProtocolError,
        match="^a header value or the target holds a control character$",
    ) as caught:
        await pool.handle_async_request(request)
    assert caught.value.request is request
    await pool.aclose()


async def test_a_write_error_names_its_request() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(300):
            yield b"u" * 1000
            await asyncio.sleep(0.01)

    pool = transport().lean_pool
    async with raw_server(_go_away("end")) as origin:
        request = httpx.Request("POST", origin + "/", content=pieces())
        with pytest.raises(httpx.WriteError, match="^the connection is closed$") as caught:
            await pool.handle_async_request(request)
        assert caught.value.request is request
    await pool.aclose()


async def test_an_http_1_0_answer_says_so_and_its_body_is_the_stacks_own_stream() -> None:
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with raw_server(_serve_answers(answer, answer)) as origin:
        async with httpx.AsyncClient(transport=transport(), timeout=5.0) as client:
            response = await client.get(origin + "/")
            assert (response.http_version, response.content) == ("HTTP/1.0", b"ok")
            assert lean(client) == []  # HTTP/1.0: not kept alive
        pool = transport().lean_pool
        raw = await pool.handle_async_request(httpx.Request("GET", origin + "/"))
        stream = type(raw.stream)
        assert stream.__name__ == "ResponseBody" and issubclass(stream, httpx.AsyncByteStream)
        assert await raw.aread() == b"ok"
        other = _http11.Http11Pool(ssl_context=default_ssl_context(), limits=httpx.Limits())
        assert other._body is stream  # one class per stack, made once
        await pool.aclose()
