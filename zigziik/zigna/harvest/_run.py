"""The harvest's executor: a bounded pipeline over a `HarvestSource`.

One feeder hands the planned orders, one at a time, to ``concurrency`` order workers (a
memory object stream without buffer); each lists its order's pictures and hands them on to
``concurrency`` picture workers (a stream buffered ``concurrency`` deep). Tasks, buffers and
open orders are in proportion to ``concurrency``, never to the harvest: a worker waits for
room before it takes more. Every request passes one `_Slot` (a limiter), so at most
``concurrency`` are in flight. Records go to the manifest's writer thread; disk checks run
in worker threads; the event loop's thread only moves bytes and makes decisions.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import anyio
import attrs
from anyio.lowlevel import checkpoint

from ... import _safedir
from ..._calls import CallCounter
from ..._extract import extract_into
from ..._filenames import has_extension
from ..._safedir import SafeFolder, UnsafePathError
from ...download import Progress, ReceivedFile, existing_complete_file
from ...errors import BudgetExhaustedError, RateLimitedError, ZigziikError
from ..models import Order, OrderPictures, Picture
from ._manifest import ManifestStore, ManifestWriter, OrderRecord
from ._plan import (
    Allowance,
    DoneOrder,
    OrderInput,
    OrderJob,
    PicturesPlan,
    classify_order,
    estimate_calls,
    in_shard,
    order_fingerprint,
    plan_pictures,
    route_jobs,
)
from ._report import (
    HarvestEstimate,
    HarvestEvent,
    HarvestFailure,
    HarvestProgress,
    HarvestReport,
    Route,
    Strategy,
)

if TYPE_CHECKING:
    from ...ratelimit import DailyBudget

__all__ = ["HarvestSource", "UnsafePathError", "order_folder"]

logger = logging.getLogger("zigziik")

ORDER_PAGE_SIZE = 50
_MAX_REASON_CHARS = 500
_CLASSIFY_CHUNK = 500
_RESET_MARGIN = 0.05  # seconds past the reset before asking again
_RESET_RECHECK = 0.5  # seconds between looks when the reset passed and nothing came back
_T = TypeVar("_T")


@runtime_checkable
class HarvestSource(Protocol):
    """What a harvest needs from a client (`ZignaClient.harvest_source` gives one)."""

    @property
    def budget(self) -> DailyBudget | None:
        """The budget the calls count against (``None``: not tracked)."""

    def orders(self, page_size: int, skip: int = 0) -> AsyncIterator[Order]:
        """Every order from the ``skip``-th on, listed ``page_size`` a call."""

    async def pictures(self, order_id: str) -> OrderPictures:
        """One order's picture list (one call)."""

    async def receive_picture(
        self,
        order_id: str,
        picture_id: int,
        original_file_name: str | None,
        size: int | None,
        folder: SafeFolder,
        progress: Progress | None,
        name: str | None = None,
    ) -> ReceivedFile:
        """One picture received towards ``folder`` (one call); finished by the caller.

        ``name``: its final name when known already (else made from the response)."""

    async def download_zip(
        self, order_id: str, folder: SafeFolder, progress: Progress | None
    ) -> Path | None:
        """The order's zip in ``folder`` (one call); ``None`` when it is empty."""


def order_folder(dest: SafeFolder, name: str, *, create: bool) -> SafeFolder | None:
    """``dest/name`` as an open folder, created if ``create`` (else ``None`` when missing).

    Never follows a link: a symbolic link there (to anywhere) refuses the order. Every file
    of the order is then made through the open folder, so a swap of ``dest/name`` for a link
    while the order runs is never written through either.
    """
    return dest.child(name, create=create)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ZigziikError):
        return _one_line(str(exc)) or type(exc).__name__
    return _one_line(f"{type(exc).__name__}: {exc}")


