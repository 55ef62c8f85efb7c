"""The budget's stores in one process: memory, a real SQLite file, a real ``redis-server``.

What each store guarantees on its own: exact counts under concurrency, the count surviving a
new store object, one ledger per scope, the server's lower ``Remaining``, leases that expire,
and failing closed (`BudgetStoreError`, nothing sent) when the store is unreachable, slow,
locked or holds garbage; never a password in a message. Several OS processes are in
``test_budget_processes.py``; the rules' agreement with the pure ledger in
``test_budget_properties.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
import redis.asyncio as aioredis
from _redis import RedisServer, free_port
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

import zigziik._redis_lua
import zigziik._redis_store
from zigziik import (
    BudgetExhaustedError,
    BudgetSnapshot,
    BudgetStoreError,
    ConfigurationError,
    DailyBudget,
    InMemoryBudgetStore,
    RateLimit,
    RedisBudgetStore,
    SqliteBudgetStore,
    ZignaClient,
    ZigziikError,
    budget_store_from_url,
)
from zigziik._redis_lua import EXCHANGE
from zigziik._redis_store import _hide_query_secrets, _within
from zigziik._sqlite_store import _use_wal
from zigziik.ratelimit import (
    BudgetStore,
    BudgetTerms,
    key_scope,
    next_local_midnight,
    to_ms,
)
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve

pytestmark = pytest.mark.anyio
CPH = ZoneInfo("Europe/Copenhagen")
OTHER_KEY = "0b2e8f4c-1d3a-4e5f-9a6b-7c8d9e0f1a2b"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def flushed(redis_server: RedisServer) -> RedisServer:
    if not redis_server.ping():  # a test stopped it
        redis_server.start()
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    return redis_server


def make_store(
    kind: str, tmp_path: Path, server: RedisServer | None, **options: float
) -> BudgetStore:
    if kind == "memory":
        return InMemoryBudgetStore()
    if kind == "sqlite":
        return SqliteBudgetStore(tmp_path / "budget.db", **options)
    assert server is not None
    return RedisBudgetStore(server.url, **options)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_for(kind: str, request: pytest.FixtureRequest) -> RedisServer | None:
    return request.getfixturevalue("flushed") if kind == "redis" else None


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeZigna, str]]:
    fake = FakeZigna(orders=3, pictures_per_order=1, picture_size=500, daily_limit=None)
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


# -- what every store does -------------------------------------------------------------------


async def test_concurrent_tasks_on_two_store_objects_get_exactly_the_limit(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    one = make_store(kind, tmp_path, server_for)
    two = one if kind == "memory" else make_store(kind, tmp_path, server_for)
    budgets = [DailyBudget(20, store=one, scope="s"), DailyBudget(20, store=two, scope="s")]
    granted: list[str] = []
    refused = 0

    async def spend(budget: DailyBudget) -> None:
        nonlocal refused
        try:
            decision = await budget.reserve()
        except BudgetExhaustedError:
            refused += 1
            return
        granted.append(decision.lease or "")
        await anyio.sleep(0.001)
        await budget.settle(None, lease=decision.lease)

    async with anyio.create_task_group() as tg:
        for index in range(50):
            tg.start_soon(spend, budgets[index % 2])
    assert len(granted) == 20 and refused == 30
    if kind != "memory":
        assert len(set(granted)) == 20, "every reservation has a lease of its own"
    await budgets[1].flush()  # the other store object's settlements (its own snapshot would)
    snapshot = await budgets[0].snapshot()
    assert snapshot == BudgetSnapshot(20, 20, 0, snapshot.reset_at, 0)
    assert type(snapshot.used) is int
    await one.aclose()
    await two.aclose()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_the_count_survives_a_new_store_object(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    first = make_store(kind, tmp_path, server_for)
    budget = DailyBudget(10, store=first, scope="s")
    for _ in range(3):
        decision = await budget.reserve()
        await budget.settle(None, lease=decision.lease)
    await first.aclose()
    again = make_store(kind, tmp_path, server_for)
    assert (await DailyBudget(10, store=again, scope="s").snapshot()).used == 3
    await again.aclose()


async def test_scopes_are_separate_ledgers(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    store = make_store(kind, tmp_path, server_for)
    one, two = DailyBudget(2, store=store, scope="a"), DailyBudget(2, store=store, scope="b")
    for _ in range(2):
        await one.reserve()
    with pytest.raises(BudgetExhaustedError):
        await one.reserve()
    assert (await two.reserve()).granted
    assert (await two.snapshot()).used == 1
    await store.aclose()


async def test_a_refused_reservation_holds_no_lease(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    store = make_store(kind, tmp_path, server_for)
    terms, now = BudgetTerms(1, 1, CPH), datetime.now(timezone.utc)
    ledger, granted, lease = await store.reserve("s", terms, now)
    assert granted and (ledger.used, ledger.in_flight) == (1, 1)
    assert (lease is not None) is (kind != "memory"), "a shared store's lease, to settle"
    ledger, granted, lease = await store.reserve("s", terms, now)
    assert (granted, lease) == (False, None)
    assert (ledger.used, ledger.in_flight) == (1, 1)
    await store.aclose()


async def test_the_servers_lower_remaining_wins_and_counts_what_is_in_flight(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    store = make_store(kind, tmp_path, server_for)
    budget = DailyBudget(store=store, scope="s")
    decisions = [await budget.reserve() for _ in range(3)]
    await budget.settle(
        RateLimit(limit=500, remaining=100, reset_after=3600), lease=decisions[0].lease
    )
    snapshot = await budget.snapshot()
    # 100 left says the server, two of ours are still unknown to it: 98.
    assert (snapshot.limit, snapshot.remaining, snapshot.in_flight) == (500, 98, 2)
    assert budget.remaining == 98, "the figures of this process's last operation"
    assert abs((snapshot.reset_at - datetime.now(timezone.utc)).total_seconds() - 3600) < 30
    await store.aclose()


async def test_a_cap_is_never_raised_by_the_server(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    store = make_store(kind, tmp_path, server_for)
    budget = DailyBudget(5, store=store, scope="s")
    decision = await budget.reserve()
    await budget.settle(RateLimit(limit=3000, remaining=2999), lease=decision.lease)
    assert (await budget.snapshot()).limit == 5
    await store.aclose()


async def test_the_day_rolls_over_at_copenhagen_midnight_of_a_23_hour_day(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    store = (
        RedisBudgetStore(server_for.url, clock="client")
        if server_for is not None
        else make_store(kind, tmp_path, None)
    )
    now = [datetime(2026, 3, 28, 23, 59, 59, tzinfo=CPH)]
    budget = DailyBudget(1, store=store, scope="s", clock=lambda: now[0])
    await budget.reserve()
    with pytest.raises(BudgetExhaustedError) as refused:
        await budget.reserve()
    assert refused.value.reset_at == datetime(2026, 3, 29, tzinfo=CPH)
    now[0] = datetime(2026, 3, 29, 0, 0, 0, tzinfo=CPH)
    assert (await budget.reserve()).granted
    snapshot = await budget.snapshot()
    assert snapshot.used == 1
    assert snapshot.reset_at == datetime(2026, 3, 30, tzinfo=CPH)
    assert snapshot.reset_at - datetime(2026, 3, 29, tzinfo=CPH) == timedelta(hours=23)
    await store.aclose()


# -- leases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_leases_of_unsettled_calls_expire_and_the_calls_stay_counted(
    kind: str, tmp_path: Path, server_for: RedisServer | None
) -> None:
    now = [datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)]
    options = {"lease": 30.0}
    store = make_store(kind, tmp_path, server_for, **options)
    if isinstance(store, RedisBudgetStore):
        store = RedisBudgetStore(server_for.url, lease=30.0, clock="client")  # type: ignore[union-attr]
    dead = DailyBudget(10, store=store, scope="s", clock=lambda: now[0])
    for _ in range(3):
        await dead.reserve()  # a process that dies before settling
    assert (await dead.snapshot()).in_flight == 3
    now[0] += timedelta(seconds=29)
    assert (await dead.snapshot()).in_flight == 3
    now[0] += timedelta(seconds=2)
    snapshot = await dead.snapshot()
    assert (snapshot.in_flight, snapshot.used) == (0, 3)
    # The server's Remaining no longer has the dead calls subtracted.
    live = await dead.reserve()
    await dead.settle(RateLimit(remaining=6), lease=live.lease)
    assert (await dead.snapshot()).remaining == 6
    await store.aclose()


# -- failing closed ---------------------------------------------------------------------------


async def client_call_fails_closed(
    store: BudgetStore, served: tuple[FakeZigna, str]
) -> BudgetStoreError:
    fake, base = served
    before = fake.calls
    async with ZignaClient(DEMO_API_KEY, base_url=base, budget=DailyBudget(store=store)) as zigna:
        with pytest.raises(BudgetStoreError) as info:
            await zigna.orders.get(fake.order_ids[0])
    assert fake.calls == before, "nothing was sent"
    assert isinstance(info.value, ZigziikError)
    assert DEMO_API_KEY not in str(info.value)
    return info.value


async def test_sqlite_garbage_fails_closed(tmp_path: Path, served: tuple[FakeZigna, str]) -> None:
    path = tmp_path / "budget.db"
    store = SqliteBudgetStore(path)
    await DailyBudget(store=store, scope=key_scope(DEMO_API_KEY)).snapshot()  # creates the table
    raw = sqlite3.connect(path)
    with raw:  # commits; only close() closes (Python 3.13 warns about a connection left open)
        raw.execute(
            "INSERT INTO zigziik_budget_v1 VALUES (?, 'lots', 0, 0, NULL, '{}')",
            (key_scope(DEMO_API_KEY),),
        )
    raw.close()
    error = await client_call_fails_closed(store, served)
    assert "garbage" in str(error) and str(path) in str(error)
    await store.aclose()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("used", None),
        ("day_limit", None),
        ("used", 2**53),  # past what any count or time may be
        ("reset_at", -1),
        ("cap", "x"),
        ("leases", '{"a": 9007199254740992}'),
        ("leases", '["a"]'),
        ("leases", "{"),
        ("leases", '{"a": 5.5}'),
        ("leases", '{"a": "soon"}'),
        ("leases", '{"a": -1}'),
    ],
)
async def test_sqlite_values_the_store_never_writes_fail_closed(
    tmp_path: Path, served: tuple[FakeZigna, str], column: str, value: object
) -> None:
    """A table another program made (no NOT NULL): every value is checked, not the schema."""
    path = tmp_path / "budget.db"
    row: dict[str, object] = {
        "scope": key_scope(DEMO_API_KEY),
        "day_limit": 2000,
        "reset_at": to_ms(datetime.now(timezone.utc) + timedelta(days=1)),
        "used": 0,
        "cap": None,
        "leases": "{}",
    }
    row[column] = value
    raw = sqlite3.connect(path)
    with raw:
        raw.execute(
            "CREATE TABLE zigziik_budget_v1 (scope TEXT PRIMARY KEY, day_limit INTEGER, "
            "reset_at INTEGER, used INTEGER, cap INTEGER, leases TEXT)"
        )
        raw.execute("INSERT INTO zigziik_budget_v1 VALUES (?, ?, ?, ?, ?, ?)", tuple(row.values()))
    raw.close()
    store = SqliteBudgetStore(path)
    error = await client_call_fails_closed(store, served)
    assert str(error) == (
        f"budget store {store.name}: the row of scope {key_scope(DEMO_API_KEY)!r} holds "
        "garbage (not written by zigziik); nothing was sent"
    )
    await store.aclose()


@pytest.mark.parametrize("seconds", [0.25, 1.0, 10.0])
async def test_sqlite_connections_wait_the_stores_timeout_and_only_the_worker_checkpoints(
    tmp_path: Path, seconds: float
) -> None:
    store = SqliteBudgetStore(tmp_path / "budget.db", timeout=seconds)
    budget = DailyBudget(5, store=store, scope="s")
    await budget.reserve()
    await budget.reserve()
    worker, fast = store._connection, store._fast  # type: ignore[attr-defined]
    pragmas = ("busy_timeout", "wal_autocheckpoint", "synchronous", "journal_mode")
    read = {
        name: tuple(c.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas)
        for name, c in (("worker", worker), ("fast", fast))
    }
    assert read["worker"] == (round(seconds * 1000), 1000, 1, "wal")  # 1: NORMAL
    assert read["fast"] == (0, 0, 1, "wal"), "the event loop's never waits nor checkpoints"
    assert (await budget.snapshot()).used == 2
    await store.aclose()


def test_sqlite_refuses_a_database_that_cannot_use_wal() -> None:
    connection = sqlite3.connect(":memory:")  # an in-memory database keeps its own journal
    with pytest.raises(sqlite3.OperationalError) as info:
        _use_wal(connection)
    connection.close()
    assert str(info.value) == "cannot use WAL mode (journal mode ('memory',))"


async def test_sqlite_runs_uncontended_operations_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the first operation (which opens the file) and those that meet another
    process's lock wait in a worker thread."""
    threaded: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Callable[..., object], *args: object, **kwargs: Any) -> object:
        threaded.append(function)
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    store = SqliteBudgetStore(tmp_path / "budget.db")
    store._flush_delay = None  # type: ignore[attr-defined]  # counted: no timer's flush
    budget = DailyBudget(2000, store=store, scope="s")
    for _ in range(20):
        decision = await budget.reserve()
        await budget.settle(None, lease=decision.lease)
    assert (await budget.snapshot()).used == 20
    assert len(threaded) == 1
    # Every 500 commits on the event loop's connection, one runs in the thread and
    # checkpoints the WAL (the event loop's never does: a checkpoint fsyncs).
    worker = store._connection  # type: ignore[attr-defined]
    for _ in range(480):
        await budget.reserve()
    assert len(threaded) == 1, "500 commits on the event loop"
    await budget.reserve()
    assert len(threaded) == 2, "the 501st runs in the thread"
    for _ in range(500):
        await budget.reserve()
    assert len(threaded) == 2, "then 500 on the event loop again"
    await budget.reserve()
    assert len(threaded) == 3
    assert store._connection is worker, "the thread's connection is kept"  # type: ignore[attr-defined]
    await store.aclose()


