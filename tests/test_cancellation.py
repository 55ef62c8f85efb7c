"""Cancellation at random points (anyio cancel scopes), over real loopback sockets, under
asyncio and trio: harvests (per picture and by zip with extraction), walks, downloads,
paginators and retry back-off.

After every cancellation: no task is left running, no connection of the client's pool is busy
and the server sees every request end, no temporary file is left and every file under a final
name is complete, the manifest is valid and true to the disk, the budget has nothing in flight;
and the same client then completes the work.

The cancellation points are drawn from a seeded generator: deterministic, and spread over the
whole run (before the first request, mid-listing, mid-body, mid-extraction, after the end).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import _servers as raw
import anyio
import pytest

from zigziik import DailyBudget, RetryPolicy, ServerError, ZignaClient, ZiikClient
from zigziik._client import BaseClient
from zigziik.testing import DEMO_API_KEY, FakeZigna, FakeZiik, serve
from zigziik.zigna.harvest._manifest import MANIFEST_NAME, load_manifest

RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
ROUNDS = 8


# -- what must hold after a cancellation ------------------------------------------------------------


def live_tasks() -> int:
    return len(anyio.get_running_tasks())


async def tasks_back_to(count: int, budget: float = 2.0) -> None:
    """Every task started since ``count`` was taken ends on its own, soon.

    (Cancelling a body read leaves httpx's nested async generators to the event loop's
    finalizer, which closes each in a short-lived task of its own: that is cleanup, not a leak;
    a task still there after ``budget`` seconds is one.)
    """
    with anyio.move_on_after(budget):
        while live_tasks() > count:  # noqa: ASYNC110 - nothing to wait on but the scheduler
            await anyio.sleep(0.005)
    assert live_tasks() == count, [task.name for task in anyio.get_running_tasks()]


def pool_is_quiet(client: BaseClient) -> bool:
    pool = client._transport._client._transport._pool  # type: ignore[attr-defined]
    return all(c.is_idle() or c.is_closed() for c in pool.connections)


async def server_settles(in_flight: Callable[[], int], budget: float = 3.0) -> None:
    """The server sees every request end (a cancelled one by its disconnect)."""
    with anyio.fail_after(budget):
        while in_flight():  # noqa: ASYNC110 - the server runs in another thread
            await anyio.sleep(0.005)


def files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root`` but the manifest."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".zigziik-manifest")
    }


def check_dest(dest: Path, reference: dict[str, bytes]) -> int:
    """No temporary file; every file is complete; the manifest is valid and true. Returns
    the number of complete files."""
    found = files(dest)
    assert not [name for name in found if name.endswith(".part")], sorted(found)
    for name, data in found.items():
        assert name in reference, f"unexpected file {name}"
        assert data == reference[name], f"{name} is not complete ({len(data)} bytes)"
    manifest_path = dest / MANIFEST_NAME
    if manifest_path.exists():
        with closing(sqlite3.connect(manifest_path)) as db:  # not torn
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        manifest = load_manifest(dest)
        for record in manifest.orders.values():
            for file in record.files():
                path = dest / record.folder / file.name
                if record.complete:
                    assert path.is_file() and path.stat().st_size == file.size, path
    return len(found)


# -- harvests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_zigna() -> Iterator[tuple[FakeZigna, str]]:
    fake = FakeZigna(
        orders=6, pictures_per_order=(3, 5), picture_size=(30_000, 120_000), latency=0.002
    )
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize(
    ("strategy", "extract"), [("pictures", False), ("zip", True)], ids=["pictures", "zip"]
)
async def test_a_harvest_cancelled_at_random_points(
    fake_zigna: tuple[FakeZigna, str],
    tmp_path: Path,
    anyio_backend: str,
    strategy: Any,
    extract: bool,
) -> None:
    fake, base = fake_zigna
    rng = random.Random(f"{anyio_backend}-{strategy}")
    budget = DailyBudget(100_000)
    async with ZignaClient(DEMO_API_KEY, base_url=base, retry=RETRY, budget=budget) as zigna:
        started = time.monotonic()
        await zigna.harvest(tmp_path / "reference", strategy=strategy, extract=extract)
        duration = time.monotonic() - started
        reference = files(tmp_path / "reference")
        dest = tmp_path / "dest"
        tasks = live_tasks()
        complete = []
        for _ in range(ROUNDS):
            with anyio.move_on_after(rng.uniform(0, duration * 0.6)) as scope:
                await zigna.harvest(dest, strategy=strategy, extract=extract, concurrency=4)
            await server_settles(lambda: fake.in_flight)
            await tasks_back_to(tasks)
            assert pool_is_quiet(zigna)
            assert budget.in_flight == 0
            complete.append(check_dest(dest, reference))
            if not scope.cancelled_caught:
                break
        report = await zigna.harvest(dest, strategy=strategy, extract=extract)
    assert report.ok, report.failures
    assert files(dest) == reference
    assert complete == sorted(complete)  # each round kept what the previous ones completed
    check_dest(dest, reference)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_harvest_cancelled_by_its_own_progress_at_every_kind_of_event(
    fake_zigna: tuple[FakeZigna, str], tmp_path: Path
) -> None:
    """Cancelled from inside (the progress callback) at the n-th event of each kind."""
    fake, base = fake_zigna
    async with ZignaClient(DEMO_API_KEY, base_url=base, retry=RETRY) as zigna:
        await zigna.harvest(tmp_path / "reference")
        reference = files(tmp_path / "reference")
        dest = tmp_path / "dest"
        for kind, nth in [("order", 1), ("bytes", 1), ("bytes", 7), ("file", 3), ("skip", 2)]:
            with anyio.CancelScope() as scope:
                seen = 0

                def progress(event: Any, kind: str = kind, nth: int = nth) -> None:
                    nonlocal seen
                    if event.kind == kind:
                        seen += 1
                        if seen == nth:
                            scope.cancel()

                await zigna.harvest(dest, progress=progress, concurrency=3)
            await server_settles(lambda: fake.in_flight)
            assert pool_is_quiet(zigna)
            check_dest(dest, reference)
        report = await zigna.harvest(dest)
    assert report.ok and files(dest) == reference


# -- downloads and paginators --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_download_cancelled_at_random_points_leaves_nothing(
    fake_zigna: tuple[FakeZigna, str], tmp_path: Path, anyio_backend: str
) -> None:
    fake, base = fake_zigna
    order_id = next(o for o in fake.order_ids if fake.pictures(o))
    rng = random.Random(anyio_backend)
    async with ZignaClient(DEMO_API_KEY, base_url=base, retry=RETRY) as zigna:
        listing = await zigna.pictures.list(order_id)
        picture = max(listing.pictures, key=lambda p: p.size or 0)
        expected = fake.picture_bytes(order_id, picture.picture_id or 0)
        name = (await zigna.pictures.download(order_id, picture, tmp_path)).name
        (tmp_path / name).unlink()
        fake.faults.latency = 0.02
        try:
            for _ in range(ROUNDS):
                with anyio.move_on_after(rng.uniform(0, 0.04)):
                    await zigna.pictures.download(order_id, picture, tmp_path)
                await server_settles(lambda: fake.in_flight)
                # nothing, or the complete picture under its final name (never a temporary
                # file, complete or not)
                assert files(tmp_path) in ({}, {name: expected})
                for path in tmp_path.iterdir():
                    path.unlink()
        finally:
            fake.faults.latency = 0.0
        assert pool_is_quiet(zigna)
        path = await zigna.pictures.download(order_id, picture, tmp_path)
    assert path.read_bytes() == expected


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_download_cancelled_while_the_server_stalls_mid_body(tmp_path: Path) -> None:
    body = bytes(range(256)) * 1000
    stall = raw.headers_then_stall(len(body), prefix=body[:20_000])
    with raw.RawServer(raw.scripted(stall, raw.respond(200, body, content_type="image/jpeg"))) as s:
        async with ZignaClient(DEMO_API_KEY, base_url=s.origin + "/v2", timeout=30) as zigna:
            tasks = live_tasks()
            with anyio.move_on_after(0.2) as scope:
                await zigna.pictures.download("1", 5, tmp_path)
            assert scope.cancelled_caught
            await tasks_back_to(tasks)
            assert list(tmp_path.iterdir()) == []
            await server_settles(lambda: s.open_connections)  # the stalled connection closed
            path = await zigna.pictures.download("1", 5, tmp_path)
    assert path.read_bytes() == body


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_paginator_cancelled_or_abandoned_midway(
    fake_zigna: tuple[FakeZigna, str], anyio_backend: str
) -> None:
    fake, base = fake_zigna
    rng = random.Random(anyio_backend)
    async with ZignaClient(DEMO_API_KEY, base_url=base, retry=RETRY) as zigna:
        tasks = live_tasks()
        fake.faults.latency = 0.01
        try:
            for _ in range(ROUNDS):
                seen: list[str | None] = []
                with anyio.move_on_after(rng.uniform(0, 0.05)):
                    async for order in zigna.orders.list(take=1):
                        seen.append(order.id)
                assert seen == fake.order_ids[: len(seen)]
                async for order in zigna.orders.list(take=2):  # abandoned with break
                    if order.id == fake.order_ids[2]:
                        break
                await server_settles(lambda: fake.in_flight)
                await tasks_back_to(tasks)
                assert pool_is_quiet(zigna)
        finally:
            fake.faults.latency = 0.0
        assert [o.id for o in await zigna.orders.list(take=2).collect()] == fake.order_ids


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_cancelling_during_retry_back_off_returns_at_once() -> None:
    fake = FakeZigna(orders=1, daily_limit=None)
    fake.faults.fail_next(1, 503, retry_after=5)
    with serve(fake.app) as origin:
        budget = DailyBudget(10)
        policy = RetryPolicy(max_attempts=3, max_server_wait=10)
        async with ZignaClient(
            DEMO_API_KEY, base_url=origin + "/v2", retry=policy, budget=budget
        ) as zigna:
            with anyio.fail_after(2):  # not the 5 s the server asked for
                with anyio.move_on_after(0.1) as scope:
                    await zigna.orders.get(fake.order_ids[0])
            assert scope.cancelled_caught
            assert budget.used == 1 and budget.in_flight == 0
            assert (await zigna.orders.get(fake.order_ids[0])).id == fake.order_ids[0]
        assert fake.calls == 2


# -- walks -----------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_walk_cancelled_at_random_points(anyio_backend: str) -> None:
    fake = FakeZiik(depth=3, branching=4, token="walk-token", latency=0.003)
    rng = random.Random(anyio_backend)
    with serve(fake.app) as origin:
        root = fake.top_level_ids[0]
        every = sorted([root, *fake.descendant_ids(root)])
        async with ZiikClient(origin + "/api", "walk-token", retry=RETRY) as ziik:
            started = time.monotonic()
            assert sorted([n.unit.id async for n in ziik.units.walk(root)]) == every  # type: ignore[type-var]
            duration = time.monotonic() - started
            tasks = live_tasks()
            for round_ in range(ROUNDS):
                seen: list[int | None] = []
                if round_ % 2:
                    with anyio.move_on_after(rng.uniform(0, duration)):
                        async for node in ziik.units.walk(root, concurrency=4):
                            seen.append(node.unit.id)
                else:  # the consumer leaves early (aclosing: the walk is an async generator)
                    stop = rng.randrange(1, len(every))
                    async with aclosing(ziik.units.walk(root, concurrency=4)) as walk:
                        async for node in walk:
                            seen.append(node.unit.id)
                            if len(seen) == stop:
                                break
                assert len(seen) == len(set(seen))
                await server_settles(lambda: fake.in_flight)
                await tasks_back_to(tasks)
                assert pool_is_quiet(ziik)
            again = sorted([n.unit.id async for n in ziik.units.walk(root)])  # type: ignore[type-var]
    assert again == every


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_walk_whose_fetch_fails_while_siblings_are_in_flight() -> None:
    """One children call fails for good while others are in flight: the walk ends with that
    error, and the others are cancelled, not leaked."""
    fake = FakeZiik(depth=2, branching=6, token="walk-token", latency=0.01)
    with serve(fake.app) as origin:
        root = fake.top_level_ids[0]
        failing = fake.children_ids(root)[3]
        fake.faults.fail_next(100, 500, f"/units/{failing}/children")
        async with ZiikClient(origin + "/api", "walk-token", retry=RETRY) as ziik:
            tasks = live_tasks()
            with pytest.raises(ServerError):
                async for _ in ziik.units.walk(root, concurrency=6):
                    pass
            await server_settles(lambda: fake.in_flight)
            await tasks_back_to(tasks)
            assert pool_is_quiet(ziik)
