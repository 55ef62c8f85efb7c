"""The budget's rules are defined once and every store applies the same ones.

Hypothesis draws sequences of reservations, settlements (with and without the server's
figures), clock jumps (backwards too) and jumps to the edges of Copenhagen's 23- and 25-hour
days. Each sequence runs through the pure reference (`shared_exchange`: the settlements kept
for the next operation, then `shared_reserve` or `shared_view`, over `BudgetLedger`), through a
real SQLite file, through a real Redis (its Lua
script, timed by the injected clock), and through the in-memory store; after every step
their ledgers must be equal, field by field.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import anyio.from_thread
import pytest
from _redis import RedisServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zigziik import InMemoryBudgetStore, RateLimit, RedisBudgetStore, SqliteBudgetStore
from zigziik.ratelimit import (
    BudgetLedger,
    BudgetStore,
    BudgetTerms,
    LeasedLedger,
    Settlement,
    from_ms,
    shared_exchange,
    shared_settle,
    to_ms,
)

CPH = ZoneInfo("Europe/Copenhagen")
LEASE = 30.0
EDGES = [
    datetime(2026, 3, 28, 23, 59, 59, 999000, tzinfo=CPH),
    datetime(2026, 3, 29, 0, 0, tzinfo=CPH),  # the 23-hour day begins
    datetime(2026, 3, 29, 23, 59, 59, tzinfo=CPH),
    datetime(2026, 3, 30, 0, 0, tzinfo=CPH),
    datetime(2026, 10, 25, 0, 0, tzinfo=CPH),  # the 25-hour day begins
    datetime(2026, 10, 25, 23, 59, 59, 999000, tzinfo=CPH),
    datetime(2026, 10, 26, 0, 0, 0, 1000, tzinfo=CPH),
]
_scopes = itertools.count()

rate_limits = st.none() | st.builds(
    RateLimit,
    limit=st.none() | st.integers(0, 120) | st.sampled_from([20, 30, 100]),
    remaining=st.none() | st.integers(0, 120) | st.integers(0, 5),
    reset_after=st.none()
    | st.floats(0, 200_000, allow_nan=False)
    | st.integers(0, 90_000)
    # near the end of the window already known: the 60 s tolerance for "a new window"
    | st.sampled_from([0, 1, 30, 59, 60, 61, 90, 3_600]),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve")),
        st.tuples(st.just("reserve"), st.integers(2, 6)),
        st.tuples(st.just("settle"), st.integers(0, 30), rate_limits),
        st.tuples(st.just("view")),
        st.tuples(st.just("flush")),
        # settlements sent with a later operation: fresh, at the edge of FRESH_MS, stale
        st.tuples(st.just("advance"), st.sampled_from([0, 1, 999, 1000, 1001, 1500])),
        st.tuples(st.just("advance"), st.integers(0, 1_200)),
        # an answer with every figure, as Zigna sends them (its Reset aged when sent late)
        st.tuples(
            st.just("settle"),
            st.integers(0, 30),
            st.builds(
                RateLimit,
                limit=st.just(50),
                remaining=st.integers(0, 50),
                reset_after=st.integers(1, 7_200),
            ),
            # then the clock moves on before the next operation: around FRESH_MS
            st.sampled_from([0, 999, 1_000, 1_001]),
        ),
        st.tuples(st.just("advance"), st.integers(-60_000, 4 * 3_600_000)),  # ms
        # exactly to a lease's end (or one ms either side), a window's tolerance, a day
        st.tuples(
            st.just("advance"),
            st.sampled_from([29_999, 30_000, 30_001, 60_000, 60_001, 86_400_000]),
        ),
        # another process with another cap joins (a cap only ever lowers the ledger's limit)
        st.tuples(st.just("cap"), st.none() | st.integers(0, 60)),
        st.tuples(st.just("edge"), st.sampled_from(EDGES)),
    ),
    min_size=1,
    max_size=40,
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis-properties"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    portal: anyio.from_thread.BlockingPortal,
) -> Iterator[dict[str, BudgetStore]]:
    folder: Path = tmp_path_factory.mktemp("sqlite-properties")
    made: dict[str, BudgetStore] = {
        "sqlite": SqliteBudgetStore(folder / "budget.db", lease=LEASE),
        "redis": RedisBudgetStore(redis_url, lease=LEASE, clock="client"),
    }
    for store in made.values():
        store._flush_delay = None  # type: ignore[attr-defined]  # no flush by the timer here
    yield made
    for store in made.values():
        portal.call(store.aclose)


def fields(ledger: BudgetLedger) -> tuple[Any, ...]:
    return (ledger.limit, to_ms(ledger.reset_at), ledger.used, ledger.in_flight, ledger.cap)


# Boundaries random sequences almost never reach, each named by the bug it catches.
NOON = datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)  # ten hours before the reset
RESERVE = ("reserve",)


def _settle(rate_limit: RateLimit | None, *later_ms: int) -> tuple[Any, ...]:
    return ("settle", 0, rate_limit, *later_ms)  # the oldest call still out


BOUNDARIES: dict[str, tuple[list[tuple[Any, ...]], int | None]] = {
    # a lease that ends exactly now no longer counts as in flight
    "lease ends now": ([RESERVE, ("advance", 30_000), RESERVE], None),
    # a Reset of 0 (or one aged to 0) ends the day again: the next operation starts a new one
    "reset now": ([RESERVE, RESERVE, _settle(RateLimit(reset_after=0.0)), RESERVE], None),
    "reset aged to now": ([RESERVE, _settle(RateLimit(reset_after=1.0), 1_000), RESERVE], None),
    # the 60 s tolerance for a new window, exactly at it and one ms past it
    "window +60 s": (
        [RESERVE] * 3
        + [_settle(RateLimit(reset_after=30.0)), _settle(RateLimit(reset_after=90.0))]
        + [("view",)],
        None,
    ),
    "window +60.001 s": (
        [RESERVE] * 3
        + [_settle(RateLimit(reset_after=30.0)), _settle(RateLimit(reset_after=90.001))]
        + [("view",)],
        None,
    ),
    # a new window without Remaining keeps this call and those still in flight, no more
    "new window, no remaining": (
        [RESERVE] * 4
        + [_settle(None), _settle(None), _settle(RateLimit(reset_after=72_000.0)), RESERVE],
        None,
    ),
    # in a new window the server's Remaining is of the server's Limit, not of our cap, and
    # our calls still in flight are added to what it counted
    "new window under a cap": (
        [RESERVE] * 3
        + [_settle(RateLimit(limit=50, remaining=48, reset_after=72_000.0)), ("view",)],
        30,
    ),
    # an answer with one figure only is applied (and stored: the second view reads it back)
    "limit only": ([RESERVE, _settle(RateLimit(limit=20)), ("view",), ("view",)], None),
    "reset only": ([RESERVE, _settle(RateLimit(reset_after=600.0)), ("view",)], None),
    "remaining only": ([RESERVE, RESERVE, _settle(RateLimit(remaining=10)), ("view",)], None),
    # a lower cap is stored even when the operation changes nothing else (a refused reserve)
    "cap alone changes": (
        [RESERVE, _settle(RateLimit(limit=50, remaining=0)), ("view",)]
        + [("cap", 55), RESERVE, ("cap", None), ("view",)],
        60,
    ),
}


def _boundaries(test: Any) -> Any:
    for ops, cap in BOUNDARIES.values():
        test = example(ops=ops, start=NOON, cap=cap)(test)
    return test


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=operations,
    start=st.sampled_from(EDGES)
    | st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=timezone.utc)
    ),
    cap=st.none() | st.integers(0, 60),
)
@_boundaries
def test_every_store_agrees_with_the_reference_at_every_step(
    stores: dict[str, BudgetStore],
    portal: anyio.from_thread.BlockingPortal,
    ops: list[tuple[Any, ...]],
    start: datetime,
    cap: int | None,
) -> None:
    terms = BudgetTerms(50 if cap is None else cap, cap, CPH)
    scope = f"prop-{next(_scopes)}"
    everyone: dict[str, BudgetStore] = {**stores, "memory": InMemoryBudgetStore()}
    # The shared stores' leases expire after LEASE; the in-memory store's never do (its calls
    # in flight die with the process): its reference has leases that outlive any sequence.
    lease_ms = {"shared": round(LEASE * 1000), "memory": 10**12}
    reference: dict[str, LeasedLedger | None] = {"shared": None, "memory": None}
    now = start
    outstanding: list[tuple[str, dict[str, str | None]]] = []  # our lease, the stores'

    def kind_of(name: str) -> str:
        return "memory" if name == "memory" else "shared"

    def check(ledgers: dict[str, BudgetLedger], op: tuple[Any, ...]) -> None:
        for name, ledger in ledgers.items():
            state = reference[kind_of(name)]
            assert state is not None
            assert fields(ledger) == fields(state.ledger), (name, op, now)

    # The shared stores keep each settlement for their next operation on the scope (or a
    # flush); the in-memory store applies it at once. The reference does the same.
    pending: list[Settlement] = []
    pending_terms = terms

    def exchange(lease: str | None, kind: str) -> bool:
        settlements = pending if kind == "shared" else []
        reference[kind], granted = shared_exchange(
            reference[kind], terms, to_ms(now), midnights, settlements, lease, lease_ms[kind]
        )
        return granted

    for op in ops:
        if op[0] == "advance":
            now += timedelta(milliseconds=op[1])
            continue
        if op[0] == "edge":
            now = op[1]
            continue
        if op[0] == "cap":
            terms = BudgetTerms(50 if op[1] is None else op[1], op[1], CPH)
            continue
        midnights = terms.midnights(now)
        if op[0] == "reserve":
            for _ in range(op[1] if len(op) > 1 else 1):  # a burst: several calls out at once
                results = {
                    name: portal.call(store.reserve, scope, terms, now)
                    for name, store in everyone.items()
                }
                lease = f"ref-{next(_scopes)}"
                verdict = {kind: exchange(lease, kind) for kind in reference}
                pending = []
                for name, (_, granted, _) in results.items():
                    assert granted == verdict[kind_of(name)], (name, op)
                # Each grant is settled later, by the stores that granted it (only those).
                granted_by = {name: r[2] for name, r in results.items() if r[1]}
                if granted_by:
                    outstanding.append((lease, granted_by))
                check({name: r[0] for name, r in results.items()}, op)
        elif op[0] == "settle":
            if not outstanding:
                continue
            lease, granted_by = outstanding.pop(op[1] % len(outstanding))
            rate_limit = op[2]
            ledgers = {
                name: portal.call(store.settle, scope, terms, now, granted_by[name], rate_limit)
                for name, store in everyone.items()
                if name in granted_by
            }
            if "memory" in granted_by:
                reference["memory"] = shared_settle(
                    reference["memory"], terms, to_ms(now), midnights, lease, rate_limit
                )
                check({"memory": ledgers["memory"]}, op)
            if any(kind_of(name) == "shared" for name in granted_by):
                pending.append(Settlement(lease, rate_limit, to_ms(now)))
                pending_terms = terms
            if len(op) > 3:
                now += timedelta(milliseconds=op[3])
        elif op[0] == "flush":
            for store in stores.values():
                portal.call(store.flush, scope)  # type: ignore[attr-defined]
            if pending:
                at = max(settlement.at_ms for settlement in pending)
                reference["shared"], _ = shared_exchange(
                    reference["shared"],
                    pending_terms,
                    at,
                    pending_terms.midnights(from_ms(at)),
                    pending,
                )
                pending = []
                check({name: store.latest(scope) for name, store in stores.items()}, op)  # type: ignore[misc]
        else:
            ledgers = {
                name: portal.call(store.snapshot, scope, terms, now)
                for name, store in everyone.items()
            }
            saved = dict(reference)
            wrote = bool(pending)
            for kind in reference:
                exchange(None, kind)
            pending = []
            check(ledgers, op)
            if not wrote:  # a view without settlements writes nothing: compare, then forget
                reference = saved
            else:
                reference["memory"] = saved["memory"]