async def test_sqlite_error_that_is_no_lock_fails_at_once_without_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteBudgetStore(tmp_path / "budget.db")
    budget = DailyBudget(5, store=store, scope="s")
    await budget.reserve()
    raw = sqlite3.connect(tmp_path / "budget.db")
    raw.execute("DROP TABLE zigziik_budget_v1")
    raw.close()
    threaded: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Callable[..., object], *args: object, **kwargs: Any) -> object:
        threaded.append(function)
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    with pytest.raises(BudgetStoreError, match="no such table"):
        await budget.reserve()
    assert threaded == [], "the thread would only meet it again"
    await store.aclose()


async def test_sqlite_never_blocks_the_event_loop_on_its_own_lock(tmp_path: Path) -> None:
    """While one of its operations holds the store's lock (in a thread, waiting for another
    process's), another runs in a thread too: the event loop goes on."""
    store = SqliteBudgetStore(tmp_path / "budget.db")
    budget = DailyBudget(5, store=store, scope="s")
    await budget.reserve()
    lock = store._lock  # type: ignore[attr-defined]
    failsafe = threading.Timer(5.0, lock.release)  # if the event loop blocks on it
    lock.acquire()
    failsafe.start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(budget.reserve)
        await anyio.sleep(0.05)
        assert failsafe.is_alive(), "the event loop was blocked until the failsafe released"
        failsafe.cancel()
        lock.release()
    assert (await budget.snapshot()).used == 2
    await store.aclose()


