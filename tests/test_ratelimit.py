"""The budget's pure core: header parsing and bookkeeping with a fake clock."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zigziik import BudgetExhaustedError, BudgetSnapshot, BudgetStoreError, DailyBudget, RateLimit
from zigziik.ratelimit import (
    BudgetLedger,
    BudgetTerms,
    InMemoryBudgetStore,
    Settlement,
    StoreClockError,
    aged,
    first_after,
    from_ms,
    key_scope,
    next_local_midnight,
    parse_rate_limit,
    shared_exchange,
    shared_reserve,
    shared_settle,
    shared_view,
    to_ms,
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


# -- edges found by surviving mutants ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),  # nothing left is a figure, not garbage
        ("1e3", 1000),
        ("2E3", 2000),
        ("1000000000000", 10**12),  # the largest figure taken
        ("0" * 19 + "5", 5),  # 20 characters: still a figure
    ],
)
def test_count_headers_at_their_edges(value: str, expected: int) -> None:
    parsed = parse_rate_limit(headers(limit=value, remaining=value))
    assert (parsed.limit, parsed.remaining) == (expected, expected)
    assert type(parsed.remaining) is int


@pytest.mark.parametrize("value", ["1000000000001", "0" * 20 + "5", "1e13"])
def test_count_headers_beyond_their_bounds_are_ignored(value: str) -> None:
    assert parse_rate_limit(headers(limit=value, remaining=value)) == RateLimit()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("0.5", 0.5), ("1000000000000", 1e12), ("0" * 31 + "5", 5.0)],
)
def test_reset_header_at_its_edges(value: str, expected: float) -> None:
    assert parse_rate_limit(headers(reset=value)).reset_after == expected


@pytest.mark.parametrize("value", ["1000000000001", "0" * 32 + "5", "١٢", "\uff11\uff12"])
def test_reset_header_beyond_its_bounds_or_not_ascii_is_ignored(value: str) -> None:
    # float() reads Arabic-Indic and full-width digits; a header never carries them
    assert parse_rate_limit({"x-ratelimit-reset": value}).reset_after is None


def test_plain_mappings_with_lower_case_names_are_read() -> None:
    # what HTTP/2 and httpx hand over: lower-case names, here without a case-insensitive type
    raw = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "4", "x-ratelimit-reset": "30"}
    assert parse_rate_limit(raw) == RateLimit(limit=10, remaining=4, reset_after=30.0)


def test_next_local_midnight_is_in_utc() -> None:
    now = datetime(2026, 11, 22, 17, 0, tzinfo=CPH)
    assert next_local_midnight(now, CPH).tzinfo is timezone.utc


def test_a_caps_lowers_a_ledger_and_keeps_its_counts() -> None:
    ledger = BudgetLedger(limit=50, reset_at=T0 + timedelta(hours=1), used=7, in_flight=2)
    capped = ledger.capped(10)
    assert capped == BudgetLedger(10, T0 + timedelta(hours=1), 7, 2, 10)
    assert capped.capped(20) is capped, "a higher cap changes nothing"
    assert capped.capped(None) is capped
    assert capped.capped(4) == BudgetLedger(4, T0 + timedelta(hours=1), 7, 2, 4)
    # a cap above the server's lower limit keeps that limit, and is remembered
    low = BudgetLedger(limit=3, reset_at=T0, cap=None).capped(30)
    assert (low.limit, low.cap) == (3, 30)


def test_an_answer_exactly_at_the_windows_tolerance_is_the_same_window() -> None:
    ledger = BudgetLedger(limit=2000, reset_at=T0 + timedelta(hours=1), used=100, in_flight=1)
    # 60 s later than the window we know: within the tolerance, no new window
    same = ledger.settle(RateLimit(reset_after=3660), T0)
    assert same.used == 100
    later = ledger.settle(RateLimit(reset_after=3660.001), T0)
    assert later.used == 1, "61 s later: a new window, where only this answer's call counts"


def test_a_new_window_without_remaining_keeps_this_answer_and_those_in_flight() -> None:
    ledger = BudgetLedger(limit=2000, reset_at=T0 + timedelta(minutes=5), used=100, in_flight=3)
    ledger = ledger.settle(RateLimit(reset_after=86_000), T0)
    assert (ledger.used, ledger.in_flight) == (3, 2)


def test_a_new_window_with_everything_left_counts_only_what_is_in_flight() -> None:
    ledger = BudgetLedger(limit=2000, reset_at=T0 + timedelta(minutes=5), used=1900, in_flight=2)
    ledger = ledger.settle(RateLimit(limit=2000, remaining=2000, reset_after=86_000), T0)
    assert (ledger.used, ledger.in_flight) == (1, 1)


def test_the_servers_reset_is_kept_in_utc() -> None:
    now = datetime(2026, 11, 22, 13, 0, tzinfo=CPH)
    ledger = BudgetLedger(limit=10, reset_at=now + timedelta(hours=1), used=1, in_flight=1)
    ledger = ledger.settle(RateLimit(reset_after=600), now)
    assert ledger.reset_at.tzinfo is timezone.utc
    assert ledger.reset_at == now + timedelta(minutes=10)


def test_key_scope_is_a_stable_hash_of_the_normalised_key() -> None:
    key = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    expected = "key-" + hashlib.sha256(key.lower().encode()).hexdigest()[:16]
    # every process, of every version, must name the same ledger for one key
    assert key_scope(key) == expected
    assert key_scope("{" + key.lower() + "}") == expected
    assert key_scope(f" {key} ") == expected
    assert key not in expected and key.lower() not in expected


def test_first_after_names_a_store_clock_days_ahead() -> None:
    assert first_after([10, 20, 30], 10) == 20
    with pytest.raises(StoreClockError) as info:
        first_after([10, 20, 30], 30)
    assert str(info.value) == "the store's clock is days ahead of this process's clock"


def test_terms_make_the_initial_ledger_once_a_day() -> None:
    terms = BudgetTerms(40, 40, CPH)
    first = terms.initial(T0)
    assert first == BudgetLedger(40, datetime(2026, 11, 23, tzinfo=CPH), cap=40)
    assert terms.initial(T0) is first
    assert terms.initial(T0 + timedelta(hours=1)) is first
    # at its reset it is a new day's
    after = terms.initial(first.reset_at)
    assert after.reset_at == datetime(2026, 11, 24, tzinfo=CPH)
    assert BudgetTerms(2000, None, CPH).initial(T0).cap is None


def test_terms_give_the_local_midnights_from_yesterday_on() -> None:
    terms = BudgetTerms(50, None, CPH)
    # 23:30 UTC on 28 March is 00:30 on the 29th in Copenhagen: its "yesterday" is the 28th
    now = datetime(2026, 3, 28, 23, 30, tzinfo=timezone.utc)
    found = terms.midnights(now)
    days = [datetime(2026, 3, d, tzinfo=CPH) for d in range(28, 32)]
    days += [datetime(2026, 4, d, tzinfo=CPH) for d in (1, 2)]
    assert found == tuple(to_ms(d) for d in days)
    assert found[2] - found[1] == 23 * 3_600_000, "the day clocks go forward has 23 hours"
    assert terms.midnights(now) is found
    assert terms.midnights(now + timedelta(minutes=10)) is found
    # at the next midnight the list starts a day later
    at_midnight = datetime(2026, 3, 30, tzinfo=CPH)
    assert terms.midnights(at_midnight) == BudgetTerms(50, None, CPH).midnights(at_midnight)
    assert terms.midnights(at_midnight)[0] == to_ms(datetime(2026, 3, 29, tzinfo=CPH))


def test_shared_settle_of_an_expired_lease_changes_no_count() -> None:
    terms = BudgetTerms(10, None, CPH)
    now_ms = to_ms(T0)
    midnights = terms.midnights(T0)
    state, granted = shared_reserve(None, terms, now_ms, midnights, "a", 1_000)
    assert granted
    later = now_ms + 5_000  # the lease has expired
    settled = shared_settle(state, terms, later, midnights, "a", None)
    assert (settled.ledger.used, settled.ledger.in_flight, dict(settled.leases)) == (1, 0, {})


def test_shared_view_gives_the_live_leases() -> None:
    terms = BudgetTerms(10, None, CPH)
    now_ms = to_ms(T0)
    midnights = terms.midnights(T0)
    state, _ = shared_reserve(None, terms, now_ms, midnights, "old", 1_000)
    state, _ = shared_reserve(state, terms, now_ms + 500, midnights, "new", 1_000)
    view = shared_view(state, terms, now_ms + 1_200, midnights)
    assert dict(view.leases) == {"new": now_ms + 1_500}
    assert (view.ledger.used, view.ledger.in_flight) == (2, 1)
    # a lease ends at its end: not a millisecond later
    assert dict(shared_view(state, terms, now_ms + 999, midnights).leases) == {
        "old": now_ms + 1_000,
        "new": now_ms + 1_500,
    }
    assert dict(shared_view(state, terms, now_ms + 1_000, midnights).leases) == {
        "new": now_ms + 1_500
    }


def test_a_settlements_age_is_how_long_ago_its_answer_arrived() -> None:
    settlement = Settlement("a", None, at_ms=5_000)
    assert [settlement.age(t) for t in (5_000, 4_000, 5_003)] == [0, 0, 3]


def test_an_exchange_applies_settlements_by_their_age_then_reserves_or_reads() -> None:
    terms = BudgetTerms(10, None, CPH)
    now_ms = to_ms(T0)
    midnights = terms.midnights(T0)
    state, _ = shared_reserve(None, terms, now_ms, midnights, "a", 60_000)
    state, _ = shared_reserve(state, terms, now_ms, midnights, "b", 60_000)
    later = now_ms + 2_000
    # "a" answered 250 ms ago: its figures count, its Reset 250 ms nearer; "b" answered
    # 1.5 s ago: it only closes its lease (its Remaining 0 would leave nothing)
    settlements = [
        Settlement("a", RateLimit(remaining=2, reset_after=600), later - 250),
        Settlement("b", RateLimit(remaining=0), later - 1_500),
    ]
    read, granted = shared_exchange(state, terms, later, midnights, settlements)
    assert granted is True
    assert (read.ledger.used, read.ledger.in_flight, dict(read.leases)) == (9, 0, {})
    assert read.ledger.reset_at == from_ms(later + 600_000 - 250)
    taken, granted = shared_exchange(state, terms, later, midnights, settlements, "c", 5_000)
    assert granted is True
    assert (taken.ledger.used, dict(taken.leases)) == (10, {"c": later + 5_000})


@pytest.mark.parametrize(
    ("scope", "shown"),
    [("", "''"), ("a b", "'a b'"), ("x" * 101, "'str'"), (5, "'int'"), (["s"], "'list'")]
    + [("x" * 99 + " ", repr("x" * 99 + " "))],  # 100 characters: still shown
)
def test_a_bad_scope_is_named(scope: object, shown: str) -> None:
    with pytest.raises(ValueError, match="^scope must be") as info:
        DailyBudget(scope=scope)  # type: ignore[arg-type]
    assert str(info.value) == f"scope must be 1 to 100 letters, digits or '-_.:', got {shown}"


def test_every_scope_character_and_length_is_taken() -> None:
    every = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"
    for scope in (every, "x", "x" * 100):
        assert DailyBudget(scope=scope).scope == scope


def test_a_budget_with_its_own_scope_keeps_it_and_one_bound_refuses_another_key() -> None:
    mine = DailyBudget(scope="mine")
    mine.bind_scope("key-0123456789abcdef")
    assert mine.scope == "mine"
    bound = DailyBudget()
    bound.bind_scope("key-0123456789abcdef")
    bound.bind_scope("key-0123456789abcdef")
    assert bound.scope == "key-0123456789abcdef"
    with pytest.raises(ValueError, match="another API key") as info:
        bound.bind_scope("key-fedcba9876543210")
    assert str(info.value) == (
        "this DailyBudget already counts the calls of another API key; give each key "
        "a budget of its own (they may share a store)"
    )


def test_budget_arguments_at_their_edges() -> None:
    assert DailyBudget().max_wait == 60.0
    assert DailyBudget(0, clock=FakeClock(T0)).remaining == 0
    assert DailyBudget(max_wait=0).max_wait == 0.0
    assert DailyBudget(max_wait=0.5).max_wait == 0.5
    with pytest.raises(TypeError) as info:
        DailyBudget(store=object())  # type: ignore[arg-type]
    assert str(info.value) == "store must be a BudgetStore, got object"


@pytest.mark.parametrize("zone", [ZoneInfo("America/New_York"), timezone.utc])
def test_a_budget_takes_a_tzinfo_for_its_day(zone: tzinfo) -> None:
    budget = DailyBudget(clock=FakeClock(T0), timezone=zone)
    assert budget.reset_at == next_local_midnight(T0, zone)


@pytest.mark.anyio
async def test_naive_clock_error_is_exact() -> None:
    budget = DailyBudget(clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="aware") as info:
        await budget.reserve()
    assert str(info.value) == "the budget's clock must return an aware datetime"


@pytest.mark.anyio
async def test_an_exhausted_budget_names_its_limit_and_reset() -> None:
    budget = DailyBudget(2, clock=FakeClock(T0))
    for _ in range(2):
        await budget.reserve()
    with pytest.raises(BudgetExhaustedError) as info:
        await budget.reserve()
    assert info.value.limit == 2
    assert info.value.reset_at == datetime(2026, 11, 23, tzinfo=CPH)


@pytest.mark.anyio
@pytest.mark.parametrize("reset_after", [0.5, 20.0])
async def test_wait_mode_up_to_and_including_max_wait(reset_after: float) -> None:
    clock = FakeClock(T0)
    budget = DailyBudget(1, on_exhausted="wait", max_wait=20, clock=clock)
    await budget.reserve()
    await budget.settle(RateLimit(remaining=0, reset_after=reset_after))
    decision = await budget.reserve()
    assert decision.granted is False
    assert decision.wait == reset_after
    assert decision.reset_at == T0 + timedelta(seconds=reset_after)


class RecordingStore(InMemoryBudgetStore):
    """A store of the user's own: ``local`` as given (or absent); its settle may fail or
    take its time."""

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        super().__init__()
        self.fail = fail
        self.delay = delay
        self.settled: list[tuple[str, str | None, RateLimit | None]] = []
        self.flushed: list[str | None] = []

    async def reserve(
        self, scope: str, terms: BudgetTerms, now: datetime
    ) -> tuple[BudgetLedger, bool, str | None]:
        ledger, granted, _ = await super().reserve(scope, terms, now)
        return ledger, granted, "lease-1" if granted else None

    async def settle(
        self,
        scope: str,
        terms: BudgetTerms,
        now: datetime,
        lease: str | None,
        rate_limit: RateLimit | None,
    ) -> BudgetLedger:
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail:
            raise BudgetStoreError("connection refused", store="test://store")
        self.settled.append((scope, lease, rate_limit))
        return await super().settle(scope, terms, now, lease, rate_limit)

    async def flush(self, scope: str | None = None) -> None:
        self.flushed.append(scope)


class SharedStore(RecordingStore):
    local = False


class LocalStore(RecordingStore):
    local = True


class StoreOfItsOwn(RecordingStore):
    """No ``local`` attribute at all: taken as a shared store."""

    def __getattribute__(self, name: str) -> object:
        if name == "local":
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", [SharedStore, StoreOfItsOwn])
async def test_a_shared_store_that_cannot_settle_is_logged_not_raised(
    kind: type[RecordingStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = kind(fail=True)
    budget = DailyBudget(5, clock=FakeClock(T0), store=store)
    decision = await budget.reserve()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        await budget.settle(RateLimit(remaining=3), lease=decision.lease)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "could not settle a call in the budget store: budget store test://store: "
            "connection refused",
        )
    ]


@pytest.mark.anyio
async def test_a_local_store_gets_its_lease_back_and_its_errors_raise() -> None:
    store = LocalStore()
    budget = DailyBudget(5, clock=FakeClock(T0), store=store)
    decision = await budget.reserve()
    await budget.settle(RateLimit(remaining=4), lease=decision.lease)
    assert store.settled == [("default", "lease-1", RateLimit(remaining=4))]
    store.fail = True
    with pytest.raises(BudgetStoreError):
        await budget.settle(lease="lease-1")


@pytest.mark.anyio
async def test_a_cancelled_request_still_settles_in_a_shared_store() -> None:
    store = SharedStore(delay=0.05)
    budget = DailyBudget(5, clock=FakeClock(T0), store=store, scope="mine")
    decision = await budget.reserve()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await budget.settle(RateLimit(remaining=4), lease=decision.lease)
    assert store.settled == [("mine", "lease-1", RateLimit(remaining=4))]
    assert budget.remaining == 4


@pytest.mark.anyio
async def test_a_budget_flushes_its_own_scope_only() -> None:
    store = SharedStore()
    await DailyBudget(store=store, scope="mine").flush()
    assert store.flushed == ["mine"]
    await DailyBudget().flush()  # a store with nothing to flush: nothing happens


@pytest.mark.parametrize("age", [0, -5])
def test_a_fresh_answers_figures_are_taken_as_they_are(age: int) -> None:
    answer = RateLimit(limit=5, remaining=3, reset_after=12.3456)
    assert aged(answer, age) == answer


@pytest.mark.parametrize(
    ("reset_after", "age", "left"),
    [(10.0, 1, 9.999), (10.0, 250, 9.75), (0.5, 800, 0.0), (0.5, 500, 0.0)],
)
def test_an_old_answers_reset_is_that_much_nearer(
    reset_after: float, age: int, left: float
) -> None:
    assert aged(RateLimit(limit=5, remaining=3, reset_after=reset_after), age) == RateLimit(
        5, 3, left
    )
    assert aged(RateLimit(remaining=3), 900) == RateLimit(remaining=3)


def test_terms_make_the_midnights_text_once_a_day() -> None:
    terms = BudgetTerms(50, None, CPH)
    text = terms.midnights_text(T0)
    assert text == ",".join(str(m) for m in terms.midnights(T0))
    assert terms.midnights_text(T0) is text
    assert terms.midnights_text(T0 + timedelta(hours=1)) is text
    assert terms.midnights_text(T0 + timedelta(days=1)) != text


@pytest.mark.anyio
async def test_a_lower_cap_on_a_shared_memory_store_applies_to_every_operation() -> None:
    clock = FakeClock(T0)
    store = InMemoryBudgetStore()
    wide = DailyBudget(10, clock=clock, store=store)
    await wide.reserve()
    narrow = DailyBudget(5, clock=clock, store=store)
    assert (await narrow.snapshot()).limit == 5
    await narrow.settle()
    assert (narrow.limit, narrow.remaining) == (5, 4)
    for _ in range(4):
        assert (await narrow.reserve()).granted
    with pytest.raises(BudgetExhaustedError):
        await narrow.reserve()


@pytest.mark.anyio
async def test_a_memory_store_answers_before_any_reservation_and_after_a_reset() -> None:
    clock = FakeClock(T0)
    budget = DailyBudget(5, clock=clock)
    assert await budget.snapshot() == BudgetSnapshot(5, 0, 5, datetime(2026, 11, 23, tzinfo=CPH), 0)
    await budget.settle()  # an answer with nothing reserved: nothing goes negative
    assert (budget.used, budget.in_flight) == (0, 0)
    await budget.reserve()
    clock.now = datetime(2026, 11, 23, 0, 0, 1, tzinfo=CPH)
    assert (await budget.snapshot()).used == 0
    await budget.settle()
    assert (budget.used, budget.reset_at) == (0, datetime(2026, 11, 24, tzinfo=CPH))


def test_memory_store_repr() -> None:
    assert repr(InMemoryBudgetStore()) == "InMemoryBudgetStore()"
