"""The budget's pure core: header parsing and bookkeeping with a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zigziik import BudgetExhaustedError, DailyBudget, RateLimit
from zigziik.ratelimit import (
    BudgetLedger,
    InMemoryBudgetStore,
    next_local_midnight,
    parse_rate_limit,
)

CPH = ZoneInfo("Europe/Copenhagen")


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({f"X-RateLimit-{k.capitalize()}": v for k, v in values.items()})


# -- parsing --------------------------------------------------------------------------------


def test_parse_all_three_headers() -> None:
    parsed = parse_rate_limit(headers(limit="2000", remaining="1999", reset="3600"))
    assert parsed == RateLimit(limit=2000, remaining=1999, reset_after=3600.0)
    assert type(parsed.limit) is int
    assert type(parsed.remaining) is int
    assert type(parsed.reset_after) is float
    assert parsed.present


def test_missing_headers_are_none() -> None:
    parsed = parse_rate_limit(httpx.Headers())
    assert parsed == RateLimit()
    assert not parsed.present


def test_header_names_are_case_insensitive() -> None:
    parsed = parse_rate_limit(httpx.Headers({"x-ratelimit-remaining": "5"}))
    assert parsed.remaining == 5


@pytest.mark.parametrize(
    "value",
    ["", " ", "abc", "-1", "1.5", "NaN", "inf", "1e400", "0x10", "١٢", "10" * 30, "None", "2,000"],
)
def test_garbage_counts_are_ignored(value: str) -> None:
    raw = {"x-ratelimit-limit": value, "x-ratelimit-remaining": value}
    assert parse_rate_limit(raw) == RateLimit()


def test_integral_float_counts_are_accepted() -> None:
    assert parse_rate_limit(headers(remaining="12.0")).remaining == 12


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "-inf", "soon", "", "1" * 40])
def test_garbage_reset_is_ignored(value: str) -> None:
    assert parse_rate_limit(headers(reset=value)).reset_after is None


def test_reset_is_a_duration_with_fractions() -> None:
    assert parse_rate_limit(headers(reset=" 12.5 ")).reset_after == 12.5


@given(st.text(max_size=50), st.text(max_size=50), st.text(max_size=50))
def test_parsing_never_raises(limit: str, remaining: str, reset: str) -> None:
    try:
        raw = httpx.Headers(
            {
                "X-RateLimit-Limit": limit,
                "X-RateLimit-Remaining": remaining,
                "X-RateLimit-Reset": reset,
            }
        )
    except (UnicodeEncodeError, ValueError):
        return  # not a header value httpx would ever hand us
    parsed = parse_rate_limit(raw)
    for value in (parsed.limit, parsed.remaining):
        assert value is None or (type(value) is int and value >= 0)
    assert parsed.reset_after is None or parsed.reset_after >= 0


# -- midnight ---------------------------------------------------------------------------------


def test_next_local_midnight_is_copenhagen_midnight() -> None:
    now = datetime(2026, 11, 22, 17, 0, tzinfo=timezone.utc)  # 18:00 in Copenhagen (CET)
    midnight = next_local_midnight(now, CPH)
    assert midnight == datetime(2026, 11, 23, 0, 0, tzinfo=CPH)
    assert midnight.utcoffset() == timedelta(0)


def test_next_local_midnight_just_after_utc_midnight_is_the_same_local_day() -> None:
    # 23:30 UTC is already 00:30 on the next day in Copenhagen
    now = datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc)
    assert next_local_midnight(now, CPH) == datetime(2026, 11, 24, 0, 0, tzinfo=CPH)


def test_next_local_midnight_across_dst_change() -> None:
    now = datetime(2026, 3, 28, 12, 0, tzinfo=timezone.utc)  # the night clocks go forward
    assert next_local_midnight(now, CPH) == datetime(2026, 3, 29, 0, 0, tzinfo=CPH)


# -- the ledger --------------------------------------------------------------------------------

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def test_ledger_reserves_until_the_limit() -> None:
    ledger = BudgetLedger(limit=2, reset_at=T0 + timedelta(hours=1))
    ledger, ok1 = ledger.reserve()
    ledger, ok2 = ledger.reserve()
    ledger, ok3 = ledger.reserve()
    assert (ok1, ok2, ok3) == (True, True, False)
    assert ledger.used == 2
    assert ledger.in_flight == 2
    assert ledger.remaining == 0


def test_server_remaining_minus_in_flight_wins_when_lower() -> None:
    ledger = BudgetLedger(limit=2000, reset_at=T0 + timedelta(hours=1))
    for _ in range(3):
        ledger, _ok = ledger.reserve()
    # The first answer says 100 left; two of ours are still in flight and unknown to it.
    ledger = ledger.settle(RateLimit(remaining=100), T0)
    assert ledger.in_flight == 2
    assert ledger.remaining == 98


def test_server_remaining_never_raises_the_local_count() -> None:
    ledger = BudgetLedger(limit=10, reset_at=T0 + timedelta(hours=1), used=5, in_flight=1)
    ledger = ledger.settle(RateLimit(remaining=9), T0)
    assert ledger.remaining == 5


def test_server_limit_and_reset_are_recorded() -> None:
    ledger = BudgetLedger(limit=2000, reset_at=T0 + timedelta(hours=10), used=1, in_flight=1)
    ledger = ledger.settle(RateLimit(limit=500, remaining=400, reset_after=60), T0)
    assert ledger.limit == 500
    assert ledger.remaining == 400
    assert ledger.reset_at == T0 + timedelta(seconds=60)


def test_a_caller_chosen_cap_is_never_raised_by_the_server() -> None:
    ledger = BudgetLedger(limit=300, reset_at=T0 + timedelta(hours=1), used=1, in_flight=1, cap=300)
    ledger = ledger.settle(RateLimit(limit=2000, remaining=1990), T0)
    assert ledger.limit == 300
    assert ledger.remaining == 299
    lower = ledger.settle(RateLimit(limit=100, remaining=50), T0)
    assert lower.limit == 100
    assert lower.remaining == 50


@pytest.mark.anyio
async def test_explicit_limit_caps_the_server_and_the_default_follows_it() -> None:
    clock = FakeClock(T0)
    capped = DailyBudget(5, clock=clock)
    default = DailyBudget(clock=clock)
    for budget in (capped, default):
        assert (await budget.reserve()).granted
        await budget.settle(RateLimit(limit=3000, remaining=2999))
    assert capped.limit == 5
    assert capped.remaining == 4
    assert default.limit == 3000
    assert default.remaining == 2999


def test_a_later_server_reset_starts_a_new_window() -> None:
    ledger = BudgetLedger(limit=2000, reset_at=T0 + timedelta(minutes=5), used=1900, in_flight=1)
    ledger = ledger.settle(RateLimit(remaining=1999, reset_after=86_000), T0)
    assert ledger.used == 1
    assert ledger.remaining == 1999


def test_rolled_resets_used_after_reset_at() -> None:
    ledger = BudgetLedger(limit=10, reset_at=T0, used=10)
    same = ledger.rolled(T0 - timedelta(seconds=1), lambda now: now + timedelta(days=1))
    assert same is ledger
    rolled = ledger.rolled(T0, lambda now: now + timedelta(days=1))
    assert rolled.used == 0
    assert rolled.remaining == 10
    assert rolled.reset_at == T0 + timedelta(days=1)


@given(
    st.lists(
        st.one_of(
            st.just("reserve"),
            st.builds(
                RateLimit,
                limit=st.none() | st.integers(0, 5000),
                remaining=st.none() | st.integers(0, 5000),
                reset_after=st.none() | st.floats(0, 200_000),
            ),
        ),
        max_size=60,
    )
)
def test_ledger_invariants(operations: list[object]) -> None:
    ledger = BudgetLedger(limit=50, reset_at=T0 + timedelta(hours=1))
    for op in operations:
        if op == "reserve":
            before = ledger.remaining
            ledger, ok = ledger.reserve()
            assert ok == (before > 0)
        else:
            assert isinstance(op, RateLimit)
            ledger = ledger.settle(op, T0)
        assert ledger.in_flight >= 0
        assert 0 <= ledger.remaining <= ledger.limit


# -- DailyBudget --------------------------------------------------------------------------------


def test_budget_defaults() -> None:
    clock = FakeClock(T0)
    budget = DailyBudget(clock=clock)
    assert budget.limit == 2000
    assert budget.remaining == 2000
    assert budget.used == 0
    assert budget.reset_at == datetime(2026, 11, 23, 0, 0, tzinfo=CPH)
    assert budget.reset_at.tzinfo is not None


@pytest.mark.anyio
async def test_budget_raises_when_exhausted_and_resets_at_midnight() -> None:
    clock = FakeClock(T0)
    budget = DailyBudget(3, clock=clock)
    for _ in range(3):
        assert (await budget.reserve()).granted
        await budget.settle()
    with pytest.raises(BudgetExhaustedError) as info:
        await budget.reserve()
    assert info.value.reset_at == datetime(2026, 11, 23, 0, 0, tzinfo=CPH)
    assert budget.used == 3
    clock.now = datetime(2026, 11, 23, 0, 0, tzinfo=CPH)
    assert budget.remaining == 3
    assert budget.used == 0
    assert (await budget.reserve()).granted


@pytest.mark.anyio
async def test_budget_wait_mode_reports_the_wait() -> None:
    clock = FakeClock(T0)
    budget = DailyBudget(1, on_exhausted="wait", max_wait=30, clock=clock)
    assert (await budget.reserve()).granted
    await budget.settle(RateLimit(remaining=0, reset_after=20))
    decision = await budget.reserve()
    assert not decision.granted
    assert decision.wait == pytest.approx(20)
    clock.advance(21)
    assert (await budget.reserve()).granted


@pytest.mark.anyio
async def test_budget_wait_mode_raises_beyond_max_wait() -> None:
    clock = FakeClock(T0)
    budget = DailyBudget(1, on_exhausted="wait", max_wait=30, clock=clock)
    await budget.reserve()
    await budget.settle(RateLimit(remaining=0, reset_after=3600))
    with pytest.raises(BudgetExhaustedError):
        await budget.reserve()


@pytest.mark.anyio
async def test_budget_uses_the_store() -> None:
    store = InMemoryBudgetStore()
    clock = FakeClock(T0)
    first = DailyBudget(5, clock=clock, store=store)
    second = DailyBudget(5, clock=clock, store=store)
    await first.reserve()
    await second.reserve()
    assert first.used == 2
    assert second.remaining == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": "2000"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"on_exhausted": "sleep"}, "on_exhausted"),
        ({"max_wait": -1}, "max_wait"),
        ({"max_wait": float("nan")}, "max_wait"),
    ],
)
def test_bad_budget_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DailyBudget(**kwargs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_naive_clock_is_refused() -> None:
    budget = DailyBudget(clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        await budget.reserve()


def test_repr_shows_the_state() -> None:
    budget = DailyBudget(10, clock=FakeClock(T0))
    assert "remaining=10" in repr(budget)