async def test_sqlite_reads_a_lease_that_ended_at_the_epoch_as_expired(tmp_path: Path) -> None:
    path = tmp_path / "budget.db"
    store = SqliteBudgetStore(path)
    budget = DailyBudget(5, store=store, scope="s")
    await budget.reserve()
    raw = sqlite3.connect(path)
    with raw:  # the lowest end a lease may have: 0 ms
        raw.execute("""UPDATE zigziik_budget_v1 SET leases = '{"old": 0}'""")
    raw.close()
    seen = await budget.snapshot()
    assert (seen.used, seen.in_flight) == (1, 0)
    await store.aclose()


async def test_sqlite_file_that_is_not_a_database_fails_closed(
    tmp_path: Path, served: tuple[FakeZigna, str]
) -> None:
    path = tmp_path / "budget.db"
    path.write_bytes(b"this is not a database " * 100)
    store = SqliteBudgetStore(path)
    error = await client_call_fails_closed(store, served)
    assert "DatabaseError" in str(error)
    await store.aclose()


async def test_sqlite_waits_for_a_lock_off_the_event_loop_then_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "budget.db"
    store = SqliteBudgetStore(path, timeout=0.5)
    budget = DailyBudget(store=store, scope="s")
    await budget.snapshot()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            started = anyio.current_time()
            with pytest.raises(BudgetStoreError, match="locked"):
                await budget.reserve()
            waited = anyio.current_time() - started
            tg.cancel_scope.cancel()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert waited >= 0.4
    assert ticks >= 10, "the event loop kept running while the store waited for the lock"
    assert (await budget.reserve()).granted, "works again once the lock is free"
    await store.aclose()


async def test_redis_unreachable_fails_closed_without_the_password(
    served: tuple[FakeZigna, str],
) -> None:
    url = f"redis://zig:hunter2-secret@127.0.0.1:{free_port()}/0"
    store = RedisBudgetStore(url, timeout=2.0)
    error = await client_call_fails_closed(store, served)
    text = str(error)
    assert "hunter2" not in text and "hunter2" not in repr(store)
    assert error.store == f"redis://zig:***@127.0.0.1:{url.split(':')[3].split('/')[0]}/0"
    assert text.startswith(f"budget store {error.store}: ConnectionError: ")
    assert text.endswith("; nothing was sent")
    await store.aclose()


@pytest.mark.parametrize("own", [True, False], ids=["url", "callers-client"])
async def test_redis_that_does_not_answer_fails_closed_within_the_timeout(
    flushed: RedisServer, served: tuple[FakeZigna, str], own: bool
) -> None:
    # A caller's client has no socket timeout of its own: only the store's bounds the call.
    client = None if own else aioredis.Redis(host="127.0.0.1", port=flushed.port)
    store = RedisBudgetStore(flushed.url if client is None else client, timeout=0.5)
    assert (await DailyBudget(store=store, scope="s").reserve()).granted  # connected
    flushed.pause()
    try:
        started = anyio.current_time()
        error = await client_call_fails_closed(store, served)
        assert anyio.current_time() - started < 3
        assert str(error) == f"budget store {store.name}: no answer within 0.5 s; nothing was sent"
    finally:
        flushed.resume()
    await store.aclose()
    if client is not None:
        await client.aclose()


