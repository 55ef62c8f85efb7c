"""Concurrency over real loopback sockets, under asyncio and trio.

* The daily budget holds exactly: with thousands of tasks on one client (or two clients sharing
  one budget) and a small budget, the server sees exactly as many requests as the budget allows,
  retries included, and every other call raises `BudgetExhaustedError` without a request. When
  the server's ``X-RateLimit-Remaining`` is lower than the local count, it wins.
* One client shared by many tasks doing different things at once (reads, listings, downloads of
  the same picture into the same folder, zips, a harvest, a walk, logins) gives every task the
  right answer, leaves no partial file and no busy connection.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zigziik import (
    BudgetExhaustedError,
    ClientClosedError,
    DailyBudget,
    Order,
    RetryPolicy,
    ZignaClient,
    ZiikClient,
)
from zigziik._client import BaseClient
from zigziik.ratelimit import BudgetLedger, RateLimit
from zigziik.testing import DEMO_API_KEY, FakeZigna, FakeZiik, serve

TASKS = 3000
# A hang guard, not a speed bound: thousands of tasks under trio on two shared cores have taken
# 46 s while four test workers ran.
GUARD = 150
pytestmark = pytest.mark.timeout(GUARD + 60)
LIMIT = 25
RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


@pytest.fixture(scope="module")
def fake_zigna() -> Iterator[tuple[FakeZigna, str]]:
    fake = FakeZigna(orders=6, pictures_per_order=(2, 3), picture_size=(5_000, 20_000))
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


@pytest.fixture
def zigna_fake(fake_zigna: tuple[FakeZigna, str]) -> Iterator[tuple[FakeZigna, str]]:
    fake, base = fake_zigna
    fake.faults.clear()
    fake.reset_budget()
    fake.reset_stats()
    yield fake, base
    fake.faults.clear()
    fake.reset_budget()


def client(base: str, **options: Any) -> ZignaClient:
    options.setdefault("retry", RETRY)
    options.setdefault("timeout", 60.0)  # no read timeout on a loaded machine
    return ZignaClient(DEMO_API_KEY, base_url=base, **options)


async def run_all(count: int, job: Callable[[int], Awaitable[object]]) -> list[object]:
    """Start ``count`` tasks at once; each outcome is the value or the exception."""
    outcomes: list[object] = [None] * count

    async def one(index: int) -> None:
        try:
            outcomes[index] = await job(index)
        except Exception as exc:
            outcomes[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, index)
    return outcomes


def kinds(outcomes: list[object]) -> Counter[str]:
    return Counter(
        "Path" if isinstance(outcome, Path) else type(outcome).__name__ for outcome in outcomes
    )


def pool_is_quiet(zigna: BaseClient) -> bool:
    """No connection of the client's pool is busy with a request."""
    pool = zigna._transport._client._transport._pool  # type: ignore[attr-defined]
    return all(c.is_idle() or c.is_closed() for c in pool.connections)


# -- the budget -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_thousands_of_tasks_never_exceed_a_small_budget(
    zigna_fake: tuple[FakeZigna, str],
) -> None:
    fake, base = zigna_fake
    fake.daily_limit = None  # only the local budget limits
    ids = fake.order_ids
    budget = DailyBudget(LIMIT)
    try:
        with anyio.fail_after(GUARD):
            async with client(base, budget=budget) as zigna:
                outcomes = await run_all(TASKS, lambda i: zigna.orders.get(ids[i % len(ids)]))
                assert pool_is_quiet(zigna)
    finally:
        fake.daily_limit = 2000
    assert fake.calls == LIMIT
    assert kinds(outcomes) == {"Order": LIMIT, "BudgetExhaustedError": TASKS - LIMIT}
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Order):
            assert outcome.id == ids[index % len(ids)]
        else:
            assert isinstance(outcome, BudgetExhaustedError)
            assert f"GET {base}/orders/" in str(outcome)
    assert (budget.used, budget.remaining, budget.in_flight) == (LIMIT, 0, 0)


