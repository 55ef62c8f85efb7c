"""The harvest: every picture of every order to disk, within the daily budget, resumable.

Four parts, as everywhere in zigziik a pure core under a thin async shell:

* `._report`: the values a caller sees: `HarvestReport`, `HarvestFailure`, `HarvestEvent`,
  `HarvestEstimate`.
* `._manifest`: what is complete, in a SQLite database in ``dest_dir``
  (``.zigziik-manifest.sqlite``, WAL, one row per file), shared by several processes;
  a JSON manifest of earlier versions is migrated.
* `._plan`: pure planning, tested without HTTP: which orders are complete, which go per
  picture, which by zip, which the budget cannot afford today; which pictures are missing;
  the shard of an order.
* `._run`: the executor, a bounded pipeline (``concurrency`` order workers and as many
  picture workers) typed against `HarvestSource`, what it needs from a client.

An order the manifest records as complete costs nothing when its files are still on disk
with their sizes and, if it came from the order listing, its status and dates
(`order_fingerprint`) are unchanged; given by id, an order with no pictures last time is
looked at again (one call). Any other order is listed again, and only its missing
pictures are fetched: a file already there with the listed size never costs a call.

What each strategy costs, in API calls (``L`` = the order-listing pages: ``ceil(N/50)`` for
``N`` orders, one more if the server links an empty last page, none when ``order_ids`` is
given; retries add to it):

* ``"pictures"``: ``L`` + per order 1 (its picture list) + 1 per missing picture. Planned
  against nothing: what the budget refuses is reported.
* ``"zip"``: ``L`` + 1 per order; the orders beyond the budget are reported, not tried.
* ``"auto"``: per picture while the budget affords it, else by zip. One call is held back
  for every order; an order's pictures are listed only when the calls left over beyond
  those (at least the expected number of pictures per order) can pay for fetching them one
  by one. With a small budget that means ``L`` + 1 per order; with a budget smaller than
  the number of orders, the orders it cannot afford are reported as failures (nothing is
  sent for them) and fetched by the next run.

``until_complete=True`` turns "reported, fetched by the next run" into "fetched after the
budget's reset": the run waits (however long), keeps its plan and its order listing (``L``
is spent once), and goes on until nothing is left. ``shard=(k, n)`` harvests only the orders
whose `shard_of` is ``k``; ``select`` only those it accepts; neither costs a call beyond
the listing. ``recheck=True`` lists the orders recorded complete again (one call each) to
fetch pictures added since.

With ``"zip"`` and ``"auto"`` under a tight budget, fewer requests are sent at once (at most
as many as the calls to spare): the budget's bookkeeping is pessimistic while requests are
in flight, and would otherwise refuse the plan's last calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from ..._calls import count_calls
from ..._checks import check_int
from ...download import ensure_folder
from ..models import Order
from ._manifest import ManifestError
from ._plan import ASSUMED_PICTURES_PER_ORDER
from ._report import (
    STRATEGIES,
    HarvestEstimate,
    HarvestEvent,
    HarvestFailure,
    HarvestProgress,
    HarvestReport,
    Strategy,
)
from ._run import Harvest, HarvestSource, RunOptions, UnsafePathError

__all__ = [
    "HarvestEstimate",
    "HarvestEvent",
    "HarvestFailure",
    "HarvestProgress",
    "HarvestReport",
    "HarvestSource",
    "ManifestError",
    "Strategy",
    "UnsafePathError",
    "estimate_harvest",
    "harvest",
]

Select = Callable[[Order], bool]


def _check_args(
    order_ids: Iterable[str | int] | None,
    concurrency: int,
    strategy: str,
    select: object,
    shard: object,
) -> tuple[list[str] | None, tuple[int, int] | None]:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    check_int("concurrency", concurrency, minimum=1)
    if select is not None and not callable(select):
        raise TypeError("select must be a callable taking an Order and returning a bool")
    checked_shard: tuple[int, int] | None = None
    if shard is not None:
        if not isinstance(shard, tuple) or len(shard) != 2:
            raise TypeError(f"shard must be a (k, n) tuple, got {shard!r}")
        k = check_int("shard k", shard[0], minimum=0)
        n = check_int("shard n", shard[1], minimum=1)
        if k >= n:
            raise ValueError(f"shard (k, n) needs 0 <= k < n, got ({k}, {n})")
        checked_shard = (k, n)
    if order_ids is None:
        return None, checked_shard
    if select is not None:
        raise ValueError(
            "select works on the order listing; with order_ids, pass only the orders you want"
        )
    if isinstance(order_ids, (str, bytes)):
        raise TypeError("order_ids must be a list of ids, not a single string")
    ids: list[str] = []
    for order_id in order_ids:
        if isinstance(order_id, bool) or not isinstance(order_id, (str, int)):
            raise TypeError(f"an order id must be a str or int, got {type(order_id).__name__}")
        text = str(order_id).strip()
        if not text or text in (".", ".."):
            raise ValueError(f"not an order id: {order_id!r}")
        ids.append(text)
    return ids, checked_shard


def _source(client: Any) -> HarvestSource:
    if isinstance(client, HarvestSource):
        return client
    make = getattr(client, "harvest_source", None)
    if make is None:
        raise TypeError(
            f"harvest needs a ZignaClient or a HarvestSource, got {type(client).__name__}"
        )
    source: HarvestSource = make()
    return source


async def harvest(
    client: Any,
    dest_dir: str | os.PathLike[str],
    *,
    order_ids: Iterable[str | int] | None = None,
    concurrency: int = 8,
    strategy: Strategy = "auto",
    extract: bool = False,
    progress: HarvestProgress | None = None,
    select: Select | None = None,
    shard: tuple[int, int] | None = None,
    until_complete: bool = False,
    recheck: bool = False,
) -> HarvestReport:
    """Download every picture of every order (or of ``order_ids``) into ``dest_dir``.

    ``client`` is a `ZignaClient` (or any `HarvestSource`). Pictures go to
    ``dest_dir/<order>/`` (the order id made safe), zips to ``dest_dir/<order>/<order>.zip``
    (unpacked there too when ``extract``), the manifest to
    ``dest_dir/.zigziik-manifest.sqlite``. At most ``concurrency`` requests are in flight.
    See the package's documentation for what each ``strategy`` costs in calls, and for
    ``select``, ``shard``, ``until_complete`` and ``recheck``.

    Failures (an order, a picture, an exhausted budget) never abort the rest: they are listed
    in the report. A second run fetches only what is missing; an interrupted one (crash,
    Ctrl-C, cancellation) leaves no partial file and resumes cleanly. ``progress`` receives
    a `HarvestEvent` for every step. Nothing is ever written through a symbolic link under
    ``dest_dir``.
    """
    ids, checked_shard = _check_args(order_ids, concurrency, strategy, select, shard)
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a callable taking a HarvestEvent")
    source = _source(client)
    dest = ensure_folder(dest_dir)
    options = RunOptions(
        concurrency=concurrency,
        strategy=strategy,
        extract=bool(extract),
        select=select,
        shard=checked_shard,
        until_complete=bool(until_complete),
        recheck=bool(recheck),
    )
    with count_calls() as counter:
        run = Harvest(source, dest, options, progress=progress, counter=counter)
        try:
            await run.run(ids)
        finally:
            run.close_manifest()
        return run.report()


async def estimate_harvest(
    client: Any,
    dest_dir: str | os.PathLike[str],
    *,
    order_ids: Iterable[str | int] | None = None,
    strategy: Strategy = "auto",
    select: Select | None = None,
    shard: tuple[int, int] | None = None,
    recheck: bool = False,
    assumed_pictures: int = ASSUMED_PICTURES_PER_ORDER,
) -> HarvestEstimate:
    """What `harvest` with these options would need, fetching nothing (``--dry-run``).

    Spends only the order listing (none with ``order_ids``). Order folders are claimed in
    the manifest, as a harvest would; no file is written.
    """
    ids, checked_shard = _check_args(order_ids, 1, strategy, select, shard)
    check_int("assumed_pictures", assumed_pictures, minimum=0)
    source = _source(client)
    dest = ensure_folder(dest_dir)
    options = RunOptions(
        concurrency=1,
        strategy=strategy,
        extract=False,
        select=select,
        shard=checked_shard,
        until_complete=False,
        recheck=bool(recheck),
    )
    with count_calls() as counter:
        run = Harvest(source, dest, options, progress=None, counter=counter)
        try:
            return await run.estimate(ids, assumed_pictures)
        finally:
            run.close_manifest()
