"""The harvest's pure planning, tested without HTTP.

`classify_order` (is an order complete on disk, or a job?), `route_jobs` (which jobs go per
picture, which by zip, which today's budget cannot pay for), `plan_harvest` (both, for
every order), `plan_pictures` (which pictures of a listed order are missing), `Allowance`
(the auto strategy's running account of calls), `shard_of` (the stable shard of an order
id) and `estimate_calls` (what a plan costs, for ``--dry-run``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal, Protocol

import attrs

from ..._filenames import fixed_picture_file_name, picture_file_name
from ..models import Order, Picture
from ._manifest import FileRecord, Manifest, OrderRecord, OrderSummary, assign_folders
from ._report import Route, Strategy

__all__ = [
    "ASSUMED_PICTURES_PER_ORDER",
    "Allowance",
    "Disk",
    "DoneOrder",
    "HarvestPlan",
    "OrderInput",
    "OrderJob",
    "PicturesPlan",
    "classify_order",
    "estimate_calls",
    "in_shard",
    "order_fingerprint",
    "plan_harvest",
    "plan_pictures",
    "route_jobs",
    "shard_of",
]

ASSUMED_PICTURES_PER_ORDER = 8
"""The auto strategy's guess of an order's missing pictures until it has listed one."""


class Disk(Protocol):
    """What the planner may ask about the destination (the executor answers from the disk)."""

    def has(self, folder: str, name: str, size: int) -> bool:
        """Whether ``folder/name`` is a file (not a link) of exactly ``size`` bytes."""

    def has_all(self, folder: str, names: Sequence[str], sizes: Sequence[int]) -> bool:
        """Whether `has` holds for every name and size of ``names`` and ``sizes`` (and
        ``folder`` is a folder, not a link to one)."""

    def find(self, folder: str, stem: str, size: int | None) -> str | None:
        """The name of a complete file for a picture whose name is ``stem`` (+ any extension)."""


@attrs.frozen
class OrderInput:
    """An order to harvest: its id, and its fingerprint when it came from the listing."""

    order_id: str
    fingerprint: str | None = None
    listed: bool = False


def order_fingerprint(order: Order) -> str | None:
    """What must stay the same for a completed order to be skipped without a call.

    Built from the status and the dates of the listed order; ``None`` when none is known.
    """
    parts = (order.status_id, order.pictures_taken_date, order.finished_date)
    if all(part is None for part in parts):
        return None
    return "|".join(
        "" if part is None else part.isoformat() if isinstance(part, datetime) else str(int(part))
        for part in parts
    )


def shard_of(order_id: str, shards: int) -> int:
    """The shard (``0 .. shards - 1``) of an order id: the same in every process and version.

    The first 8 bytes of the id's SHA-256, modulo ``shards`` (Python's ``hash()`` differs
    from one process to the next).
    """
    digest = hashlib.sha256(order_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def in_shard(order_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether the order belongs to ``shard`` (``(k, n)``; ``None``: every order does)."""
    if shard is None:
        return True
    k, n = shard
    return shard_of(order_id, n) == k


@attrs.frozen
class OrderJob:
    """An order with work to do: its folder and how it is to be fetched."""

    order_id: str
    folder: str
    route: Route | Literal["auto"]
    fingerprint: str | None = None


@attrs.frozen
class DoneOrder:
    """An order already complete on disk: nothing to fetch."""

    order_id: str
    folder: str
    files: int
    bytes: int
    unpack: str | None = None
    """The zip still to unpack (when the harvest extracts and it was not unpacked yet)."""


@attrs.frozen
class HarvestPlan:
    """What `plan_harvest` decided for every order."""

    done: list[DoneOrder]
    jobs: list[OrderJob]
    unaffordable: list[OrderJob]
    """Orders the budget cannot pay even one call for: reported (or, with ``until_complete``,
    left for after the reset), not attempted."""
    spare: int | None
    """For ``"auto"``: calls left beyond the one held back per job (``None``: no budget)."""