class HoldAnswers:
    """ASGI middleware: the answers to the requests that arrive ``hold``-th (0-based) wait
    until `release` is set; the app below has already counted them."""

    def __init__(self, app: Any, hold: set[int]) -> None:
        self.app = app
        self.hold = hold
        self.arrived = 0
        self.held = 0
        self.release = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        index = self.arrived  # the server's event loop runs one request at a time here
        self.arrived += 1
        if index not in self.hold:
            await self.app(scope, receive, send)
            return

        async def held_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.held += 1
                while not self.release.is_set():  # noqa: ASYNC110 - set from another thread
                    await asyncio.sleep(0.002)
            await send(message)

        await self.app(scope, receive, held_send)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_the_servers_lower_remaining_wins_under_concurrency() -> None:
    """The server has 10 calls left, the local budget 25. Five requests go out at once; the
    server counts all five and answers one (``Remaining: 9``, counted when it arrived), the
    other four answers are held. Of the 9, four are those still in flight: a burst of 3,000
    tasks then gets exactly 5 calls, and the server never refuses one."""
    fake = FakeZigna(orders=3, pictures_per_order=(1, 1), picture_size=1000)
    fake.set_budget(remaining=10)
    held = HoldAnswers(fake.app, hold={1, 2, 3, 4})
    ids = fake.order_ids
    budget = DailyBudget(LIMIT)
    outcomes: list[object] = []
    with serve(held) as origin, anyio.fail_after(GUARD):
        async with client(origin + "/v2", budget=budget) as zigna:
            first: list[object] = []

            async def wave() -> None:
                first.extend(await run_all(5, lambda i: zigna.orders.get(ids[i % len(ids)])))

            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(wave)
                    while held.held < 4 or budget.in_flight > 4:  # noqa: ASYNC110
                        await anyio.sleep(0.002)
                    assert (fake.calls, budget.in_flight) == (5, 4)
                    assert budget.remaining == 5  # 9 the server said, less the 4 still out
                    outcomes = await run_all(TASKS, lambda i: zigna.orders.get(ids[i % len(ids)]))
                    held.release.set()
            finally:
                held.release.set()
            outcomes += first
    assert fake.calls == 10 and fake.rejected == 0
    assert kinds(outcomes) == {"Order": 10, "BudgetExhaustedError": TASKS + 5 - 10}
    assert budget.remaining == 0 and budget.in_flight == 0


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_retries_count_against_the_budget_under_concurrency(
    zigna_fake: tuple[FakeZigna, str],
) -> None:
    fake, base = zigna_fake
    fake.faults.fail_next(12, 503)
    ids = fake.order_ids
    budget = DailyBudget(LIMIT)
    with anyio.fail_after(GUARD):
        async with client(base, budget=budget) as zigna:
            outcomes = await run_all(TASKS, lambda i: zigna.orders.get(ids[i % len(ids)]))
    assert fake.calls == LIMIT  # first attempts and retries together
    counted = kinds(outcomes)
    assert set(counted) <= {"Order", "ServerError", "BudgetExhaustedError"}
    assert counted["Order"] >= LIMIT - 12 - 3 * counted["ServerError"]
    assert counted["Order"] + counted["ServerError"] + counted["BudgetExhaustedError"] == TASKS
    assert budget.used == LIMIT and budget.in_flight == 0


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_one_budget_shared_by_two_clients_holds_exactly(
    zigna_fake: tuple[FakeZigna, str],
) -> None:
    fake, base = zigna_fake
    ids = fake.order_ids
    budget = DailyBudget(LIMIT)
    with anyio.fail_after(GUARD):
        async with client(base, budget=budget) as one, client(base, budget=budget) as two:
            clients = (one, two)
            outcomes = await run_all(TASKS, lambda i: clients[i % 2].orders.get(ids[i % len(ids)]))
    assert fake.calls == LIMIT
    assert kinds(outcomes)["Order"] == LIMIT
    assert budget.used == LIMIT and budget.in_flight == 0


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_paginators_and_downloads_share_the_budget_exactly(
    zigna_fake: tuple[FakeZigna, str], tmp_path: Path
) -> None:
    """Many-request operations racing for a few calls: never one request too many."""
    fake, base = zigna_fake
    order_id = next(o for o in fake.order_ids if fake.pictures(o))
    budget = DailyBudget(LIMIT)

    async def job(index: int) -> object:
        kind = index % 4
        if kind == 0:
            return await zigna.orders.list(take=2).collect()
        if kind == 1:
            return await zigna.pictures.list(order_id)
        if kind == 2:
            folder = tmp_path / str(index)
            return await zigna.pictures.download_zip(order_id, folder)
        return await zigna.orders.get(order_id)

    with anyio.fail_after(GUARD):
        async with client(base, budget=budget) as zigna:
            outcomes = await run_all(400, job)
    assert fake.calls == LIMIT
    assert budget.used == LIMIT and budget.in_flight == 0
    expected = {"list", "OrderPictures", "Path", "Order", "BudgetExhaustedError"}
    assert set(kinds(outcomes)) <= expected
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


