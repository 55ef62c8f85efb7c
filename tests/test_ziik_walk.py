"""The hierarchy walker: exactly once, breadth-first, cycles cut, depth limits, errors,
cancellation, and requests that really overlap (shown by the server's in-flight count and
events, never by timings). Under asyncio and trio.
"""

from __future__ import annotations

import gc
import inspect
import re
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from functools import partial

import anyio
import anyio.lowlevel
import httpx
import pytest

from zigziik import NotFoundError, RetryPolicy, ServerError, UnitNode, ZiikClient
from zigziik.testing import serve
from zigziik.testing._ziik import FakeZiik
from zigziik.ziik.hierarchy import UnitWalk, walk

BASE = "https://acme.ziik.io/api"

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

_UNIT = re.compile(r"/api/units/(\d+)$")
_CHILDREN = re.compile(r"/api/units/(\d+)/children$")


class TreeServer:
    """Ziik's units endpoints over an in-memory tree, counting requests in flight.

    ``tree`` maps a unit id to the ids its children call lists (cycles allowed). With
    ``gate`` set, the children calls of the ``gated`` ids wait until that many calls are in
    flight at once; with
    ``block`` set, children calls for those ids never answer (until cancelled).
    """

    def __init__(self, tree: dict[int, list[int]], parents: dict[int, int | None]) -> None:
        self.tree = tree
        self.parents = parents
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self.paths: list[str] = []
        self.gate: int | None = None
        self.gated: set[int] = set()
        self.block: set[int] = set()
        self.fail: dict[int, int] = {}
        self.with_parent_refs = False
        self.descendants_of: set[int] = set()
        self.reached = anyio.Event()
        self._opened = anyio.Event()

    def unit(self, unit_id: int, *, reference: bool = True) -> dict[str, object]:
        parent = self.parents.get(unit_id)
        data: dict[str, object] = {"id": unit_id, "name": f"Unit {unit_id}"}
        if reference:
            data["parent"] = None if parent is None else {"id": parent, "leaf": False}
        return data

    def subtree(self, unit_id: int) -> list[int]:
        found: list[int] = []
        frontier = list(self.tree.get(unit_id, []))
        while frontier:
            current = frontier.pop(0)
            if current in found or current == unit_id:
                continue
            found.append(current)
            frontier.extend(self.tree.get(current, []))
        return found

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(path)
        if path == "/api/units":
            return httpx.Response(200, json=[self.unit(u) for u in self.parents])
        if match := _UNIT.fullmatch(path):
            unit_id = int(match[1])
            if unit_id not in self.parents:
                return httpx.Response(404, json={"message": "Unit not found."})
            return httpx.Response(200, json=self.unit(unit_id))
        match = _CHILDREN.fullmatch(path)
        assert match is not None, path
        unit_id = int(match[1])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None and self.in_flight >= self.gate:
                self.reached.set()
            if unit_id in self.block:
                await anyio.sleep_forever()
            if self.gate is not None and unit_id in self.gated:
                with anyio.fail_after(45):  # a deadlock guard only
                    await self.reached.wait()
            await anyio.lowlevel.checkpoint()
            if unit_id in self.fail:
                return httpx.Response(self.fail[unit_id], json={"message": "boom"})
            if unit_id in self.descendants_of:
                ids = self.subtree(unit_id)
            else:
                ids = self.tree.get(unit_id, [])
            return httpx.Response(
                200, json=[self.unit(c, reference=self.with_parent_refs) for c in ids]
            )
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


def make_tree(branching: int, depth: int, roots: int = 1) -> TreeServer:
    """A regular tree: ``roots`` top-level units, each unit ``branching`` children."""
    tree: dict[int, list[int]] = {}
    parents: dict[int, int | None] = {}
    next_id = 1
    level: list[int] = []
    for _ in range(roots):
        parents[next_id] = None
        level.append(next_id)
        next_id += 1
    for _ in range(depth):
        following = []
        for parent in level:
            for _ in range(branching):
                parents[next_id] = parent
                tree.setdefault(parent, []).append(next_id)
                following.append(next_id)
                next_id += 1
        level = following
    return TreeServer(tree, parents)


