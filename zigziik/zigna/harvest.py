"""The harvest: every picture of every order to disk, within the daily budget, resumable.

Three layers, as everywhere in zigziik:

* Values: `HarvestReport`, `HarvestFailure`, `HarvestEvent` and the `Manifest` (a JSON file,
  ``.zigziik-manifest.json`` in ``dest_dir``, that records what is complete).
* Pure planning, tested without HTTP: `assign_folders` (one safe, distinct folder per
  order), `plan_harvest` (which orders are already complete, which go per picture, which by
  zip, which the budget cannot afford), `plan_pictures` (which pictures of a listed order are
  missing) and `Allowance` (the auto strategy's running account of calls).
* The async executor, `harvest`: an anyio task group whose requests all pass one
  `anyio.CapacityLimiter`, so at most ``concurrency`` requests are in flight across all orders.

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

With ``"zip"`` and ``"auto"`` under a tight budget, fewer requests are sent at once (at most
as many as the calls to spare): the budget's bookkeeping is pessimistic while requests are
in flight, and would otherwise refuse the plan's last calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeGuard

import anyio
import attrs

from .._calls import CallCounter, count_calls
from .._checks import check_int
from .._extract import safe_extract
from .._filenames import picture_file_name, sanitize_component, temporary_name
from ..download import ensure_folder, existing_complete_file, is_complete_file
from ..errors import ZigziikError
from .models import Order, Picture

if TYPE_CHECKING:
    from .client import ZignaClient

__all__ = [
    "ASSUMED_PICTURES_PER_ORDER",
    "MANIFEST_NAME",
    "Allowance",
    "Disk",
    "DoneOrder",
    "FileRecord",
    "HarvestEvent",
    "HarvestFailure",
    "HarvestPlan",
    "HarvestProgress",
    "HarvestReport",
    "Manifest",
    "ManifestError",
    "OrderInput",
    "OrderJob",
    "OrderRecord",
    "PicturesPlan",
    "Strategy",
    "ZipRecord",
    "assign_folders",
    "harvest",
    "load_manifest",
    "order_fingerprint",
    "plan_harvest",
    "plan_pictures",
    "save_manifest",
]

logger = logging.getLogger("zigziik")

Strategy = Literal["auto", "pictures", "zip"]
Route = Literal["pictures", "zip"]
STRATEGIES: tuple[Strategy, ...] = ("auto", "pictures", "zip")

MANIFEST_NAME = ".zigziik-manifest.json"
"""The manifest's file name in ``dest_dir`` (hidden; no order folder can ever have it)."""

ASSUMED_PICTURES_PER_ORDER = 8
"""The auto strategy's guess of an order's missing pictures until it has listed one."""

_MANIFEST_FORMAT = "zigziik-harvest-manifest"
_MANIFEST_VERSION = 1
_SAVE_INTERVAL = 1.0  # seconds between manifest writes while a harvest runs
_ORDER_PAGE_SIZE = 50
_MAX_REASON_CHARS = 500


# --------------------------------------------------------------------------------------------
# Report and progress


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

    ``orders``: orders it covered (listed or given); ``written``: files it wrote (a zip is
    one file); ``skipped``: files already complete on disk; ``bytes``: bytes it wrote;
    ``failures``: what it could not fetch; ``calls``: the API calls it spent, retries
    included (exactly those of this harvest, even on a client shared with other tasks).
    """

    orders: int
    written: int
    skipped: int
    bytes: int
    failures: list[HarvestFailure]
    calls: int

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures

    @property
    def failed(self) -> int:
        """The number of failures."""
        return len(self.failures)


EventKind = Literal["order", "bytes", "file", "skip", "empty", "fail"]


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
    """

    kind: EventKind
    order_id: str | None = None
    picture_id: int | None = None
    route: Route | None = None
    files: int = 0
    bytes: int = 0
    path: Path | None = None
    reason: str | None = None


