"""Settlements a shared store sends with its next operation instead of on their own.

A call's settlement (its lease closed, its answer's figures applied) needs no answer from
the store, so a shared store does not spend a round trip on it: it keeps it here and sends
it with the next reservation or snapshot on the same scope, in the same transaction or
script (one store operation per call instead of two). Until then the call weighs as in
flight (its lease lives), which only makes the others more careful; the call itself was
counted when it was reserved. A flush after `FLUSH_DELAY` seconds, on ``aclose()`` and
before a snapshot sends whatever no reservation took along.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime

from .ratelimit import BudgetLedger, BudgetTerms, RateLimit, Settlement, to_ms

__all__ = ["FLUSH_DELAY", "PendingSettlements", "newest_ms"]

FLUSH_DELAY = 0.1
"""Seconds a settlement waits for a reservation to take it along before it is sent alone
(well inside `zigziik.ratelimit.FRESH_MS`, after which its figures would be dropped)."""


class PendingSettlements:
    """Per scope, the settlements waiting for the store's next operation (thread-safe)."""

    __slots__ = ("_lock", "_scopes", "_since", "_terms")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[str, list[Settlement]] = {}
        self._terms: dict[str, BudgetTerms] = {}
        self._since: dict[str, float] = {}  # monotonic: when each scope's oldest came

    def due_in(self, delay: float = FLUSH_DELAY) -> float | None:
        """Seconds until a flush is due (0: now), ``None`` when nothing waits."""
        with self._lock:
            if not self._since:
                return None
            oldest = min(self._since.values())
        return max(0.0, oldest + delay - time.monotonic())

    def __bool__(self) -> bool:
        return bool(self._scopes)

    def add(self, scope: str, terms: BudgetTerms, settlement: Settlement) -> None:
        """Keep ``settlement`` until the next operation on ``scope`` (or a flush)."""
        with self._lock:
            waiting = self._scopes.get(scope)
            if waiting is None:
                self._scopes[scope] = [settlement]
                self._since[scope] = time.monotonic()
            else:
                waiting.append(settlement)
            self._terms[scope] = terms

    def keep(
        self,
        latest: BudgetLedger | None,
        scope: str,
        terms: BudgetTerms,
        now: datetime,
        lease: str | None,
        rate_limit: RateLimit | None,
    ) -> BudgetLedger:
        """A store's ``settle``: keep the settlement (when it has anything to say) and return
        this process's view of the ledger with it applied (``latest``: the last one)."""
        if lease is not None or rate_limit is not None:
            self.add(scope, terms, Settlement(lease, rate_limit, to_ms(now)))
        return (latest or terms.initial(now)).settle(rate_limit, now)

    def take(self, scope: str) -> list[Settlement]:
        """The settlements of ``scope``, oldest first (now the caller's to send)."""
        if scope not in self._scopes:  # the common case, without the lock
            return []
        with self._lock:
            self._terms.pop(scope, None)
            self._since.pop(scope, None)
            return self._scopes.pop(scope, [])

    def take_scope(self, scope: str) -> list[tuple[str, BudgetTerms, list[Settlement]]]:
        """`take_all`, for one scope."""
        with self._lock:
            terms = self._terms.pop(scope, None)
            self._since.pop(scope, None)
            settlements = self._scopes.pop(scope, [])
        return [(scope, terms, settlements)] if terms is not None and settlements else []

    def take_all(self) -> list[tuple[str, BudgetTerms, list[Settlement]]]:
        """Everything waiting, by scope, with the terms of each scope's last settlement."""
        with self._lock:
            taken = [
                (scope, self._terms[scope], settlements)
                for scope, settlements in self._scopes.items()
            ]
            self._scopes.clear()
            self._terms.clear()
            self._since.clear()
        return taken

    def restore(self, scope: str, terms: BudgetTerms, settlements: Sequence[Settlement]) -> None:
        """Put back settlements an operation failed to send (before any newer ones)."""
        if not settlements:
            return
        with self._lock:
            self._since.setdefault(scope, time.monotonic())
            self._scopes[scope] = [*settlements, *self._scopes.get(scope, ())]
            self._terms.setdefault(scope, terms)


def newest_ms(settlements: Sequence[Settlement]) -> int:
    """When the newest of ``settlements`` arrived: the time a flush on its own applies them
    at (the store knows no clock of the budget's; an earlier time only keeps leases longer)."""
    return max(settlement.at_ms for settlement in settlements)
