"""Rate-limit headers and the daily call budget.

Everything here is synchronous and free of I/O. The only waiting
(``on_exhausted="wait"``) happens in the transport, which asks `DailyBudget.reserve` for a
decision and sleeps itself.

The bookkeeping, in one place (`BudgetLedger`):

* ``used`` counts calls reserved since the last reset; ``remaining = limit - used``.
* Every request is reserved before it is sent (retries too) and settled when its response
  headers arrive, or when it fails. ``in_flight`` counts reservations not yet settled.
* A response's ``X-RateLimit-Remaining`` does not know about our other requests still in
  flight, so the server's figure is ``Remaining - in_flight``; when that is lower than the
  local count it wins (``used`` is raised to match). The local count never goes up because
  of the server.
* ``X-RateLimit-Reset`` is a number of seconds until the reset. Without it the budget resets
  at the next local midnight of its time zone. When ``reset_at`` passes, ``used`` returns to 0.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import attrs

from .errors import BudgetExhaustedError

__all__ = [
    "BudgetDecision",
    "BudgetLedger",
    "BudgetStore",
    "DailyBudget",
    "InMemoryBudgetStore",
    "RateLimit",
    "next_local_midnight",
    "parse_rate_limit",
]

Clock = Callable[[], datetime]

DEFAULT_DAILY_LIMIT = 2000
"""Zigna's documented daily limit, used until the server says otherwise."""
_MAX_HEADER_INT = 10**12
_NEW_WINDOW_TOLERANCE = timedelta(seconds=60)


def _parse_non_negative_int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 20 or not text.isascii():
        return None
    try:
        number = float(text) if ("." in text or "e" in text.lower()) else int(text)
    except ValueError:
        return None
    if isinstance(number, float):
        if not math.isfinite(number) or number != int(number):
            return None
        number = int(number)
    if number < 0 or number > _MAX_HEADER_INT:
        return None
    return number


def _parse_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 32 or not text.isascii():
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_HEADER_INT:
        return None
    return seconds


@attrs.frozen
class RateLimit:
    """The ``X-RateLimit-*`` headers of one response; a field is ``None`` when absent or garbage."""

    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    """Seconds until the server resets the budget (the header is a duration, not an epoch)."""

    @property
    def present(self) -> bool:
        return self.limit is not None or self.remaining is not None or self.reset_after is not None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit:
    """Read ``X-RateLimit-Limit/Remaining/Reset``; garbage values are ignored, never raised."""
    return RateLimit(
        limit=_parse_non_negative_int(headers.get("x-ratelimit-limit")),
        remaining=_parse_non_negative_int(headers.get("x-ratelimit-remaining")),
        reset_after=_parse_seconds(headers.get("x-ratelimit-reset")),
    )


def next_local_midnight(now: datetime, zone: tzinfo) -> datetime:
    """The first midnight in ``zone`` strictly after ``now`` (an aware datetime), as UTC."""
    local = now.astimezone(zone)
    tomorrow = (local + timedelta(days=1)).date()
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)
    return midnight.astimezone(timezone.utc)


@attrs.frozen
class BudgetLedger:
    """The budget's state as a value; every operation returns a new ledger."""

    limit: int
    reset_at: datetime
    used: int = 0
    in_flight: int = 0
    cap: int | None = None
    """A limit the caller chose: the server's ``X-RateLimit-Limit`` never raises it."""

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def rolled(self, now: datetime, next_reset: Callable[[datetime], datetime]) -> BudgetLedger:
        """The ledger after any reset that has passed by ``now``."""
        if now < self.reset_at:
            return self
        return attrs.evolve(self, used=0, reset_at=next_reset(now))

    def reserve(self) -> tuple[BudgetLedger, bool]:
        """Take one call if one is left."""
        if self.used >= self.limit:
            return self, False
        # The constructor, not attrs.evolve: this runs on every request.
        grown = BudgetLedger(self.limit, self.reset_at, self.used + 1, self.in_flight + 1, self.cap)
        return grown, True

    def settle(self, rate_limit: RateLimit | None, now: datetime) -> BudgetLedger:
        """Close one reservation, applying the server's figures when it sent any."""
        in_flight = max(0, self.in_flight - 1)
        limit, used, reset_at = self.limit, self.used, self.reset_at
        if rate_limit is not None:
            if rate_limit.limit is not None:
                limit = rate_limit.limit if self.cap is None else min(self.cap, rate_limit.limit)
            if rate_limit.reset_after is not None:
                reset_at = now + timedelta(seconds=rate_limit.reset_after)
                if reset_at > self.reset_at + _NEW_WINDOW_TOLERANCE:
                    # The server's window ends later than we thought: it started a new one, or
                    # our guess (local midnight) was wrong. Of our count, keep what the server
                    # has counted in its window, plus ours it has not answered yet; without
                    # its Remaining, only the calls still in flight.
                    used = in_flight
                    if rate_limit.remaining is not None:
                        server_limit = rate_limit.limit if rate_limit.limit is not None else limit
                        counted = max(0, server_limit - rate_limit.remaining) + in_flight
                        used = min(self.used, counted)
            if rate_limit.remaining is not None:
                server_remaining = rate_limit.remaining - in_flight
                used = max(used, limit - server_remaining)
        return BudgetLedger(limit, reset_at, used, in_flight, self.cap)


@runtime_checkable
class BudgetStore(Protocol):
    """Where a budget's ledger lives. Each method must be atomic.

    The default keeps it in memory. A store shared by several processes (a file with a lock,
    a database row) implements the same three methods; ``update`` runs ``change`` on the
    current ledger and stores what it returns, with no other update in between.
    """

    def load(self) -> BudgetLedger | None:
        """The current ledger, or ``None`` before the first use."""

    def update(
        self,
        initial: BudgetLedger,
        change: Callable[[BudgetLedger], tuple[BudgetLedger, bool]],
    ) -> tuple[BudgetLedger, bool]:
        """Atomically apply ``change`` (to ``initial`` when nothing is stored yet)."""


