"""Rate-limit headers and the daily call budget.

The rules are pure and free of I/O; a store applies them atomically (`InMemoryBudgetStore`
here; `SqliteBudgetStore` in a transaction, `RedisBudgetStore` in Lua that mirrors them). The
only waiting (``on_exhausted="wait"``) happens in the transport, which asks
`DailyBudget.reserve` for a decision and sleeps itself.

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

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import anyio
import attrs

from .errors import BudgetExhaustedError, BudgetStoreError

__all__ = [
    "BudgetDecision",
    "BudgetLedger",
    "BudgetSnapshot",
    "BudgetStore",
    "BudgetTerms",
    "DailyBudget",
    "InMemoryBudgetStore",
    "RateLimit",
]

Clock = Callable[[], datetime]
logger = logging.getLogger("zigziik")

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

    def capped(self, cap: int | None) -> BudgetLedger:
        """The ledger under a caller's ``cap`` too (a cap only ever lowers the limit)."""
        if cap is None or (self.cap is not None and self.cap <= cap):
            return self
        return BudgetLedger(min(self.limit, cap), self.reset_at, self.used, self.in_flight, cap)

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
        if rate_limit is None:
            return BudgetLedger(self.limit, self.reset_at, self.used, in_flight, self.cap)
        return BudgetLedger(self.limit, self.reset_at, self.used, in_flight, self.cap).observe(
            rate_limit, now
        )

    def observe(self, rate_limit: RateLimit, now: datetime) -> BudgetLedger:
        """Apply a response's figures, with ``in_flight`` counting the requests still out.

        ``Reset`` is taken to the millisecond (every store keeps times in milliseconds).
        """
        in_flight = self.in_flight
        limit, used, reset_at = self.limit, self.used, self.reset_at
        if rate_limit.limit is not None:
            limit = rate_limit.limit if self.cap is None else min(self.cap, rate_limit.limit)
        if rate_limit.reset_after is not None:
            # In UTC: aware arithmetic in a local zone would add wall-clock time (an hour off
            # across a DST change).
            elapsed = timedelta(milliseconds=reset_milliseconds(rate_limit.reset_after))
            reset_at = now.astimezone(timezone.utc) + elapsed
            if reset_at > self.reset_at + _NEW_WINDOW_TOLERANCE:
                # The server's window ends later than we thought: it started a new one, or
                # our guess (local midnight) was wrong. Of our count, keep what the server
                # has counted in its window, plus ours it has not answered yet; without
                # its Remaining, this answer's call and those still in flight.
                used = min(self.used, in_flight + 1)  # this answer: in its window
                if rate_limit.remaining is not None:
                    server_limit = rate_limit.limit if rate_limit.limit is not None else limit
                    counted = max(0, server_limit - rate_limit.remaining) + in_flight
                    used = min(self.used, counted)
        if rate_limit.remaining is not None:
            server_remaining = rate_limit.remaining - in_flight
            used = max(used, limit - server_remaining)
        return BudgetLedger(limit, reset_at, used, in_flight, self.cap)


def reset_milliseconds(reset_after: float) -> int:
    """``X-RateLimit-Reset`` (seconds) as whole milliseconds, as every store keeps it."""
    return round(reset_after * 1000)


# --------------------------------------------------------------------------------------------
# Shared state: the ledger plus the leases of the requests in flight


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """An aware datetime as whole milliseconds since the epoch (rounded down)."""
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=ms)


class StoreClockError(ValueError):
    """The time a store decides by is more than a day away from the budget's own clock."""


