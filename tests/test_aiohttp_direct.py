"""The aiohttp extra's direct path: a download sent straight to aiohttp, with no httpx
``Request`` or ``Response`` made for it, keeps every guarantee of the generic path.

Over real loopback sockets (the raw servers of `tests/_servers.py` for faults no framework
makes on purpose, the fake Zigna for realistic traffic): the direct path is the one taken;
a body cut short, stalled, too long or too short ends in the documented error after the
documented attempts and leaves no file; error statuses keep their excerpt and rate-limit
figures; a ``Content-Encoding`` is decoded; the budget records the server's figures and has
nothing in flight afterwards; a cancelled download or harvest leaves nothing half-written.
"""

from __future__ import annotations

import gzip
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _servers as raw
import anyio
import httpx
import pytest

from zigziik import (
    DailyBudget,
    DecodeError,
    IncompleteBodyError,
    IntegrityError,
    NotFoundError,
    Picture,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
    ZignaClient,
)
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve
from zigziik.transports import AiohttpClient, AiohttpTransport, aiohttp_client

pytestmark = pytest.mark.asyncio

TIMEOUT = 0.5
ATTEMPTS = 2
RETRY = RetryPolicy(max_attempts=ATTEMPTS, base_delay=0.01, max_delay=0.02)
BOUND = ATTEMPTS * TIMEOUT + 2.0
SMALL = bytes(range(256)) * 400  # 102,400 bytes: received whole, then written at once
LARGE = bytes(range(256)) * 2400  # 614,400 bytes: streamed to the disk thread
ORDER = b'{"id": "1", "caseNumber": "A-1"}'
RATE = [("X-RateLimit-Limit", "2000"), ("X-RateLimit-Remaining", "1500")]