# On 3.10 the only bound there is; from 3.11 asyncio.timeout, half the cost of anyio's cancel
# scope per operation (this Python offers both paths to the test, 3.10 only the first).
WITHIN_PATHS = [((3, 10, 14), "anyio")]
if sys.version_info >= (3, 11):
    WITHIN_PATHS.append(((3, 11, 0), "asyncio"))


@pytest.mark.parametrize(("version", "bound_by"), WITHIN_PATHS, ids=lambda v: str(v))
async def test_redis_operations_are_bounded_by_asyncio_timeout_from_python_3_11(
    version: tuple[int, ...], bound_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Either way an operation ends in TimeoutError after its seconds, and only then."""
    monkeypatch.setattr(zigziik._redis_store, "sys", SimpleNamespace(version_info=version))
    cancel_scopes: list[float] = []
    fail_after = anyio.fail_after

    def counted(seconds: float) -> Any:
        cancel_scopes.append(seconds)
        return fail_after(seconds)

    monkeypatch.setattr(zigziik._redis_store.anyio, "fail_after", counted)
    assert await _within(5.0, asyncio.sleep(0.01, "answered")) == "answered"
    started = anyio.current_time()
    with pytest.raises(TimeoutError):
        await _within(0.05, asyncio.sleep(30))
    assert anyio.current_time() - started < 10
    assert cancel_scopes == ([5.0, 0.05] if bound_by == "anyio" else [])


@pytest.mark.parametrize("own", [True, False], ids=["url", "callers-client"])
async def test_redis_replica_that_refuses_writes_fails_closed_naming_its_error(
    flushed: RedisServer, served: tuple[FakeZigna, str], own: bool
) -> None:
    """A URL or client that points at a read-only replica: Redis's own error, by name."""
    client = None if own else aioredis.Redis(host="127.0.0.1", port=flushed.port)
    store = RedisBudgetStore(flushed.url if client is None else client)
    # A replica of a master that is not there: it refuses writes, and never syncs (or flushes).
    assert flushed.command("REPLICAOF", "127.0.0.1", str(free_port())).startswith(b"+OK")
    try:
        text = str(await client_call_fails_closed(store, served))
    finally:
        assert flushed.command("REPLICAOF", "NO", "ONE").startswith(b"+OK")
    assert text.startswith(
        f"budget store {store.name}: ReadOnlyError: You can't write against a read only replica."
    )
    assert text.endswith("; nothing was sent")
    assert (await DailyBudget(store=store, scope="s").reserve()).granted, "a master again"
    await store.aclose()
    if client is not None:
        await client.aclose()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("used", "many"),
        ("v", "2"),
        ("limit", "-3"),
        ("l:abc", "soon"),
        ("reset_at", "1e400"),
        # digits, but past what Lua's doubles hold exactly (2**53 and far beyond)
        ("used", "9007199254740992"),
        ("used", "99999999999999999999"),
    ],
)
async def test_redis_garbage_fails_closed(
    flushed: RedisServer, served: tuple[FakeZigna, str], field: str, value: str
) -> None:
    store = RedisBudgetStore(flushed.url)
    budget = DailyBudget(store=store, scope=key_scope(DEMO_API_KEY))
    await budget.reserve()
    raw = aioredis.Redis.from_url(flushed.url)
    await raw.hset(store.key(key_scope(DEMO_API_KEY)), field, value)
    await raw.aclose()
    error = await client_call_fails_closed(store, served)
    key = store.key(key_scope(DEMO_API_KEY))
    assert str(error).startswith(f"budget store {store.name}: the key {key!r} holds garbage: ")
    assert str(error).endswith("; nothing was sent") and " script: " not in str(error)
    await store.aclose()


async def test_redis_key_of_another_type_fails_closed(
    flushed: RedisServer, served: tuple[FakeZigna, str]
) -> None:
    store = RedisBudgetStore(flushed.url)
    raw = aioredis.Redis.from_url(flushed.url)
    key = store.key(key_scope(DEMO_API_KEY))
    await raw.set(key, "something else's")
    await raw.aclose()
    error = await client_call_fails_closed(store, served)
    assert str(error) == (
        f"budget store {store.name}: the key {key!r} holds WRONGTYPE Operation against a key "
        "holding the wrong kind of value; nothing was sent"
    )
    await store.aclose()


async def test_redis_whose_clock_is_days_ahead_fails_closed(
    flushed: RedisServer, served: tuple[FakeZigna, str]
) -> None:
    """The client sends its midnights up to four days on; a server past them all refuses."""
    store = RedisBudgetStore(flushed.url)
    budget = DailyBudget(
        5, store=store, scope="s", clock=lambda: datetime.now(timezone.utc) - timedelta(days=6)
    )
    with pytest.raises(BudgetStoreError) as info:
        await budget.reserve()
    assert str(info.value) == (
        f"budget store {store.name}: the Redis server's clock is days away from this host's; "
        "nothing was sent"
    )
    await store.aclose()


def test_redis_store_without_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # import fails as if absent
    with pytest.raises(ConfigurationError) as info:
        RedisBudgetStore("redis://cache:6379/0")
    assert str(info.value) == "RedisBudgetStore needs redis-py: pip install 'zigziik[redis]'"


def test_redis_urls_password_is_scrubbed_from_every_zigziik_error() -> None:
    store = RedisBudgetStore("redis://:hunter2-secret@cache:6379/0")
    assert str(ZigziikError("it said hunter2-secret")) == "it said ***"
    del store


async def test_redis_store_connection_never_retries_and_bounds_its_connect(
    flushed: RedisServer,
) -> None:
    """A script whose reply was lost may have run: sent again, it would count twice."""
    store = RedisBudgetStore(flushed.url, timeout=1.5)
    await DailyBudget(5, store=store, scope="s").reserve()
    connection = store._connection  # type: ignore[attr-defined]
    assert connection.retry.get_retries() == 0 and connection.retry_on_timeout is False
    assert (connection.socket_connect_timeout, connection.socket_timeout) == (1.5, None)
    await store.aclose()