def client_for(server: TreeServer) -> ZiikClient:
    return ZiikClient(
        BASE,
        "test.token",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
        retry=RetryPolicy(jitter=False, base_delay=0.0),
    )


async def collect(nodes: AsyncIterator[UnitNode]) -> list[UnitNode]:
    return [node async for node in nodes]


def depth_of(server: TreeServer, unit_id: int) -> int:
    depth = 0
    parent = server.parents[unit_id]
    while parent is not None:
        depth += 1
        parent = server.parents[parent]
    return depth


def assert_breadth_first(nodes: list[UnitNode]) -> None:
    depths = [node.depth for node in nodes]
    assert depths == sorted(depths)


# -- exactly once, order, depth -------------------------------------------------------------------


async def test_walks_every_unit_once_breadth_first() -> None:
    server = make_tree(branching=3, depth=3)  # 1 + 3 + 9 + 27 = 40 units
    ziik = client_for(server)
    nodes = await collect(ziik.units.walk(1, concurrency=4))
    ids = [node.unit.id for node in nodes]
    assert ids[0] == 1 and nodes[0].depth == 0 and nodes[0].parent_id is None
    assert sorted(ids) == sorted(server.parents)  # type: ignore[type-var]
    assert len(ids) == len(set(ids)) == 40
    assert_breadth_first(nodes)
    for node in nodes:
        assert type(node) is UnitNode and type(node.depth) is int
        assert node.unit.id is not None
        assert node.depth == depth_of(server, node.unit.id)
        if node.depth:
            assert node.parent_id == server.parents[node.unit.id]
    children_calls = Counter(p for p in server.paths if p.endswith("/children"))
    assert len(children_calls) == 40 and set(children_calls.values()) == {1}
    assert server.max_in_flight <= 4


async def test_root_parent_id_is_its_real_parent() -> None:
    server = make_tree(branching=2, depth=2)
    ziik = client_for(server)
    nodes = await collect(ziik.units.walk(2))
    assert (nodes[0].unit.id, nodes[0].depth, nodes[0].parent_id) == (2, 0, 1)
    assert sorted(n.unit.id for n in nodes[1:]) == [4, 5]  # type: ignore[type-var]
    assert all(n.depth == 1 and n.parent_id == 2 for n in nodes[1:])


async def test_without_root_starts_from_the_top_level_units() -> None:
    server = make_tree(branching=2, depth=2, roots=3)
    ziik = client_for(server)
    nodes = await collect(ziik.units.walk())
    tops = [n for n in nodes if n.depth == 0]
    assert sorted(n.unit.id for n in tops) == [1, 2, 3]  # type: ignore[type-var]
    assert all(n.parent_id is None for n in tops)
    assert nodes[:3] == tops
    assert len(nodes) == len(server.parents) == 3 + 6 + 12
    assert_breadth_first(nodes)
    assert server.paths[0] == "/api/units"


async def test_max_depth() -> None:
    server = make_tree(branching=2, depth=3)
    ziik = client_for(server)
    only_root = await collect(ziik.units.walk(1, max_depth=0))
    assert [(n.unit.id, n.depth) for n in only_root] == [(1, 0)]
    assert server.paths == ["/api/units/1"]  # no children call at all
    server.paths.clear()
    two = await collect(ziik.units.walk(1, max_depth=1))
    assert [n.depth for n in two] == [0, 1, 1]
    assert sorted(server.paths) == ["/api/units/1", "/api/units/1/children"]
    server.paths.clear()
    deeper = await collect(ziik.units.walk(1, max_depth=2))
    assert len(deeper) == 1 + 2 + 4 and max(n.depth for n in deeper) == 2
    assert sum(p.endswith("/children") for p in server.paths) == 1 + 2


async def test_cycles_are_cut() -> None:
    server = make_tree(branching=2, depth=2)  # 1 -> 2, 3; 2 -> 4, 5; 3 -> 6, 7
    server.tree[4] = [1, 2, 4, 6]  # its ancestors, itself and a cousin
    server.tree[7] = [3]
    ziik = client_for(server)
    nodes = await collect(ziik.units.walk(1))
    ids = [n.unit.id for n in nodes]
    assert sorted(ids) == [1, 2, 3, 4, 5, 6, 7]  # type: ignore[type-var]
    assert len(ids) == len(set(ids))