class BudgetTerms:
    """What a budget asks of its store besides the operation: its limit, cap and day.

    ``limit`` is the limit of a ledger that does not exist yet; ``cap`` a caller's limit the
    server never raises; the day ends at the midnights of ``zone``.
    """

    __slots__ = ("_initial", "_midnights", "_midnights_text", "cap", "limit", "zone")

    def __init__(self, limit: int, cap: int | None, zone: tzinfo) -> None:
        self.limit = limit
        self.cap = cap
        self.zone = zone
        self._initial: tuple[datetime, BudgetLedger] | None = None
        self._midnights: tuple[datetime, datetime, tuple[int, ...]] | None = None
        self._midnights_text: tuple[tuple[int, ...], str] | None = None

    def __repr__(self) -> str:
        return f"BudgetTerms(limit={self.limit}, cap={self.cap}, zone={self.zone!r})"

    def next_reset(self, now: datetime) -> datetime:
        return next_local_midnight(now, self.zone)

    def initial(self, now: datetime) -> BudgetLedger:
        """A fresh ledger for ``now``: the same one from when it was made until its reset
        (made once a day, not on every request: the next midnight costs two time-zone
        conversions)."""
        cached = self._initial
        if cached is not None and cached[0] <= now < cached[1].reset_at:
            return cached[1]
        ledger = BudgetLedger(limit=self.limit, reset_at=self.next_reset(now), cap=self.cap)
        self._initial = (now, ledger)
        return ledger

    def midnights(self, now: datetime) -> tuple[int, ...]:
        """The local midnights (ms since the epoch) from the start of yesterday to four days
        on: a store with a clock of its own (Redis) picks the first one after its own now."""
        cached = self._midnights
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        day = (now - timedelta(days=1)).astimezone(self.zone).date()
        found = tuple(
            to_ms(datetime(d.year, d.month, d.day, tzinfo=self.zone))
            for d in (day + timedelta(days=n) for n in range(6))
        )
        self._midnights = (now, self.next_reset(now), found)
        return found

    def midnights_text(self, now: datetime) -> str:
        """`midnights` as the comma-separated text a Redis script takes (made once a day)."""
        found = self.midnights(now)
        cached = self._midnights_text
        if cached is None or cached[0] is not found:
            cached = self._midnights_text = (found, ",".join(str(m) for m in found))
        return cached[1]


def first_after(midnights: Sequence[int], now_ms: int) -> int:
    """The first of ``midnights`` after ``now_ms``; `StoreClockError` when none is."""
    for midnight in midnights:
        if midnight > now_ms:
            return midnight
    raise StoreClockError("the store's clock is days ahead of this process's clock")


@attrs.frozen
class LeasedLedger:
    """A shared store's state for one scope: the ledger and the leases of its calls in flight.

    Every reservation holds a lease until it is settled or its lease expires (a process that
    died cannot settle). ``ledger.in_flight`` is always the number of live leases. The calls
    themselves stay counted in ``used`` either way.
    """

    ledger: BudgetLedger
    leases: Mapping[str, int] = attrs.field(factory=dict)
    """Lease id -> when it expires (ms since the epoch)."""


def _prepared(
    state: LeasedLedger | None, terms: BudgetTerms, now_ms: int, midnights: Sequence[int]
) -> tuple[BudgetLedger, dict[str, int], datetime]:
    now = from_ms(now_ms)

    def next_reset(_: datetime) -> datetime:
        return from_ms(first_after(midnights, now_ms))

    if state is None:
        ledger = BudgetLedger(limit=terms.limit, reset_at=next_reset(now), cap=terms.cap)
        leases: dict[str, int] = {}
    else:
        leases = {lease: end for lease, end in state.leases.items() if end > now_ms}
        ledger = state.ledger
    ledger = ledger.rolled(now, next_reset).capped(terms.cap)
    if ledger.in_flight != len(leases):
        ledger = BudgetLedger(ledger.limit, ledger.reset_at, ledger.used, len(leases), ledger.cap)
    return ledger, leases, now


def shared_reserve(
    state: LeasedLedger | None,
    terms: BudgetTerms,
    now_ms: int,
    midnights: Sequence[int],
    lease: str,
    lease_ms: int,
) -> tuple[LeasedLedger, bool]:
    """Take one call under ``lease`` (valid for ``lease_ms``) if one is left."""
    ledger, leases, _ = _prepared(state, terms, now_ms, midnights)
    ledger, granted = ledger.reserve()
    if granted:
        leases[lease] = now_ms + lease_ms
    return LeasedLedger(ledger, leases), granted


FRESH_MS = 1000
"""A settlement applied later than this (ms after its answer arrived) closes its lease only:
its figures may describe a window that has ended, or miss calls counted since."""


def aged(rate_limit: RateLimit, age_ms: int) -> RateLimit:
    """The figures of an answer ``age_ms`` old as of now: its ``Reset`` is that much nearer."""
    if age_ms <= 0 or rate_limit.reset_after is None:
        return rate_limit
    reset_ms = max(0, reset_milliseconds(rate_limit.reset_after) - age_ms)
    return RateLimit(rate_limit.limit, rate_limit.remaining, reset_ms / 1000)


