"""Network faults over real loopback sockets: each ends in the documented exception, in time.

Two kinds of server: purpose-built raw ones (`tests/_servers.py`) for what no HTTP framework
will do on purpose (refuse, never answer, stall after the headers, reset mid-body, lie in
``Content-Length``), and the fake Zigna/Ziik servers with their switchable faults for the same
faults inside realistic traffic (5xx storms, 429s, harvests, walks).

For every fault: the exception is the documented one (`TransportError`, `ServerError`,
`RateLimitedError`, `IntegrityError`, `BudgetExhaustedError`) with the method and URL in its
message; it comes within the configured timeouts and retry bounds (`anyio.fail_after`); the
number of requests the server saw is exactly what the retry policy allows (a POST that may have
arrived is never sent twice); no file is left under a final name or a temporary one; and a
following run completes.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import _servers as raw
import anyio
import httpx
import pytest

from zigziik import (
    BudgetExhaustedError,
    ContactForm,
    DailyBudget,
    IncompleteBodyError,
    IntegrityError,
    NewOrder,
    NewOrderProducts,
    Picture,
    RateLimitedError,
    RetryPolicy,
    Seller,
    ServerError,
    TransportError,
    ZignaClient,
    ZiikClient,
)
from zigziik.testing import DEMO_API_KEY, FakeZigna, FakeZiik, serve
from zigziik.zigna.harvest._manifest import MANIFEST_NAME, load_manifest

TIMEOUT = 1.5  # a stall must time out; a normal answer on a loaded machine must not
ATTEMPTS = 2
RETRY = RetryPolicy(max_attempts=ATTEMPTS, base_delay=0.01, max_delay=0.02)
# Every fault below must end within its attempts' timeouts plus backoff and slack for a loaded
# machine, well before a stalled or hung server (30 s; 60 s for the stalls below) would end it itself.
BOUND = ATTEMPTS * TIMEOUT + 15.0
BODY = bytes(range(256)) * 400  # 102,400 bytes
ORDER = b'{"id": "1", "caseNumber": "A-1"}'


def zigna(origin: str, **options: Any) -> ZignaClient:
    options.setdefault("timeout", TIMEOUT)
    options.setdefault("retry", RETRY)
    return ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", **options)


def new_order() -> NewOrder:
    return NewOrder(
        floors=1,
        products=NewOrderProducts(package_name="BASIS", extra_products=[]),
        case_number="C-1",
        contact_form=ContactForm.KEY_FROM_REALTOR,
        m2=100,
        seller=Seller(name="Mette Jensen", postal_code="2100", city="København Ø"),
        home_type=1,
    )


def assert_names(exc: BaseException, method: str, url_part: str) -> None:
    text = str(exc)
    assert method in text, text
    assert url_part in text, text


def assert_empty(folder: Path) -> None:
    """Nothing at all in ``folder``: no final file, no temporary one."""
    assert sorted(p.name for p in folder.iterdir()) == []


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


# -- before a byte is sent -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_connection_refused_is_a_transport_error(http: Any) -> None:
    origin = f"http://127.0.0.1:{raw.closed_port()}"
    budget = DailyBudget(100)
    with anyio.fail_after(BOUND):
        async with zigna(origin, budget=budget) as client:
            with pytest.raises(TransportError) as caught:
                await client.orders.get("1")
            # A POST that provably never left is retried like any other request.
            with pytest.raises(TransportError) as posted:
                await client.orders.create(new_order())
    assert isinstance(caught.value.__cause__, http.ConnectError)
    assert_names(caught.value, "GET", f"{origin}/v2/orders/1")
    assert_names(posted.value, "POST", f"{origin}/v2/orders")
    assert budget.used == 2 * ATTEMPTS  # every attempt counts, and no more


@pytest.mark.anyio
async def test_dns_failure_is_a_transport_error_naming_the_host(http: Any) -> None:
    budget = DailyBudget(100)
    with anyio.fail_after(BOUND + 5):
        async with ZignaClient(
            DEMO_API_KEY,
            base_url="https://zigziik-fault-test.invalid/v2",
            timeout=2.0,
            retry=RETRY,
            budget=budget,
        ) as client:
            with pytest.raises(TransportError) as caught:
                await client.orders.get("1")
    assert isinstance(caught.value.__cause__, http.ConnectError)
    assert_names(caught.value, "GET", "https://zigziik-fault-test.invalid/v2/orders/1")
    assert budget.used == ATTEMPTS


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_connect_timeout_is_retried_even_for_a_post(http: Any) -> None:
    with raw.unaccepted_listener() as origin:
        timeout = httpx.Timeout(TIMEOUT, connect=0.2)
        with anyio.fail_after(BOUND):
            async with zigna(origin, timeout=timeout) as client:
                with pytest.raises(TransportError) as caught:
                    await client.orders.create(new_order())
                assert client.budget is not None and client.budget.used == ATTEMPTS
    assert isinstance(caught.value.__cause__, http.ConnectTimeout)
    assert "timed out" in str(caught.value)
    assert_names(caught.value, "POST", f"{origin}/v2/orders")


# -- after the request left ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_server_that_never_answers_times_out_and_a_post_is_sent_once(http: Any) -> None:
    with raw.RawServer(raw.silent()) as server:
        with anyio.fail_after(BOUND):
            async with zigna(server.origin) as client:
                with pytest.raises(TransportError) as caught:
                    await client.orders.get("1")
                assert server.calls == ATTEMPTS
                with pytest.raises(TransportError) as posted:
                    await client.orders.create(new_order())
        assert [r.method for r in server.requests] == ["GET"] * ATTEMPTS + ["POST"]
    assert isinstance(caught.value.__cause__, http.ReadTimeout)
    assert_names(caught.value, "GET", "/v2/orders/1")
    assert_names(posted.value, "POST", "/v2/orders")


async def _reset_at_once(connection: raw.Connection, request: raw.RawRequest) -> None:
    await connection.reset()


async def _close_at_once(connection: raw.Connection, request: raw.RawRequest) -> None:
    connection.close()


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize(
    "behaviour",
    [
        _reset_at_once,
        _close_at_once,
        raw.headers_then_stall(100, content_type="application/json"),
        raw.short_body(b'{"status": "OK"', declared=100, content_type="application/json"),
        raw.respond(502, b"bad gateway", content_type="text/html"),
    ],
    ids=["reset", "closed", "stall", "cut-body", "502"],
)
async def test_a_post_that_reached_the_server_is_never_sent_twice(behaviour: raw.Behaviour) -> None:
    with raw.RawServer(behaviour) as server:
        with anyio.fail_after(BOUND):
            async with zigna(server.origin, retry=RetryPolicy(max_attempts=4)) as client:
                with pytest.raises((TransportError, ServerError)) as caught:
                    await client.orders.create(new_order())
        assert [r.method for r in server.requests] == ["POST"]
    assert_names(caught.value, "POST", f"{server.origin}/v2/orders")


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_headers_then_stall_leaves_no_file_and_the_next_download_completes(
    http: Any,
    tmp_path: Path,
) -> None:
    stall = raw.headers_then_stall(len(BODY), prefix=BODY[:5000])
    ok = raw.respond(200, BODY, content_type="image/jpeg")
    with raw.RawServer(raw.scripted(stall, stall, ok)) as server:
        with anyio.fail_after(2 * BOUND):
            async with zigna(server.origin) as client:
                with pytest.raises(TransportError) as caught:
                    await client.pictures.download("1", 7, tmp_path)
                assert server.calls == ATTEMPTS
                assert_empty(tmp_path)
                path = await client.pictures.download("1", 7, tmp_path)
    assert isinstance(caught.value.__cause__, http.ReadTimeout)
    assert_names(caught.value, "GET", "/v2/orders/1/pictures/7")
    assert path == tmp_path / "7.jpg" and path.read_bytes() == BODY
    assert temporaries(tmp_path) == []


@pytest.mark.anyio
async def test_headers_then_stall_on_a_json_endpoint() -> None:
    stall = raw.headers_then_stall(len(ORDER), prefix=ORDER[:5], content_type="application/json")
    with raw.RawServer(raw.scripted(stall, stall, raw.respond(200, ORDER))) as server:
        with anyio.fail_after(2 * BOUND):
            async with zigna(server.origin) as client:
                with pytest.raises(TransportError) as caught:
                    await client.orders.get("1")
                order = await client.orders.get("1")
    assert_names(caught.value, "GET", "/v2/orders/1")
    assert order.case_number == "A-1"


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_reset_mid_body_leaves_no_file_and_the_next_download_completes(
    http: Any,
    tmp_path: Path,
) -> None:
    reset = raw.reset_mid_body(BODY, sent=30_000)
    ok = raw.respond(200, BODY, content_type="image/jpeg")
    with raw.RawServer(raw.scripted(reset, reset, ok)) as server:
        with anyio.fail_after(2 * BOUND):
            async with zigna(server.origin) as client:
                with pytest.raises(TransportError) as caught:
                    await client.pictures.download("1", 7, tmp_path)
                assert server.calls == ATTEMPTS
                assert_empty(tmp_path)
                path = await client.pictures.download("1", 7, tmp_path)
    assert isinstance(caught.value.__cause__, (http.ReadError, http.RemoteProtocolError))
    assert_names(caught.value, "GET", "/v2/orders/1/pictures/7")
    assert path.read_bytes() == BODY


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_reset_once_is_retried_transparently(tmp_path: Path) -> None:
    reset = raw.reset_mid_body(BODY, sent=1000)
    with raw.RawServer(raw.scripted(reset, raw.respond(200, BODY, content_type="image/png"))) as s:
        with anyio.fail_after(BOUND):
            async with zigna(s.origin) as client:
                path = await client.pictures.download("1", 7, tmp_path)
        assert s.calls == 2
    assert path.name == "7.png" and path.read_bytes() == BODY
    assert [p.name for p in tmp_path.iterdir()] == ["7.png"]


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_content_length_longer_than_the_body(tmp_path: Path) -> None:
    short = raw.short_body(BODY[:40_000], declared=len(BODY))
    with raw.RawServer(raw.scripted(short, short, raw.respond(200, BODY))) as server:
        with anyio.fail_after(2 * BOUND):
            async with zigna(server.origin) as client:
                with pytest.raises(IntegrityError) as caught:
                    await client.pictures.download("1", 7, tmp_path)
                assert server.calls == ATTEMPTS
                assert_empty(tmp_path)
                picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(BODY))
                path = await client.pictures.download("1", picture, tmp_path)
    assert isinstance(caught.value, IncompleteBodyError)
    assert "40000" in str(caught.value) and str(len(BODY)) in str(caught.value)
    assert_names(caught.value, "GET", "/v2/orders/1/pictures/7")
    assert path.name == "7-a.jpg" and path.read_bytes() == BODY


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_content_length_longer_than_a_json_body(http: Any) -> None:
    short = raw.short_body(ORDER[:10], declared=len(ORDER))
    with raw.RawServer(raw.scripted(short, short, raw.respond(200, ORDER))) as server:
        with anyio.fail_after(2 * BOUND):
            async with zigna(server.origin) as client:
                with pytest.raises(TransportError) as caught:
                    await client.orders.get("1")
                assert (await client.orders.get("1")).id == "1"
    assert isinstance(caught.value.__cause__, http.RemoteProtocolError)
    assert_names(caught.value, "GET", "/v2/orders/1")


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_content_length_shorter_than_the_picture(tmp_path: Path) -> None:
    """The server's Content-Length is shorter than the picture's size: nothing is saved, and
    the bytes left over on the connection do not poison the next request."""
    long = raw.long_body(BODY, declared=len(BODY) - 100)
    with raw.RawServer(raw.scripted(long, raw.respond(200, ORDER))) as server:
        picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(BODY))
        with anyio.fail_after(2 * BOUND):
            async with zigna(server.origin) as client:
                with pytest.raises(IntegrityError) as caught:
                    await client.pictures.download("1", picture, tmp_path)
                assert server.calls == 1  # a size mismatch is not retried
                order = await client.orders.get("1")
    assert not isinstance(caught.value, IncompleteBodyError)
    assert_names(caught.value, "GET", "/v2/orders/1/pictures/7")
    assert_empty(tmp_path)
    assert order.id == "1"


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_trickling_body_is_bounded_by_the_callers_cancel_scope(tmp_path: Path) -> None:
    """httpx's timeouts bound each read, not the whole transfer: a server that sends one
    byte just often enough never times out. A caller's ``fail_after`` is the wall-clock
    bound, and it leaves nothing behind."""
    body = b"x" * 10_000  # 10,000 bytes at one per 20 ms: over three minutes
    with raw.RawServer(raw.trickle(body, every=0.02)) as server:
        async with zigna(server.origin) as client:
            with pytest.raises(TimeoutError), anyio.fail_after(0.5):
                await client.pictures.download("1", 7, tmp_path)
        assert_empty(tmp_path)
        with anyio.fail_after(2):
            while server.open_connections:  # noqa: ASYNC110 - the server runs in a thread
                await anyio.sleep(0.01)


# -- the fake servers: storms and rate limits ------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_zigna() -> Iterator[tuple[FakeZigna, str]]:
    fake = FakeZigna(orders=4, pictures_per_order=(3, 4), picture_size=(20_000, 60_000))
    with serve(fake.app) as origin:
        yield fake, origin


@pytest.fixture
def zfake(fake_zigna: tuple[FakeZigna, str]) -> Iterator[tuple[FakeZigna, str]]:
    fake, origin = fake_zigna
    fake.faults.clear()
    fake.reset_budget()
    fake.reset_stats()
    yield fake, origin
    fake.faults.clear()


def picture_of(fake: FakeZigna) -> tuple[str, Picture, bytes]:
    order_id = next(o for o in fake.order_ids if fake.pictures(o))
    listing = fake.pictures(order_id)[0]
    picture = Picture(
        picture_id=listing["pictureID"],
        original_file_name=listing["originalFileName"],
        size=listing["size"],
    )
    return order_id, picture, fake.picture_bytes(order_id, listing["pictureID"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "retried"), [(500, True), (502, True), (503, True), (501, False)]
)
async def test_a_5xx_storm_ends_in_server_error_within_the_retry_bound(
    zfake: tuple[FakeZigna, str], status: int, retried: bool
) -> None:
    fake, origin = zfake
    order_id = fake.order_ids[0]
    fake.faults.fail_next(1000, status=status, body=b"the storm")
    with anyio.fail_after(BOUND):
        async with zigna(origin) as client:
            with pytest.raises(ServerError) as caught:
                await client.orders.get(order_id)
            assert fake.calls == (ATTEMPTS if retried else 1)
            with pytest.raises(ServerError):
                await client.orders.create(new_order())
            assert fake.calls == (ATTEMPTS if retried else 1) + 1  # a POST is never retried
            fake.faults.clear()
            assert (await client.orders.get(order_id)).id == order_id
    assert caught.value.status_code == status
    assert "the storm" in str(caught.value)
    assert_names(caught.value, "GET", f"/v2/orders/{order_id}")


@pytest.mark.anyio
async def test_a_long_storm_with_many_attempts_still_ends() -> None:
    """The default policy (4 attempts, capped backoff) on a server that never recovers."""
    fake = FakeZigna(orders=1, daily_limit=None)
    fake.faults.fail_next(1000, status=503)
    with serve(fake.app) as origin:
        policy = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.004)
        with anyio.fail_after(45):
            async with zigna(origin, retry=policy) as client:
                with pytest.raises(ServerError):
                    await client.orders.get(fake.order_ids[0])
        assert fake.calls == 6


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_429_with_a_near_retry_after_is_retried() -> None:
    fake = FakeZigna(orders=1, daily_limit=None)
    fake.faults.fail_next(1, status=429, retry_after=0)
    with serve(fake.app) as origin:
        with anyio.fail_after(BOUND):
            async with zigna(origin) as client:
                order = await client.orders.get(fake.order_ids[0])
        assert order.id == fake.order_ids[0]
        assert fake.calls == 2


@pytest.mark.anyio
async def test_429_with_a_near_reset_header_is_retried_then_raised() -> None:
    fake = FakeZigna(orders=1, daily_limit=None)
    fake.faults.fail_next(10, status=429, headers={"X-RateLimit-Reset": "0.05"})
    with serve(fake.app) as origin:
        with anyio.fail_after(BOUND):
            async with zigna(origin) as client:
                with pytest.raises(RateLimitedError) as caught:
                    await client.orders.get(fake.order_ids[0])
        assert fake.calls == ATTEMPTS
    assert caught.value.reset_at is not None
    assert_names(caught.value, "GET", "/v2/orders/")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "retry_after", "wait"),
    [
        ({}, None, None),
        ({}, 3600, 3600.0),
        ({"X-RateLimit-Reset": "7200"}, None, 7200.0),
        ({}, "http-date", 1800.0),
    ],
    ids=["no-headers", "retry-after-far", "reset-far", "retry-after-date"],
)
async def test_429_with_a_far_or_unknown_reset_is_raised_at_once(
    headers: dict[str, str], retry_after: float | str | None, wait: float | None
) -> None:
    fake = FakeZigna(orders=1, daily_limit=None)
    if retry_after == "http-date":
        later = datetime.now(timezone.utc) + timedelta(seconds=1800)
        retry_after = email.utils.format_datetime(later, usegmt=True)
    fake.faults.fail_next(10, status=429, retry_after=retry_after, headers=headers)
    with serve(fake.app) as origin:
        with anyio.fail_after(BOUND):
            async with zigna(origin) as client:
                before = datetime.now(timezone.utc)
                with pytest.raises(RateLimitedError) as caught:
                    await client.orders.get(fake.order_ids[0])
        assert fake.calls == 1
    if wait is None:
        assert caught.value.reset_at is None
    else:
        assert caught.value.reset_at is not None
        delta = (caught.value.reset_at - before).total_seconds()
        assert wait - 5 <= delta <= wait + 5
    assert caught.value.status_code == 429
    assert_names(caught.value, "GET", "/v2/orders/")


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_the_servers_own_limit_turns_into_budget_exhausted_without_more_calls() -> None:
    """The server's daily limit runs out: a 429 (far reset) first, then no request at all."""
    fake = FakeZigna(orders=1, daily_limit=50)
    fake.set_budget(remaining=3)
    with serve(fake.app) as origin:
        with anyio.fail_after(BOUND):
            async with zigna(origin, budget=DailyBudget(1000)) as client:
                order_id = fake.order_ids[0]
                for _ in range(3):
                    await client.orders.get(order_id)
                assert client.budget is not None and client.budget.remaining == 0
                with pytest.raises(BudgetExhaustedError) as caught:
                    await client.orders.get(order_id)
        assert fake.calls == 3 and fake.rejected == 0
    assert caught.value.reset_at > datetime.now(timezone.utc)