async def test_a_children_endpoint_returning_all_descendants() -> None:
    server = make_tree(branching=2, depth=3)
    server.descendants_of = set(server.parents)
    server.with_parent_refs = True
    ziik = client_for(server)
    nodes = await collect(ziik.units.walk(1))
    ids = [n.unit.id for n in nodes]
    assert len(ids) == len(set(ids)) == 15
    for node in nodes:
        assert node.unit.id is not None
        assert node.depth == depth_of(server, node.unit.id)
        if node.depth:
            assert node.parent_id == server.parents[node.unit.id]
    assert_breadth_first(nodes)


async def test_units_without_an_id_are_yielded_but_not_walked() -> None:
    server = make_tree(branching=1, depth=1)
    original = server.__call__

    async def with_anonymous(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/units/1/children":
            return httpx.Response(200, json=[{"id": 2}, {"name": "no id"}])
        return await original(request)

    ziik = ZiikClient(
        BASE,
        "test.token",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(with_anonymous)),
    )
    nodes = await collect(ziik.units.walk(1))
    assert [(n.unit.id, n.depth) for n in nodes] == [(1, 0), (2, 1), (None, 1)]


# -- errors -------------------------------------------------------------------------------------------


async def test_a_failing_children_call_ends_the_walk_with_its_error() -> None:
    server = make_tree(branching=3, depth=2)
    server.fail[3] = 404
    ziik = client_for(server)
    seen: list[int | None] = []

    async def consume() -> None:
        async for node in ziik.units.walk(1):
            seen.append(node.unit.id)

    with pytest.raises(NotFoundError):
        await consume()
    assert seen[:1] == [1] and len(seen) == 4  # the root and its children, then the error


async def test_an_error_deeper_down_comes_after_the_levels_above() -> None:
    server = make_tree(branching=2, depth=3)  # 1; 2, 3; 4..7; 8..15
    server.fail[5] = 404
    ziik = client_for(server)
    seen: list[int | None] = []

    async def consume() -> None:
        async for node in ziik.units.walk(1):
            seen.append(node.unit.id)

    with pytest.raises(NotFoundError):
        await consume()
    assert sorted(seen) == [1, 2, 3, 4, 5, 6, 7]  # type: ignore[type-var]
    assert server.paths.count("/api/units/5/children") == 1


async def test_a_server_error_is_retried_then_raised() -> None:
    server = make_tree(branching=2, depth=1)
    server.fail[2] = 503
    ziik = client_for(server)
    with pytest.raises(ServerError):
        await collect(ziik.units.walk(1))
    assert server.paths.count("/api/units/2/children") == 4  # the default 4 attempts


async def test_an_unknown_root_is_not_found() -> None:
    ziik = client_for(make_tree(branching=1, depth=1))
    with pytest.raises(NotFoundError):
        await collect(ziik.units.walk(999))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"concurrency": 0}, ValueError),
        ({"concurrency": -3}, ValueError),
        ({"concurrency": 2.0}, TypeError),
        ({"concurrency": "2"}, TypeError),
        ({"concurrency": True}, TypeError),
        ({"concurrency": None}, TypeError),
        ({"max_depth": -1}, ValueError),
        ({"max_depth": True}, TypeError),
        ({"max_depth": False}, TypeError),
        ({"max_depth": 1.5}, TypeError),
        ({"max_depth": "1"}, TypeError),
        ({"root_id": -1}, ValueError),
        ({"root_id": "1"}, TypeError),
        ({"root_id": 1.0}, TypeError),
        ({"root_id": True}, TypeError),
    ],
)
async def test_arguments_are_checked_at_call_time(kwargs: dict[str, object], error: type) -> None:
    """A wrong type is a TypeError, a bad value a ValueError; both name the argument, and
    no request is made."""
    server = make_tree(branching=1, depth=1)
    ziik = client_for(server)
    (name,) = kwargs
    calls: list[Callable[..., UnitWalk]] = [ziik.units.walk, partial(walk, ziik.units)]
    for call in calls:
        with pytest.raises(error, match=rf"^{name} must be ") as caught:
            call(**kwargs)
        assert type(caught.value) is error
        kind = "an int, got " if error is TypeError else "at least "
        assert kind in str(caught.value)
    assert server.paths == []