# -- one client, many tasks, many kinds of work --------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_one_shared_client_serves_many_kinds_of_work_at_once(
    zigna_fake: tuple[FakeZigna, str], tmp_path: Path
) -> None:
    fake, base = zigna_fake
    fake.faults.latency = 0.002
    rng = random.Random(7)
    ids = fake.order_ids
    with_pictures = [o for o in ids if fake.pictures(o)]
    hot_order = with_pictures[0]
    hot = fake.pictures(hot_order)[0]
    hot_bytes = fake.picture_bytes(hot_order, hot["pictureID"])
    shared = tmp_path / "shared"
    results: dict[str, list[Any]] = {"get": [], "list": [], "pictures": [], "hot": [], "zip": []}
    reports: list[Any] = []

    async def work(zigna: ZignaClient) -> None:
        async with anyio.create_task_group() as group:

            async def get(order_id: str) -> None:
                results["get"].append(((await zigna.orders.get(order_id)).id, order_id))

            async def listing() -> None:
                results["list"].append([o.id for o in await zigna.orders.list(take=4).collect()])

            async def pictures(order_id: str) -> None:
                listed = await zigna.pictures.list(order_id)
                results["pictures"].append(([p.picture_id for p in listed.pictures], order_id))

            async def download_hot() -> None:
                picture = (await zigna.pictures.list(hot_order)).pictures[0]
                path = await zigna.pictures.download(hot_order, picture.picture_id or 0, shared)
                results["hot"].append(path)

            async def zip_hot() -> None:
                results["zip"].append(await zigna.pictures.download_zip(hot_order, shared))

            async def harvest() -> None:
                reports.append(await zigna.harvest(tmp_path / "harvest", concurrency=4))

            group.start_soon(harvest)
            for _ in range(60):
                group.start_soon(get, rng.choice(ids))
            for _ in range(8):
                group.start_soon(listing)
            for _ in range(30):
                group.start_soon(pictures, rng.choice(ids))
            for _ in range(25):
                group.start_soon(download_hot)
            for _ in range(6):
                group.start_soon(zip_hot)

    try:
        with anyio.fail_after(GUARD):
            async with client(base, budget=DailyBudget(5000)) as zigna:
                await work(zigna)
                assert pool_is_quiet(zigna)
    finally:
        fake.faults.latency = 0.0
    assert all(got == wanted for got, wanted in results["get"]) and len(results["get"]) == 60
    assert results["list"] == [ids] * 8
    for picture_ids, order_id in results["pictures"]:
        assert picture_ids == [p["pictureID"] for p in fake.pictures(order_id)]
    assert len(set(results["hot"])) == 1 and len(results["hot"]) == 25
    assert results["hot"][0].read_bytes() == hot_bytes
    assert len(set(results["zip"])) == 1 and len(results["zip"]) == 6
    assert reports[0].ok and reports[0].written == fake.picture_count
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    # The server thread counts a request finished just after its answer is sent.
    with anyio.fail_after(45):
        while fake.in_flight:  # noqa: ASYNC110 - counted by the server thread
            await anyio.sleep(0.005)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_shared_logged_in_ziik_client_logs_in_once_and_again_once() -> None:
    fake = FakeZiik(depth=2, branching=4, username="ann", password="pw-123456")
    with serve(fake.app) as origin:
        units = fake.unit_ids
        every = set(units)
        with anyio.fail_after(GUARD):
            async with ZiikClient(
                origin + "/api", username="ann", password="pw-123456", retry=RETRY
            ) as ziik:

                async def walk() -> set[int | None]:
                    return {node.unit.id async for node in ziik.units.walk(max_depth=None)}

                async def job(index: int) -> object:
                    if index % 50 == 0:
                        return await walk()
                    return (await ziik.units.get(units[index % len(units)])).id

                first = await run_all(300, job)
                assert fake.logins == 1
                fake.expire_tokens()  # every task now meets a 401 and needs a new login
                second = await run_all(300, job)
                assert pool_is_quiet(ziik)
    assert fake.logins == 2
    for outcomes in (first, second):
        for index, outcome in enumerate(outcomes):
            expected = every if index % 50 == 0 else units[index % len(units)]
            assert outcome == expected, outcome