@pytest.mark.anyio
async def test_a_storm_that_outlasts_the_budget_ends_in_budget_exhausted() -> None:
    fake = FakeZigna(orders=1, daily_limit=None)
    fake.faults.fail_next(1000, status=503)
    with serve(fake.app) as origin:
        retry = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.002)
        with anyio.fail_after(BOUND):
            async with zigna(origin, retry=retry, budget=DailyBudget(3)) as client:
                with pytest.raises(BudgetExhaustedError):
                    await client.orders.get(fake.order_ids[0])
        assert fake.calls == 3


# -- the fake's body faults on downloads ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("truncate", IncompleteBodyError),
        ("reset", TransportError),
        ("stall", TransportError),
        ("longer", IncompleteBodyError),
        ("shorter", IntegrityError),
        ("html", IntegrityError),
        ("503", ServerError),
    ],
)
async def test_download_faults_leave_nothing_and_the_next_run_completes(
    zfake: tuple[FakeZigna, str], tmp_path: Path, fault: str, expected: type[Exception]
) -> None:
    fake, origin = zfake
    order_id, picture, data = picture_of(fake)
    match = f"/pictures/{picture.picture_id}"
    faults = fake.faults
    if fault == "truncate":
        faults.truncate_next(ATTEMPTS, match)
    elif fault == "reset":
        faults.reset_next(ATTEMPTS, match)
    elif fault == "stall":
        faults.stall_next(ATTEMPTS, match, seconds=60)
    elif fault == "longer":
        faults.wrong_length_next(ATTEMPTS, match, delta=+7)
    elif fault == "shorter":
        faults.wrong_length_next(ATTEMPTS, match, delta=-7)
    elif fault == "html":
        faults.garbage_next(ATTEMPTS, match)
    else:
        faults.fail_next(ATTEMPTS, 503, match)
    with anyio.fail_after(2 * BOUND):
        async with zigna(origin) as client:
            with pytest.raises(expected) as caught:
                await client.pictures.download(order_id, picture, tmp_path)
            # a network fault is retried; wrong bytes (an IntegrityError) are not
            assert faults.pending == (ATTEMPTS - 1 if expected is IntegrityError else 0)
            faults.clear()
            assert_empty(tmp_path)
            path = await client.pictures.download(order_id, picture, tmp_path)
    assert type(caught.value) is expected, caught.value
    assert_names(caught.value, "GET", f"/v2/orders/{order_id}/pictures/{picture.picture_id}")
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.anyio
async def test_zip_download_faults_leave_nothing(
    zfake: tuple[FakeZigna, str], tmp_path: Path
) -> None:
    fake, origin = zfake
    order_id, _, _ = picture_of(fake)
    fake.faults.truncate_next(1, "/zip")
    fake.faults.reset_next(1, "/zip")
    with anyio.fail_after(2 * BOUND):
        async with zigna(origin) as client:
            with pytest.raises((TransportError, IntegrityError)):
                await client.pictures.download_zip(order_id, tmp_path)
            assert_empty(tmp_path)
            path = await client.pictures.download_zip(order_id, tmp_path)
    assert path is not None and path.name == f"{order_id}.zip"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# -- harvests and walks in bad weather ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_harvest_in_a_storm_reports_failures_and_the_next_run_completes(
    zfake: tuple[FakeZigna, str], tmp_path: Path
) -> None:
    fake, origin = zfake
    faults = fake.faults
    faults.fail_next(6, 503, "/pictures/")
    faults.reset_next(3, "/pictures/")
    faults.truncate_next(3, "/pictures/")
    faults.stall_next(2, "/pictures/", seconds=60)
    faults.fail_next(2, 502, "/pictures", method="GET")
    expected: dict[str, bytes] = {}
    for order_id in fake.order_ids:
        for listing in fake.pictures(order_id):
            expected[str(listing["pictureID"])] = fake.picture_bytes(order_id, listing["pictureID"])
    with anyio.fail_after(45):
        async with zigna(origin) as client:
            first = await client.harvest(tmp_path, strategy="pictures", concurrency=4)
            assert temporaries(tmp_path) == []
            load_manifest(tmp_path)  # valid JSON of the right format
            faults.clear()
            second = await client.harvest(tmp_path, strategy="pictures", concurrency=4)
    assert not first.ok  # the storm was too long for two attempts somewhere
    assert second.ok, second.failures
    assert first.written + second.written == len(expected)
    on_disk = {
        p.name.split("-", 1)[0]: p.read_bytes()
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }
    assert on_disk == expected
    assert temporaries(tmp_path) == []