@pytest.mark.parametrize("kwargs", [{"root_id": 0}, {"concurrency": 1}, {"max_depth": 0}])
async def test_boundary_arguments_are_accepted(kwargs: dict[str, int]) -> None:
    ziik = client_for(make_tree(branching=1, depth=1))
    assert isinstance(ziik.units.walk(**kwargs), UnitWalk)


# -- concurrency and cancellation ------------------------------------------------------------------


async def test_children_calls_really_overlap_up_to_the_limit() -> None:
    server = make_tree(branching=10, depth=2)  # the second level: 10 calls to make
    server.gate = 4  # no second-level call answers before 4 are in flight together
    server.gated = set(server.tree[1])
    ziik = client_for(server)
    nodes = await collect(ziik.units.walk(1, concurrency=4))
    assert len(nodes) == 1 + 10 + 100
    assert server.max_in_flight == 4


async def test_concurrency_one_is_sequential() -> None:
    server = make_tree(branching=5, depth=2)
    ziik = client_for(server)
    assert len(await collect(ziik.units.walk(1, concurrency=1))) == 31
    assert server.max_in_flight == 1


async def test_cancelling_the_consumer_cancels_pending_fetches() -> None:
    server = make_tree(branching=6, depth=2)
    server.block = set(server.tree[1])  # level-two fetches never answer
    server.gate = 3  # sets server.reached once 3 calls are in flight (gates no call)
    ziik = client_for(server)
    yielded: list[UnitNode] = []

    async def consume() -> None:
        async for node in ziik.units.walk(1, concurrency=3):
            yielded.append(node)

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        with anyio.fail_after(45):  # a deadlock guard only
            await server.reached.wait()
        group.cancel_scope.cancel()
    assert len(yielded) == 1 + 6
    assert server.in_flight == 0
    assert server.cancelled == 3  # every pending fetch was cancelled, none left running
    assert server.max_in_flight == 3


async def test_breaking_out_leaves_nothing_running() -> None:
    server = make_tree(branching=4, depth=3)
    ziik = client_for(server)
    nodes = ziik.units.walk(1)
    async for node in nodes:
        if node.depth == 2:
            break
    assert server.in_flight == 0
    await nodes.aclose()


async def test_no_fetch_is_in_flight_while_the_consumer_holds_a_node() -> None:
    """Each batch is fetched to the end inside one ``__anext__``: nothing runs between two
    nodes (no task group is open across the consumer's loop body, PEP 789)."""
    server = make_tree(branching=5, depth=3)
    ziik = client_for(server)
    count = 0
    async for _node in ziik.units.walk(1, concurrency=2):
        count += 1
        assert server.in_flight == 0
        await anyio.lowlevel.checkpoint()
        assert server.in_flight == 0
    assert count == 1 + 5 + 25 + 125
    assert server.max_in_flight == 2


async def test_a_very_wide_level_goes_in_batches_of_32_times_concurrency() -> None:
    wide = list(range(2, 72))  # 70 units under the root, each with one child
    tree: dict[int, list[int]] = {1: wide, **{unit: [unit + 100] for unit in wide}}
    parents: dict[int, int | None] = {1: None, **{u: 1 for u in wide}}
    parents.update({u + 100: u for u in wide})
    server = TreeServer(tree, parents)
    ziik = client_for(server)
    calls_seen: dict[int, set[int]] = {}
    nodes = []
    async for node in ziik.units.walk(1, concurrency=1):
        nodes.append(node)
        calls = sum(p.endswith("/children") for p in server.paths)
        calls_seen.setdefault(node.depth, set()).add(calls)
    assert len(nodes) == 1 + 70 + 70
    assert_breadth_first(nodes)
    # The root's children come with the root; then each batch (32 units at concurrency 1)
    # is fetched to the end before its nodes are handed out.
    assert calls_seen == {0: {1}, 1: {1}, 2: {1 + 32, 1 + 64, 1 + 70}}
    assert sum(p.endswith("/children") for p in server.paths) == 1 + 70 + 70