def shared_settle(
    state: LeasedLedger | None,
    terms: BudgetTerms,
    now_ms: int,
    midnights: Sequence[int],
    lease: str | None,
    rate_limit: RateLimit | None,
    age_ms: int = 0,
) -> LeasedLedger:
    """Close ``lease`` (if it still lives) and apply the server's figures, if any.

    ``age_ms``: how long ago the answer arrived (a settlement sent with a later operation);
    past `FRESH_MS` its figures are not applied.
    """
    ledger, leases, now = _prepared(state, terms, now_ms, midnights)
    if lease is not None and leases.pop(lease, None) is not None:
        ledger = BudgetLedger(ledger.limit, ledger.reset_at, ledger.used, len(leases), ledger.cap)
    if rate_limit is not None and rate_limit.present and age_ms <= FRESH_MS:
        ledger = ledger.observe(aged(rate_limit, age_ms), now)
    return LeasedLedger(ledger, leases)


@attrs.frozen
class Settlement:
    """A call's settlement waiting to be sent with the store's next operation."""

    lease: str | None
    rate_limit: RateLimit | None
    at_ms: int
    """When its answer arrived (the budget's clock, ms since the epoch)."""

    def age(self, now_ms: int) -> int:
        return max(0, now_ms - self.at_ms)


def shared_exchange(
    state: LeasedLedger | None,
    terms: BudgetTerms,
    now_ms: int,
    midnights: Sequence[int],
    settlements: Sequence[Settlement],
    lease: str | None = None,
    lease_ms: int = 0,
) -> tuple[LeasedLedger, bool]:
    """One store operation: apply ``settlements`` in order, then reserve one call under
    ``lease`` (or, without a lease, only read: granted is then ``True``)."""
    for settlement in settlements:
        state = shared_settle(
            state,
            terms,
            now_ms,
            midnights,
            settlement.lease,
            settlement.rate_limit,
            settlement.age(now_ms),
        )
    if lease is None:
        return shared_view(state, terms, now_ms, midnights), True
    return shared_reserve(state, terms, now_ms, midnights, lease, lease_ms)


def shared_view(
    state: LeasedLedger | None, terms: BudgetTerms, now_ms: int, midnights: Sequence[int]
) -> LeasedLedger:
    """The state as of ``now_ms`` (a reset passed, leases expired), without changing it."""
    ledger, leases, _ = _prepared(state, terms, now_ms, midnights)
    return LeasedLedger(ledger, leases)


# --------------------------------------------------------------------------------------------
# Stores


@runtime_checkable
class BudgetStore(Protocol):
    """Where budgets keep their ledgers, one per scope (an API key). Every operation is atomic
    in the store itself: no other process's operation on the scope can come in between.

    ``name`` says which store it is in messages (never a password). ``latest`` gives the
    figures of this process's last operation on ``scope`` without any I/O.
    """

    @property
    def name(self) -> str:
        """The store, for messages: its URL without a password."""

    async def reserve(
        self, scope: str, terms: BudgetTerms, now: datetime
    ) -> tuple[BudgetLedger, bool, str | None]:
        """Take one call if one is left: (the ledger after, granted, the lease to settle)."""

    async def settle(
        self,
        scope: str,
        terms: BudgetTerms,
        now: datetime,
        lease: str | None,
        rate_limit: RateLimit | None,
    ) -> BudgetLedger:
        """Close one reservation and apply the server's figures, if it sent any."""

    async def snapshot(self, scope: str, terms: BudgetTerms, now: datetime) -> BudgetLedger:
        """The ledger now, read from the store."""

    def latest(self, scope: str) -> BudgetLedger | None:
        """The ledger as of this process's last operation (``None`` before the first)."""

    async def aclose(self) -> None:
        """Release the store's connections (a caller-supplied client stays open)."""