def _complete_files(record: OrderSummary, order: OrderInput, disk: Disk) -> bool:
    if not record.complete:
        return False
    if order.listed and order.fingerprint is not None:
        if record.fingerprint != order.fingerprint:
            return False
    elif not record.names:
        return False  # an empty order, and no way to tell whether it changed: look again
    return not record.names or disk.has_all(record.folder, record.names, record.sizes)


def classify_order(
    order: OrderInput,
    folder: str,
    record: OrderSummary | OrderRecord | None,
    *,
    strategy: Strategy,
    extract: bool,
    recheck: bool,
    disk: Disk,
) -> DoneOrder | OrderJob:
    """Done (the manifest has it complete, its files are on disk with their sizes, and, when
    the listing told us, it has not changed since), else a job. ``recheck``: a complete
    order is a job too (its picture list is fetched again; only new pictures are)."""
    if isinstance(record, OrderRecord):
        record = record.summary()
    if (
        not recheck
        and record is not None
        and record.folder == folder
        and _complete_files(record, order, disk)
    ):
        unpack = None
        if extract and record.zip is not None and not record.zip.extracted:
            unpack = record.zip.name
        return DoneOrder(order.order_id, folder, len(record.names), sum(record.sizes), unpack)
    return OrderJob(order.order_id, folder, strategy, order.fingerprint)


def route_jobs(
    todo: Sequence[OrderJob], strategy: Strategy, remaining: int | None
) -> tuple[list[OrderJob], list[OrderJob], int | None]:
    """``(jobs, unaffordable, spare)`` for a budget of ``remaining`` calls (``None``: unknown).

    ``"zip"`` and ``"auto"`` hold back one call per job; the jobs beyond ``remaining`` are
    unaffordable, and what is left over is ``spare``. For ``"auto"`` the spare calls pay for
    per-picture fetching (see `Allowance`); if there are none, every job goes by zip.
    ``"pictures"`` plans nothing against the budget (its cost is known only after each
    order's listing).
    """
    if strategy == "pictures" or remaining is None:
        route: Route = "zip" if strategy == "zip" else "pictures"
        return [attrs.evolve(j, route=route) for j in todo], [], None
    affordable = max(0, remaining)
    spare = affordable - len(todo)
    if spare <= 0 or strategy == "zip":
        jobs = [attrs.evolve(j, route="zip") for j in todo[:affordable]]
        return jobs, list(todo[affordable:]), max(0, spare)
    return [attrs.evolve(j, route=strategy) for j in todo], [], spare


def plan_harvest(
    orders: Sequence[OrderInput],
    manifest: Manifest,
    *,
    strategy: Strategy,
    remaining: int | None,
    extract: bool = False,
    recheck: bool = False,
    disk: Disk,
) -> HarvestPlan:
    """Decide, for every order, whether and how it is fetched (`classify_order`, then
    `route_jobs`)."""
    folders = assign_folders([o.order_id for o in orders], manifest)
    done: list[DoneOrder] = []
    todo: list[OrderJob] = []
    for order in orders:
        decision = classify_order(
            order,
            folders[order.order_id],
            manifest.orders.get(order.order_id),
            strategy=strategy,
            extract=extract,
            recheck=recheck,
            disk=disk,
        )
        (done if isinstance(decision, DoneOrder) else todo).append(decision)  # type: ignore[arg-type]
    jobs, unaffordable, spare = route_jobs(todo, strategy, remaining)
    return HarvestPlan(done, jobs, unaffordable, spare)


@attrs.frozen
class PicturesPlan:
    """What to do with the pictures of one listed order."""

    fetch: list[Picture]
    present: list[tuple[Picture, FileRecord]]
    invalid: list[tuple[int | None, str]]
    """Pictures that cannot be fetched (``picture_id``, reason)."""
    names: dict[int, str] = attrs.Factory(dict)
    """The final names of pictures to fetch that do not wait for the response's
    ``Content-Type`` (`fixed_picture_file_name`), by picture id."""

    @property
    def missing(self) -> int:
        """How many pictures must be fetched (one call each)."""
        return len(self.fetch)


