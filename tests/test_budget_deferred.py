"""Settlements a shared store keeps for its next operation (`zigziik._pending`).

A call's settlement goes with the next reservation or snapshot on its scope, in the same
SQLite transaction or Lua script run: one store operation per call. What that must not cost:
another process sees it within the flush delay; closing the store or the client sends it; a
process that dies with settlements kept leaves its calls counted and its leases expiring; an
answer sent late applies its ``Reset`` from when it arrived, and one later than ``FRESH_MS``
only closes its lease. Real SQLite files and a real ``redis-server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
from _redis import RedisServer

from zigziik import (
    BudgetStoreError,
    DailyBudget,
    RateLimit,
    RedisBudgetStore,
    SqliteBudgetStore,
    ZignaClient,
    _pending,
)
from zigziik.ratelimit import FRESH_MS, BudgetStore
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-deferred"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def make(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Callable[..., BudgetStore]:
    """A maker of store objects on one shared ledger (each one: another process's)."""
    assert redis_server.command("FLUSHALL").startswith(b"+OK")

    def made(*, timer: bool = False, **options: float) -> BudgetStore:
        store: BudgetStore
        if request.param == "sqlite":
            store = SqliteBudgetStore(tmp_path / "budget.db", **options)
        else:
            store = RedisBudgetStore(redis_server.url, clock="client", **options)
        if not timer:
            store._flush_delay = None  # type: ignore[attr-defined]  # only operations send
        return store

    return made


async def test_a_settlement_goes_with_the_next_reservation(
    make: Callable[..., BudgetStore],
) -> None:
    ours, theirs = make(), make()
    budget = DailyBudget(10, store=ours, scope="s", clock=lambda: T0)
    other = DailyBudget(10, store=theirs, scope="s", clock=lambda: T0)
    first = await budget.reserve()
    await budget.settle(RateLimit(remaining=7), lease=first.lease)
    assert budget.in_flight == 0 and budget.remaining == 7, "this process's view has it"
    seen = await other.snapshot()
    assert (seen.used, seen.in_flight) == (1, 1), "kept: the call still weighs as in flight"
    await budget.reserve()
    seen = await other.snapshot()
    # The settlement went first (its lease closed, Remaining 7 applied), then the reservation.
    assert (seen.used, seen.in_flight, seen.remaining) == (4, 1, 6)
    await ours.aclose()
    await theirs.aclose()


async def test_one_store_operation_per_call(
    make: Callable[..., BudgetStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    operations = 0
    if isinstance(store, SqliteBudgetStore):
        apply = SqliteBudgetStore._apply

        def counted(self: SqliteBudgetStore, *args: object) -> object:
            nonlocal operations
            operations += 1
            return apply(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(SqliteBudgetStore, "_apply", counted)
    else:
        assert isinstance(store, RedisBudgetStore)
        evalsha = RedisBudgetStore._evalsha

        async def counted_redis(self: RedisBudgetStore, *args: object) -> object:
            nonlocal operations
            operations += 1
            return await evalsha(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(RedisBudgetStore, "_evalsha", counted_redis)
    budget = DailyBudget(100, store=store, scope="s", clock=lambda: T0)
    for _ in range(20):
        decision = await budget.reserve()
        await budget.settle(RateLimit(remaining=500), lease=decision.lease)
    assert operations == 20
    snapshot = await budget.snapshot()
    assert operations == 21 and (snapshot.used, snapshot.in_flight) == (20, 0)
    await store.aclose()


async def test_another_process_sees_a_settlement_within_the_flush_delay(
    make: Callable[..., BudgetStore],
) -> None:
    ours, theirs = make(timer=True), make()
    budget = DailyBudget(10, store=ours, scope="s")
    other = DailyBudget(10, store=theirs, scope="s")
    decision = await budget.reserve()
    await budget.settle(None, lease=decision.lease)
    deadline = time.monotonic() + 5  # the delay is 0.1 s; a loaded machine is slow
    while (await other.snapshot()).in_flight:
        assert time.monotonic() < deadline, "the timer never sent the settlement"
        await anyio.sleep(0.02)
    assert (await other.snapshot()).used == 1
    await ours.aclose()
    await theirs.aclose()


async def test_the_timers_flush_brings_this_process_what_the_others_spent(
    make: Callable[..., BudgetStore],
) -> None:
    ours, theirs = make(timer=True), make()
    budget = DailyBudget(10, store=ours, scope="s")
    other = DailyBudget(10, store=theirs, scope="s")
    decision = await budget.reserve()
    await other.reserve()
    await other.reserve()
    await budget.settle(None, lease=decision.lease)
    assert (budget.used, budget.in_flight) == (1, 0), "what this process knew"
    deadline = time.monotonic() + 10  # the delay is 0.1 s; a loaded machine is slow
    while (budget.used, budget.in_flight) != (3, 2):
        assert time.monotonic() < deadline, f"still {ours.latest('s')} after the flush"
        await anyio.sleep(0.02)
    await ours.aclose()
    await theirs.aclose()


@contextlib.contextmanager
def unavailable(store: BudgetStore, redis_server: RedisServer) -> Iterator[str]:
    """The store's file locked by another process, or its Redis frozen; yields why an
    operation fails meanwhile."""
    if isinstance(store, SqliteBudgetStore):
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield "OperationalError: database is locked"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    else:
        redis_server.pause()
        try:
            yield f"no answer within {store.timeout:g} s"  # type: ignore[attr-defined]
        finally:
            redis_server.resume()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "zigziik"]


async def test_a_timer_flush_that_fails_is_logged_and_kept_for_a_flush(
    make: Callable[..., BudgetStore],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours, theirs = make(timer=True, timeout=0.3), make()
    budget = DailyBudget(10, store=ours, scope="s")
    decision = await budget.reserve()
    caplog.set_level(logging.WARNING, logger="zigziik")
    with unavailable(ours, redis_server) as why:
        await budget.settle(None, lease=decision.lease)
        deadline = time.monotonic() + 10
        while not warnings_of(caplog):
            assert time.monotonic() < deadline, "the timer's flush neither ran nor failed"
            await anyio.sleep(0.02)
    assert warnings_of(caplog) == [
        f"could not send settlements to the budget store: budget store {ours.name}: {why}; "
        "nothing was sent"
    ]
    assert [r.levelno for r in caplog.records if r.name == "zigziik"] == [logging.WARNING]
    await ours.flush()  # kept, with the terms it came with: a flush sends it
    seen = await DailyBudget(10, store=theirs, scope="s").snapshot()
    assert (seen.used, seen.in_flight) == (1, 0)
    await ours.aclose()
    await theirs.aclose()


async def test_a_timer_flush_that_meets_garbage_names_its_scope(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteBudgetStore(tmp_path / "budget.db")
    budget = DailyBudget(10, store=store, scope="s")
    decision = await budget.reserve()
    raw = sqlite3.connect(tmp_path / "budget.db")
    with raw:
        raw.execute("UPDATE zigziik_budget_v1 SET used = 'lots'")
    raw.close()
    caplog.set_level(logging.WARNING, logger="zigziik")
    await budget.settle(None, lease=decision.lease)
    deadline = time.monotonic() + 10
    while not warnings_of(caplog):
        assert time.monotonic() < deadline, "the timer's flush neither ran nor failed"
        await anyio.sleep(0.02)
    assert warnings_of(caplog) == [
        f"could not send settlements to the budget store: budget store {store.name}: the row "
        "of scope 's' holds garbage (not written by zigziik); nothing was sent"
    ]
    store._pending.take_all()  # type: ignore[attr-defined]  # it would fail again
    await store.aclose()


async def test_closing_a_store_that_cannot_send_what_it_kept_warns_and_closes(
    make: Callable[..., BudgetStore],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours = make(timeout=0.3)
    budget = DailyBudget(10, store=ours, scope="s")
    decision = await budget.reserve()
    await budget.settle(None, lease=decision.lease)
    caplog.set_level(logging.WARNING, logger="zigziik")
    with unavailable(ours, redis_server) as why:
        await ours.aclose()  # no error: the lease bounds what the lost settlement weighs
    assert warnings_of(caplog) == [
        f"could not send settlements to the budget store: budget store {ours.name}: {why}; "
        "nothing was sent"
    ]


@pytest.mark.parametrize("operation", ["reserve", "snapshot", "flush"])
async def test_an_operation_that_fails_keeps_the_settlements_it_took(
    make: Callable[..., BudgetStore], redis_server: RedisServer, operation: str
) -> None:
    ours, theirs = make(timeout=0.3), make()
    budget = DailyBudget(10, store=ours, scope="s", clock=lambda: T0)
    decision = await budget.reserve()
    await budget.settle(None, lease=decision.lease)
    with unavailable(ours, redis_server), pytest.raises(BudgetStoreError):
        await getattr(budget, operation)()
    await ours.flush()  # what the failed operation took is sent by a flush of its own
    seen = await DailyBudget(10, store=theirs, scope="s", clock=lambda: T0).snapshot()
    if isinstance(ours, RedisBudgetStore) and operation == "reserve":
        # A frozen Redis runs the script it was sent when it thaws: that reservation's call
        # is counted (nothing was sent to the API) and its lease weighs until it ends.
        assert (seen.used, seen.in_flight) == (2, 1)
    else:
        assert (seen.used, seen.in_flight) == (1, 0)
    await ours.aclose()
    await theirs.aclose()


async def test_a_snapshot_brings_this_process_what_the_others_spent(
    make: Callable[..., BudgetStore],
) -> None:
    ours, theirs = make(), make()
    other = DailyBudget(10, store=theirs, scope="s", clock=lambda: T0)
    await other.reserve()
    await other.reserve()
    seen = await DailyBudget(10, store=ours, scope="s", clock=lambda: T0).snapshot()
    latest = ours.latest("s")
    assert latest is not None and (latest.used, latest.in_flight) == (2, 2) == (
        seen.used,
        seen.in_flight,
    )
    await ours.aclose()
    await theirs.aclose()


@pytest.mark.parametrize("operation", ["reserve", "snapshot", "flush"])
async def test_a_failed_redis_operation_keeps_the_settlements_it_took(
    redis_server: RedisServer, operation: str
) -> None:
    """Redis stopped (not frozen: a frozen one runs what it was sent when it thaws)."""
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    ours = RedisBudgetStore(redis_server.url, clock="client", timeout=2.0)
    ours._flush_delay = None  # type: ignore[attr-defined]
    budget = DailyBudget(10, store=ours, scope="s", clock=lambda: T0)
    decision = await budget.reserve()
    await budget.settle(None, lease=decision.lease)
    redis_server.stop(save=True)
    try:
        with pytest.raises(BudgetStoreError):
            await getattr(budget, operation)()
    finally:
        redis_server.start()
    await ours.flush()
    theirs = RedisBudgetStore(redis_server.url, clock="client")
    seen = await DailyBudget(10, store=theirs, scope="s", clock=lambda: T0).snapshot()
    assert (seen.used, seen.in_flight) == (1, 0)
    await ours.aclose()
    await theirs.aclose()


async def test_flushing_one_scope_leaves_the_others_waiting(
    make: Callable[..., BudgetStore],
) -> None:
    ours, theirs = make(), make()
    a = DailyBudget(10, store=ours, scope="a", clock=lambda: T0)
    b = DailyBudget(10, store=ours, scope="b", clock=lambda: T0)
    first, second = await a.reserve(), await b.reserve()
    await a.settle(None, lease=first.lease)
    await b.settle(None, lease=second.lease)
    await a.flush()
    seen = {
        scope: (await DailyBudget(10, store=theirs, scope=scope, clock=lambda: T0).snapshot())
        for scope in "ab"
    }
    assert (seen["a"].in_flight, seen["b"].in_flight) == (0, 1)
    await ours.aclose()
    await theirs.aclose()


class _Monotonic:
    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


class _RecordedTimer:
    """A `threading.Timer` that only records what it was armed with (the test fires it)."""

    armed: ClassVar[list[_RecordedTimer]] = []

    def __init__(self, interval: float, function: Callable[[], None]) -> None:
        self.interval, self.function, self.daemon = interval, function, False

    def start(self) -> None:
        self.armed.append(self)

    def cancel(self) -> None:
        pass


async def test_sqlite_arms_one_daemon_timer_and_fires_when_the_oldest_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, armed = _Monotonic(), _RecordedTimer.armed
    armed.clear()
    monkeypatch.setattr(_pending, "time", clock)
    monkeypatch.setattr(threading, "Timer", _RecordedTimer)
    ours = SqliteBudgetStore(tmp_path / "budget.db")
    theirs = SqliteBudgetStore(tmp_path / "budget.db")
    theirs._flush_delay = None  # type: ignore[attr-defined]
    budget = DailyBudget(10, store=ours, scope="s", clock=lambda: T0)
    other = DailyBudget(10, store=theirs, scope="s", clock=lambda: T0)
    first, second = await budget.reserve(), await budget.reserve()
    await budget.settle(None, lease=first.lease)
    await budget.settle(None, lease=second.lease)
    assert [(t.interval, t.daemon) for t in armed] == [(_pending.FLUSH_DELAY, True)]
    clock.now += 0.04  # the timer fires before its settlement is due (a reserve took one)
    armed[0].function()
    assert (await other.snapshot()).in_flight == 2, "nothing sent before it is due"
    assert len(armed) == 2 and armed[1].daemon
    assert armed[1].interval == pytest.approx(_pending.FLUSH_DELAY - 0.04)  # what is left
    clock.now += _pending.FLUSH_DELAY  # past due
    armed[1].function()
    assert (await other.snapshot()).in_flight == 0
    assert len(armed) == 2, "nothing left to wait for"
    await ours.aclose()
    await theirs.aclose()


async def test_redis_arms_one_timer_and_fires_when_the_oldest_is_due(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    clock = _Monotonic()
    monkeypatch.setattr(_pending, "time", clock)
    ours = RedisBudgetStore(redis_server.url, clock="client")
    theirs = RedisBudgetStore(redis_server.url, clock="client")
    theirs._flush_delay = None  # type: ignore[attr-defined]
    budget = DailyBudget(10, store=ours, scope="s", clock=lambda: T0)
    other = DailyBudget(10, store=theirs, scope="s", clock=lambda: T0)
    loop = asyncio.get_running_loop()
    first, second = await budget.reserve(), await budget.reserve()
    await budget.settle(None, lease=first.lease)
    timer = ours._timer
    assert timer is not None and ours._timer_loop is loop
    assert 0 < timer.when() - loop.time() <= _pending.FLUSH_DELAY
    await budget.settle(None, lease=second.lease)
    assert ours._timer is timer, "one timer for what waits"
    timer.cancel()  # the test fires it
    clock.now += 0.04  # before its settlement is due (a reserve took one)
    ours._timer_fired()
    assert ours._timer is not None and not ours._flushes
    assert ours._timer.when() - loop.time() <= _pending.FLUSH_DELAY - 0.04 + 0.001
    assert (await other.snapshot()).in_flight == 2, "nothing sent before it is due"
    ours._timer.cancel()
    clock.now += _pending.FLUSH_DELAY  # past due
    ours._timer_fired()
    assert ours._timer is None and len(ours._flushes) == 1, "the flush task is kept"
    await next(iter(ours._flushes))
    await asyncio.sleep(0)  # its done callbacks
    assert not ours._flushes
    assert (await other.snapshot()).in_flight == 0
    await ours.aclose()
    await theirs.aclose()


async def test_closing_the_store_sends_what_it_kept(make: Callable[..., BudgetStore]) -> None:
    ours, theirs = make(), make()
    budget = DailyBudget(10, store=ours, scope="s", clock=lambda: T0)
    decisions = [await budget.reserve() for _ in range(3)]
    for remaining, decision in zip([4, 3, 2], decisions, strict=True):  # others spend too
        await budget.settle(RateLimit(remaining=remaining), lease=decision.lease)
    await ours.aclose()
    seen = await DailyBudget(10, store=theirs, scope="s", clock=lambda: T0).snapshot()
    assert (seen.used, seen.in_flight, seen.remaining) == (8, 0, 2)
    await theirs.aclose()


async def test_a_client_closing_sends_the_settlements_of_a_store_it_was_handed(
    make: Callable[..., BudgetStore],
) -> None:
    fake = FakeZigna(orders=2, pictures_per_order=1, picture_size=100, daily_limit=None)
    ours, theirs = make(), make()
    with serve(fake.app) as origin:
        budget = DailyBudget(10, store=ours)
        async with ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", budget=budget) as zigna:
            await zigna.orders.get(fake.order_ids[0])
        seen = await DailyBudget(10, store=theirs, scope=budget.scope).snapshot()
        assert (seen.used, seen.in_flight) == (1, 0)
    await ours.aclose()
    await theirs.aclose()


async def test_a_process_that_dies_with_settlements_kept_leaves_its_calls_counted(
    make: Callable[..., BudgetStore],
) -> None:
    now = [T0]
    dead = make(lease=30.0)  # never closed, never flushed: the process is gone
    budget = DailyBudget(10, store=dead, scope="s", clock=lambda: now[0])
    for _ in range(3):
        decision = await budget.reserve()
        await budget.settle(None, lease=decision.lease)
    survivor = make(lease=30.0)
    other = DailyBudget(10, store=survivor, scope="s", clock=lambda: now[0])
    seen = await other.snapshot()
    # The last two were kept (the first went with the second reservation, and so on).
    assert (seen.used, seen.in_flight) == (3, 1)
    now[0] += timedelta(seconds=31)
    seen = await other.snapshot()
    assert (seen.used, seen.in_flight) == (3, 0), "its lease expired; its calls stay counted"
    await survivor.aclose()
    dead._pending.take_all()  # type: ignore[attr-defined]  # what died with it
    await dead.aclose()  # only its socket


@pytest.mark.parametrize(
    ("late_ms", "applied"), [(0, True), (FRESH_MS, True), (FRESH_MS + 1, False)]
)
async def test_an_answer_sent_late_applies_its_figures_only_while_fresh(
    make: Callable[..., BudgetStore], late_ms: int, applied: bool
) -> None:
    now = [T0]
    store = make()
    budget = DailyBudget(10, store=store, scope="s", clock=lambda: now[0])
    decision = await budget.reserve()
    await budget.settle(RateLimit(remaining=5), lease=decision.lease)
    now[0] += timedelta(milliseconds=late_ms)
    seen = await budget.snapshot()
    assert seen.in_flight == 0, "its lease is closed either way"
    assert seen.used == (5 if applied else 1)
    await store.aclose()


async def test_a_late_answers_reset_counts_from_when_it_arrived(
    make: Callable[..., BudgetStore],
) -> None:
    now = [T0]
    store = make()
    budget = DailyBudget(10, store=store, scope="s", clock=lambda: now[0])
    decision = await budget.reserve()
    await budget.settle(RateLimit(remaining=8, reset_after=600), lease=decision.lease)
    now[0] += timedelta(milliseconds=700)
    seen = await budget.snapshot()
    assert seen.reset_at == T0 + timedelta(seconds=600)
    assert (seen.used, seen.in_flight) == (2, 0)
    await store.aclose()