async def test_redis_store_sends_its_script_without_a_health_check_ping(
    flushed: RedisServer,
) -> None:
    """One command per call, even when the URL asks redis-py for a health check (a PING
    before a command sent after a second idle): no PING, and no WAIT without replicas=."""
    store = RedisBudgetStore(flushed.url + "?health_check_interval=1")
    budget = DailyBudget(5, store=store, scope="s")
    await budget.reserve()
    assert flushed.command("CONFIG", "RESETSTAT").startswith(b"+OK")
    await anyio.sleep(1.3)
    assert (await budget.reserve()).granted
    stats = flushed.info("commandstats")
    assert "cmdstat_ping" not in stats, stats
    assert "cmdstat_wait" not in stats, "no WAIT without replicas="
    assert stats["cmdstat_evalsha"].startswith("calls=1,")
    await store.aclose()


async def test_redis_reply_that_is_not_the_scripts_fails_closed(
    flushed: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program's script under our name (a caller's client registers ours)."""
    monkeypatch.setattr(zigziik._redis_lua, "EXCHANGE", "return {1, 2}")
    client = aioredis.Redis(host="127.0.0.1", port=flushed.port)
    store = RedisBudgetStore(client)
    with pytest.raises(BudgetStoreError) as info:
        await DailyBudget(5, store=store, scope="s").reserve()
    assert str(info.value) == (
        f"budget store {store.name}: unexpected reply from the budget script: [1, 2]"
    )
    await store.aclose()
    await client.aclose()


# -- Redis specifics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("own", "replicas"), [(True, 0), (True, 1), (False, 1)], ids=["url", "url-wait", "client-wait"]
)
async def test_redis_that_answers_noscript_after_loading_fails_closed(
    flushed: RedisServer, monkeypatch: pytest.MonkeyPatch, own: bool, replicas: int
) -> None:
    """The script loaded once after NOSCRIPT, then tried once more: a server that still has
    no script under its SHA is an error, not a loop, and nothing ran."""
    monkeypatch.setattr(zigziik._redis_lua, "EXCHANGE_SHA", "0" * 40)
    client = None if own else aioredis.Redis(host="127.0.0.1", port=flushed.port)
    store = RedisBudgetStore(
        flushed.url if client is None else client, timeout=1.2, replicas=replicas
    )
    with pytest.raises(BudgetStoreError) as info:
        await DailyBudget(5, store=store, scope="s").reserve()
    text = str(info.value)
    assert text.startswith(f"budget store {store.name}: NoScriptError: ")
    assert text.endswith("; nothing was sent")
    assert flushed.command("EXISTS", store.key("s")) == b":0\r\n", "the script never ran"
    await store.aclose()
    if client is not None:
        await client.aclose()


@pytest.mark.parametrize("own", [True, False], ids=["url", "callers-client"])
async def test_redis_replicas_grants_once_a_replica_has_each_reservation(
    flushed: RedisServer, tmp_path: Path, own: bool
) -> None:
    """WAIT after the script, on the same connection and outside any MULTI (where WAIT
    would answer at once, before the replica has anything): granted, and on the replica."""
    # The master sends its data at once (by default it waits 5 s for more replicas to come).
    assert flushed.command("CONFIG", "SET", "repl-diskless-sync-delay", "0").startswith(b"+OK")
    replica = RedisServer(
        tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(flushed.port))
    )
    replica.start()
    client = None
    try:
        deadline = anyio.current_time() + 30
        while replica.info("replication").get("master_link_status") != "up":
            assert anyio.current_time() < deadline, "the replica never followed"
            await anyio.sleep(0.05)
        client = None if own else aioredis.Redis(host="127.0.0.1", port=flushed.port)
        store = RedisBudgetStore(flushed.url if client is None else client, replicas=1)
        budget = DailyBudget(3, store=store, scope="s")
        for used in (1, 2, 3):
            assert (await budget.reserve()).granted
            assert replica.command("HGET", store.key("s"), "used") == b"$1\r\n%d\r\n" % used
        with pytest.raises(BudgetExhaustedError):
            await budget.reserve()
        await store.aclose()
    finally:
        if client is not None:
            await client.aclose()
        replica.stop()


async def test_redis_reloads_its_scripts_after_a_flush(flushed: RedisServer) -> None:
    store = RedisBudgetStore(flushed.url)
    budget = DailyBudget(5, store=store, scope="s")
    await budget.reserve()
    raw = aioredis.Redis.from_url(flushed.url)
    await raw.script_flush()
    assert (await budget.reserve()).granted  # NOSCRIPT, loaded again, run once
    assert (await budget.snapshot()).used == 2
    await raw.aclose()
    await store.aclose()


async def test_redis_one_hash_per_scope_in_one_cluster_slot_expiring_after_its_day(
    flushed: RedisServer,
) -> None:
    store = RedisBudgetStore(flushed.url, prefix="app:")
    budget = DailyBudget(5, store=store, scope="key-0123")
    decision = await budget.reserve()
    raw = aioredis.Redis.from_url(flushed.url)
    assert await raw.keys("*") == [b"app:{key-0123}"]
    fields = await raw.hgetall("app:{key-0123}")
    assert fields[b"used"] == b"1" and fields[f"l:{decision.lease}".encode()]
    ttl = await raw.pttl("app:{key-0123}")
    until_reset = (budget.reset_at - datetime.now(timezone.utc)).total_seconds() * 1000
    assert until_reset + 86_400_000 - 60_000 < ttl <= until_reset + 86_400_000 + 1000
    await raw.aclose()
    await store.aclose()


async def test_redis_decides_by_its_own_clock(flushed: RedisServer) -> None:
    """A client whose clock is a day slow thinks the day is not over; Redis's TIME says it is."""
    slow = [datetime.now(timezone.utc) - timedelta(days=1)]
    seeding = RedisBudgetStore(flushed.url, clock="client")
    behind = DailyBudget(1, store=seeding, scope="s", clock=lambda: slow[0])
    await behind.reserve()
    with pytest.raises(BudgetExhaustedError) as refused:
        await behind.reserve()
    assert refused.value.reset_at < datetime.now(timezone.utc), "that day is over by now"
    server_timed = RedisBudgetStore(flushed.url)
    assert (
        await DailyBudget(1, store=server_timed, scope="s", clock=lambda: slow[0]).reserve()
    ).granted
    await seeding.aclose()
    await server_timed.aclose()


