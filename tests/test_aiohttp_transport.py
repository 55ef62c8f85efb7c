"""The optional aiohttp-backed httpx transport behaves like httpx's own under zigziik."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

# The test extra installs aiohttp: without it this file fails to collect, it is never skipped.
import aiohttp  # noqa: F401
import httpx
import pytest

from zigziik import NotFoundError, RetryPolicy, TransportError, ZignaClient
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve
from zigziik.transports import AiohttpTransport, aiohttp_client

pytestmark = pytest.mark.asyncio


@pytest.fixture
def fake() -> FakeZigna:
    return FakeZigna(orders=6, picture_size=(30_000, 90_000), seed=3)


@pytest.fixture
def origin(fake: FakeZigna) -> Iterator[str]:
    with serve(fake.app) as url:
        yield url


def _with_pictures(fake: FakeZigna) -> str:
    return next(i for i in fake.order_ids if len(fake.pictures(i)) >= 2)


async def test_json_calls_paging_and_errors(fake: FakeZigna, origin: str) -> None:
    async with (
        aiohttp_client() as http,
        ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", http_client=http) as zigna,
    ):
        orders = await zigna.orders.list(take=2).collect()
        assert [o.id for o in orders] == fake.order_ids
        order = await zigna.orders.get(fake.order_ids[0])
        assert order == orders[0]
        with pytest.raises(NotFoundError):
            await zigna.orders.get("no-such-order")
    sent = [r for r in fake.records if r.method == "GET"]
    assert sent and all(r.status is not None for r in sent)


async def test_downloads_retry_a_truncated_body_and_uploads_stream(
    fake: FakeZigna, origin: str, tmp_path: Path
) -> None:
    order_id = _with_pictures(fake)
    async with (
        aiohttp_client() as http,
        ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", http_client=http) as zigna,
    ):
        listing = await zigna.pictures.list(order_id)
        first, second = listing.pictures[:2]
        assert first.picture_id is not None and second.picture_id is not None
        path = await zigna.pictures.download(order_id, first, tmp_path)
        assert path.read_bytes() == fake.picture_bytes(order_id, first.picture_id)
        fake.faults.truncate_next(1, match=f"/pictures/{second.picture_id}")
        path = await zigna.pictures.download(order_id, second, tmp_path)
        assert path.read_bytes() == fake.picture_bytes(order_id, second.picture_id)
        assert len(list(tmp_path.iterdir())) == 2  # the two pictures, no temporary file left
        upload = tmp_path / "new.jpg"
        upload.write_bytes(b"\xff\xd8\xff" + bytes(200_000))
        before = len(fake.pictures(order_id))
        await zigna.pictures.upload(order_id, upload)
        assert len(fake.pictures(order_id)) == before + 1


async def test_a_harvest_through_aiohttp_writes_every_picture(
    fake: FakeZigna, origin: str, tmp_path: Path
) -> None:
    async with (
        aiohttp_client() as http,
        ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", http_client=http) as zigna,
    ):
        report = await zigna.harvest(tmp_path, concurrency=4, strategy="pictures")
    assert report.failures == []
    assert report.written == fake.picture_count
    assert report.bytes == fake.picture_bytes_total


async def test_a_refused_connection_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = AiohttpTransport()
    async with (
        httpx.AsyncClient(transport=transport) as http,
        ZignaClient(
            DEMO_API_KEY,
            base_url=f"http://127.0.0.1:{port}/v2",
            http_client=http,
            retry=RetryPolicy(max_attempts=1),
        ) as zigna,
    ):
        with pytest.raises(TransportError):
            await zigna.orders.get("1")


async def test_hooks_and_auth_take_httpx_own_send(fake: FakeZigna, origin: str) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async with (
        aiohttp_client(event_hooks={"request": [hook]}) as http,
        ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", http_client=http) as zigna,
    ):
        await zigna.orders.get(fake.order_ids[0])
    assert seen == [f"/v2/orders/{fake.order_ids[0]}"]


async def test_the_client_refuses_another_transport() -> None:
    with pytest.raises(TypeError):
        aiohttp_client(transport=httpx.AsyncHTTPTransport())


class _DripServer:
    """A raw HTTP/1.1 server on loopback sending its body in timed pieces."""

    def __init__(self, pieces: list[tuple[float, bytes]], length: int) -> None:
        self.pieces = pieces
        self.length = length
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                + f"Content-Length: {self.length}\r\n\r\n".encode()
            )
            for pause, piece in self.pieces:
                await asyncio.sleep(pause)
                writer.write(piece)
                await writer.drain()
            await asyncio.sleep(5)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def test_a_body_that_keeps_coming_outlasts_the_read_timeout(tmp_path: Path) -> None:
    """The read timeout bounds each silence, not the whole body (as with httpx's transport)."""
    pieces = [(0.15, bytes([i]) * 1000) for i in range(8)]  # 1.2 s in all, gaps of 0.15 s
    async with (
        _DripServer(pieces, 8000) as origin,
        aiohttp_client(timeout=0.5) as http,
        ZignaClient(
            DEMO_API_KEY, base_url=origin + "/v2", http_client=http, retry=RetryPolicy.never()
        ) as zigna,
    ):
        path = await zigna.pictures.download("1", 7, tmp_path)
    assert path.read_bytes() == b"".join(piece for _, piece in pieces)


async def test_a_body_that_stops_mid_way_times_out_and_leaves_no_file(tmp_path: Path) -> None:
    # Pieces after the headers, then nothing (the server waits 5 s): the silence starts
    # after the body has begun, where zigziik's own idle watch times it.
    pieces = [(0.05, b"x" * 2000), (0.05, b"y" * 3000)]
    started = time.monotonic()
    async with (
        _DripServer(pieces, 10_000) as origin,
        aiohttp_client(timeout=0.3) as http,
        ZignaClient(
            DEMO_API_KEY, base_url=origin + "/v2", http_client=http, retry=RetryPolicy.never()
        ) as zigna,
    ):
        with pytest.raises(TransportError, match="timed out"):
            await zigna.pictures.download("1", 7, tmp_path)
    assert time.monotonic() - started < 3
    assert list(tmp_path.iterdir()) == []


async def test_a_stall_after_the_headers_times_out(
    fake: FakeZigna, origin: str, tmp_path: Path
) -> None:
    order_id = _with_pictures(fake)
    picture = fake.pictures(order_id)[0]["pictureID"]
    fake.faults.stall_next(1, match=f"/pictures/{picture}", seconds=5)
    started = time.monotonic()
    async with (
        aiohttp_client(timeout=0.3) as http,
        ZignaClient(
            DEMO_API_KEY, base_url=origin + "/v2", http_client=http, retry=RetryPolicy.never()
        ) as zigna,
    ):
        with pytest.raises(TransportError, match="timed out"):
            await zigna.pictures.download(order_id, picture, tmp_path)
    assert time.monotonic() - started < 3
    assert list(tmp_path.iterdir()) == []


async def test_a_chunked_body_arrives_whole(tmp_path: Path) -> None:
    """Transfer-Encoding: chunked (no Content-Length), HTTP chunks of every size, some empty."""
    pieces = [b"a" * 1, b"b" * 1000, b"c" * 70_000, b"d" * 3]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with (
            aiohttp_client() as http,
            ZignaClient(
                DEMO_API_KEY, base_url=f"http://127.0.0.1:{port}/v2", http_client=http
            ) as zigna,
        ):
            path = await zigna.pictures.download("1", 7, tmp_path)
    finally:
        server.close()
    assert path.name == "7.jpg"
    assert path.read_bytes() == b"".join(pieces)
