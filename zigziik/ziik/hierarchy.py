"""Walking the unit hierarchy: breadth-first, concurrent, each unit once.

The walk goes a level at a time. A level's ``/units/{id}/children`` calls run inside an anyio
task group of ``concurrency`` workers (so at most ``concurrency`` requests are in flight);
the whole level completes before its units are yielded, so no task group is ever open across
a ``yield`` (PEP 789) and cancelling the consumer (``break``, a cancel scope, a timeout)
cancels the pending fetches with it. The calls of a level overlap, and a worker with none
of the level's calls left to start fetches ahead (the children of units the level has just
revealed) instead of idling through the level's tail, so the walk takes about
``sum(ceil(width / concurrency))`` round trips over the levels, not one per unit. Workers
rather than a bare `anyio.CapacityLimiter` give the level's own calls priority over fetching
ahead under every backend (trio does not schedule tasks first-in first-out).

Exactly once: every id seen is remembered, and a unit seen before is neither yielded nor walked
again. That cuts cycles in bad data, and copes with a children endpoint that also returns
deeper descendants: a unit whose ``parent`` is another unit of the same answer is placed under
that unit, at its real depth, and yielded with its level.

Costs: one call per unit walked (its children), plus the root's own ``GET`` (sent together
with its children call) or the listing of the top-level units. Fetching ahead only asks for
children the walk will need (``max_depth`` is respected), but a consumer that stops early may
leave up to ``concurrency`` such answers unused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import anyio
import anyio.abc
import attrs

from ..pagination import AsyncPaginator
from .models import Unit

__all__ = ["UnitNode", "UnitSource", "walk"]

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
) -> AsyncIterator[UnitNode]:
    """Walk the hierarchy below ``root_id`` (or below every unit whose ``parent`` is null).

    Yields the root(s) first at depth 0, then each level. ``max_depth=0`` yields the root(s)
    only; ``max_depth=n`` stops after depth ``n``. A children call that still fails after
    the transport's retries ends the walk with that error. Arguments are checked now; the
    requests start with the first ``__anext__``.
    """
    if root_id is not None and (isinstance(root_id, bool) or not isinstance(root_id, int)):
        raise TypeError(f"root_id must be an int or None, got {type(root_id).__name__}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0
    ):
        raise ValueError(f"max_depth must be an int >= 0 or None, got {max_depth!r}")
    return _walk(units, root_id, concurrency, max_depth)


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


class _LevelFetch:
    """Fetch the children of one level's units with ``concurrency`` workers, then return.

    The level's own calls come first. A worker that finds none left to start while some are
    still in flight (the level's tail, or a narrow level) does not idle: it fetches ahead,
    the children of units the level has just revealed, if the walk will need them. Those
    answers (or their errors, raised only if the walk gets to use them) are kept in
    ``prefetched`` for the next levels. Nothing new starts once the level is complete, and
    everything started has finished when `run` returns: no task outlives the call.
    """

    def __init__(
        self,
        units: UnitSource,
        concurrency: int,
        prefetched: dict[int, list[Unit] | Exception],
        seen: set[int],
    ) -> None:
        self._units = units
        self._concurrency = concurrency
        self._prefetched = prefetched
        self._seen = seen

    async def run(self, frontier: list[int], *, look_ahead: bool) -> dict[int, list[Unit]]:
        answers: dict[int, list[Unit]] = {}
        todo: deque[int] = deque()
        for unit_id in frontier:
            ready = self._prefetched.pop(unit_id, None)
            if ready is None:
                todo.append(unit_id)
            elif isinstance(ready, Exception):
                raise ready
            else:
                answers[unit_id] = ready
        if not todo:
            return answers
        ahead: deque[int] = deque()
        queued = set(frontier) | set(self._prefetched)
        remaining = len(todo)
        changed = anyio.Event()
        errors: list[Exception] = []

        def notify() -> None:
            nonlocal changed
            changed.set()
            changed = anyio.Event()

        def reveal(kids: list[Unit]) -> None:
            for kid in kids:
                kid_id = kid.id
                if kid_id is not None and kid_id not in self._seen and kid_id not in queued:
                    queued.add(kid_id)
                    ahead.append(kid_id)

        async def worker(group: anyio.abc.TaskGroup) -> None:
            nonlocal remaining
            while True:
                if todo:
                    unit_id = todo.popleft()
                    try:
                        kids = await self._units.children(unit_id)
                    except Exception as exc:
                        errors.append(exc)
                        group.cancel_scope.cancel()
                        return
                    answers[unit_id] = kids
                    remaining -= 1
                    if look_ahead and remaining:
                        reveal(kids)
                    notify()
                elif remaining and ahead:
                    unit_id = ahead.popleft()
                    try:
                        self._prefetched[unit_id] = await self._units.children(unit_id)
                    except Exception as exc:
                        self._prefetched[unit_id] = exc
                elif remaining:
                    await changed.wait()
                else:
                    return

        async with anyio.create_task_group() as group:
            for _ in range(self._concurrency):
                group.start_soon(worker, group)
        if errors:
            raise errors[0]
        return answers


async def _walk(
    units: UnitSource, root_id: int | None, concurrency: int, max_depth: int | None
) -> AsyncIterator[UnitNode]:
    placer = _Placer(max_depth)
    prefetched: dict[int, list[Unit] | Exception] = {}
    fetcher = _LevelFetch(units, concurrency, prefetched, placer.seen)

    if root_id is not None:
        # The root and its children are fetched together: one round trip, not two.
        jobs: list[Callable[[], Awaitable[object]]] = [lambda: units.get(root_id)]
        if max_depth != 0:
            jobs.append(_children_job(units, root_id))
        fetched = await _gather(anyio.CapacityLimiter(concurrency), jobs)
        root = fetched[0]
        assert isinstance(root, Unit)
        if max_depth != 0:
            prefetched[root_id] = fetched[1]  # type: ignore[assignment]
        placer.seen.add(root_id)
        if root.id is not None:
            placer.seen.add(root.id)
        parent = root.parent.id if root.parent is not None else None
        frontier = [root_id]
        yield UnitNode(root, 0, parent)
    else:
        frontier = []
        for unit in await units.list().collect():
            if unit.parent is not None:
                continue
            if unit.id is not None:
                if unit.id in placer.seen:
                    continue
                placer.seen.add(unit.id)
                frontier.append(unit.id)
            yield UnitNode(unit, 0, None)

    depth = 0
    while max_depth is None or depth < max_depth:
        depth += 1
        following: list[int] = []
        found = False
        for node in placer.deferred.pop(depth, []):
            found = True
            if node.unit.id is not None:
                following.append(node.unit.id)
            yield node
        look_ahead = max_depth is None or depth < max_depth
        answers = await fetcher.run(frontier, look_ahead=look_ahead)
        for parent_id in frontier:
            for node in placer.place(parent_id, answers[parent_id], depth):
                found = True
                if node.unit.id is not None:
                    following.append(node.unit.id)
                yield node
        if not found and not placer.deferred:
            return
        frontier = following
