"""What a harvest tells its caller: the report, its failures, and the progress events."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import attrs

__all__ = [
    "STRATEGIES",
    "EventKind",
    "HarvestEstimate",
    "HarvestEvent",
    "HarvestFailure",
    "HarvestProgress",
    "HarvestReport",
    "Route",
    "Strategy",
]

Strategy = Literal["auto", "pictures", "zip"]
Route = Literal["pictures", "zip"]
STRATEGIES: tuple[Strategy, ...] = ("auto", "pictures", "zip")


@attrs.frozen
class HarvestFailure:
    """Something a harvest could not fetch, and why."""

    order_id: str | None
    """The order; ``None`` when the order listing itself failed (or gave an order no id)."""
    picture_id: int | None
    """The picture; ``None`` when the whole order failed (its picture list, or its zip)."""
    reason: str


@attrs.frozen
class HarvestReport:
    """What one `harvest` run did.

    ``orders``: orders it covered (listed or given, of its shard, kept by ``select``);
    ``written``: files it wrote (a zip is one file); ``skipped``: files already complete on
    disk; ``bytes``: bytes it wrote; ``failures``: what it could not fetch; ``calls``: the
    API calls it spent, retries included (exactly those of this harvest, even on a client
    shared with other tasks). ``waits``: how often it waited for the budget's reset
    (``until_complete``).
    """

    orders: int
    written: int
    skipped: int
    bytes: int
    failures: list[HarvestFailure]
    calls: int
    waits: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures

    @property
    def failed(self) -> int:
        """The number of failures."""
        return len(self.failures)


EventKind = Literal["order", "bytes", "file", "skip", "empty", "fail", "wait", "resume"]


@attrs.frozen
class HarvestEvent:
    """One step of a harvest, for a progress display.

    ``kind`` is one of:

    * ``"order"``: an order is planned: ``route``, ``files`` to fetch and their expected
      ``bytes`` (0 when unknown, as for a zip).
    * ``"bytes"``: ``bytes`` just arrived (an attempt that is then retried counts too).
    * ``"file"``: a file is complete at ``path``: ``files`` = 1, ``bytes`` its size.
    * ``"skip"``: ``files`` already complete on disk (``bytes`` their size), not fetched.
    * ``"empty"``: a planned zip turned out empty (HTTP 204): ``files`` = 1 will not come.
    * ``"fail"``: ``reason``; ``files`` planned files that will not come (0 or 1).
    * ``"wait"`` (``until_complete``): the budget is spent; the harvest waits until
      ``reset_at``, ``seconds`` from now (sent when the wait starts, then about once a
      second as a countdown), with ``orders`` orders and at least ``files`` known files
      still to fetch.
    * ``"resume"``: the wait is over; the harvest goes on with ``orders`` orders.
    """

    kind: EventKind
    order_id: str | None = None
    picture_id: int | None = None
    route: Route | None = None
    files: int = 0
    bytes: int = 0
    path: Path | None = None
    reason: str | None = None
    reset_at: datetime | None = None
    seconds: float | None = None
    orders: int = 0


class HarvestProgress(Protocol):
    """A progress callback: called (synchronously, from the event loop) with each event.

    It should return quickly; an exception it raises is logged and otherwise ignored.
    """

    def __call__(self, event: HarvestEvent, /) -> None: ...


@attrs.frozen
class HarvestEstimate:
    """What a harvest's plan needs (`estimate_harvest`, the CLI's ``--dry-run``).

    ``orders``: orders of this run (its shard, those ``select`` kept); ``done``: of them,
    complete on disk (no call); ``routes``: the others by route (``"pictures"``, ``"zip"``,
    and ``"later"`` for those today's budget cannot pay for); ``calls``: calls the plan
    needs beyond the listing, counting ``assumed_pictures`` missing pictures per order
    fetched one by one (its picture list is needed to know); ``calls_min``: the same with
    no picture missing; ``listing_calls``: what the listing cost (the only calls spent);
    ``limit``, ``remaining``: the budget's; ``days``: how many daily budgets ``calls`` takes,
    today's remaining first.
    """

    orders: int
    done: int
    routes: dict[str, int]
    calls: int
    calls_min: int
    listing_calls: int
    limit: int | None
    remaining: int | None
    days: int | None
    assumed_pictures: int
    failures: list[HarvestFailure] = attrs.Factory(list)
