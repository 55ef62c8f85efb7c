"""Walking the unit hierarchy: breadth-first, concurrent, each unit once.

The walk goes a level at a time. A level's ``/units/{id}/children`` calls run in batches (the
whole level, or slices of ``32 * concurrency`` units of a very wide one) inside an anyio task
group, at most ``concurrency`` at once (one `anyio.CapacityLimiter` for the walk). Each batch
completes before its units are yielded, so no task group is ever open across a ``yield``
(PEP 789), and cancelling the consumer (``break`` then ``aclose()``, a cancel scope, a
timeout) cancels the pending fetches with it. The calls of a level overlap, so the walk takes
about ``sum(ceil(width / concurrency))`` round trips over the levels, not one per unit; the
root's own ``GET`` travels together with its children call.

Exactly once: every id seen is remembered, and a unit seen before is neither yielded nor walked
again. That cuts cycles in bad data, and copes with a children endpoint that also returns
deeper descendants: a unit whose ``parent`` is another unit of the same answer is placed under
that unit, at its real depth, and yielded with its level.

Costs: one call per unit walked (its children), plus the root's ``GET`` or the listing of
the top-level units.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import anyio
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
) -> AsyncGenerator[UnitNode, None]:
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


async def _walk(
    units: UnitSource, root_id: int | None, concurrency: int, max_depth: int | None
) -> AsyncGenerator[UnitNode, None]:
    limiter = anyio.CapacityLimiter(concurrency)
    placer = _Placer(max_depth)
    batch = concurrency * 32  # a multiple of concurrency: no slot idles between batches
    prefetched: dict[int, list[Unit]] = {}

    if root_id is not None:
        # The root and its children are fetched together: one round trip, not two.
        jobs: list[Callable[[], Awaitable[object]]] = [lambda: units.get(root_id)]
        if max_depth != 0:
            jobs.append(_children_job(units, root_id))
        fetched = await _gather(limiter, jobs)
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
        for start in range(0, len(frontier), batch):
            chunk = frontier[start : start + batch]
            missing = [unit_id for unit_id in chunk if unit_id not in prefetched]
            answers = await _gather(limiter, [_children_job(units, i) for i in missing])
            prefetched.update(zip(missing, answers, strict=True))
            for parent_id in chunk:
                for node in placer.place(parent_id, prefetched.pop(parent_id), depth):
                    found = True
                    if node.unit.id is not None:
                        following.append(node.unit.id)
                    yield node
        if not found and not placer.deferred:
            return
        frontier = following