async def test_redis_with_the_callers_client_leaves_it_open(flushed: RedisServer) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=flushed.port, password=None)
    store = RedisBudgetStore(client)
    assert store.name == f"redis://127.0.0.1:{flushed.port}/0"
    assert (await DailyBudget(store=store, scope="s").reserve()).granted
    await store.aclose()
    assert await client.ping()
    await client.aclose()


async def test_redis_deletes_the_fields_of_leases_that_expired(flushed: RedisServer) -> None:
    now = [datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)]
    store = RedisBudgetStore(flushed.url, lease=30.0, clock="client")
    budget = DailyBudget(10, store=store, scope="s", clock=lambda: now[0])
    for _ in range(3):
        assert (await budget.reserve()).granted
    now[0] += timedelta(seconds=30)  # their leases end exactly now
    live = await budget.reserve()
    raw = aioredis.Redis.from_url(flushed.url)
    fields = await raw.hkeys(store.key("s"))
    assert sorted(f for f in fields if f.startswith(b"l:")) == [f"l:{live.lease}".encode()]
    assert (await budget.snapshot()).used == 4, "the expired calls stay counted"
    await raw.aclose()
    await store.aclose()


def script_args(
    now_ms: int | None, midnights: str, *, lease: str = "", lease_ms: int = 30_000
) -> list[str]:
    """The budget script's ARGV (see `zigziik._redis_lua`): limit 10, no cap, no settlement."""
    now = "" if now_ms is None else str(now_ms)
    return [now, "10", "", midnights, "r" if lease else "v", lease, str(lease_ms), ""]


async def test_redis_script_runs_by_the_servers_clock_to_the_millisecond(
    flushed: RedisServer,
) -> None:
    terms = BudgetTerms(10, None, CPH)
    raw = aioredis.Redis.from_url(flushed.url)
    for _ in range(30):  # a wrong conversion of TIME's microseconds is off by one ms or less
        async with raw.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.eval(
                EXCHANGE,
                1,
                "clock",
                *script_args(None, terms.midnights_text(datetime.now(timezone.utc))),
            )
            pipe.time()
            before, reply, after = await pipe.execute()
        script_now = int(reply[6])
        assert before[0] * 1000 + before[1] // 1000 <= script_now
        assert script_now <= after[0] * 1000 + after[1] // 1000
    await raw.aclose()


async def test_redis_whose_clock_is_two_days_behind_takes_its_own_next_midnight(
    flushed: RedisServer,
) -> None:
    """The client sends the midnights from the start of its yesterday; a server two days
    behind is before all but the first of them."""
    client_now = datetime(2026, 3, 30, 12, 0, tzinfo=timezone.utc)
    server_now = client_now - timedelta(days=2)
    midnights = BudgetTerms(10, None, CPH).midnights(client_now)
    raw = aioredis.Redis.from_url(flushed.url)
    args = script_args(to_ms(server_now), ",".join(map(str, midnights)))
    reply = await raw.eval(EXCHANGE, 1, "behind", *args)
    assert int(reply[2]) == midnights[0] == to_ms(next_local_midnight(server_now, CPH))
    await raw.aclose()


@pytest.mark.parametrize("lease_past_the_reset", [False, True])
async def test_redis_keeps_a_key_exactly_a_day_after_its_reset_or_its_last_lease(
    flushed: RedisServer, lease_past_the_reset: bool
) -> None:
    now = datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)
    terms = BudgetTerms(10, None, CPH)
    reset_ms = to_ms(terms.next_reset(now))
    lease_ms = reset_ms - to_ms(now) + 3_600_000 if lease_past_the_reset else 30_000
    keep = max(reset_ms, to_ms(now) + lease_ms)
    day = 86_400_000
    raw = aioredis.Redis.from_url(flushed.url)
    for n in range(5):  # PTTL in the same transaction: the script's TTL, or a ms less
        key = f"ttl-{n}"
        args = script_args(to_ms(now), terms.midnights_text(now), lease="a", lease_ms=lease_ms)
        async with raw.pipeline(transaction=True) as pipe:
            pipe.eval(EXCHANGE, 1, key, *args)
            pipe.pttl(key)
            reply, ttl = await pipe.execute()
        assert int(reply[0]) == 1 and int(reply[2]) == reset_ms
        assert keep - to_ms(now) + day - 2_000 < ttl <= keep - to_ms(now) + day
    await raw.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_redis_under_trio_is_refused_clearly(flushed: RedisServer) -> None:
    store = RedisBudgetStore(flushed.url)
    with pytest.raises(BudgetStoreError, match="asyncio") as info:
        await DailyBudget(store=store, scope="s").reserve()
    assert str(info.value) == (
        f"budget store {store.name}: RedisBudgetStore runs under asyncio only (redis-py's "
        "client is asyncio's); under trio use SqliteBudgetStore"
    )
    await store.aclose()  # closes, under trio too


# -- options ----------------------------------------------------------------------------------


def store_of(kind: str, tmp_path: Path, **options: object) -> SqliteBudgetStore | RedisBudgetStore:
    if kind == "sqlite":
        return SqliteBudgetStore(tmp_path / "budget.db", **options)  # type: ignore[arg-type]
    return RedisBudgetStore("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
@pytest.mark.parametrize("option", ["lease", "timeout"])
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, float("nan"), float("inf"), "5", None])
def test_bad_store_options_are_refused_by_name(
    tmp_path: Path, kind: str, option: str, value: object
) -> None:
    with pytest.raises(ValueError, match="must be a positive number") as info:
        store_of(kind, tmp_path, **{option: value})
    assert str(info.value) == f"{option} must be a positive number of seconds, got {value!r}"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_store_options_are_kept_as_seconds(tmp_path: Path, kind: str) -> None:
    store = store_of(kind, tmp_path, lease=7, timeout=0.25)
    assert (type(store.lease), store.lease) == (float, 7.0)
    assert (type(store.timeout), store.timeout) == (float, 0.25)
    default = store_of(kind, tmp_path)
    assert (default.lease, default.timeout) == (120.0, 10.0 if kind == "sqlite" else 5.0)