class InMemoryBudgetStore:
    """The default store: ledgers in this process's memory (one process, one count).

    Check and reservation run with no ``await`` in between, guarded by a lock (safe across
    threads too). Nothing to lease: its calls in flight die with the process.
    """

    name = "memory:"
    local = True

    def __init__(self) -> None:
        self._ledgers: dict[str, BudgetLedger] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "InMemoryBudgetStore()"

    async def __aenter__(self) -> InMemoryBudgetStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def reserve(
        self, scope: str, terms: BudgetTerms, now: datetime
    ) -> tuple[BudgetLedger, bool, str | None]:
        with self._lock:
            ledger = self._ledgers.get(scope) or terms.initial(now)
            ledger, granted = ledger.rolled(now, terms.next_reset).capped(terms.cap).reserve()
            self._ledgers[scope] = ledger
        return ledger, granted, None

    async def settle(
        self,
        scope: str,
        terms: BudgetTerms,
        now: datetime,
        lease: str | None,
        rate_limit: RateLimit | None,
    ) -> BudgetLedger:
        with self._lock:
            ledger = self._ledgers.get(scope) or terms.initial(now)
            ledger = ledger.rolled(now, terms.next_reset).capped(terms.cap).settle(rate_limit, now)
            self._ledgers[scope] = ledger
        return ledger

    async def snapshot(self, scope: str, terms: BudgetTerms, now: datetime) -> BudgetLedger:
        ledger = self._ledgers.get(scope) or terms.initial(now)
        return ledger.rolled(now, terms.next_reset).capped(terms.cap)

    def latest(self, scope: str) -> BudgetLedger | None:
        return self._ledgers.get(scope)

    async def aclose(self) -> None:
        return None


# --------------------------------------------------------------------------------------------
# The budget


@attrs.frozen
class BudgetDecision:
    """What `DailyBudget.reserve` decided: ``granted`` (with the ``lease`` to settle), or how
    long to wait before asking again."""

    granted: bool
    wait: float = 0.0
    reset_at: datetime | None = None
    lease: str | None = None


_GRANTED = BudgetDecision(granted=True)


@attrs.frozen
class BudgetSnapshot:
    """A budget's figures as read from its store: calls allowed, spent and left, the reset."""

    limit: int
    used: int
    remaining: int
    reset_at: datetime
    in_flight: int = 0

    @classmethod
    def of(cls, ledger: BudgetLedger) -> BudgetSnapshot:
        return cls(ledger.limit, ledger.used, ledger.remaining, ledger.reset_at, ledger.in_flight)


DEFAULT_SCOPE = "default"
_SCOPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def key_scope(api_key: str) -> str:
    """The scope of an API key's budget: a short hash of it, never the key itself."""
    digest = hashlib.sha256(api_key.strip().strip("{}").lower().encode()).hexdigest()
    return f"key-{digest[:16]}"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not 1 <= len(scope) <= 100 or not set(scope) <= _SCOPE_CHARS:
        raise ValueError(
            "scope must be 1 to 100 letters, digits or '-_.:', got "
            f"{scope if isinstance(scope, str) and len(scope) <= 100 else type(scope).__name__!r}"
        )
    return scope


