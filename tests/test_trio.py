"""The key client paths under asyncio *and* trio, against the fake servers over loopback.

Each test is marked ``both_backends`` (see conftest.py): anyio's pytest plugin runs it once
per backend, with real sockets to a uvicorn-served fake, so httpx, the transport, the budget,
the retries, the downloader, the walker and the harvest are all exercised on trio too.
Detailed behaviour is tested elsewhere; here the point is "works the same on both".
"""

from __future__ import annotations

import gc
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from zigziik import (
    BudgetExhaustedError,
    ClientClosedError,
    DailyBudget,
    NotFoundError,
    Picture,
    RetryPolicy,
    ServerError,
    ZignaClient,
    ZiikClient,
    safe_extract,
)
from zigziik.testing import DEMO_API_KEY, FakeZigna, make_jpeg, serve
from zigziik.testing._ziik import FakeZiik

# ResourceWarning as an error: e.g. trio warns about async generators left for the GC
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.both_backends,
    pytest.mark.filterwarnings("error::ResourceWarning"),
]

FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.005)


@contextmanager
def zigna_served(**options: Any) -> Iterator[tuple[FakeZigna, str]]:
    options.setdefault("orders", 6)
    options.setdefault("pictures_per_order", 3)
    options.setdefault("picture_size", (1_500, 4_000))
    fake = FakeZigna(**options)
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


def zigna(base: str, **kwargs: Any) -> ZignaClient:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeout", 10.0)
    return ZignaClient(DEMO_API_KEY, base_url=base, **kwargs)


def with_pictures(fake: FakeZigna) -> str:
    return next(o for o in fake.order_ids if fake.pictures(o))


def without_pictures(fake: FakeZigna) -> str:
    return next(o for o in fake.order_ids if not fake.pictures(o))


async def test_list_get_and_paginate() -> None:
    with zigna_served(orders=7) as (fake, base):
        async with zigna(base) as client:
            ids = [order.id async for order in client.orders.list(take=3)]
            assert ids == fake.order_ids
            pages = [len(page) async for page in client.orders.list(take=3).pages()]
            assert pages == [3, 3, 1]
            assert len(await client.orders.list(take=2).collect(limit=3)) == 3
            order = await client.orders.get(ids[2])
            assert order.id == ids[2]
            assert order.seller is not None
            assert await client.orders.packages()
            with pytest.raises(NotFoundError):
                await client.orders.get("no-such-order")


async def test_leaving_a_paginator_early_leaves_nothing_behind() -> None:
    """``break`` out of ``async for`` needs no ``aclosing`` (trio warns about async generators
    left to the GC; the paginator has none)."""
    with zigna_served(orders=5) as (fake, base):
        async with zigna(base) as client:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                async for _order in client.orders.list(take=2):
                    break
                async for _page in client.orders.list(take=2).pages():
                    break
                assert len(await client.orders.list(take=2).collect(limit=1)) == 1
                gc.collect()
            leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
            assert [str(w.message) for w in leaks] == []
            assert fake.calls == 3  # one page each, nothing fetched ahead


async def test_download_pictures_and_zip(tmp_path: Path) -> None:
    with zigna_served() as (fake, base):
        order_id = with_pictures(fake)
        async with zigna(base) as client:
            listing = await client.pictures.list(order_id)
            assert len(listing.pictures) == len(fake.pictures(order_id))
            first = listing.pictures[0]
            assert first.picture_id is not None
            path = await client.pictures.download(order_id, first, tmp_path / "p")
            assert path.read_bytes() == fake.picture_bytes(order_id, first.picture_id)
            by_id = await client.pictures.download(order_id, first.picture_id, tmp_path / "i")
            assert by_id.read_bytes() == path.read_bytes()

            calls = fake.calls
            again = await client.pictures.download(order_id, first, tmp_path / "p")
            assert again == path and fake.calls == calls  # complete already: no call

            zip_path = await client.pictures.download_zip(order_id, tmp_path / "z")
            assert zip_path is not None
            with zipfile.ZipFile(zip_path) as archive:
                assert len(archive.namelist()) == len(listing.pictures)
            extracted = await safe_extract(zip_path, tmp_path / "x")
            assert len(extracted) == len(listing.pictures)

            empty = without_pictures(fake)
            assert await client.pictures.download_zip(empty, tmp_path / "e") is None
            assert not list((tmp_path / "e").iterdir())


async def test_upload_and_replace(tmp_path: Path) -> None:
    with zigna_served() as (fake, base):
        order_id = with_pictures(fake)
        before = len(fake.pictures(order_id))
        image = tmp_path / "facade.jpg"
        image.write_bytes(make_jpeg(3_000, seed=7))
        async with zigna(base) as client:
            await client.pictures.upload(order_id, image)
            listing = await client.pictures.list(order_id)
            assert len(listing.pictures) == before + 1
            added = next(p for p in listing.pictures if p.original_file_name == "facade.jpg")
            assert added.picture_id is not None and added.size == 3_000
            assert fake.picture_bytes(order_id, added.picture_id) == image.read_bytes()

            replacement = tmp_path / "facade2.jpg"
            replacement.write_bytes(make_jpeg(2_500, seed=8))
            await client.pictures.replace(order_id, added.picture_id, replacement)
            assert fake.picture_bytes(order_id, added.picture_id) == replacement.read_bytes()