class InMemoryBudgetStore:
    """The default store: one ledger in memory, guarded by a lock (safe across threads)."""

    def __init__(self) -> None:
        self._ledger: BudgetLedger | None = None
        self._lock = threading.Lock()

    def load(self) -> BudgetLedger | None:
        return self._ledger

    def update(
        self,
        initial: BudgetLedger,
        change: Callable[[BudgetLedger], tuple[BudgetLedger, bool]],
    ) -> tuple[BudgetLedger, bool]:
        with self._lock:
            ledger, ok = change(self._ledger if self._ledger is not None else initial)
            self._ledger = ledger
            return ledger, ok


@attrs.frozen
class BudgetDecision:
    """What `DailyBudget.reserve` decided: ``granted``, or how long to wait before asking again."""

    granted: bool
    wait: float = 0.0
    reset_at: datetime | None = None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class DailyBudget:
    """The API's daily call budget, shared by every request a client sends.

    Without ``limit`` it starts at 2,000 calls and follows the server's ``X-RateLimit-Limit``;
    an explicit ``limit`` is a cap the server's figure can lower but never raise (use it to
    keep part of a shared key's calls for other programs).
    ``on_exhausted="raise"`` (default) raises `BudgetExhaustedError` when no call is left;
    ``"wait"`` sleeps until the reset instead, when that is at most ``max_wait`` seconds away.
    ``clock`` returns an aware ``datetime`` (tests inject a fake one); ``store`` holds the
    state (in memory by default).
    """

    def __init__(
        self,
        limit: int | None = None,
        *,
        on_exhausted: Literal["raise", "wait"] = "raise",
        max_wait: float = 60.0,
        timezone: str | tzinfo = "Europe/Copenhagen",
        clock: Clock | None = None,
        store: BudgetStore | None = None,
    ) -> None:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
        if on_exhausted not in ("raise", "wait"):
            raise ValueError(f"on_exhausted must be 'raise' or 'wait', got {on_exhausted!r}")
        if not (isinstance(max_wait, (int, float)) and max_wait >= 0 and math.isfinite(max_wait)):
            raise ValueError(f"max_wait must be a non-negative number of seconds, got {max_wait!r}")
        self._zone: tzinfo = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._initial_limit = DEFAULT_DAILY_LIMIT if limit is None else limit
        self._cap = limit
        self.on_exhausted = on_exhausted
        self.max_wait = float(max_wait)
        self._clock: Clock = clock or _utc_now
        self._store: BudgetStore = store if store is not None else InMemoryBudgetStore()
        self._initial_cache: tuple[datetime, BudgetLedger] | None = None

    def __repr__(self) -> str:
        ledger = self._current()
        return (
            f"DailyBudget(limit={ledger.limit}, remaining={ledger.remaining}, "
            f"reset_at={ledger.reset_at.isoformat()!r}, on_exhausted={self.on_exhausted!r})"
        )

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the budget's clock must return an aware datetime")
        return now

    def _next_reset(self, now: datetime) -> datetime:
        return next_local_midnight(now, self._zone)

    def _initial(self, now: datetime) -> BudgetLedger:
        # The same ledger for every `now` from when it was made until its reset: made once a
        # day, not on every request (the next midnight costs two time-zone conversions).
        cached = self._initial_cache
        if cached is not None and cached[0] <= now < cached[1].reset_at:
            return cached[1]
        ledger = BudgetLedger(
            limit=self._initial_limit, reset_at=self._next_reset(now), cap=self._cap
        )
        self._initial_cache = (now, ledger)
        return ledger

    def _current(self) -> BudgetLedger:
        now = self._now()
        ledger = self._store.load() or self._initial(now)
        return ledger.rolled(now, self._next_reset)

    @property
    def limit(self) -> int:
        """Calls allowed per day (the server's ``X-RateLimit-Limit`` once seen)."""
        return self._current().limit

    @property
    def remaining(self) -> int:
        """Calls left until ``reset_at``."""
        return self._current().remaining

    @property
    def used(self) -> int:
        """Calls reserved since the last reset."""
        return self._current().used

    @property
    def in_flight(self) -> int:
        """Requests reserved and not yet answered."""
        return self._current().in_flight

    @property
    def reset_at(self) -> datetime:
        """When the budget resets (aware datetime)."""
        return self._current().reset_at

    def reserve(self) -> BudgetDecision:
        """Atomically take one call, or say how long to wait (``on_exhausted="wait"``).

        Raises `BudgetExhaustedError` when no call is left and waiting is not allowed or
        would exceed ``max_wait``.
        """
        now = self._now()

        def change(ledger: BudgetLedger) -> tuple[BudgetLedger, bool]:
            return ledger.rolled(now, self._next_reset).reserve()

        ledger, ok = self._store.update(self._initial(now), change)
        if ok:
            return BudgetDecision(granted=True)
        wait = max(0.0, (ledger.reset_at - now).total_seconds())
        if self.on_exhausted == "wait" and wait <= self.max_wait:
            return BudgetDecision(granted=False, wait=wait, reset_at=ledger.reset_at)
        raise BudgetExhaustedError(ledger.reset_at, limit=ledger.limit)

    def settle(self, rate_limit: RateLimit | None = None) -> None:
        """Close one reservation; ``rate_limit`` carries the response's headers, if any."""
        now = self._now()

        def change(ledger: BudgetLedger) -> tuple[BudgetLedger, bool]:
            return ledger.rolled(now, self._next_reset).settle(rate_limit, now), True

        self._store.update(self._initial(now), change)