def test_store_names_and_reprs(tmp_path: Path) -> None:
    sqlite_store = SqliteBudgetStore(tmp_path / "b.db", lease=7.5)
    assert sqlite_store.name == f"sqlite://{(tmp_path / 'b.db').as_posix()}"
    assert repr(sqlite_store) == f"SqliteBudgetStore({str(tmp_path / 'b.db')!r}, lease=7.5)"
    redis_store = RedisBudgetStore("redis://:pw@127.0.0.1:1/0", prefix="app:")
    assert redis_store.name == "redis://:***@127.0.0.1:1/0"
    assert repr(redis_store) == "RedisBudgetStore('redis://:***@127.0.0.1:1/0', prefix='app:')"
    assert redis_store.key("s") == "app:{s}"


def test_redis_store_arguments_are_refused_by_name() -> None:
    refusals: list[tuple[type[Exception], Callable[[], object], str]] = [
        (
            TypeError,
            lambda: RedisBudgetStore("redis://h/0", prefix=b"x"),  # type: ignore[arg-type]
            "prefix must be a string, got bytes",
        ),
        (
            ValueError,
            lambda: RedisBudgetStore("redis://h/0", clock="local"),  # type: ignore[arg-type]
            "clock must be 'server' or 'client', got 'local'",
        ),
        (
            TypeError,
            lambda: RedisBudgetStore(42),
            "RedisBudgetStore takes a redis:// URL or a redis.asyncio client, got int",
        ),
        (
            ValueError,
            lambda: RedisBudgetStore("redis://h/0", lease=True),
            "lease must be a positive number of seconds, got True",
        ),
        (
            ValueError,
            lambda: RedisBudgetStore("redis://h/0", timeout=False),
            "timeout must be a positive number of seconds, got False",
        ),
    ]
    for error, make, message in refusals:
        with pytest.raises(error) as info:
            make()
        assert str(info.value) == message


def test_redis_store_takes_its_urls_password_as_a_secret() -> None:
    store = RedisBudgetStore("  redis://u:p%40ss@cache:6379/0\n")
    assert store.name == "redis://u:***@cache:6379/0"
    assert tuple(store.secrets()) == ("p%40ss", "p@ss")
    assert tuple(RedisBudgetStore("redis://cache:6379/0").secrets()) == ()


@pytest.mark.parametrize(
    ("url", "name", "hidden"),
    [
        ("redis://cache/0", "redis://cache/0", ()),
        # a '?' or '=' inside a value is the value's: all of it is hidden
        ("redis://cache/0?password=pa?ss&db=0", "redis://cache/0?password=***&db=0", ("pa?ss",)),
        ("redis://cache/0?password=YWJj=&db=1", "redis://cache/0?password=***&db=1", ("YWJj=",)),
        # the query ends at its first '#', as redis-py reads it: the rest is no password
        ("redis://cache/0?password=se#cr#et", "redis://cache/0?password=***#cr#et", ("se",)),
        # the name in any case, percent-encoded or '+' for a space, is still a password's
        (
            "redis://cache/0?Sentinel_PASSWORD=p%40ss+w",
            "redis://cache/0?Sentinel_PASSWORD=***",
            ("p%40ss+w", "p@ss w"),
        ),
        # nothing to hide: a password option without a value, or without '='
        ("redis://cache/0?password=&ssl_password", "redis://cache/0?password=&ssl_password", ()),
    ],
)
def test_redis_url_query_passwords_are_hidden_whole(
    url: str, name: str, hidden: tuple[str, ...]
) -> None:
    assert _hide_query_secrets(url) == (name, hidden)


@pytest.mark.parametrize(
    ("query", "named"), [("ssl_ca_cert=/ca.pem", "'ssl_ca_cert'"), ("db=first", "'db'")]
)
def test_a_bad_redis_url_option_is_refused_with_redis_pys_reason_and_a_hint(
    query: str, named: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        RedisBudgetStore(f"redis://u:hunter2-secret@cache:6379/0?{query}")
    name = f"redis://u:***@cache:6379/0?{query}"
    text = str(info.value)
    head = f"bad Redis URL {name!r}: "
    hint = " (the query takes redis-py's connection options, such as ssl_ca_certs=/path/ca.pem)"
    assert text.startswith(head) and text.endswith(hint), text
    assert named in text[len(head) : -len(hint)], "redis-py's reason names the option"
    assert "hunter2" not in text


class _NotRedis:
    async def evalsha(self, *args: object) -> None: ...


async def test_redis_store_names_a_callers_client_without_its_password() -> None:
    clients = {
        "redis://cache:6380/2": aioredis.Redis(host="cache", port=6380, db=2, password="pw"),
        "unix:///run/redis.sock": aioredis.Redis(unix_socket_path="/run/redis.sock"),
        "rediss://cache:6379/0": aioredis.Redis(host="cache", ssl=True),
    }
    for name, client in clients.items():
        assert RedisBudgetStore(client).name == name
        await client.aclose()
    assert RedisBudgetStore(_NotRedis()).name == "<_NotRedis>"


async def test_redis_store_names_sentinel_and_cluster_clients_without_a_server() -> None:
    """Built as users build them, never connected: the name reads only the client."""
    sentinel = Sentinel([("127.0.0.1", free_port())])
    masters = {
        # master_for keeps no db unless given one: the default database, 0
        "redis+sentinel://svc/0": sentinel.master_for("svc"),
        "redis+sentinel://svc/3": sentinel.master_for("svc", db=3),
        "rediss+sentinel://svc/0": sentinel.master_for("svc", ssl=True, password="pw"),
    }
    for name, client in masters.items():
        assert RedisBudgetStore(client).name == name
        await client.aclose()
    clusters = {
        "redis+cluster://cache:7000": RedisCluster(host="cache", port=7000),
        "rediss+cluster://cache:7001": RedisCluster(host="cache", port=7001, ssl=True),
    }
    for name, cluster in clusters.items():
        assert RedisBudgetStore(cluster).name == name
        await cluster.aclose()


@pytest.mark.parametrize("lease", [30.0, 0.0004])  # at least a millisecond
async def test_a_lease_ends_its_length_after_the_reservation_in_sqlite_and_redis(
    tmp_path: Path, flushed: RedisServer, lease: float
) -> None:
    now = datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)
    expected = to_ms(now) + max(1, round(lease * 1000))
    sqlite_store = SqliteBudgetStore(tmp_path / "b.db", lease=lease)
    decision = await DailyBudget(5, store=sqlite_store, scope="s", clock=lambda: now).reserve()
    raw = sqlite3.connect(tmp_path / "b.db")
    (leases,) = raw.execute("SELECT leases FROM zigziik_budget_v1").fetchone()
    raw.close()
    assert leases == f'{{"{decision.lease}":{expected}}}'
    redis_store = RedisBudgetStore(flushed.url, lease=lease, clock="client")
    decision = await DailyBudget(5, store=redis_store, scope="s", clock=lambda: now).reserve()
    client = aioredis.Redis.from_url(flushed.url)
    assert await client.hget(redis_store.key("s"), f"l:{decision.lease}") == str(expected).encode()
    await client.aclose()
    await sqlite_store.aclose()
    await redis_store.aclose()