@pytest.fixture(scope="module")
def fake_ziik() -> Iterator[tuple[FakeZiik, str]]:
    fake = FakeZiik(depth=3, branching=3, token="fault-test-token")
    with serve(fake.app) as origin:
        yield fake, origin


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize("fault", ["storm", "stall", "reset"])
async def test_a_walk_in_bad_weather_ends_in_the_error_and_the_next_walk_completes(
    fake_ziik: tuple[FakeZiik, str], fault: str
) -> None:
    fake, origin = fake_ziik
    fake.faults.clear()
    root = fake.top_level_ids[0]
    every = {root, *fake.descendant_ids(root)}
    deep = fake.children_ids(fake.children_ids(root)[0])[0]
    match = f"/units/{fake.children_ids(root)[0]}/children"
    if fault == "storm":
        fake.faults.fail_next(1000, 503, match)
        expected: type[Exception] = ServerError
    elif fault == "stall":
        fake.faults.stall_next(ATTEMPTS, match, seconds=60)
        expected = TransportError
    else:
        fake.faults.reset_next(ATTEMPTS, match)
        expected = TransportError
    seen: list[int | None] = []

    async def walk(ziik: ZiikClient) -> None:
        async for node in ziik.units.walk(root, concurrency=3):
            seen.append(node.unit.id)

    with anyio.fail_after(2 * BOUND):
        async with ZiikClient(
            origin + "/api", "fault-test-token", timeout=TIMEOUT, retry=RETRY
        ) as ziik:
            with pytest.raises(expected) as caught:
                await walk(ziik)
            assert deep not in seen
            fake.faults.clear()
            again = [node.unit.id async for node in ziik.units.walk(root, concurrency=3)]
    assert_names(caught.value, "GET", match)
    assert sorted(again) == sorted(every)  # type: ignore[type-var]