class Counted:
    """How many requests went through httpx's objects (the generic path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.generic = 0
        original = AiohttpTransport.handle_async_request

        async def counting(self_: AiohttpTransport, request: httpx.Request) -> httpx.Response:
            self.generic += 1
            return await original(self_, request)

        monkeypatch.setattr(AiohttpTransport, "handle_async_request", counting)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    return Counted(monkeypatch)


def zigna(origin: str, http: AiohttpClient, **options: Any) -> ZignaClient:
    options.setdefault("retry", RETRY)
    return ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", http_client=http, **options)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- the path taken ---------------------------------------------------------------------------


async def test_downloads_go_direct_and_json_calls_through_httpx(
    counted: Counted, tmp_path: Path
) -> None:
    ok = raw.respond(200, SMALL, content_type="image/jpeg", headers=RATE)
    with raw.RawServer(ok) as server:
        async with aiohttp_client(timeout=TIMEOUT) as http, zigna(server.origin, http) as client:
            picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(SMALL))
            path = await client.pictures.download("1", picture, tmp_path)
            by_id = await client.pictures.download("1", 8, tmp_path)
            zipped = await client.pictures.download_zip("1", tmp_path / "zip")
            assert counted.generic == 0  # three downloads, none through httpx's objects
            with pytest.raises(DecodeError):  # the body is no JSON order
                await client.orders.get("1")
            assert counted.generic == 1
    assert path.read_bytes() == SMALL and by_id.read_bytes() == SMALL
    assert by_id.name == "8.jpg" and path.name == "7-a.jpg"
    assert zipped is not None and zipped.read_bytes() == SMALL
    sent = server.requests[0]
    assert sent.method == "GET" and sent.target == "/v2/orders/1/pictures/7"
    assert sent.headers["x-apikey"] == DEMO_API_KEY
    assert sent.headers["accept"] == "*/*"
    assert sent.headers["user-agent"].startswith("zigziik/")


async def test_the_clients_own_headers_are_sent_and_the_callers_win(
    counted: Counted, tmp_path: Path
) -> None:
    ok = raw.respond(200, SMALL, content_type="image/jpeg")
    with raw.RawServer(ok) as server:
        async with (
            aiohttp_client(headers={"X-Tenant": "north", "Accept": "text/plain"}) as http,
            zigna(server.origin, http) as client,
        ):
            await client.pictures.download("1", 7, tmp_path)
            http.headers["X-Tenant"] = "south"  # changed between downloads: sent as it is now
            await client.pictures.download("1", 8, tmp_path)
    assert counted.generic == 0
    first, second = server.requests
    assert first.headers["x-tenant"] == "north" and second.headers["x-tenant"] == "south"
    assert first.headers["accept"] == "*/*"  # zigziik's, over the client's


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param({"auth": ("user", "secret")}, id="auth"),
        pytest.param({"cookies": {"session": "1"}}, id="cookies"),
        pytest.param({"params": {"tenant": "x"}}, id="params"),
    ],
)
async def test_a_client_configured_to_act_on_requests_takes_httpx_path(
    counted: Counted, tmp_path: Path, configure: dict[str, Any]
) -> None:
    ok = raw.respond(200, SMALL, content_type="image/jpeg")
    with raw.RawServer(ok) as server:
        async with aiohttp_client(**configure) as http, zigna(server.origin, http) as client:
            path = await client.pictures.download("1", 7, tmp_path)
    assert counted.generic == 1
    assert path.read_bytes() == SMALL
    sent = server.requests[0].headers
    if "auth" in configure:
        assert sent["authorization"].startswith("Basic ")
    if "cookies" in configure:
        assert sent["cookie"] == "session=1"
    if "params" in configure:
        assert server.requests[0].target.endswith("?tenant=x")


async def test_an_event_hook_sees_every_download(counted: Counted, tmp_path: Path) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    ok = raw.respond(200, SMALL, content_type="image/jpeg")
    with raw.RawServer(ok) as server:
        async with (
            aiohttp_client(event_hooks={"request": [hook]}) as http,
            zigna(server.origin, http) as client,
        ):
            await client.pictures.download("1", 7, tmp_path)
    assert seen == ["/v2/orders/1/pictures/7"] and counted.generic == 1


# -- faults: the same errors, attempts and leftovers as the generic path --------------------


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
async def test_a_reset_mid_body_is_retried_then_a_transport_error_leaving_no_file(
    counted: Counted, tmp_path: Path, body: bytes
) -> None:
    reset = raw.reset_mid_body(body, sent=30_000)
    ok = raw.respond(200, body, content_type="image/jpeg")
    with raw.RawServer(raw.scripted(reset, reset, ok)) as server:
        with anyio.fail_after(2 * BOUND):
            async with aiohttp_client(timeout=TIMEOUT) as http, zigna(server.origin, http) as c:
                # aiohttp reports a reset and an early close alike ("payload not completed"):
                # the body is incomplete either way, and retried as a broken connection.
                with pytest.raises((TransportError, IncompleteBodyError)) as caught:
                    await c.pictures.download("1", 7, tmp_path)
                assert server.calls == ATTEMPTS
                assert names(tmp_path) == []
                path = await c.pictures.download("1", 7, tmp_path)
    assert isinstance(caught.value.__cause__, (httpx.ReadError, httpx.RemoteProtocolError))
    assert "GET" in str(caught.value) and "/v2/orders/1/pictures/7" in str(caught.value)
    assert path.read_bytes() == body and names(tmp_path) == ["7.jpg"]
    assert counted.generic == 0


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
async def test_a_body_shorter_than_its_content_length_is_incomplete(
    tmp_path: Path, body: bytes
) -> None:
    short = raw.short_body(body[:40_000], declared=len(body))
    with raw.RawServer(raw.scripted(short, short, raw.respond(200, body))) as server:
        with anyio.fail_after(2 * BOUND):
            async with aiohttp_client(timeout=TIMEOUT) as http, zigna(server.origin, http) as c:
                with pytest.raises(IntegrityError) as caught:
                    await c.pictures.download("1", 7, tmp_path)
                assert server.calls == ATTEMPTS
                assert names(tmp_path) == []
                picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(body))
                path = await c.pictures.download("1", picture, tmp_path)
    assert isinstance(caught.value, IncompleteBodyError)
    assert "40000" in str(caught.value) and str(len(body)) in str(caught.value)
    assert path.read_bytes() == body


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
async def test_a_body_of_another_size_than_the_pictures_is_not_saved_nor_retried(
    tmp_path: Path, body: bytes
) -> None:
    with raw.RawServer(raw.respond(200, body, content_type="image/jpeg")) as server:
        picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(body) + 5)
        async with aiohttp_client(timeout=TIMEOUT) as http, zigna(server.origin, http) as c:
            with pytest.raises(IntegrityError) as caught:
                await c.pictures.download("1", picture, tmp_path)
    assert not isinstance(caught.value, IncompleteBodyError)
    assert server.calls == 1  # a size mismatch is not retried
    assert f"received {len(body)} bytes" in str(caught.value)
    assert names(tmp_path) == []


async def test_bytes_beyond_the_content_length_save_nothing_and_poison_nothing(
    tmp_path: Path,
) -> None:
    """aiohttp refuses what follows the declared end when it arrives with the body (as the
    start of a broken response: a protocol error, retried); the picture's size refuses the
    shorter body in any case."""
    long = raw.long_body(SMALL, declared=len(SMALL) - 100)
    with raw.RawServer(raw.scripted(long, raw.respond(200, ORDER))) as server:
        picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(SMALL))
        with anyio.fail_after(2 * BOUND):
            async with aiohttp_client(timeout=TIMEOUT) as http, zigna(server.origin, http) as c:
                with pytest.raises(IntegrityError):
                    await c.pictures.download("1", picture, tmp_path)
                assert server.calls in (1, ATTEMPTS)
                order = await c.orders.get("1")
    assert names(tmp_path) == [] and order.id == "1"


async def test_headers_then_a_stall_times_out_and_leaves_no_file(tmp_path: Path) -> None:
    stall = raw.headers_then_stall(len(SMALL), prefix=SMALL[:5000])
    ok = raw.respond(200, SMALL, content_type="image/jpeg")
    with raw.RawServer(raw.scripted(stall, stall, ok)) as server:
        with anyio.fail_after(2 * BOUND):
            async with aiohttp_client(timeout=TIMEOUT) as http, zigna(server.origin, http) as c:
                with pytest.raises(TransportError, match="timed out") as caught:
                    await c.pictures.download("1", 7, tmp_path)
                assert server.calls == ATTEMPTS and names(tmp_path) == []
                path = await c.pictures.download("1", 7, tmp_path)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert path.read_bytes() == SMALL


async def test_a_refused_connection_is_retried_then_a_transport_error() -> None:
    port = raw.closed_port()
    async with (
        aiohttp_client(timeout=TIMEOUT) as http,
        zigna(f"http://127.0.0.1:{port}", http) as client,
    ):
        with pytest.raises(TransportError) as caught:
            await client.pictures.download("1", 7, Path("never-written"))
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert f"127.0.0.1:{port}/v2/orders/1/pictures/7" in str(caught.value)
    assert not Path("never-written").exists() or not any(Path("never-written").iterdir())


# -- statuses, encodings, the budget ---------------------------------------------------------


async def test_error_statuses_keep_their_excerpt_retries_and_reset(tmp_path: Path) -> None:
    storm = raw.respond(503, b'{"error": "busy"}')
    missing = raw.respond(404, b'{"error": "no such picture"}', headers=RATE)
    limited = raw.respond(429, b"slow down", headers=[("Retry-After", "3600")])
    with raw.RawServer(raw.scripted(storm, storm, missing, limited)) as server:
        async with aiohttp_client(timeout=TIMEOUT) as http, zigna(server.origin, http) as client:
            with pytest.raises(ServerError) as busy:
                await client.pictures.download("1", 7, tmp_path)
            assert server.calls == ATTEMPTS
            with pytest.raises(NotFoundError) as gone:
                await client.pictures.download("1", 8, tmp_path)
            with pytest.raises(RateLimitedError) as slow:
                await client.pictures.download("1", 9, tmp_path)
            assert client.budget is not None and client.budget.remaining <= 1500
    assert busy.value.status_code == 503 and "busy" in str(busy.value)
    assert gone.value.status_code == 404 and "no such picture" in str(gone.value)
    assert "/v2/orders/1/pictures/8" in str(gone.value)
    assert slow.value.reset_at is not None
    assert server.calls == ATTEMPTS + 2  # a far 429 is not retried
    assert names(tmp_path) == []


async def test_a_gzip_body_is_decoded(counted: Counted, tmp_path: Path) -> None:
    packed = gzip.compress(SMALL)
    ok = raw.respond(200, packed, content_type="image/png", headers=[("Content-Encoding", "gzip")])
    with raw.RawServer(ok) as server:
        async with aiohttp_client() as http, zigna(server.origin, http) as client:
            path = await client.pictures.download("1", 7, tmp_path)
    assert path.name == "7.png" and path.read_bytes() == SMALL
    assert names(tmp_path) == ["7.png"] and counted.generic == 0


async def test_the_budget_takes_the_servers_figures_and_ends_with_nothing_in_flight(
    tmp_path: Path,
) -> None:
    ok = raw.respond(200, SMALL, content_type="image/jpeg", headers=RATE)
    budget = DailyBudget(2000)
    with raw.RawServer(ok) as server:
        async with aiohttp_client() as http, zigna(server.origin, http, budget=budget) as c:
            await c.pictures.download("1", 7, tmp_path)
            assert budget.in_flight == 0
            assert budget.remaining == 1500  # the server's figure, lower than 1999
        assert server.calls == 1


async def test_a_download_cancelled_mid_body_leaves_nothing_and_frees_the_budget(
    tmp_path: Path,
) -> None:
    budget = DailyBudget(2000)
    for body in (b"x" * 10_000, b"y" * 400_000):  # received whole; streamed to the disk thread
        with raw.RawServer(raw.trickle(body, every=0.02)) as server:
            async with aiohttp_client() as http, zigna(server.origin, http, budget=budget) as c:
                with anyio.move_on_after(0.3) as scope:
                    await c.pictures.download("1", 7, tmp_path)
                assert scope.cancelled_caught
                assert names(tmp_path) == []
                assert budget.in_flight == 0
                with anyio.fail_after(2):
                    while server.open_connections:  # noqa: ASYNC110 - a thread's server
                        await anyio.sleep(0.01)


# -- a harvest through the direct path, cancelled at random points ---------------------------


@pytest.fixture(scope="module")
def fake_zigna() -> Iterator[tuple[FakeZigna, str]]:
    fake = FakeZigna(
        orders=6, pictures_per_order=(3, 5), picture_size=(30_000, 400_000), latency=0.002
    )
    with serve(fake.app) as origin:
        yield fake, origin


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".zigziik-manifest")
    }


async def test_a_harvest_cancelled_at_random_points_keeps_only_complete_files(
    fake_zigna: tuple[FakeZigna, str], tmp_path: Path, counted: Counted
) -> None:
    fake, origin = fake_zigna
    rng = random.Random("aiohttp-direct")
    budget = DailyBudget(100_000)
    async with aiohttp_client() as http, zigna(origin, http, budget=budget) as client:
        started = time.monotonic()
        first = await client.harvest(tmp_path / "reference", strategy="pictures")
        duration = time.monotonic() - started
        assert first.ok and counted.generic == 1 + len(fake.order_ids)  # listings only
        reference = files(tmp_path / "reference")
        dest = tmp_path / "dest"
        for _ in range(6):
            with anyio.move_on_after(rng.uniform(0, duration * 0.6)) as scope:
                await client.harvest(dest, strategy="pictures", concurrency=4)
            with anyio.fail_after(3):
                while fake.in_flight:  # noqa: ASYNC110 - the server runs in a thread
                    await anyio.sleep(0.005)
            assert budget.in_flight == 0
            found = files(dest)
            assert not [n for n in found if n.endswith(".part")], sorted(found)
            for name, data in found.items():
                assert data == reference[name], f"{name} is not complete"
            if not scope.cancelled_caught:
                break
        report = await client.harvest(dest, strategy="pictures")
    assert report.ok, report.failures
    assert files(dest) == reference
