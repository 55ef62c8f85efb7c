"""Walking the unit hierarchy: breadth-first, concurrent, each unit once.

The walk goes a level at a time. A level's ``/units/{id}/children`` calls run in batches (the
whole level, or slices of ``32 * concurrency`` units of a very wide one) inside an anyio task
group, at most ``concurrency`` at once (one `anyio.CapacityLimiter` for the walk). The task
group of a batch is opened and closed within one ``__anext__`` call: the batch completes, its
units are buffered, and the following calls hand them out one by one, so no task group is
ever open between two steps of the consumer's loop (PEP 789), and cancelling the consumer (a
cancel scope, a timeout) cancels the pending fetches with it. The calls of a level overlap,
so the walk takes about ``sum(ceil(width / concurrency))`` round trips over the levels, not
one per unit; the root's own ``GET`` travels together with its children call.

`walk` returns a `UnitWalk`, a plain async iterator rather than an async generator: nothing
is left open between two nodes, so leaving an ``async for`` early (``break``) needs no
``contextlib.aclosing`` under trio or asyncio and leaves no task or warning behind. Its
``aclose()`` is kept (harmless: it only ends the walk) for code that calls it or uses
``aclosing``.

Exactly once: every id seen is remembered, and a unit seen before is neither handed out nor walked
again. That cuts cycles in bad data, and copes with a children endpoint that also returns
deeper descendants: a unit whose ``parent`` is another unit of the same answer is placed under
that unit, at its real depth, and handed out with its level.

Costs: one call per unit walked (its children), plus the root's ``GET`` or the listing of
the top-level units.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import anyio
import attrs

from .._checks import check_int
from ..pagination import AsyncPaginator
from .models import Unit

__all__ = ["UnitNode", "UnitWalk"]

T = TypeVar("T")


@attrs.frozen
class UnitNode:
    """One unit of a walk: its depth below the start (0 for the root) and its parent's id.

    ``parent_id`` is the id of the unit through which the walk reached it; for a root it is
    the root's own ``parent.id`` (``None`` for a top-level unit).
    """

    unit: Unit
    depth: int
    parent_id: int | None


class UnitSource(Protocol):
    """What the walk needs from ``ziik.units``."""

    async def get(self, unit_id: int) -> Unit: ...

    async def children(self, unit_id: int) -> list[Unit]: ...

    def list(self, *, user: bool = False) -> AsyncPaginator[Unit]: ...


def walk(
    units: UnitSource,
    root_id: int | None = None,
    *,
    concurrency: int = 8,
    max_depth: int | None = None,
) -> UnitWalk:
    """Walk the hierarchy below ``root_id`` (or below every unit whose ``parent`` is null).

    Returns a `UnitWalk` (``async for node in walk(...)``) giving the root(s) first at depth
    0, then each level. ``max_depth=0`` gives the root(s) only; ``max_depth=n`` stops after
    depth ``n``. A children call that still fails after the transport's retries ends the walk
    with that error. Arguments are checked now (a wrong type raises `TypeError`, a bad value
    `ValueError`, naming the argument); the requests start with the first ``__anext__``.
    """
    if root_id is not None:
        check_int("root_id", root_id, minimum=0)
    check_int("concurrency", concurrency, minimum=1)
    if max_depth is not None:
        check_int("max_depth", max_depth, minimum=0)
    return UnitWalk(units, root_id, concurrency=concurrency, max_depth=max_depth)


async def _gather(
    limiter: anyio.CapacityLimiter, jobs: Sequence[Callable[[], Awaitable[T]]]
) -> list[T]:
    """Run ``jobs`` concurrently (``limiter`` bounds them); results in the jobs' order.

    The first failure cancels the others and is raised as it is (not in an exception group).
    """
    results: list[T | None] = [None] * len(jobs)
    errors: list[Exception] = []

    async with anyio.create_task_group() as group:

        async def run(index: int, job: Callable[[], Awaitable[T]]) -> None:
            async with limiter:
                try:
                    results[index] = await job()
                except Exception as exc:
                    errors.append(exc)
                    group.cancel_scope.cancel()

        for index, job in enumerate(jobs):
            group.start_soon(run, index, job)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def _children_job(units: UnitSource, unit_id: int) -> Callable[[], Awaitable[list[Unit]]]:
    return lambda: units.children(unit_id)


class _Placer:
    """Turns children answers into nodes: dedupes, places descendants, defers deeper levels."""

    def __init__(self, max_depth: int | None) -> None:
        self.seen: set[int] = set()
        self.deferred: dict[int, list[UnitNode]] = {}
        self._max_depth = max_depth

    def place(self, parent_id: int, kids: list[Unit], depth: int) -> list[UnitNode]:
        """The new nodes at ``depth`` from ``children(parent_id)``; deeper ones are deferred."""
        relative = _relative_depths(parent_id, kids)
        nodes: list[UnitNode] = []
        for kid in kids:
            if kid.id is None:
                nodes.append(UnitNode(kid, depth, parent_id))  # cannot be deduped or walked
                continue
            if kid.id in self.seen:
                continue
            level, real_parent = relative.get(kid.id, (1, parent_id))
            node_depth = depth - 1 + level
            if self._max_depth is not None and node_depth > self._max_depth:
                continue
            self.seen.add(kid.id)
            node = UnitNode(kid, node_depth, real_parent)
            if node_depth == depth:
                nodes.append(node)
            else:
                self.deferred.setdefault(node_depth, []).append(node)
        return nodes


def _relative_depths(parent_id: int, kids: list[Unit]) -> dict[int, tuple[int, int]]:
    """For each kid id: (1 for a direct child, 2 for a grandchild, ...; its parent's id).

    A kid counts as a deeper descendant only when its ``parent`` is another unit of the same
    answer; a parent chain that loops within the answer is treated as direct children.
    """
    by_id = {kid.id: kid for kid in kids if kid.id is not None}

    def declared(kid_id: int) -> int | None:
        ref = by_id[kid_id].parent
        up = ref.id if ref is not None else None
        if up is None or up in (parent_id, kid_id) or up not in by_id:
            return None
        return up

    found: dict[int, tuple[int, int]] = {}
    for kid_id in by_id:
        chain: list[int] = []
        current: int | None = kid_id
        while current is not None and current not in found and current not in chain:
            chain.append(current)
            current = declared(current)
        if current is not None and current in chain:  # a loop: treat the chain as direct
            for member in chain:
                found[member] = (1, parent_id)
            continue
        level = found[current][0] if current is not None else 0
        for member in reversed(chain):
            level += 1
            up = declared(member)
            found[member] = (level, up if up is not None and level > 1 else parent_id)
    return found


class UnitWalk:
    """``async for node in ziik.units.walk(...)``: the walk's `UnitNode` objects, one by one.

    A plain async iterator, not an async generator (see the module's docstring): each
    ``__anext__`` hands out a buffered node, or first runs the next batch of fetches to the
    end, in a task group of its own. Leaving a loop early needs no ``aclosing``. It is used
    once (``__aiter__`` returns it); an error or a cancellation ends it, as it would end an
    async generator, and so does ``aclose()``. Two tasks cannot step it at the same time.
    """

    def __init__(
        self, units: UnitSource, root_id: int | None, *, concurrency: int, max_depth: int | None
    ) -> None:
        self._units = units
        self._root_id = root_id
        self._concurrency = concurrency
        self._max_depth = max_depth
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._placer = _Placer(max_depth)
        self._batch = concurrency * 32  # a multiple of concurrency: no slot idles between batches
        self._buffer: deque[UnitNode] = deque()
        self._prefetched: dict[int, list[Unit]] = {}
        self._depth = 0  # the depth of the level being fetched
        self._frontier: list[int] = []  # the ids whose children make up that level
        self._position = 0  # where the level's next batch starts in the frontier
        self._following: list[int] = []  # the next level's frontier
        self._found = False  # whether the level has any node yet
        self._started = False
        self._done = False  # no more fetching (the buffer may still hold nodes)
        self._closed = False  # ended by aclose(), an error or a cancellation
        self._running = False

    def __repr__(self) -> str:
        return (
            f"<UnitWalk root_id={self._root_id!r} concurrency={self._concurrency}"
            f" max_depth={self._max_depth!r}>"
        )

    def __aiter__(self) -> UnitWalk:
        return self

    async def __anext__(self) -> UnitNode:
        if self._running:
            raise RuntimeError("this walk is already being iterated by another task")
        self._running = True
        try:
            while True:
                if self._closed:
                    raise StopAsyncIteration
                if self._buffer:
                    return self._buffer.popleft()
                if self._done:
                    raise StopAsyncIteration
                try:
                    await self._step()
                except BaseException:  # an error or a cancellation ends the walk
                    self._close()
                    raise
        finally:
            self._running = False

    async def aclose(self) -> None:
        """End the walk (nothing is left open between two nodes, so there is nothing else)."""
        self._close()

    def _close(self) -> None:
        self._closed = self._done = True
        self._buffer.clear()
        self._prefetched.clear()
        self._frontier, self._following = [], []

    async def _step(self) -> None:
        """One step: the start, the next batch of the level, or the move to the next level."""
        if not self._started:
            self._started = True
            await self._start()
            self._begin_level()
        elif self._position < len(self._frontier):
            await self._fetch_batch()
        elif not self._found and not self._placer.deferred:
            self._done = True
        else:
            self._begin_level()

    async def _start(self) -> None:
        """The root (with its children, in the same round trip) or the top-level units."""
        units, root_id, placer = self._units, self._root_id, self._placer
        if root_id is not None:
            jobs: list[Callable[[], Awaitable[object]]] = [lambda: units.get(root_id)]
            if self._max_depth != 0:
                jobs.append(_children_job(units, root_id))
            fetched = await _gather(self._limiter, jobs)
            root = fetched[0]
            assert isinstance(root, Unit)
            if self._max_depth != 0:
                self._prefetched[root_id] = fetched[1]  # type: ignore[assignment]
            placer.seen.add(root_id)
            if root.id is not None:
                placer.seen.add(root.id)
            parent = root.parent.id if root.parent is not None else None
            self._following = [root_id]
            self._buffer.append(UnitNode(root, 0, parent))
            return
        for unit in await units.list().collect():
            if unit.parent is not None:
                continue
            if unit.id is not None:
                if unit.id in placer.seen:
                    continue
                placer.seen.add(unit.id)
                self._following.append(unit.id)
            self._buffer.append(UnitNode(unit, 0, None))

    def _begin_level(self) -> None:
        """Move to the next level (or end at ``max_depth``); its deferred nodes come first."""
        if self._max_depth is not None and self._depth >= self._max_depth:
            self._done = True
            return
        self._depth += 1
        self._frontier, self._following = self._following, []
        self._position = 0
        self._found = False
        self._add(self._placer.deferred.pop(self._depth, []))

    async def _fetch_batch(self) -> None:
        """The children of the level's next batch, all fetched before any is handed out."""
        chunk = self._frontier[self._position : self._position + self._batch]
        missing = [unit_id for unit_id in chunk if unit_id not in self._prefetched]
        answers = await _gather(self._limiter, [_children_job(self._units, i) for i in missing])
        self._position += len(chunk)
        self._prefetched.update(zip(missing, answers, strict=True))
        for parent_id in chunk:
            self._add(self._placer.place(parent_id, self._prefetched.pop(parent_id), self._depth))

    def _add(self, nodes: list[UnitNode]) -> None:
        for node in nodes:
            self._found = True
            if node.unit.id is not None:
                self._following.append(node.unit.id)
            self._buffer.append(node)