_FOLDER_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class _RealDisk:
    """Answers the planner from the disk, never through a link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prefix = os.path.join(root, "")

    def has(self, folder: str, name: str, size: int) -> bool:
        # A string path, not a Path: resuming a big harvest asks this once per file.
        try:
            info = os.lstat(f"{self._prefix}{folder}{os.sep}{name}")
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size == size

    def has_all(self, folder: str, names: Sequence[str], sizes: Sequence[int]) -> bool:
        # Once per file of a resume: through the folder opened once (never a link), each
        # file looked at relative to it (no path made, no path walked again).
        if not _safedir.DIR_FDS:
            return all(map(self.has, itertools.repeat(folder), names, sizes))
        try:
            fd = os.open(f"{self._prefix}{folder}", _FOLDER_FLAGS)
        except OSError:
            return False
        try:
            look = os.stat
            for name, size in zip(names, sizes, strict=True):
                info = look(name, dir_fd=fd, follow_symlinks=False)
                if info.st_size != size or not stat.S_ISREG(info.st_mode):
                    return False
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def find(self, folder: str, stem: str, size: int | None) -> str | None:
        path = existing_complete_file(self.root / folder, stem, size)
        return path.name if path is not None else None


class _FolderView(_RealDisk):
    """`_RealDisk` for the pictures of one order, from one listing of its folder: only a
    name the folder has is looked at (`lstat`), and a folder that does not exist yet (a
    fresh harvest) costs no system call per picture at all."""

    def __init__(self, root: Path, folder: str) -> None:
        super().__init__(root)
        try:
            self.names = frozenset(os.listdir(f"{self._prefix}{folder}"))
        except OSError:  # missing (or not a folder): nothing of the order is there
            self.names = frozenset()

    def has(self, folder: str, name: str, size: int) -> bool:
        return name in self.names and super().has(folder, name, size)

    def find(self, folder: str, stem: str, size: int | None) -> str | None:
        if size is None:
            return None
        if has_extension(stem):
            return stem if self.has(folder, stem, size) else None
        prefix = stem + "."
        for name in sorted(self.names):
            if name.startswith(prefix) and super().has(folder, name, size):
                return name
        return None


@attrs.define(eq=False)
class _OrderState:
    job: OrderJob
    folder: SafeFolder | None = None
    ok: bool = True
    pending: int = 0
    enqueued: bool = False
    deferred: list[Picture] = attrs.Factory(list)


class _Slot:
    """``async with``: one of ``total`` tokens (at most that many requests in flight).

    anyio's `CapacityLimiter` looks up the current task on every acquisition and release
    (under Python 3.11, a ``getpid`` system call each) and yields even when a token is free:
    a cost per picture. Here a free token is taken at once; waiters queue in order, and a
    released token is handed straight to the first of them. ``total`` may change any time
    (`Harvest.tune`); holders beyond a lowered total keep their tokens until they release.
    """

    __slots__ = ("_held", "_total", "_waiters")

    def __init__(self, total: int) -> None:
        self._total = total
        self._held = 0
        self._waiters: collections.deque[anyio.Event] = collections.deque()

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        self._hand_on()

    @property
    def held(self) -> int:
        """Tokens taken and not yet released."""
        return self._held

    async def __aenter__(self) -> None:
        if self._held < self._total:  # (never so while others wait: see _hand_on)
            self._held += 1
            return
        given = anyio.Event()
        self._waiters.append(given)
        try:
            await given.wait()
        except BaseException:
            if given.is_set():  # handed a token, but cancelled before it could use it
                self._release()
            else:
                self._waiters.remove(given)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        self._held -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        waiters = self._waiters
        while waiters and self._held < self._total:
            self._held += 1
            waiters.popleft().set()


_Item = tuple["_OrderState", Picture, str | None]


class _PictureQueue:
    """Pictures waiting for a picture worker: an order's are added at once, when fewer than
    ``low_water`` wait, and taken one at a time.

    A memory object stream woke a blocked order worker for every picture taken; here it is
    woken once per order. What waits is at most ``low_water`` plus one order's pictures per
    order worker: in proportion to ``concurrency`` (the listings are in memory anyway).
    """

    def __init__(self, low_water: int) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._low_water = max(1, low_water)
        self._room = anyio.Event()
        self._ready = anyio.Event()
        self.producers = 0

    async def put_all(self, items: list[_Item]) -> None:
        """Add ``items`` once fewer than ``low_water`` wait (a checkpoint either way)."""
        while len(self._items) >= self._low_water:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()
        await checkpoint()
        self._items.extend(items)
        if items:
            self._ready.set()

    def producer_done(self) -> None:
        """One order worker is done; when the last is, idle picture workers end."""
        self.producers -= 1
        if self.producers <= 0:
            self._ready.set()

    async def take(self) -> _Item | None:
        """The next picture, or ``None`` once every order worker is done and none is left."""
        items = self._items
        while not items:
            if self.producers <= 0:
                return None
            if self._ready.is_set():
                self._ready = anyio.Event()
            await self._ready.wait()
        item = items.popleft()
        if len(items) < self._low_water:
            self._room.set()
        return item


def _latest(first: datetime | None, second: datetime | None) -> datetime | None:
    """The later of two moments, either of which may be missing."""
    if first is None or second is None:
        return first or second
    return max(first, second)


class _Deferred(Exception):
    """A request the budget refused, under ``until_complete``: try again after the reset."""

    def __init__(self, reset_at: datetime | None) -> None:
        super().__init__(reset_at)
        self.reset_at = reset_at


@attrs.frozen
class RunOptions:
    concurrency: int
    strategy: Strategy
    extract: bool
    select: Callable[[Order], bool] | None
    shard: tuple[int, int] | None
    until_complete: bool
    recheck: bool


class Harvest:
    """One run's state; every mutation is synchronous (single event loop, no locks needed)."""

    def __init__(
        self,
        source: HarvestSource,
        dest: Path,
        options: RunOptions,
        *,
        progress: HarvestProgress | None,
        counter: CallCounter,
    ) -> None:
        self.source = source
        self.dest = dest
        self.options = options
        self.strategy: Strategy = options.strategy
        self.progress = progress
        self.counter = counter
        self.concurrency = options.concurrency
        self.slot = _Slot(options.concurrency)
        self.root = SafeFolder.open(dest)
        self.disk = _RealDisk(dest)
        self.store: ManifestStore | None = None
        self.writer: ManifestWriter | None = None
        self.allowance = Allowance(None)
        self.orders = 0
        self.written = 0
        self.skipped = 0
        self.bytes = 0
        self.waits = 0
        self.failures: list[HarvestFailure] = []
        self.deferred: list[OrderJob] = []
        self.listings: dict[str, list[Picture]] = {}
        self.exhausted: datetime | None = None
        self.exhausted_seen = False
        self.server_refused = False
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
            waits=self.waits,
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

    def record(self, op: tuple[object, ...]) -> None:
        if self.writer is not None:
            self.writer.put(op)

    def tune(self) -> None:
        """Keep the requests in flight within the calls to spare.

        The budget counts the server's ``Remaining`` minus every request still in flight, so
        with ``n`` requests in flight it may believe up to ``n - 1`` more calls spent than
        really are. Under a tight plan that would refuse its last calls; so at most ``spare``
        (at least one) requests are sent at a time.
        """
        spare = self.allowance.spare
        tokens = self.concurrency if spare is None else max(1, min(self.concurrency, spare))
        if self.slot.total != tokens:
            self.slot.total = tokens

    def bytes_callback(self, order_id: str, picture_id: int | None) -> Callable[[int], None] | None:
        if self.progress is None:
            return None

        def received(n: int) -> None:
            self.emit(HarvestEvent("bytes", order_id, picture_id, bytes=n))

        return received

    def refused(self, exc: BaseException) -> _Deferred | None:
        """With ``until_complete``, a refusal by the budget (ours or the server's) defers."""
        if not self.options.until_complete:
            return None
        if isinstance(exc, BudgetExhaustedError):
            reset_at: datetime | None = exc.reset_at
        elif isinstance(exc, RateLimitedError):
            reset_at = exc.reset_at
        else:
            return None
        self.exhausted_seen = True
        if isinstance(exc, RateLimitedError):
            self.server_refused = True
        if self.exhausted is None or (reset_at is not None and reset_at > self.exhausted):
            self.exhausted = reset_at
        return _Deferred(reset_at)

    @property
    def stopping(self) -> bool:
        """Under ``until_complete``, once the budget refused a call, nothing new starts."""
        return self.exhausted_seen

    # -- the run -------------------------------------------------------------------------

    async def open_manifest(self) -> None:
        self.store = await anyio.to_thread.run_sync(ManifestStore, self.dest)
        self.writer = ManifestWriter(self.store)

    def close_manifest(self) -> None:
        """Write what is left (synchronous: safe in ``finally`` after a cancel)."""
        writer, store = self.writer, self.store
        self.writer = self.store = None
        if writer is not None:
            writer.close()
        if store is not None:
            store.close()

    async def run(self, order_ids: list[str] | None) -> None:
        orders, done, todo = await self.plan(order_ids)
        self.orders = len(orders)
        if not orders:
            return
        for finished in done:
            self.skipped += finished.files
            self.emit(
                HarvestEvent("skip", finished.order_id, files=finished.files, bytes=finished.bytes)
            )
        unpacks = [d for d in done if d.unpack is not None]
        if unpacks:
            await self.pool(unpacks, self.unpack_done)
        pending = todo
        while True:
            await self.round(pending)
            if not self.options.until_complete or not self.deferred:
                break
            pending = [attrs.evolve(job, route=self.strategy) for job in self.deferred]
            self.deferred = []
            await self.wait_for_reset(pending)

    async def plan(
        self, order_ids: list[str] | None
    ) -> tuple[list[OrderInput], list[DoneOrder], list[OrderJob]]:
        """The orders (listed, unless given), and which are done and which are jobs.

        Each chunk of listed orders is looked at on disk (`look`, a worker thread, system
        calls with the GIL released) while the listing's next pages come in; the folders are
        claimed once every order is known (`claim`).
        """
        send, receive = anyio.create_memory_object_stream[list[OrderInput]](2)
        complete: dict[str, DoneOrder] = {}
        failed: list[Exception] = []
        orders: list[OrderInput] = []

        async def look() -> None:
            async with receive:
                try:
                    async for chunk in receive:
                        if self.store is None:
                            await self.open_manifest()
                        complete.update(await anyio.to_thread.run_sync(self.look, chunk))
                except Exception as exc:  # the manifest cannot be used: stop the listing too
                    failed.append(exc)
                    tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            async with send:
                orders = await self.list_orders(order_ids, send)
        if failed:
            raise failed[0]
        if not orders:
            return orders, [], []
        done, todo = await anyio.to_thread.run_sync(self.claim, orders, complete)
        return orders, done, todo

    def look(self, chunk: Sequence[OrderInput]) -> dict[str, DoneOrder]:
        """The orders of ``chunk`` complete on disk in the folders the manifest gives them:
        their summaries (one row per order), then a look at their files (a thread)."""
        assert self.store is not None
        if self.options.recheck:
            return {}
        summaries = self.store.summaries([o.order_id for o in chunk])
        found: dict[str, DoneOrder] = {}
        for order in chunk:
            summary = summaries.get(order.order_id)
            if summary is None:
                continue
            decision = classify_order(
                order,
                summary.folder,
                summary,
                strategy=self.strategy,
                extract=self.options.extract,
                recheck=False,
                disk=self.disk,
            )
            if isinstance(decision, DoneOrder):
                found[order.order_id] = decision
        return found

    def claim(
        self, orders: Sequence[OrderInput], complete: dict[str, DoneOrder]
    ) -> tuple[list[DoneOrder], list[OrderJob]]:
        """Folders for every order (claimed in the manifest, for other processes too), then
        done where `look` found the order complete in that folder, else a job (a thread)."""
        assert self.store is not None
        folders = self.store.claim_folders([o.order_id for o in orders])
        done: list[DoneOrder] = []
        todo: list[OrderJob] = []
        for order in orders:
            folder = folders[order.order_id]
            finished = complete.get(order.order_id)
            if finished is not None and finished.folder == folder:
                done.append(finished)
            else:
                todo.append(OrderJob(order.order_id, folder, self.strategy, order.fingerprint))
        return done, todo

    async def remaining(self) -> int | None:
        """The calls left: read from the budget's store when it can say (a store shared
        with other processes knows what they spent), else this process's figure."""
        budget = self.source.budget
        if budget is None:
            return None
        snapshot = getattr(budget, "snapshot", None)
        if snapshot is not None:
            try:
                return int((await snapshot()).remaining)
            except Exception:  # the store cannot say now: the request itself will tell
                logger.debug("the budget's snapshot failed", exc_info=True)
        return budget.remaining

    async def round(self, todo: list[OrderJob]) -> None:
        budget = self.source.budget
        remaining = await self.remaining()
        jobs, unaffordable, spare = route_jobs(todo, self.strategy, remaining)
        self.allowance = Allowance(spare)
        self.exhausted = None
        self.exhausted_seen = False
        self.server_refused = False
        self.tune()
        if unaffordable:
            if self.options.until_complete:
                self.deferred.extend(unaffordable)
            else:
                reset = f"; it resets at {budget.reset_at.isoformat()}" if budget else ""
                reason = (
                    f"not fetched: the daily budget ({remaining} calls left) cannot afford "
                    f"this order after the {len(jobs)} before it{reset}"
                )
                for job in unaffordable:
                    self.fail(job.order_id, None, reason)
        if jobs:
            await self.pipeline(jobs)

    async def wait_for_reset(self, pending: list[OrderJob]) -> None:
        """Sleep until the budget resets, reporting a countdown about once a second."""
        budget = self.source.budget
        files = sum(len(self.listings.get(job.order_id, ())) for job in pending)
        waited = False
        while True:
            # The server refused (429): its reset. Ours: only when nothing is left (the
            # refusal may have counted requests then still in flight).
            refused = self.exhausted if self.server_refused else None
            if self.server_refused and refused is None:  # a 429 that gave no reset time
                refused = datetime.now(timezone.utc) + timedelta(seconds=1)
            spent = budget is not None and await self.remaining() == 0
            self.exhausted = None
            self.server_refused = False
            if refused is None and not spent:
                break
            if not waited:
                waited = True
                self.waits += 1
            while True:
                target = _latest(refused, budget.reset_at if spent and budget else None)
                if target is None:
                    break
                left = (target - datetime.now(timezone.utc)).total_seconds() + _RESET_MARGIN
                self.emit(
                    HarvestEvent(
                        "wait",
                        reset_at=target,
                        seconds=max(0.0, left),
                        orders=len(pending),
                        files=files,
                    )
                )
                if left <= 0:
                    break
                await anyio.sleep(min(1.0, left))
                # The reset time is a guess (the next local midnight) until an answer gives
                # the server's: calls still in flight, here or in another process sharing
                # the store, may bring it, or free calls. Look again every second.
                if spent and (await self.remaining() or 0) > 0:
                    spent = False
            if budget is None or (await self.remaining() or 0) > 0:
                break
            await anyio.sleep(_RESET_RECHECK)  # reset, yet nothing left: ask again shortly
        if waited:
            self.emit(HarvestEvent("resume", orders=len(pending), files=files))

    async def pool(self, items: Sequence[_T], work: Callable[[_T], Awaitable[None]]) -> None:
        """Run ``work`` on every item with ``concurrency`` workers (never a task per item)."""
        send, receive = anyio.create_memory_object_stream[_T](0)

        async def feed() -> None:
            async with send:
                for item in items:
                    await send.send(item)

        async def worker(stream: anyio.abc.ObjectReceiveStream[_T]) -> None:
            async with stream:
                async for item in stream:
                    await work(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            for _ in range(min(self.concurrency, len(items))):
                tg.start_soon(worker, receive.clone())
            receive.close()

    async def pipeline(self, jobs: Sequence[OrderJob]) -> None:
        """Orders to ``concurrency`` order workers, their pictures to as many picture workers."""
        jobs_send, jobs_receive = anyio.create_memory_object_stream[OrderJob](0)
        queue = _PictureQueue(self.concurrency)

        async def feed() -> None:
            async with jobs_send:
                for job in jobs:
                    await jobs_send.send(job)

        async def order_worker(receive: anyio.abc.ObjectReceiveStream[OrderJob]) -> None:
            try:
                async with receive:
                    async for job in receive:
                        await self.order(job, queue)
            finally:
                queue.producer_done()

        async def picture_worker() -> None:
            while (item := await queue.take()) is not None:
                await self.picture(*item)

        workers = max(1, min(self.concurrency, len(jobs)))
        queue.producers = workers
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            for _ in range(workers):
                tg.start_soon(order_worker, jobs_receive.clone())
            for _ in range(self.concurrency):
                tg.start_soon(picture_worker)
            jobs_receive.close()

    async def list_orders(
        self,
        order_ids: list[str] | None,
        found: anyio.abc.ObjectSendStream[list[OrderInput]],
    ) -> list[OrderInput]:
        """Every order to harvest (listed, unless given), each chunk of them also sent to
        ``found`` as soon as it is known."""
        shard = self.options.shard
        if order_ids is not None:
            given = [
                OrderInput(order_id)
                for order_id in dict.fromkeys(order_ids)
                if in_shard(order_id, shard)
            ]
            for start in range(0, len(given), _CLASSIFY_CHUNK):
                await found.send(given[start : start + _CLASSIFY_CHUNK])
            return given
        select = self.options.select
        inputs: dict[str, OrderInput] = {}
        seen: set[str] = set()
        chunk: list[OrderInput] = []
        received = 0  # orders the listing gave so far: where it resumes after a wait
        while True:
            try:
                async for order in self.source.orders(ORDER_PAGE_SIZE, received):
                    received += 1
                    if not order.id:
                        self.fail(None, None, "the order listing gives an order without an id")
                        continue
                    if order.id in seen:
                        continue
                    seen.add(order.id)
                    if not in_shard(order.id, shard):
                        continue
                    if select is not None and not self.selected(select, order):
                        continue
                    listed = OrderInput(order.id, order_fingerprint(order), listed=True)
                    inputs[order.id] = listed
                    chunk.append(listed)
                    if len(chunk) >= _CLASSIFY_CHUNK:
                        await found.send(chunk)
                        chunk = []
            except Exception as exc:
                if self.refused(exc) is not None:  # until_complete: on after the reset
                    await self.wait_for_reset([])
                    continue
                self.fail(None, None, f"listing the orders failed: {_reason(exc)}")
            if chunk:
                await found.send(chunk)
            return list(inputs.values())

    def selected(self, select: Callable[[Order], bool], order: Order) -> bool:
        try:
            return bool(select(order))
        except Exception as exc:
            self.fail(order.id, None, f"select raised {_reason(exc)}; the order is skipped")
            return False

    # -- one order -----------------------------------------------------------------------

    async def order(self, job: OrderJob, queue: _PictureQueue) -> None:
        if self.stopping:
            self.deferred.append(job)
            return
        state = _OrderState(job)
        try:
            state.folder = order_folder(self.root, job.folder, create=False)
            self.record(("begin", job.order_id))  # not complete until this run makes it so
            if job.route == "zip":
                await self.zip(state)
            else:
                await self.pictures(state, queue)
        except _Deferred:
            state.ok = False
            if not state.enqueued:
                self.deferred.append(job)
        except Exception as exc:
            logger.debug("order %s failed", job.order_id, exc_info=True)
            state.ok = False
            self.fail(job.order_id, None, _reason(exc))
        except BaseException:
            state.ok = False  # cancelled: not complete
            raise
        finally:
            state.enqueued = True
            self.settle(state)

    def settle(self, state: _OrderState) -> None:
        """When the last picture of an order is done: complete, or left for later."""
        if not state.enqueued or state.pending:
            return
        if state.deferred:
            self.listings[state.job.order_id] = state.deferred
            self.deferred.append(state.job)
        elif state.ok:
            self.record(("done", state.job.order_id, state.job.fingerprint))

    async def list_pictures(self, job: OrderJob) -> list[Picture] | None:
        """The order's pictures (a call, unless kept from before a wait); ``None``: zip it."""
        known = self.listings.pop(job.order_id, None)
        if known is not None:
            return known
        auto = job.route == "auto"
        async with self.slot:
            if auto and not self.allowance.begin_listing():
                return None
            self.tune()
            try:
                listing = await self.source.pictures(job.order_id)
            except BaseException as exc:
                if auto:
                    self.allowance.end_listing(None)
                    self.allowance.release()
                    self.tune()
                deferred = self.refused(exc)
                if deferred is not None:
                    raise deferred from exc
                raise
        self.drop_gone(job, listing.pictures)
        return listing.pictures

    def drop_gone(self, job: OrderJob, pictures: list[Picture]) -> None:
        listed = [str(p.picture_id) for p in pictures]
        self.record(("drop_except", job.order_id, listed))

    async def pictures(self, state: _OrderState, queue: _PictureQueue) -> None:
        job = state.job
        auto = job.route == "auto"
        listed = await self.list_pictures(job)
        if listed is None:
            await self.zip(state)
            return
        store = self.store
        assert store is not None

        def plan() -> tuple[PicturesPlan, OrderRecord | None]:
            record = store.record(job.order_id)
            disk = _FolderView(self.dest, job.folder)
            return plan_pictures(listed, record, job.folder, disk), record

        plan_result, record = await anyio.to_thread.run_sync(plan)
        if auto:
            self.allowance.end_listing(plan_result.missing)
            affordable = self.allowance.afford(plan_result.missing)
            self.tune()
            if not affordable:
                await self.zip(state)
                return
        recorded = record.pictures if record is not None and record.folder == job.folder else {}
        for picture, file in plan_result.present:
            pid = str(picture.picture_id)
            if recorded.get(pid) != file:
                self.record(("file", job.order_id, pid, file.name, file.size))
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
        for picture_id, reason in plan_result.invalid:
            state.ok = False
            self.fail(job.order_id, picture_id, reason)
        self.emit(
            HarvestEvent(
                "order",
                job.order_id,
                route="pictures",
                files=plan_result.missing,
                bytes=sum(p.size or 0 for p in plan_result.fetch),
            )
        )
        if not plan_result.fetch:
            return
        state.folder = order_folder(self.root, job.folder, create=True)
        fetch = plan_result.fetch
        state.pending += len(fetch)
        try:
            names = plan_result.names
            await queue.put_all([(state, p, names.get(p.picture_id or 0)) for p in fetch])
        except BaseException:
            state.pending -= len(fetch)
            raise

    async def picture(self, state: _OrderState, picture: Picture, name: str | None) -> None:
        order_id, picture_id = state.job.order_id, picture.picture_id
        assert picture_id is not None  # plan_pictures never fetches a picture without an id
        assert state.folder is not None
        try:
            if self.stopping:
                state.deferred.append(picture)
                return
            try:
                async with self.slot:
                    received = await self.source.receive_picture(
                        order_id,
                        picture_id,
                        picture.original_file_name,
                        picture.size,
                        state.folder,
                        self.bytes_callback(order_id, picture_id),
                        name,
                    )
                # Off the limiter: the network is free for the next request while the disk
                # catches up (which has a bound of its own).
                name = await received.complete()
                # The download checked the size when the listing gave it.
                size = picture.size
                if size is None:
                    size = state.folder.lstat(name).st_size
            except Exception as exc:
                if self.refused(exc) is not None:
                    state.deferred.append(picture)
                    return
                state.ok = False
                logger.debug("picture %s of order %s failed", picture_id, order_id, exc_info=True)
                self.fail(order_id, picture_id, _reason(exc), files=1)
                return
            self.written += 1
            self.bytes += size
            self.record(("file", order_id, str(picture_id), name, size))
            if self.progress is not None:  # no event made when nobody listens
                path = state.folder.path / name
                self.emit(
                    HarvestEvent("file", order_id, picture_id, files=1, bytes=size, path=path)
                )
        except BaseException:
            state.ok = False  # cancelled: the order is not complete
            raise
        finally:
            state.pending -= 1
            self.settle(state)

    async def zip(self, state: _OrderState) -> None:
        job = state.job
        self.emit(HarvestEvent("order", job.order_id, route="zip", files=1))
        try:
            folder = order_folder(self.root, job.folder, create=True)
            assert folder is not None
            try:
                async with self.slot:
                    path = await self.source.download_zip(
                        job.order_id, folder, self.bytes_callback(job.order_id, None)
                    )
            except Exception as exc:
                deferred = self.refused(exc)
                if deferred is not None:
                    raise deferred from exc
                raise
            size = folder.lstat(path.name).st_size if path is not None else 0
        except _Deferred:
            raise
        except Exception as exc:
            logger.debug("the zip of order %s failed", job.order_id, exc_info=True)
            state.ok = False
            self.fail(job.order_id, None, _reason(exc), files=1)
            return
        if path is None:
            self.emit(HarvestEvent("empty", job.order_id, route="zip", files=1))
        else:
            self.written += 1
            self.bytes += size
            self.record(("zip", job.order_id, path.name, size))
            self.emit(HarvestEvent("file", job.order_id, files=1, bytes=size, path=path))
        if path is not None and self.options.extract:
            await self.unpack(job.order_id, folder, path.name)

    async def unpack_done(self, done: DoneOrder) -> None:
        assert done.unpack is not None
        try:
            folder = order_folder(self.root, done.folder, create=False)
        except UnsafePathError as exc:
            self.fail(done.order_id, None, _reason(exc))
            return
        if folder is not None:
            await self.unpack(done.order_id, folder, done.unpack)

    async def unpack(self, order_id: str, folder: SafeFolder, zip_name: str) -> None:
        try:
            await extract_into(folder, zip_name)
        except Exception as exc:
            self.fail(order_id, None, f"unpacking {zip_name} failed: {_reason(exc)}")
            return
        self.record(("extracted", order_id))

    # -- estimate (dry run) --------------------------------------------------------------

    async def estimate(self, order_ids: list[str] | None, assumed: int) -> HarvestEstimate:
        before = self.counter.count
        orders, done, todo = await self.plan(order_ids)
        listing_calls = self.counter.count - before
        budget = self.source.budget
        remaining = await self.remaining()
        limit = budget.limit if budget is not None else None
        jobs, later, _ = route_jobs(todo, self.strategy, remaining)
        routes: dict[str, int] = {"pictures": 0, "zip": 0, "auto": 0, "later": len(later)}
        for job in jobs:
            routes[job.route] += 1
        # What is left for later days goes the cheapest way a day's budget allows: by zip
        # (auto and zip) or per picture.
        later_route: Route = "pictures" if self.strategy == "pictures" else "zip"
        calls, calls_min = estimate_calls(
            [*jobs, *(attrs.evolve(j, route=later_route) for j in later)], assumed=assumed
        )
        days: int | None = None
        if limit:
            today = remaining if remaining is not None else limit
            days = 1 if calls <= today else 1 + math.ceil((calls - today) / limit)
        elif calls == 0:
            days = 0
        return HarvestEstimate(
            orders=len(orders),
            done=len(done),
            routes={k: v for k, v in routes.items() if v},
            calls=calls,
            calls_min=calls_min,
            listing_calls=listing_calls,
            limit=limit,
            remaining=remaining,
            days=days if calls else 0,
            assumed_pictures=assumed,
            failures=list(self.failures),
        )
