"""`PendingSettlements`: what a shared store keeps for its next operation, without a store."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from zigziik._pending import FLUSH_DELAY, PendingSettlements, newest_ms
from zigziik.ratelimit import BudgetLedger, BudgetTerms, RateLimit, Settlement

CPH = ZoneInfo("Europe/Copenhagen")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
TERMS = BudgetTerms(40, None, CPH)
OTHER_TERMS = BudgetTerms(99, 99, CPH)


def settlement(lease: str, at_ms: int = 1_000) -> Settlement:
    return Settlement(lease, None, at_ms)


def test_nothing_waits_at_first() -> None:
    pending = PendingSettlements()
    assert pending.due_in() is None
    assert not pending
    assert pending.take("a") == []
    assert pending.take_scope("a") == []
    assert pending.take_all() == []


def test_a_kept_settlement_is_due_after_the_delay_of_the_oldest() -> None:
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("1"))
    due = pending.due_in()
    assert due is not None and 0 < due <= FLUSH_DELAY
    assert pending.due_in(0.0) == 0.0
    time.sleep(0.02)
    pending.add("b", TERMS, settlement("2"))  # a newer scope does not move the oldest
    later = pending.due_in(10.0)
    assert later is not None and later < 10.0 - 0.015
    assert pending


def test_take_gives_a_scopes_settlements_oldest_first_and_forgets_them() -> None:
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("1"))
    pending.add("b", OTHER_TERMS, settlement("x"))
    pending.add("a", TERMS, settlement("2"))
    assert [s.lease for s in pending.take("a")] == ["1", "2"]
    assert pending.take("a") == []
    assert pending.take_all() == [("b", OTHER_TERMS, [settlement("x")])]
    assert pending.due_in() is None and not pending


def test_take_forgets_the_scopes_clock_and_terms() -> None:
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("1"))
    pending.take("a")
    assert pending.due_in() is None  # nothing waits: no flush due
    pending.add("a", OTHER_TERMS, settlement("2"))
    assert pending.take_scope("a") == [("a", OTHER_TERMS, [settlement("2")])]


def test_take_scope_takes_only_its_scope() -> None:
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("1"))
    pending.add("b", OTHER_TERMS, settlement("2"))
    assert pending.take_scope("a") == [("a", TERMS, [settlement("1")])]
    assert pending.take_scope("a") == []
    assert pending.due_in() is not None  # b still waits
    assert pending.take_scope("b") == [("b", OTHER_TERMS, [settlement("2")])]
    assert pending.due_in() is None and not pending


def test_take_all_gives_every_scope_with_its_last_terms_and_clears() -> None:
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("1"))
    pending.add("a", OTHER_TERMS, settlement("2"))
    pending.add("b", TERMS, settlement("3"))
    taken = sorted(pending.take_all(), key=lambda item: item[0])
    assert taken == [
        ("a", OTHER_TERMS, [settlement("1"), settlement("2")]),
        ("b", TERMS, [settlement("3")]),
    ]
    assert pending.take_all() == [] and pending.due_in() is None and not pending


def test_restore_puts_failed_settlements_back_before_newer_ones() -> None:
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("1"))
    failed = pending.take("a")
    pending.add("a", OTHER_TERMS, settlement("2"))  # came while the operation failed
    pending.restore("a", TERMS, failed)
    assert pending.take_scope("a") == [("a", OTHER_TERMS, [settlement("1"), settlement("2")])]


def test_restore_into_an_empty_scope_makes_it_due_with_its_terms() -> None:
    pending = PendingSettlements()
    pending.restore("a", TERMS, [settlement("1"), settlement("2")])
    assert pending
    due = pending.due_in()
    assert due is not None and 0 < due <= FLUSH_DELAY
    assert pending.take_all() == [("a", TERMS, [settlement("1"), settlement("2")])]


def test_restore_keeps_the_oldest_clock() -> None:
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("2"))
    time.sleep(0.05)
    pending.restore("a", TERMS, [settlement("1")])
    due = pending.due_in(1.0)
    assert due is not None and due < 1.0 - 0.04  # still the first one's clock


def test_restoring_nothing_changes_nothing() -> None:
    pending = PendingSettlements()
    pending.restore("a", TERMS, [])
    assert not pending and pending.due_in() is None and pending.take_all() == []


@pytest.mark.parametrize(
    ("lease", "rate_limit", "kept"),
    [
        ("L", None, True),
        (None, RateLimit(limit=40, remaining=30, reset_after=60.0), True),
        (None, None, False),
    ],
)
def test_keep_keeps_only_what_has_something_to_say(
    lease: str | None, rate_limit: RateLimit | None, kept: bool
) -> None:
    pending = PendingSettlements()
    ledger = pending.keep(None, "a", TERMS, NOW, lease, rate_limit)
    assert type(ledger) is BudgetLedger
    assert ledger == TERMS.initial(NOW).settle(rate_limit, NOW)
    expected = [Settlement(lease, rate_limit, int(NOW.timestamp() * 1000))] if kept else []
    assert pending.take("a") == expected


def test_keep_applies_the_answer_to_the_latest_ledger() -> None:
    pending = PendingSettlements()
    latest = TERMS.initial(NOW)
    rate_limit = RateLimit(limit=40, remaining=5, reset_after=60.0)
    ledger = pending.keep(latest, "a", TERMS, NOW, "L", rate_limit)
    assert ledger == latest.settle(rate_limit, NOW)
    assert ledger != latest


def test_newest_ms_is_the_latest_arrival() -> None:
    assert newest_ms([settlement("1", 5), settlement("2", 9), settlement("3", 7)]) == 9


def test_a_scope_taken_then_restored_gets_the_restored_terms() -> None:
    pending = PendingSettlements()
    pending.add("a", OTHER_TERMS, settlement("1"))
    pending.take("a")  # its terms go with it (kills take_2: terms left behind)
    pending.restore("a", TERMS, [settlement("1")])
    assert pending.take_all() == [("a", TERMS, [settlement("1")])]


def test_restored_then_taken_leaves_no_flush_due() -> None:
    pending = PendingSettlements()
    pending.restore("a", TERMS, [settlement("1")])
    assert [s.lease for s in pending.take("a")] == ["1"]
    assert pending.due_in() is None  # kills restore_2: a clock kept under another key


def test_two_takers_racing_for_one_scope_get_it_once() -> None:
    """Both pass the unlocked look before either gets the lock: the second gets an empty
    list, never an error or ``None`` (kills take_4, _7, _9, _11: pops without a default)."""
    pending = PendingSettlements()
    pending.add("a", TERMS, settlement("1"))
    results: list[object] = []
    errors: list[BaseException] = []

    def taker() -> None:
        try:
            results.append(pending.take("a"))
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    with pending._lock:  # both takers wait here, past the unlocked look
        threads = [threading.Thread(target=taker) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(5)
    assert errors == []
    assert sorted(results, key=len) == [[], [settlement("1")]]
    assert all(type(result) is list for result in results)
