"""zigziik._http11's pool against raw loopback servers, beyond test_net.py: backpressure on a
body nobody reads, a write that cannot leave, an idle connection the server closed while
the event loop was busy, making room in a full pool, TLS (ALPN and SNI), and what its
errors and its debug log say."""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import _servers as raw_servers
import httpx
import pytest
import trustme
from test_net import KeepAlive, _answer, _read_request, _serve_answers, raw_server

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
