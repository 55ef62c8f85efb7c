"""`SqliteBudgetStore`: one budget for the processes of one host, in a SQLite file.

Every operation is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken before the
read: without it two processes could read the same count and both write it back) that applies
the pure rules of `zigziik.ratelimit` (`shared_exchange`: the settlements waiting in
`zigziik._pending`, then the reservation) to the row of its scope: one transaction per call.
Waiting for another process's lock never stalls the event loop: an operation first tries the
lock without waiting (busy timeout 0) and, when it is free, runs at once (tens of
microseconds: WAL appends, no fsync); when it is taken, the operation runs in a worker thread
(`anyio.to_thread`) that waits at most ``timeout`` seconds (SQLite's busy timeout), then fails
with `BudgetStoreError`. WAL checkpoints (which fsync) run only in that thread, every 500
commits or so.

The file is in WAL mode with ``synchronous=NORMAL``: a commit is in the operating system's
hands when it returns, so a crashed process loses nothing; a power cut or kernel crash may
lose the last commits before the next checkpoint (calls then counted again from an older
figure: up to the calls of those last moments). WAL needs every process on one host with a
local disk (not NFS or SMB).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import anyio

from ._pending import FLUSH_DELAY, PendingSettlements, newest_ms
from .errors import BudgetStoreError
from .ratelimit import (
    BudgetLedger,
    BudgetTerms,
    LeasedLedger,
    RateLimit,
    Settlement,
    from_ms,
    shared_exchange,
    to_ms,
)

__all__ = ["DEFAULT_LEASE", "SqliteBudgetStore"]

T = TypeVar("T")
logger = logging.getLogger("zigziik")

DEFAULT_LEASE = 120.0
"""Seconds a reservation weighs as "in flight" unless settled first (a dead process's)."""
_TABLE = "zigziik_budget_v1"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    scope TEXT PRIMARY KEY,
    day_limit INTEGER NOT NULL,
    reset_at INTEGER NOT NULL,
    used INTEGER NOT NULL,
    cap INTEGER,
    leases TEXT NOT NULL
)
"""
_SELECT = f"SELECT day_limit, reset_at, used, cap, leases FROM {_TABLE} WHERE scope = ?"
_UPSERT = (
    f"INSERT INTO {_TABLE} (scope, day_limit, reset_at, used, cap, leases) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET day_limit = excluded.day_limit, "
    "reset_at = excluded.reset_at, used = excluded.used, cap = excluded.cap, "
    "leases = excluded.leases"
)
_CHECKPOINT_EVERY = 500  # commits on the event loop's connection between checkpoints
_MAX = 2**53  # beyond what any figure or time (ms) may be: garbage


class _Garbage(Exception):
    """The row is not one this store wrote."""


def _count(value: object, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if type(value) is not int or not 0 <= value < _MAX:
        raise _Garbage
    return value


def decode_row(row: tuple[object, ...] | None) -> LeasedLedger | None:
    """A stored row as state; `_Garbage` when it is not what this store writes."""
    if row is None:
        return None
    day_limit, reset_at, used, cap, raw_leases = row
    if not isinstance(raw_leases, str):
        raise _Garbage
    try:
        leases = json.loads(raw_leases)
    except ValueError:
        raise _Garbage from None
    if not isinstance(leases, dict) or not all(
        isinstance(key, str) and type(end) is int and 0 <= end < _MAX for key, end in leases.items()
    ):
        raise _Garbage
    ledger = BudgetLedger(
        limit=_count(day_limit),  # type: ignore[arg-type]
        reset_at=from_ms(_count(reset_at)),  # type: ignore[arg-type]
        used=_count(used),  # type: ignore[arg-type]
        in_flight=len(leases),
        cap=_count(cap, nullable=True),
    )
    return LeasedLedger(ledger, leases)


def _use_wal(connection: sqlite3.Connection) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode is None or str(mode[0]).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode {mode!r})")


class SqliteBudgetStore:
    """Budgets shared by the processes of one host, in the SQLite file at ``path``.

    The count survives restarts. ``lease`` (seconds, default 120) bounds how long a process
    that died with requests in flight keeps them weighing on the others (those calls stay
    counted). ``timeout`` (seconds, default 10) bounds the wait for another process's lock.
    Opening is lazy: the file is created (with its WAL) by the first operation.
    """

    local = False
    deferred_settlements = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease: float = DEFAULT_LEASE,
        timeout: float = 10.0,
    ) -> None:
        if not (isinstance(lease, (int, float)) and math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.path = Path(path).expanduser().absolute()
        self.lease = float(lease)
        self.timeout = float(timeout)
        self._lease_ms = max(1, round(self.lease * 1000))
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None  # the worker thread's
        self._fast: sqlite3.Connection | None = None  # the event loop's, never waits
        self._fast_commits = 0
        self._latest: dict[str, BudgetLedger] = {}
        self._lease_prefix = secrets.token_hex(6) + "-"
        self._lease_numbers = itertools.count(1)
        self._pending = PendingSettlements()
        self._flush_delay: float | None = FLUSH_DELAY  # None: only operations send them
        self._timer_lock = threading.Lock()
        self._timer: threading.Timer | None = None

    @property
    def name(self) -> str:
        return f"sqlite://{self.path.as_posix()}"

    def __repr__(self) -> str:
        return f"SqliteBudgetStore({str(self.path)!r}, lease={self.lease:g})"

    async def __aenter__(self) -> SqliteBudgetStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def latest(self, scope: str) -> BudgetLedger | None:
        return self._latest.get(scope)

    async def aclose(self) -> None:
        """Send the settlements still waiting, then close the file (later operations open
        it again)."""
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        try:
            await self.flush()
        except BudgetStoreError as exc:
            logger.warning("could not send settlements to the budget store: %s", exc)
        with self._lock:
            connections = (self._connection, self._fast)
            self._connection = self._fast = None
        for connection in connections:
            if connection is not None:
                connection.close()

    # -- operations ------------------------------------------------------------------------

    async def reserve(
        self, scope: str, terms: BudgetTerms, now: datetime
    ) -> tuple[BudgetLedger, bool, str | None]:
        lease = f"{self._lease_prefix}{next(self._lease_numbers)}"
        now_ms, midnights, lease_ms = to_ms(now), terms.midnights(now), self._lease_ms
        settlements = self._pending.take(scope)

        def change(state: LeasedLedger | None) -> tuple[LeasedLedger, bool]:
            return shared_exchange(state, terms, now_ms, midnights, settlements, lease, lease_ms)

        try:
            state, granted = await self._run(scope, change)
        except BaseException:
            self._pending.restore(scope, terms, settlements)
            raise
        self._latest[scope] = state.ledger
        return state.ledger, granted, lease if granted else None

    async def settle(
        self,
        scope: str,
        terms: BudgetTerms,
        now: datetime,
        lease: str | None,
        rate_limit: RateLimit | None,
    ) -> BudgetLedger:
        """Keep the settlement for the next operation on ``scope`` (see `zigziik._pending`);
        the ledger returned is this process's view with it applied."""
        ledger = self._latest[scope] = self._pending.keep(
            self._latest.get(scope), scope, terms, now, lease, rate_limit
        )
        self._arm_flush()
        return ledger

    async def snapshot(self, scope: str, terms: BudgetTerms, now: datetime) -> BudgetLedger:
        now_ms, midnights = to_ms(now), terms.midnights(now)
        settlements = self._pending.take(scope)

        def view(state: LeasedLedger | None) -> tuple[LeasedLedger, bool]:
            return shared_exchange(state, terms, now_ms, midnights, settlements)

        try:
            state, _ = await self._run(scope, view, write=bool(settlements))
        except BaseException:
            self._pending.restore(scope, terms, settlements)
            raise
        self._latest[scope] = state.ledger
        return state.ledger

    async def flush(self, scope: str | None = None) -> None:
        """Send the settlements still waiting (of ``scope``, or of every scope) now."""
        for waiting_scope, terms, settlements in self._take(scope):
            change = self._flush_change(terms, settlements)
            try:
                state, _ = await self._run(waiting_scope, change)
            except BaseException:
                self._pending.restore(waiting_scope, terms, settlements)
                raise
            self._latest[waiting_scope] = state.ledger

    def _take(self, scope: str | None) -> list[tuple[str, BudgetTerms, list[Settlement]]]:
        if scope is None:
            return self._pending.take_all()
        return self._pending.take_scope(scope)

    @staticmethod
    def _flush_change(
        terms: BudgetTerms, settlements: list[Settlement]
    ) -> Callable[[LeasedLedger | None], tuple[LeasedLedger, bool]]:
        now_ms = newest_ms(settlements)
        midnights = terms.midnights(from_ms(now_ms))

        def change(state: LeasedLedger | None) -> tuple[LeasedLedger, bool]:
            return shared_exchange(state, terms, now_ms, midnights, settlements)

        return change

    def _arm_flush(self, delay: float | None = None) -> None:
        if self._flush_delay is None:
            return
        if delay is None:
            delay = self._flush_delay
        with self._timer_lock:
            if self._timer is None:
                timer = threading.Timer(delay, self._flush_in_thread)
                timer.daemon = True
                self._timer = timer
                timer.start()

    def _flush_in_thread(self) -> None:
        """The timer's flush, in its own thread (an operation here is a plain function)."""
        with self._timer_lock:
            self._timer = None
        due = self._pending.due_in(self._flush_delay or FLUSH_DELAY)
        if due is None:
            return
        if due > 0:  # reservations took what waited; the newer ones are not due yet
            self._arm_flush(due)
            return
        for scope, terms, settlements in self._pending.take_all():
            try:
                state, _ = self._guarded(scope, self._flush_change(terms, settlements), True)
            except BudgetStoreError as exc:
                self._pending.restore(scope, terms, settlements)
                logger.warning("could not send settlements to the budget store: %s", exc)
            else:
                self._latest[scope] = state.ledger

    # -- the file --------------------------------------------------------------------------

    async def _run(
        self,
        scope: str,
        change: Callable[[LeasedLedger | None], tuple[LeasedLedger, T]],
        *,
        write: bool = True,
    ) -> tuple[LeasedLedger, T]:
        with self._errors(scope):
            # Uncontended, the transaction runs here at once (tens of microseconds, no fsync);
            # when another process holds the lock, it waits for it in a worker thread.
            done = self._try_now(scope, change, write)
            if done is not None:
                return done
            return await anyio.to_thread.run_sync(self._transaction, scope, change, write)

    def _guarded(
        self,
        scope: str,
        change: Callable[[LeasedLedger | None], tuple[LeasedLedger, T]],
        write: bool,
    ) -> tuple[LeasedLedger, T]:
        """`_transaction` with its errors as `BudgetStoreError` (for the flush's thread)."""
        with self._errors(scope):
            return self._transaction(scope, change, write)

    @contextlib.contextmanager
    def _errors(self, scope: str) -> Iterator[None]:
        try:
            yield
        except BudgetStoreError:
            raise
        except _Garbage:
            raise BudgetStoreError(
                f"the row of scope {scope!r} holds garbage (not written by zigziik); "
                "nothing was sent",
                store=self.name,
            ) from None
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise BudgetStoreError(
                f"{type(exc).__name__}: {exc}; nothing was sent", store=self.name
            ) from exc

    def _connect(self, *, busy_timeout: float) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            _use_wal(connection)
            connection.execute("PRAGMA synchronous = NORMAL")
            if busy_timeout == 0:  # the event loop's: checkpoints run in the worker thread
                connection.execute("PRAGMA wal_autocheckpoint = 0")
            else:
                connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    def _try_now(
        self,
        scope: str,
        change: Callable[[LeasedLedger | None], tuple[LeasedLedger, T]],
        write: bool,
    ) -> tuple[LeasedLedger, T] | None:
        """The operation without waiting for any lock, or ``None`` (then run `_transaction`)."""
        fast = self._fast
        if fast is None or self._fast_commits >= _CHECKPOINT_EVERY:
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            # Busy timeout 0: any step that meets another connection's lock (BEGIN IMMEDIATE,
            # or a read while another store object creates the schema) fails at once, having
            # changed nothing (_apply rolls back), and the worker thread does it again waiting.
            if not write:
                return change(decode_row(fast.execute(_SELECT, (scope,)).fetchone()))
            fast.execute("BEGIN IMMEDIATE")
            self._fast_commits += 1
            return self._apply(fast, scope, change)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise
        finally:
            self._lock.release()

    def _transaction(
        self,
        scope: str,
        change: Callable[[LeasedLedger | None], tuple[LeasedLedger, T]],
        write: bool,
    ) -> tuple[LeasedLedger, T]:
        with self._lock:  # one transaction of this process at a time: no busy wait within it
            connection = self._connection
            if connection is None:
                connection = self._connection = self._connect(busy_timeout=self.timeout)
            if self._fast is None:
                self._fast = self._connect(busy_timeout=0)
            if not write:
                return change(decode_row(connection.execute(_SELECT, (scope,)).fetchone()))
            connection.execute("BEGIN IMMEDIATE")
            done = self._apply(connection, scope, change)
            if self._fast_commits >= _CHECKPOINT_EVERY:
                self._fast_commits = 0
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            return done

    def _apply(
        self,
        connection: sqlite3.Connection,
        scope: str,
        change: Callable[[LeasedLedger | None], tuple[LeasedLedger, T]],
    ) -> tuple[LeasedLedger, T]:
        """Inside ``BEGIN IMMEDIATE``: read the row, apply ``change``, write, commit."""
        try:
            state, result = change(decode_row(connection.execute(_SELECT, (scope,)).fetchone()))
            ledger = state.ledger
            connection.execute(
                _UPSERT,
                (
                    scope,
                    ledger.limit,
                    to_ms(ledger.reset_at),
                    ledger.used,
                    ledger.cap,
                    json.dumps(state.leases, separators=(",", ":")),
                ),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return state, result