async def test_budget_exhaustion_counted_locally() -> None:
    """No rate-limit headers: a budget of 3 lets exactly 3 of 10 concurrent calls out."""
    with zigna_served(daily_limit=None) as (fake, base):
        order_id = fake.order_ids[0]
        budget = DailyBudget(3)
        refused: list[BudgetExhaustedError] = []
        served = 0

        async def one(client: ZignaClient) -> None:
            nonlocal served
            try:
                await client.orders.get(order_id)
                served += 1
            except BudgetExhaustedError as exc:
                refused.append(exc)

        async with zigna(base, budget=budget) as client:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(one, client)
        assert served == 3
        assert len(refused) == 7
        assert fake.calls == 3
        assert budget.remaining == 0
        assert refused[0].reset_at == budget.reset_at


async def test_budget_exhaustion_told_by_the_server() -> None:
    """The server's X-RateLimit-Remaining wins: after it says 0, nothing leaves the process."""
    with zigna_served(daily_limit=5) as (fake, base):
        async with zigna(base) as client:
            for _ in range(5):
                await client.orders.get(fake.order_ids[0])
            assert client.budget is not None and client.budget.remaining == 0
            with pytest.raises(BudgetExhaustedError):
                await client.orders.get(fake.order_ids[0])
        assert fake.calls == 5
        assert fake.rejected == 0


async def test_retries_after_503_then_gives_up() -> None:
    with zigna_served() as (fake, base):
        order_id = fake.order_ids[0]
        async with zigna(base) as client:
            fake.faults.fail_next(2, status=503)
            assert (await client.orders.get(order_id)).id == order_id
            assert fake.calls == 3

            fake.faults.fail_next(10, status=503)
            with pytest.raises(ServerError) as info:
                await client.orders.get(order_id)
            assert info.value.status_code == 503
            assert fake.calls == 3 + FAST_RETRY.max_attempts
            fake.faults.clear()


async def test_broken_download_is_retried(tmp_path: Path) -> None:
    with zigna_served() as (fake, base):
        order_id = with_pictures(fake)
        picture = Picture(**_picture_fields(fake, order_id))
        assert picture.picture_id is not None
        async with zigna(base) as client:
            fake.faults.truncate_next(1, match=f"/pictures/{picture.picture_id}")
            path = await client.pictures.download(order_id, picture, tmp_path)
        assert path.read_bytes() == fake.picture_bytes(order_id, picture.picture_id)
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


async def test_cancelled_download_leaves_no_file(tmp_path: Path) -> None:
    """Cancelled while the body is pending: no file, no temporary file, client still usable."""
    with zigna_served() as (fake, base):
        order_id = with_pictures(fake)
        picture_id = fake.pictures(order_id)[0]["pictureID"]
        async with zigna(base) as client:
            fake.faults.stall_next(1, match=f"/pictures/{picture_id}", seconds=30)
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.pictures.download, order_id, picture_id, tmp_path)
                with anyio.fail_after(45):  # a deadlock guard only
                    while not fake.faults.fired:  # noqa: ASYNC110 - set by the server thread
                        await anyio.sleep(0.005)
                tg.cancel_scope.cancel()
            assert list(tmp_path.iterdir()) == []
            path = await client.pictures.download(order_id, picture_id, tmp_path)
            assert path.read_bytes() == fake.picture_bytes(order_id, picture_id)


async def test_closing_under_both_backends() -> None:
    with zigna_served() as (fake, base):
        client = zigna(base)
        async with client:
            await client.orders.list().collect(limit=1)
        with pytest.raises(ClientClosedError):
            await client.orders.get(fake.order_ids[0])
        await client.aclose()


async def test_harvest(tmp_path: Path) -> None:
    with zigna_served(orders=4) as (fake, base):
        async with zigna(base) as client:
            report = await client.harvest(tmp_path, concurrency=4)
        assert report.ok, report.failures
        assert report.orders == 4
        assert report.written == fake.picture_count
        assert report.bytes == fake.picture_bytes_total


async def test_ziik_units_walk_and_login() -> None:
    fake = FakeZiik(depth=2, branching=3, roots=2)
    with serve(fake.app) as origin:
        async with ZiikClient(
            origin + "/api", username=fake.username, password=fake.password, retry=FAST_RETRY
        ) as ziik:
            top = await ziik.units.list().collect()
            assert sorted(u.id for u in top if u.parent is None) == sorted(fake.top_level_ids)
            unit = await ziik.units.get(fake.top_level_ids[0])
            assert unit.id == fake.top_level_ids[0]
            nodes = [node async for node in ziik.units.walk(concurrency=4)]
        assert sorted(n.unit.id for n in nodes) == sorted(fake.unit_ids)
        assert len({n.unit.id for n in nodes}) == len(nodes)
        depths = [n.depth for n in nodes]
        assert depths == sorted(depths)  # breadth-first
        assert fake.logins == 1


def _picture_fields(fake: FakeZigna, order_id: str) -> dict[str, Any]:
    raw = fake.pictures(order_id)[0]
    return {
        "picture_id": raw["pictureID"],
        "original_file_name": raw["originalFileName"],
        "size": raw["size"],
    }


async def test_leaving_a_walk_early_with_aclosing_leaves_nothing_behind() -> None:
    """The walk is an async generator: stop early inside ``aclosing`` (typed as one)."""
    fake = FakeZiik(depth=2, branching=3)
    with serve(fake.app) as origin:
        async with ZiikClient(
            origin + "/api", username=fake.username, password=fake.password
        ) as ziik:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                async with aclosing(ziik.units.walk(concurrency=2)) as nodes:
                    async for node in nodes:
                        assert node.depth == 0
                        break
                gc.collect()
            leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
            assert [str(w.message) for w in leaks] == []