# -- a plain async iterator, not an async generator ------------------------------------------------


@contextmanager
def no_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning (a ResourceWarning, a RuntimeWarning, trio's async generator
    warnings) raised inside, and after a garbage collection; the test then asserts none."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        gc.collect()


def task_ids() -> set[int]:
    return {task.id for task in anyio.get_running_tasks()}


async def test_the_walk_is_a_plain_async_iterator() -> None:
    server = make_tree(branching=2, depth=2)
    ziik = client_for(server)
    nodes = ziik.units.walk(1)
    assert type(nodes) is UnitWalk
    assert not inspect.isasyncgen(nodes)
    assert not inspect.isasyncgenfunction(type(nodes).__anext__)
    assert isinstance(nodes, AsyncIterator)
    assert nodes.__aiter__() is nodes
    assert repr(nodes) == "<UnitWalk root_id=1 concurrency=8 max_depth=None>"
    assert server.paths == []  # nothing is requested before the first __anext__
    assert len(await collect(nodes)) == 7
    assert await collect(nodes) == []  # used once, like a generator
    await nodes.aclose()  # after the end: harmless


async def test_aclose_ends_the_walk_and_is_harmless() -> None:
    server = make_tree(branching=3, depth=3)
    ziik = client_for(server)

    unstarted = ziik.units.walk(1)
    await unstarted.aclose()
    assert await collect(unstarted) == [] and server.paths == []

    nodes = ziik.units.walk(1)
    first = await nodes.__anext__()
    assert first.unit.id == 1
    requested = list(server.paths)
    await nodes.aclose()
    await nodes.aclose()  # twice: still harmless
    with pytest.raises(StopAsyncIteration):
        await nodes.__anext__()
    assert server.paths == requested and server.in_flight == 0

    with no_warnings() as caught:
        async with aclosing(ziik.units.walk(1)) as wrapped:  # still works with aclosing
            async for node in wrapped:
                if node.depth == 1:
                    break
        with pytest.raises(StopAsyncIteration):
            await wrapped.__anext__()
    assert [str(w.message) for w in caught] == []
    assert server.in_flight == 0


async def test_breaking_out_early_without_aclosing_leaves_no_warning_and_no_task() -> None:
    """``break`` with no ``aclosing``, under asyncio and trio: nothing to finalize, no task
    left, no request in flight or sent afterwards, and no warning (even after a GC)."""
    server = make_tree(branching=40, depth=2)  # level two: 40 calls, 2 batches at concurrency 1
    ziik = client_for(server)
    before = task_ids()
    with no_warnings() as caught:
        for stop_at in (0, 1, 2):
            async for node in ziik.units.walk(1, concurrency=1):
                if node.depth == stop_at:
                    break
            assert server.in_flight == 0
            assert task_ids() == before
        sent = len(server.paths)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
    assert len(server.paths) == sent
    assert server.cancelled == 0 and server.in_flight == 0
    assert task_ids() == before
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []


async def test_breaking_out_early_against_the_fake_server() -> None:
    """The same over loopback: the fake's in-flight count drops to zero, nothing more is
    requested, and no warning appears (under trio too, without ``aclosing``)."""
    fake = FakeZiik(depth=3, branching=4, roots=2, token="loopback-token", latency=0.005)
    root = fake.top_level_ids[0]
    with serve(fake.app) as origin:
        async with ZiikClient(f"{origin}/api", "loopback-token") as ziik:
            before = task_ids()
            with no_warnings() as caught:
                async for node in ziik.units.walk(root, concurrency=2):
                    if node.depth == 2:
                        break
                async for node in ziik.units.walk(concurrency=2):
                    if node.depth == 1:
                        break
                with anyio.fail_after(45):  # the server thread may still be finishing a reply
                    while fake.in_flight:  # noqa: ASYNC110 - another thread's count: no Event
                        await anyio.sleep(0.001)
                calls = fake.calls
                for _ in range(10):
                    await anyio.lowlevel.checkpoint()
            assert task_ids() == before
            assert fake.in_flight == 0 and fake.calls == calls
            assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
            again = await collect(ziik.units.walk(root))
    assert len(again) == 1 + len(fake.descendant_ids(root))