def plan_pictures(
    pictures: Iterable[Picture], record: OrderRecord | None, folder: str, disk: Disk
) -> PicturesPlan:
    """Split an order's pictures into those complete on disk and those to fetch.

    A picture is complete when the manifest names its file and that file has the recorded
    size (and the listed size, when the listing gives one), or when a file named for it
    (`picture_file_name`, any extension) has exactly the listed size. A picture listed twice
    is fetched once; one without a usable id is reported.
    """
    fetch: list[Picture] = []
    present: list[tuple[Picture, FileRecord]] = []
    invalid: list[tuple[int | None, str]] = []
    names: dict[int, str] = {}
    seen: set[int] = set()
    recorded = record.pictures if record is not None and record.folder == folder else {}
    for picture in pictures:
        pid = picture.picture_id
        if pid is None or isinstance(pid, bool) or pid < 0:
            invalid.append((None, f"the listing gives a picture without a usable id ({pid!r})"))
            continue
        if pid in seen:
            continue
        seen.add(pid)
        size = picture.size
        entry = recorded.get(str(pid))
        if (
            entry is not None
            and (size is None or entry.size == size)
            and disk.has(folder, entry.name, entry.size)
        ):
            present.append((picture, entry))
            continue
        original = picture.original_file_name
        fixed = fixed_picture_file_name(pid, original)
        if size is not None:
            stem = fixed if fixed is not None else picture_file_name(pid, original)
            found = disk.find(folder, stem, size)
            if found is not None:
                present.append((picture, FileRecord(found, size)))
                continue
        if fixed is not None:
            names[pid] = fixed
        fetch.append(picture)
    return PicturesPlan(fetch, present, invalid, names)


class Allowance:
    """The auto strategy's running account of calls, beyond the one held back per order.

    Synchronous, so that every check and its booking happen with no ``await`` between them.
    An order's picture list is fetched only when the spare calls cover the expected number
    of missing pictures for it and for every listing already under way (one listing call
    plus all but one picture, the held-back call paying for the last). After the listing,
    `afford` books the order's pictures, or says no: the order then goes by zip.
    """

    def __init__(self, spare: int | None, *, assumed: int = ASSUMED_PICTURES_PER_ORDER) -> None:
        self.spare = spare
        self.assumed = max(1, assumed)
        self.listing = 0
        self.listed = 0
        self.listed_missing = 0

    def __repr__(self) -> str:
        return (
            f"Allowance(spare={self.spare}, listing={self.listing}, listed={self.listed}, "
            f"estimate={self.estimate()})"
        )

    def estimate(self) -> int:
        """Expected missing pictures per order: the mean so far, or `assumed` before any."""
        if not self.listed:
            return self.assumed
        return max(1, -(-self.listed_missing // self.listed))

    def begin_listing(self) -> bool:
        """Book one listing call if the spare calls can also pay for its pictures."""
        if self.spare is None:
            self.listing += 1
            return True
        if self.spare < self.estimate() * (self.listing + 1):
            return False
        self.spare -= 1
        self.listing += 1
        return True

    def end_listing(self, missing: int | None) -> None:
        """A listing ended: with the number of missing pictures, or ``None`` if it failed."""
        self.listing = max(0, self.listing - 1)
        if missing is not None:
            self.listed += 1
            self.listed_missing += missing

    def afford(self, missing: int) -> bool:
        """Book ``missing`` per-picture calls for a listed order (its held-back call included)."""
        if self.spare is None:
            return True
        extra = missing - 1
        if extra < 0:
            self.spare += 1  # nothing to fetch: the held-back call is free again
            return True
        if extra > self.spare:
            return False
        self.spare -= extra
        return True

    def release(self) -> None:
        """An order gave up its held-back call (it failed before using it)."""
        if self.spare is not None:
            self.spare += 1


def estimate_calls(
    jobs: Sequence[OrderJob], *, assumed: int = ASSUMED_PICTURES_PER_ORDER
) -> tuple[int, int]:
    """``(expected, minimum)`` calls for ``jobs`` beyond the listing: a zip is one call; an
    order by pictures (or auto) one for its picture list plus one per missing picture
    (``assumed`` expected, none at least)."""
    expected = minimum = 0
    for job in jobs:
        if job.route == "zip":
            expected += 1
            minimum += 1
        else:
            expected += 1 + assumed
            minimum += 1
    return expected, minimum