class HarvestProgress(Protocol):
    """A progress callback: called (synchronously, from the event loop) with each event.

    It should return quickly; an exception it raises is logged and otherwise ignored.
    """

    def __call__(self, event: HarvestEvent, /) -> None: ...


# --------------------------------------------------------------------------------------------
# The manifest


class ManifestError(ValueError):
    """A manifest file is not one this version can read."""


@attrs.define
class FileRecord:
    """A complete picture file: its name in the order's folder and its size."""

    name: str
    size: int


@attrs.define
class ZipRecord:
    """A complete zip of an order, and whether it was unpacked."""

    name: str
    size: int
    extracted: bool = False


@attrs.define
class OrderRecord:
    """What is known to be complete of one order."""

    folder: str
    complete: bool = False
    """Every picture of the order (or its zip) is on disk."""
    fingerprint: str | None = None
    """`order_fingerprint` of the order as listed when it was completed."""
    pictures: dict[str, FileRecord] = attrs.Factory(dict)
    zip: ZipRecord | None = None

    def files(self) -> list[FileRecord]:
        """Every file recorded for the order (the zip last)."""
        files = list(self.pictures.values())
        if self.zip is not None:
            files.append(FileRecord(self.zip.name, self.zip.size))
        return files


@attrs.define
class Manifest:
    """The record of what a harvest into one folder has completed, order by order."""

    orders: dict[str, OrderRecord] = attrs.Factory(dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (see `from_json`)."""
        orders: dict[str, Any] = {}
        for order_id, record in self.orders.items():
            entry: dict[str, Any] = {"folder": record.folder, "complete": record.complete}
            if record.fingerprint is not None:
                entry["fingerprint"] = record.fingerprint
            if record.pictures:
                entry["pictures"] = {
                    pid: {"name": f.name, "size": f.size} for pid, f in record.pictures.items()
                }
            if record.zip is not None:
                entry["zip"] = {
                    "name": record.zip.name,
                    "size": record.zip.size,
                    "extracted": record.zip.extracted,
                }
            orders[order_id] = entry
        return {"format": _MANIFEST_FORMAT, "version": _MANIFEST_VERSION, "orders": orders}

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """Read `to_json`'s form back.

        Raises `ManifestError` when ``data`` is not a manifest of this version at all; single
        entries that are malformed or unsafe (a folder or file name that is not one safe
        path component) are dropped, so that the worst a damaged or tampered manifest can do
        is make the harvest check the disk again.
        """
        if not isinstance(data, dict):
            raise ManifestError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != _MANIFEST_FORMAT:
            raise ManifestError("not a zigziik harvest manifest")
        if data.get("version") != _MANIFEST_VERSION:
            raise ManifestError(f"unsupported manifest version {data.get('version')!r}")
        orders = data.get("orders")
        if not isinstance(orders, dict):
            raise ManifestError("'orders' is not an object")
        manifest = cls()
        for order_id, entry in orders.items():
            record = _order_record(entry)
            if record is not None and order_id:
                manifest.orders[order_id] = record
        return manifest


def _is_safe_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value) and sanitize_component(value) == value


def _is_size(value: object) -> TypeGuard[int]:
    return type(value) is int and value >= 0


def _file_record(entry: object) -> FileRecord | None:
    if not isinstance(entry, dict):
        return None
    name, size = entry.get("name"), entry.get("size")
    if not _is_safe_name(name) or not _is_size(size):
        return None
    return FileRecord(name, size)


def _order_record(entry: object) -> OrderRecord | None:
    if not isinstance(entry, dict):
        return None
    folder = entry.get("folder")
    if not _is_safe_name(folder):
        return None
    fingerprint = entry.get("fingerprint")
    record = OrderRecord(
        folder=folder,
        complete=entry.get("complete") is True,
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
    )
    pictures = entry.get("pictures", {})
    intact = isinstance(pictures, dict)
    for pid, value in pictures.items() if isinstance(pictures, dict) else ():
        file = _file_record(value)
        if file is None or not isinstance(pid, str):
            intact = False
            continue
        record.pictures[pid] = file
    zip_entry = entry.get("zip")
    if zip_entry is not None:
        file = _file_record(zip_entry)
        if file is None:
            intact = False
        else:
            extracted = isinstance(zip_entry, dict) and zip_entry.get("extracted") is True
            record.zip = ZipRecord(file.name, file.size, extracted)
    if not intact:
        record.complete = False
    return record


def load_manifest(dest_dir: Path) -> Manifest:
    """The manifest in ``dest_dir``; a fresh one (with a logged warning) if it is unreadable."""
    path = dest_dir / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest()
    except OSError as exc:
        logger.warning("cannot read the harvest manifest %s (%s); starting afresh", path, exc)
        return Manifest()
    try:
        return Manifest.from_json(json.loads(raw))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and ManifestError included
        logger.warning(
            "ignoring the harvest manifest %s: %s; starting afresh (files already on disk "
            "are still recognised)",
            path,
            _one_line(str(exc)) or type(exc).__name__,
        )
        return Manifest()


def save_manifest(dest_dir: Path, manifest: Manifest) -> None:
    """Write the manifest atomically: a temporary file in ``dest_dir``, then `os.replace`."""
    data = json.dumps(manifest.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
    final = dest_dir / MANIFEST_NAME
    temporary = dest_dir / temporary_name(MANIFEST_NAME)
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------------------------
# Pure planning


class Disk(Protocol):
    """What the planner may ask about the destination (the executor answers from the disk)."""

    def has(self, folder: str, name: str, size: int) -> bool:
        """Whether ``folder/name`` is a file of exactly ``size`` bytes."""

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


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def assign_folders(order_ids: Sequence[str], manifest: Manifest) -> dict[str, str]:
    """One folder name per order: ``sanitize_component(order_id)``, kept distinct.

    A folder the manifest already gives an order is kept. Two orders whose ids sanitise to
    the same name (compared ignoring case, as some file systems do) are told apart by a
    short hash of the id; folders the manifest holds for orders outside this run stay theirs.
    """
    taken: dict[str, str] = {}
    for order_id, record in manifest.orders.items():
        taken.setdefault(_fold(record.folder), order_id)
    folders: dict[str, str] = {}
    for order_id in order_ids:
        known = manifest.orders.get(order_id)
        if known is not None and taken.get(_fold(known.folder)) == order_id:
            folders[order_id] = known.folder
    for order_id in order_ids:
        if order_id in folders:
            continue
        candidate = sanitize_component(order_id)
        digest = hashlib.sha256(order_id.encode("utf-8", "surrogatepass")).hexdigest()
        attempt = 0
        while taken.get(_fold(candidate), order_id) != order_id:
            attempt += 1
            suffix = digest[:10] if attempt == 1 else f"{digest[:10]}-{attempt}"
            candidate = sanitize_component(
                f"{sanitize_component(order_id, max_bytes=150)}-{suffix}"
            )
        taken[_fold(candidate)] = order_id
        folders[order_id] = candidate
    return folders


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
    """Orders the budget cannot pay even one call for: reported, not attempted."""
    spare: int | None
    """For ``"auto"``: calls left beyond the one held back per job (``None``: no budget)."""


def _complete_files(record: OrderRecord | None, order: OrderInput, disk: Disk) -> bool:
    if record is None or not record.complete:
        return False
    files = record.files()
    if order.listed and order.fingerprint is not None:
        if record.fingerprint != order.fingerprint:
            return False
    elif not files:
        return False  # an empty order, and no way to tell whether it changed: look again
    return all(disk.has(record.folder, f.name, f.size) for f in files)


def plan_harvest(
    orders: Sequence[OrderInput],
    manifest: Manifest,
    *,
    strategy: Strategy,
    remaining: int | None,
    extract: bool = False,
    disk: Disk,
) -> HarvestPlan:
    """Decide, for every order, whether and how it is fetched.

    An order is done when the manifest has it complete, its files are on disk with their
    sizes, and (when the listing told us) the order has not changed since. The others are
    jobs. With a budget of ``remaining`` calls (``None``: unknown), ``"zip"`` and ``"auto"``
    hold back one call per job; the jobs beyond ``remaining`` are unaffordable, and what is
    left over is ``spare``. For ``"auto"`` the spare calls pay for per-picture fetching (see
    `Allowance`); if there are none, every job goes by zip. ``"pictures"`` plans nothing
    against the budget (its cost is known only after each order's listing).
    """
    folders = assign_folders([o.order_id for o in orders], manifest)
    done: list[DoneOrder] = []
    todo: list[OrderJob] = []
    for order in orders:
        folder = folders[order.order_id]
        record = manifest.orders.get(order.order_id)
        if record is not None and record.folder == folder and _complete_files(record, order, disk):
            files = record.files()
            unpack = None
            if extract and record.zip is not None and not record.zip.extracted:
                unpack = record.zip.name
            done.append(
                DoneOrder(order.order_id, folder, len(files), sum(f.size for f in files), unpack)
            )
            continue
        todo.append(OrderJob(order.order_id, folder, strategy, order.fingerprint))
    if strategy == "pictures" or remaining is None:
        route: Route = "zip" if strategy == "zip" else "pictures"
        return HarvestPlan(done, [attrs.evolve(j, route=route) for j in todo], [], None)
    affordable = max(0, remaining)
    spare = affordable - len(todo)
    if spare <= 0 or strategy == "zip":
        jobs = [attrs.evolve(j, route="zip") for j in todo[:affordable]]
        return HarvestPlan(done, jobs, todo[affordable:], max(0, spare))
    return HarvestPlan(done, todo, [], spare)


@attrs.frozen
class PicturesPlan:
    """What to do with the pictures of one listed order."""

    fetch: list[Picture]
    present: list[tuple[Picture, FileRecord]]
    invalid: list[tuple[int | None, str]]
    """Pictures that cannot be fetched (``picture_id``, reason)."""

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
        if size is not None:
            found = disk.find(folder, picture_file_name(pid, picture.original_file_name), size)
            if found is not None:
                present.append((picture, FileRecord(found, size)))
                continue
        fetch.append(picture)
    return PicturesPlan(fetch, present, invalid)


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


# --------------------------------------------------------------------------------------------
# The executor


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ZigziikError):
        return _one_line(str(exc)) or type(exc).__name__
    return _one_line(f"{type(exc).__name__}: {exc}")


class _RealDisk:
    def __init__(self, root: Path) -> None:
        self.root = root

    def has(self, folder: str, name: str, size: int) -> bool:
        return is_complete_file(self.root / folder / name, size)

    def find(self, folder: str, stem: str, size: int | None) -> str | None:
        path = existing_complete_file(self.root / folder, stem, size)
        return path.name if path is not None else None


@attrs.define
class _OrderState:
    job: OrderJob
    record: OrderRecord
    ok: bool = True


class _Harvest:
    """One run's state; every mutation is synchronous (single event loop, no locks needed)."""

    def __init__(
        self,
        client: ZignaClient,
        dest: Path,
        *,
        concurrency: int,
        strategy: Strategy,
        extract: bool,
        progress: HarvestProgress | None,
        counter: CallCounter,
    ) -> None:
        self.client = client
        self.dest = dest
        self.strategy: Strategy = strategy
        self.extract = extract
        self.progress = progress
        self.counter = counter
        self.concurrency = concurrency
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.disk = _RealDisk(dest)
        self.manifest = load_manifest(dest)
        self.allowance = Allowance(None)
        self.orders = 0
        self.written = 0
        self.skipped = 0
        self.bytes = 0
        self.failures: list[HarvestFailure] = []
        self._dirty = False
        self._saved_at = time.monotonic()
        self._save_warned = False
        self._progress_warned = False

    # -- bookkeeping ---------------------------------------------------------------------

    def report(self) -> HarvestReport:
        return HarvestReport(
            orders=self.orders,
            written=self.written,
            skipped=self.skipped,
            bytes=self.bytes,
            failures=list(self.failures),
            calls=self.counter.count,
        )

    def emit(self, event: HarvestEvent) -> None:
        if self.progress is None:
            return
        try:
            self.progress(event)
        except Exception:
            if not self._progress_warned:
                self._progress_warned = True
                logger.warning("the harvest's progress callback raised; ignored", exc_info=True)

    def fail(
        self, order_id: str | None, picture_id: int | None, reason: str, *, files: int = 0
    ) -> None:
        self.failures.append(HarvestFailure(order_id, picture_id, reason))
        self.emit(HarvestEvent("fail", order_id, picture_id, files=files, reason=reason))

    def record_for(self, job: OrderJob) -> OrderRecord:
        record = self.manifest.orders.get(job.order_id)
        if record is None or record.folder != job.folder:
            record = OrderRecord(job.folder)
            self.manifest.orders[job.order_id] = record
        return record

    def tune(self) -> None:
        """Keep the requests in flight within the calls to spare.

        The budget counts the server's ``Remaining`` minus every request still in flight, so
        with ``n`` requests in flight it may believe up to ``n - 1`` more calls spent than
        really are. Under a tight plan that would refuse its last calls; so at most ``spare``
        (at least one) requests are sent at a time.
        """
        spare = self.allowance.spare
        if spare is None:
            return
        tokens = max(1, min(self.concurrency, spare))
        if self.limiter.total_tokens != tokens:
            self.limiter.total_tokens = tokens

    def changed(self) -> None:
        self._dirty = True
        if time.monotonic() - self._saved_at >= _SAVE_INTERVAL:
            self.save()

    def save(self) -> None:
        """Write the manifest if it changed (synchronous: safe in ``finally`` after a cancel)."""
        if not self._dirty:
            return
        try:
            save_manifest(self.dest, self.manifest)
        except OSError as exc:
            if not self._save_warned:
                self._save_warned = True
                logger.warning("cannot write the harvest manifest in %s: %s", self.dest, exc)
            return
        finally:
            self._saved_at = time.monotonic()
        self._dirty = False

    def bytes_callback(self, order_id: str, picture_id: int | None) -> Callable[[int], None] | None:
        if self.progress is None:
            return None

        def received(n: int) -> None:
            self.emit(HarvestEvent("bytes", order_id, picture_id, bytes=n))

        return received

    # -- the run -------------------------------------------------------------------------

    async def run(self, order_ids: list[str] | None) -> None:
        orders = await self.list_orders(order_ids)
        self.orders = len(orders)
        budget = self.client.budget
        remaining = budget.remaining if budget is not None else None
        plan = plan_harvest(
            orders,
            self.manifest,
            strategy=self.strategy,
            remaining=remaining,
            extract=self.extract,
            disk=self.disk,
        )
        self.allowance = Allowance(plan.spare)
        self.tune()
        for done in plan.done:
            self.skipped += done.files
            self.emit(HarvestEvent("skip", done.order_id, files=done.files, bytes=done.bytes))
        if plan.unaffordable:
            reset = f"; it resets at {budget.reset_at.isoformat()}" if budget is not None else ""
            reason = (
                f"not fetched: the daily budget ({remaining} calls left) cannot afford this "
                f"order after the {len(plan.jobs)} before it{reset}"
            )
            for job in plan.unaffordable:
                self.fail(job.order_id, None, reason)
        async with anyio.create_task_group() as tg:
            for job in plan.jobs:
                tg.start_soon(self.order, job)
            for done in plan.done:
                if done.unpack is not None:
                    tg.start_soon(self.unpack_done, done)

    async def list_orders(self, order_ids: list[str] | None) -> list[OrderInput]:
        if order_ids is not None:
            return [OrderInput(order_id) for order_id in dict.fromkeys(order_ids)]
        inputs: dict[str, OrderInput] = {}
        try:
            async for order in self.client.orders.list(take=_ORDER_PAGE_SIZE):
                if not order.id:
                    self.fail(None, None, "the order listing gives an order without an id")
                    continue
                if order.id not in inputs:
                    inputs[order.id] = OrderInput(order.id, order_fingerprint(order), listed=True)
        except Exception as exc:
            self.fail(None, None, f"listing the orders failed: {_reason(exc)}")
        return list(inputs.values())

    async def order(self, job: OrderJob) -> None:
        state = _OrderState(job, self.record_for(job))
        state.record.complete = False  # until this run has made it so again
        try:
            if job.route == "zip":
                await self.zip(state)
            else:
                await self.pictures(state)
        except Exception as exc:
            logger.debug("order %s failed", job.order_id, exc_info=True)
            self.fail(job.order_id, None, _reason(exc))
        finally:
            self.changed()

    async def pictures(self, state: _OrderState) -> None:
        job = state.job
        auto = job.route == "auto"
        async with self.limiter:
            if auto and not self.allowance.begin_listing():
                listing = None
            else:
                self.tune()
                try:
                    listing = await self.client.pictures.list(job.order_id)
                except BaseException:
                    if auto:
                        self.allowance.end_listing(None)
                        self.allowance.release()
                        self.tune()
                    raise
        if listing is None:
            await self.zip(state)
            return
        plan = plan_pictures(listing.pictures, state.record, job.folder, self.disk)
        if auto:
            self.allowance.end_listing(plan.missing)
            affordable = self.allowance.afford(plan.missing)
            self.tune()
            if not affordable:
                await self.zip(state)
                return
        record = state.record
        listed = {str(p.picture_id) for p in listing.pictures}
        for gone in [pid for pid in record.pictures if pid not in listed]:
            del record.pictures[gone]  # no longer in the order (its file is left alone)
        for picture, file in plan.present:
            record.pictures[str(picture.picture_id)] = file
            self.skipped += 1
            self.emit(
                HarvestEvent(
                    "skip",
                    job.order_id,
                    picture.picture_id,
                    files=1,
                    bytes=file.size,
                    path=self.dest / job.folder / file.name,
                )
            )
        for picture_id, reason in plan.invalid:
            state.ok = False
            self.fail(job.order_id, picture_id, reason)
        self.emit(
            HarvestEvent(
                "order",
                job.order_id,
                route="pictures",
                files=plan.missing,
                bytes=sum(p.size or 0 for p in plan.fetch),
            )
        )
        if plan.fetch:
            folder = ensure_folder(self.dest / job.folder)
            async with anyio.create_task_group() as tg:
                for picture in plan.fetch:
                    tg.start_soon(self.picture, state, folder, picture)
        if state.ok:
            record.complete = True
            record.fingerprint = job.fingerprint

    async def picture(self, state: _OrderState, folder: Path, picture: Picture) -> None:
        order_id, picture_id = state.job.order_id, picture.picture_id
        assert picture_id is not None  # plan_pictures never fetches a picture without an id
        try:
            async with self.limiter:
                received = await self.client.pictures.receive_into(
                    order_id,
                    picture_id,
                    picture.original_file_name,
                    picture.size,
                    folder,
                    self.bytes_callback(order_id, picture_id),
                )
            # Off the limiter: the network is free for the next request while the disk
            # catches up (which has a bound of its own).
            path = await received.finish()
            # The download checked the size when the listing gave it.
            size = picture.size if picture.size is not None else path.stat().st_size
        except Exception as exc:
            state.ok = False
            logger.debug("picture %s of order %s failed", picture_id, order_id, exc_info=True)
            self.fail(order_id, picture_id, _reason(exc), files=1)
            return
        self.written += 1
        self.bytes += size
        state.record.pictures[str(picture_id)] = FileRecord(path.name, size)
        self.emit(HarvestEvent("file", order_id, picture_id, files=1, bytes=size, path=path))
        self.changed()

    async def zip(self, state: _OrderState) -> None:
        job, record = state.job, state.record
        self.emit(HarvestEvent("order", job.order_id, route="zip", files=1))
        folder = self.dest / job.folder
        try:
            async with self.limiter:
                path = await self.client.pictures.download_zip(
                    job.order_id, folder, progress=self.bytes_callback(job.order_id, None)
                )
            size = path.stat().st_size if path is not None else 0
        except Exception as exc:
            logger.debug("the zip of order %s failed", job.order_id, exc_info=True)
            self.fail(job.order_id, None, _reason(exc), files=1)
            return
        if path is None:
            self.emit(HarvestEvent("empty", job.order_id, route="zip", files=1))
        else:
            self.written += 1
            self.bytes += size
            record.zip = ZipRecord(path.name, size)
            self.emit(HarvestEvent("file", job.order_id, files=1, bytes=size, path=path))
        record.complete = True
        record.fingerprint = job.fingerprint
        self.changed()
        if path is not None and self.extract:
            await self.unpack(job.order_id, folder, record)

    async def unpack_done(self, done: DoneOrder) -> None:
        record = self.manifest.orders[done.order_id]
        await self.unpack(done.order_id, self.dest / done.folder, record)

    async def unpack(self, order_id: str, folder: Path, record: OrderRecord) -> None:
        zip_record = record.zip
        if zip_record is None:  # pragma: no cover - callers check
            return
        try:
            await safe_extract(folder / zip_record.name, folder)
        except Exception as exc:
            self.fail(order_id, None, f"unpacking {zip_record.name} failed: {_reason(exc)}")
            return
        zip_record.extracted = True
        self.changed()


def _check_args(
    order_ids: Iterable[str | int] | None, concurrency: int, strategy: str
) -> list[str] | None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    check_int("concurrency", concurrency, minimum=1)
    if order_ids is None:
        return None
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
    return ids


async def harvest(
    client: ZignaClient,
    dest_dir: str | os.PathLike[str],
    *,
    order_ids: Iterable[str | int] | None = None,
    concurrency: int = 8,
    strategy: Strategy = "auto",
    extract: bool = False,
    progress: HarvestProgress | None = None,
) -> HarvestReport:
    """Download every picture of every order (or of ``order_ids``) into ``dest_dir``.

    Pictures go to ``dest_dir/<order>/`` (the order id made safe), zips to
    ``dest_dir/<order>/<order>.zip`` (unpacked there too when ``extract``), the manifest
    to ``dest_dir/.zigziik-manifest.json``. At most ``concurrency`` requests are in flight.
    See the module's documentation for what each ``strategy`` costs in calls.

    Failures (an order, a picture, an exhausted budget) never abort the rest: they are listed
    in the report. A second run fetches only what is missing; an interrupted one (crash,
    Ctrl-C, cancellation) leaves no partial file and resumes cleanly. ``progress`` receives
    a `HarvestEvent` for every step.
    """
    ids = _check_args(order_ids, concurrency, strategy)
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a callable taking a HarvestEvent")
    dest = ensure_folder(dest_dir)
    with count_calls() as counter:
        run = _Harvest(
            client,
            dest,
            concurrency=concurrency,
            strategy=strategy,
            extract=bool(extract),
            progress=progress,
            counter=counter,
        )
        try:
            await run.run(ids)
        finally:
            run.save()
        return run.report()