class DailyBudget:
    """The API's daily call budget, shared by every request a client sends.

    Without ``limit`` it starts at 2,000 calls and follows the server's ``X-RateLimit-Limit``;
    an explicit ``limit`` is a cap the server's figure can lower but never raise (use it to
    keep part of a shared key's calls for other programs).
    ``on_exhausted="raise"`` (default) raises `BudgetExhaustedError` when no call is left;
    ``"wait"`` sleeps until the reset instead, when that is at most ``max_wait`` seconds away.
    ``clock`` returns an aware ``datetime`` (tests inject a fake one); ``store`` holds the
    ledger (in this process's memory by default; `SqliteBudgetStore` or `RedisBudgetStore` to
    share it between processes and hosts); ``scope`` names the ledger in the store (a client
    gives a budget without one its API key's scope: a short hash of the key).
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
        scope: str | None = None,
    ) -> None:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
        if on_exhausted not in ("raise", "wait"):
            raise ValueError(f"on_exhausted must be 'raise' or 'wait', got {on_exhausted!r}")
        if not (isinstance(max_wait, (int, float)) and max_wait >= 0 and math.isfinite(max_wait)):
            raise ValueError(f"max_wait must be a non-negative number of seconds, got {max_wait!r}")
        if store is not None and not isinstance(store, BudgetStore):
            raise TypeError(f"store must be a BudgetStore, got {type(store).__name__}")
        zone: tzinfo = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._terms = BudgetTerms(DEFAULT_DAILY_LIMIT if limit is None else limit, limit, zone)
        self.on_exhausted = on_exhausted
        self.max_wait = float(max_wait)
        self._clock: Clock = clock or _utc_now
        self._store: BudgetStore = store if store is not None else InMemoryBudgetStore()
        # A store whose settle does no I/O (in memory; a shared store that sends settlements
        # with its next operation) needs no shield around it.
        self._local = (
            getattr(self._store, "local", False) is True
            or getattr(self._store, "deferred_settlements", False) is True
        )
        self._scope = _check_scope(scope) if scope is not None else None
        self._scope_given = scope is not None

    def __repr__(self) -> str:
        ledger = self._current()
        return (
            f"DailyBudget(limit={ledger.limit}, remaining={ledger.remaining}, "
            f"reset_at={ledger.reset_at.isoformat()!r}, on_exhausted={self.on_exhausted!r}, "
            f"store={self._store.name!r})"
        )

    @property
    def store(self) -> BudgetStore:
        """Where the ledger lives."""
        return self._store

    @property
    def scope(self) -> str:
        """The ledger's name in the store (an API key's hash once a client has used it)."""
        return self._scope if self._scope is not None else DEFAULT_SCOPE

    def bind_scope(self, scope: str) -> None:
        """Give a budget without a scope of its own the scope of the key it counts for.

        A client calls it with its key's scope. A budget already bound to another key's scope
        refuses (one budget counts for one key): `ValueError`.
        """
        if self._scope_given:
            return
        if self._scope is None:
            self._scope = _check_scope(scope)
        elif self._scope != scope:
            raise ValueError(
                "this DailyBudget already counts the calls of another API key; give each key "
                "a budget of its own (they may share a store)"
            )

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the budget's clock must return an aware datetime")
        return now

    def _current(self) -> BudgetLedger:
        now = self._now()
        ledger = self._store.latest(self.scope) or self._terms.initial(now)
        return ledger.rolled(now, self._terms.next_reset)

    @property
    def limit(self) -> int:
        """Calls allowed per day (the server's ``X-RateLimit-Limit`` once seen)."""
        return self._current().limit

    @property
    def remaining(self) -> int:
        """Calls left until ``reset_at`` (as of this process's last store operation)."""
        return self._current().remaining

    @property
    def used(self) -> int:
        """Calls reserved since the last reset (as of this process's last store operation)."""
        return self._current().used

    @property
    def in_flight(self) -> int:
        """Requests reserved and not yet answered (as of the last store operation)."""
        return self._current().in_flight

    @property
    def reset_at(self) -> datetime:
        """When the budget resets (aware datetime)."""
        return self._current().reset_at

    async def snapshot(self) -> BudgetSnapshot:
        """The figures read from the store now (spends no call); `BudgetStoreError` if the
        store cannot say."""
        ledger = await self._store.snapshot(self.scope, self._terms, self._now())
        return BudgetSnapshot.of(ledger)

    async def flush(self) -> None:
        """Send this budget's settlements that a shared store keeps for its next operation
        (`BudgetStoreError` if the store cannot take them; they stay kept)."""
        flush = getattr(self._store, "flush", None)
        if flush is not None:
            await flush(self.scope)

    async def reserve(self) -> BudgetDecision:
        """Atomically take one call, or say how long to wait (``on_exhausted="wait"``).

        Raises `BudgetExhaustedError` when no call is left and waiting is not allowed or
        would exceed ``max_wait``, and `BudgetStoreError` when the store cannot be asked
        (then nothing may be sent).
        """
        now = self._now()
        ledger, granted, lease = await self._store.reserve(self.scope, self._terms, now)
        if granted:
            return _GRANTED if lease is None else BudgetDecision(granted=True, lease=lease)
        wait = max(0.0, (ledger.reset_at - now).total_seconds())
        if self.on_exhausted == "wait" and wait <= self.max_wait:
            return BudgetDecision(granted=False, wait=wait, reset_at=ledger.reset_at)
        raise BudgetExhaustedError(ledger.reset_at, limit=ledger.limit)

    async def settle(
        self, rate_limit: RateLimit | None = None, *, lease: str | None = None
    ) -> None:
        """Close one reservation; ``rate_limit`` carries the response's headers, if any.

        The shared stores keep it for their next operation (no I/O here). Another store's
        runs even while the caller is being cancelled (shielded; the store's own timeout
        bounds it). A store that cannot be reached is logged, not raised: the call was
        counted when it was reserved, and its lease expires by itself.
        """
        if self._local:
            await self._store.settle(self.scope, self._terms, self._now(), lease, rate_limit)
            return
        try:
            # Shielded: a cancelled request still settles. The store bounds the wait itself
            # (SQLite's busy timeout, Redis's socket timeouts).
            with anyio.CancelScope(shield=True):
                await self._store.settle(self.scope, self._terms, self._now(), lease, rate_limit)
        except BudgetStoreError as exc:
            logger.warning("could not settle a call in the budget store: %s", exc)