def test_one_client_per_event_loop_is_documented() -> None:
    assert "one client per event loop" in (BaseClient.__doc__ or "").lower()


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_closing_while_tasks_wait_for_answers_ends_them_with_a_zigziik_error() -> None:
    """Closing the shared client while its requests wait for their answers: each ends in a
    TransportError (none hangs, none gets a half answer), and later calls are refused at once.

    (The close waits until every request has reached the server: httpcore does not close a
    connection that is still being established when its pool closes, and its socket would be
    left to the garbage collector.)
    """
    fake = FakeZigna(orders=1)
    waiting = 49
    # Each request is held at the server until its connection closes (a latency would let
    # the first answers come back before the last requests arrive on a loaded machine, and
    # the close would then wait for all of them in flight at once forever). The client's own
    # timeout is longer than the hold: only the close can end these requests in time.
    fake.faults.hang_next(waiting, seconds=60)
    with serve(fake.app) as origin, anyio.fail_after(GUARD):
        zigna = client(origin + "/v2", retry=RetryPolicy.never(), timeout=120.0)

        async def job(index: int) -> object:
            if index == 0:
                while fake.in_flight < waiting:  # noqa: ASYNC110 - polling the server thread
                    await anyio.sleep(0.005)
                await zigna.aclose()
                return None
            return await zigna.orders.get(fake.order_ids[0])

        try:
            outcomes = await run_all(waiting + 1, job)
        finally:
            with anyio.CancelScope(shield=True):
                await zigna.aclose()  # a failure here must not leave a client to the next test
    assert kinds(outcomes) == {"NoneType": 1, "TransportError": waiting}
    with pytest.raises(ClientClosedError):
        await zigna.orders.get(fake.order_ids[0])


# -- the same, as pure arithmetic -------------------------------------------------------------------

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


# "reserve": a request is reserved (and sent if granted); "answer": the oldest one in flight
# reaches the server and its answer is settled; "fail": one in flight fails unanswered (a
# connect error: the server never counts it).
STEP = st.sampled_from(["reserve", "reserve", "answer", "fail"])


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    cap=st.integers(1, 40),
    server_limit=st.integers(1, 5000),
    server_used=st.one_of(st.integers(0, 5000), st.integers(0, 3)),
    reset_after=st.sampled_from([None, 30.0, 3600.0, 21_600.0, 21_630.0, 86_400.0]),
    with_remaining=st.booleans(),
    steps=st.lists(STEP, max_size=200),
)
# A fresh server window (the server's Reset is later than the local guess of midnight) with a
# cap far below the server's limit: the ledger keeps its own count, not the server's.
@example(5, 2000, 0, 86_400.0, True, ["reserve"] * 3 + ["answer"] * 3 + ["reserve"] * 4)
@example(5, 2000, 1990, 86_400.0, True, ["reserve", "answer"] * 6)
@example(5, 2000, 0, 86_400.0, False, ["reserve"] * 4 + ["answer", "fail", "reserve"] * 3)
# The server's window is the one we guessed (its end within the tolerance): calls that
# failed unanswered still count locally.
@example(3, 2000, 0, 21_600.0, True, ["reserve", "fail"] * 3 + ["reserve", "answer"] * 3)
@example(3, 2000, 0, 21_630.0, True, ["reserve", "fail"] * 3 + ["reserve", "answer"] * 3)
# The server has fewer calls left than the cap, several requests in flight at each answer.
@example(25, 100, 90, 3600.0, True, ["reserve"] * 5 + ["answer", "reserve", "reserve"] * 8)
@example(25, 2000, 1995, None, True, ["reserve"] * 3 + ["answer", "reserve"] * 6)
def test_the_ledger_never_grants_more_than_its_cap_or_the_servers_remaining(
    cap: int,
    server_limit: int,
    server_used: int,
    reset_after: float | None,
    with_remaining: bool,
    steps: list[str],
) -> None:
    """Reservations, answers and unanswered failures interleaved in any order, within one
    server window (whose end may be later or earlier than the local guess of midnight):
    never more calls than the cap allows; once the server has answered, never a call more
    than it has left; and a refusal only when one of the two is spent."""
    ledger = BudgetLedger(limit=cap, reset_at=T0 + timedelta(hours=6), cap=cap)
    start = min(server_used, server_limit)  # the server's count, other clients included
    counted = start
    granted = in_flight = blind = 0
    last_remaining: int | None = None  # in the server's last answer that carried it
    for step in steps:
        if step == "reserve":
            ledger, ok = ledger.reserve()
            if ok:
                granted += 1
                in_flight += 1
                blind += last_remaining is None
            else:
                server_spent = last_remaining is not None and last_remaining - in_flight <= 0
                assert granted >= min(cap, server_limit) or server_spent, (granted, in_flight)
        elif in_flight:
            in_flight -= 1
            if step == "answer":
                counted += 1
                remaining = max(0, server_limit - counted)
                if with_remaining:
                    last_remaining = remaining
                rate_limit = RateLimit(
                    server_limit, remaining if with_remaining else None, reset_after
                )
            else:
                rate_limit = None
            ledger = ledger.settle(rate_limit, T0)
    assert granted <= cap
    assert counted - start <= granted - in_flight
    if with_remaining:
        assert start + granted <= max(server_limit, start + blind)