# -- URLs, the environment, scopes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "detail"),
    [
        ("memory:", InMemoryBudgetStore, None),
        ("sqlite:///var/lib/app/b.db", SqliteBudgetStore, "/var/lib/app/b.db"),
        ("sqlite:rel/b.db", SqliteBudgetStore, "rel/b.db"),
        ("redis://:pw@redis:6379/2", RedisBudgetStore, "redis://:***@redis:6379/2"),
        ("rediss://user:pw@redis:6380/0", RedisBudgetStore, "rediss://user:***@redis:6380/0"),
    ],
)
def test_budget_store_from_url(url: str, kind: type, detail: str | None) -> None:
    store = budget_store_from_url(url)
    assert isinstance(store, kind)
    if isinstance(store, SqliteBudgetStore):
        assert str(store.path).endswith(str(detail))
        assert store.path.is_absolute()
    elif detail is not None:
        assert store.name == detail
        assert "pw" not in repr(store)


@pytest.mark.parametrize(
    "url",
    ["", "postgres://x", "sqlite://host/x.db", "sqlite:", "sqlite:///x.db?mode=ro", "memcached:"],
)
def test_bad_budget_store_urls_are_named(url: str) -> None:
    with pytest.raises(ConfigurationError):
        budget_store_from_url(url)


def test_bad_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        budget_store_from_url("postgres://admin:topsecret@db/x")
    assert "topsecret" not in str(info.value)


async def test_a_client_made_without_a_budget_uses_and_closes_the_store_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: tuple[FakeZigna, str]
) -> None:
    fake, base = served
    monkeypatch.setenv("ZIGZIIK_BUDGET_STORE", f"sqlite://{tmp_path}/env.db")
    monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", "7")
    async with ZignaClient(DEMO_API_KEY, base_url=base) as zigna:
        budget = zigna.budget
        assert budget is not None
        store = budget.store
        assert isinstance(store, SqliteBudgetStore) and store.path == tmp_path / "env.db"
        await zigna.orders.get(fake.order_ids[0])
        assert budget.limit == 7 and budget.used == 1
    assert store._connection is None, "the client closed the store it made"
    async with ZignaClient(DEMO_API_KEY, base_url=base) as again:
        assert again.budget is not None
        assert (await again.budget.snapshot()).used == 1, "the next client shares the count"


def test_a_bad_daily_limit_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", "lots")
    with pytest.raises(ConfigurationError, match="ZIGZIIK_DAILY_LIMIT"):
        ZignaClient(DEMO_API_KEY)


async def test_a_client_gives_its_budget_the_scope_of_its_key(
    tmp_path: Path, served: tuple[FakeZigna, str]
) -> None:
    fake, base = served
    store = SqliteBudgetStore(tmp_path / "b.db")
    budget = DailyBudget(store=store)
    async with ZignaClient(DEMO_API_KEY, base_url=base, budget=budget) as zigna:
        await zigna.orders.get(fake.order_ids[0])
    assert budget.scope == key_scope(DEMO_API_KEY)
    assert DEMO_API_KEY not in budget.scope
    assert DEMO_API_KEY.replace("-", "") not in budget.scope
    assert key_scope(DEMO_API_KEY.upper()) == key_scope("{" + DEMO_API_KEY + "}") == budget.scope
    other = DailyBudget(store=store)
    async with ZignaClient(OTHER_KEY, base_url=base, budget=other):
        pass
    assert other.scope != budget.scope
    assert (await other.snapshot()).used == 0, "two keys in one store never share a ledger"
    with pytest.raises(ConfigurationError, match="another API key"):
        ZignaClient(OTHER_KEY, base_url=base, budget=budget)
    await store.aclose()


@pytest.mark.both_backends
async def test_a_client_on_a_sqlite_store_under_asyncio_and_trio(
    tmp_path: Path, served: tuple[FakeZigna, str]
) -> None:
    fake, base = served
    before = fake.calls
    async with SqliteBudgetStore(tmp_path / "b.db") as store:
        budget = DailyBudget(3, store=store)
        async with ZignaClient(DEMO_API_KEY, base_url=base, budget=budget) as zigna:
            outcomes: list[str] = []

            async def get() -> None:
                try:
                    await zigna.orders.get(fake.order_ids[0])
                    outcomes.append("sent")
                except BudgetExhaustedError:
                    outcomes.append("refused")

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(get)
        assert sorted(outcomes) == ["refused"] * 3 + ["sent"] * 3
        assert fake.calls - before == 3
        assert (await budget.snapshot()).in_flight == 0


async def test_sqlite_checkpoints_its_wal_while_operations_run_on_the_event_loop(
    tmp_path: Path,
) -> None:
    """Operations that find the lock free run inline with checkpoints off; every 500 commits
    one runs in the worker thread and checkpoints, so the WAL stays small."""
    path = tmp_path / "budget.db"
    store = SqliteBudgetStore(path)
    budget = DailyBudget(10**6, store=store, scope="s")
    for _ in range(1500):
        decision = await budget.reserve()
        await budget.settle(RateLimit(remaining=999_999), lease=decision.lease)
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size < 6 * 1024 * 1024, "the WAL was checkpointed"
    assert (await budget.snapshot()).used == 1500
    await store.aclose()