async def test_an_error_ends_the_walk() -> None:
    server = make_tree(branching=2, depth=2)
    server.fail[2] = 404
    ziik = client_for(server)
    nodes = ziik.units.walk(1)
    with pytest.raises(NotFoundError):
        await collect(nodes)
    calls = len(server.paths)
    with pytest.raises(StopAsyncIteration):
        await nodes.__anext__()
    assert len(server.paths) == calls


async def test_a_cancelled_step_ends_the_walk() -> None:
    server = make_tree(branching=3, depth=2)
    server.block = set(server.tree[1])
    ziik = client_for(server)
    nodes = ziik.units.walk(1, concurrency=3)
    assert [(await nodes.__anext__()).depth for _ in range(4)] == [0, 1, 1, 1]
    server.gate = 3  # sets server.reached once the three level-two fetches are in flight
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:

            async def cancel_when_reached() -> None:
                with anyio.fail_after(45):  # a deadlock guard only
                    await server.reached.wait()
                scope.cancel()

            group.start_soon(cancel_when_reached)
            await nodes.__anext__()
    assert scope.cancelled_caught
    assert server.in_flight == 0 and server.cancelled == 3
    with pytest.raises(StopAsyncIteration):
        await nodes.__anext__()


async def test_the_walk_can_move_between_tasks() -> None:
    """Nothing ties the walk to the task that started it (an async generator holding a task
    group across ``yield`` could not do this)."""
    server = make_tree(branching=3, depth=3)
    ziik = client_for(server)
    nodes = ziik.units.walk(1, concurrency=2)
    got: list[UnitNode] = []

    async def take(count: int) -> None:
        for _ in range(count):
            got.append(await nodes.__anext__())

    async with anyio.create_task_group() as group:
        group.start_soon(take, 5)
    async with anyio.create_task_group() as group:
        group.start_soon(take, 10)
    got.extend(await collect(nodes))
    ids = [n.unit.id for n in got]
    assert len(ids) == len(set(ids)) == 1 + 3 + 9 + 27
    assert_breadth_first(got)


async def test_two_tasks_cannot_step_the_walk_at_once() -> None:
    server = make_tree(branching=3, depth=2)
    server.block = set(server.tree[1])
    ziik = client_for(server)
    nodes = ziik.units.walk(1, concurrency=1)
    assert [(await nodes.__anext__()).depth for _ in range(4)] == [0, 1, 1, 1]
    server.gate = 1  # sets server.reached once the other task's fetch is in flight
    async with anyio.create_task_group() as group:
        group.start_soon(nodes.__anext__)
        with anyio.fail_after(45):  # a deadlock guard only
            await server.reached.wait()
        with pytest.raises(RuntimeError, match="already being iterated"):
            await nodes.__anext__()
        group.cancel_scope.cancel()
    assert server.in_flight == 0


# -- against the fake Ziik server on loopback -----------------------------------------------------------


async def test_walk_against_the_fake_server() -> None:
    fake = FakeZiik(depth=3, branching=3, roots=2, token="loopback-token", latency=0.05)
    root = fake.top_level_ids[0]
    child = fake.children_ids(root)[0]
    grandchild = fake.children_ids(child)[0]
    fake.add_cycle(grandchild, root)  # bad data: an ancestor among the children
    with serve(fake.app) as origin:
        async with ZiikClient(f"{origin}/api", "loopback-token") as ziik:
            nodes = await collect(ziik.units.walk(root, concurrency=4))
            everything = await collect(ziik.units.walk(concurrency=4))
    expected = [root, *fake.descendant_ids(root)]
    ids = [n.unit.id for n in nodes]
    assert sorted(ids) == sorted(expected)  # type: ignore[type-var]
    assert len(ids) == len(set(ids))
    assert all(n.depth == fake.depth_of(n.unit.id) for n in nodes)  # type: ignore[arg-type]
    assert_breadth_first(nodes)
    assert sorted(n.unit.id for n in everything) == sorted(fake.unit_ids)  # type: ignore[type-var]
    assert 2 <= fake.max_in_flight <= 4
