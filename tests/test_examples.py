"""The embedding examples (``examples/``) against the fake Zigna server over loopback.

The FastAPI app runs its real lifespan (``app.router.lifespan_context``) and is called through
``httpx.ASGITransport``, under asyncio and trio. The aiohttp app runs on aiohttp's own test
server (asyncio only: aiohttp is asyncio-only).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from zigziik import ConfigurationError, DailyBudget, RetryPolicy, ZignaClient
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve

ROOT = Path(__file__).resolve().parent.parent
FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.005)

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("error::ResourceWarning")]


def load_example(name: str) -> ModuleType:
    """``examples.<name>``, imported from the repository (it is not an installed package)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"examples.{name}")


fastapi_app = load_example("fastapi_app")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeZigna, str]]:
    """A fake without server-side limits: the client's own budget decides."""
    fake = FakeZigna(orders=5, pictures_per_order=2, picture_size=1_000, daily_limit=None)
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


@pytest.fixture
def fake(served: tuple[FakeZigna, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZigna]:
    """The fake, with the environment configured for it (as a deployment would be)."""
    zigna, base = served
    monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("ZIGNA_BASE_URL", base)
    yield zigna
    zigna.faults.clear()


def clients_made(**kwargs: Any) -> tuple[list[ZignaClient], Callable[[], ZignaClient]]:
    """A ``make_client`` that records what it made (env config plus ``kwargs``)."""
    made: list[ZignaClient] = []

    def make() -> ZignaClient:
        client = ZignaClient(**kwargs)
        made.append(client)
        return client

    return made, make


def with_pictures(fake: FakeZigna) -> str:
    return next(o for o in fake.order_ids if fake.pictures(o))


# -- FastAPI ---------------------------------------------------------------------------------


@asynccontextmanager
async def fastapi_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan, then talk to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http


@pytest.mark.both_backends
async def test_fastapi_orders(fake: FakeZigna) -> None:
    made, make = clients_made()
    app = fastapi_app.create_app(make)
    async with fastapi_client(app) as http:
        listed = await http.get("/orders", params={"limit": 3})
        assert listed.status_code == 200
        assert [o["id"] for o in listed.json()] == fake.order_ids[:3]

        order_id = fake.order_ids[1]
        one = await http.get(f"/orders/{order_id}")
        assert one.status_code == 200
        body = one.json()
        raw = fake.order(order_id)
        assert body["id"] == order_id
        assert body["status_id"] == raw["statusID"]
        assert body["case_number"] == raw["caseNumber"]
        assert body["city"] == raw["seller"]["city"]

        with_pics = with_pictures(fake)
        pictures = await http.get(f"/orders/{with_pics}/pictures")
        assert [p["picture_id"] for p in pictures.json()] == [
            p["pictureID"] for p in fake.pictures(with_pics)
        ]

        budget = (await http.get("/budget")).json()
        assert budget["limit"] == 2000
        assert budget["remaining"] == 2000 - 3

        assert (await http.get("/orders", params={"limit": 0})).status_code == 422
    assert len(made) == 1, "one client for the whole app"
    assert made[0].closed, "closed when the app shut down"


@pytest.mark.both_backends
async def test_fastapi_not_found_is_404(fake: FakeZigna) -> None:
    async with fastapi_client(fastapi_app.create_app()) as http:
        response = await http.get("/orders/no-such-order")
        assert response.status_code == 404
        assert response.json() == {"detail": "not found in Zigna"}
        response = await http.get("/orders/no-such-order/pictures")
        assert response.status_code == 404


@pytest.mark.both_backends
async def test_fastapi_budget_exhausted_is_503_with_retry_after(fake: FakeZigna) -> None:
    made, make = clients_made(budget=DailyBudget(2))
    async with fastapi_client(fastapi_app.create_app(make)) as http:
        order_id = fake.order_ids[0]
        calls = fake.calls
        assert (await http.get(f"/orders/{order_id}")).status_code == 200
        assert (await http.get(f"/orders/{order_id}")).status_code == 200
        refused = await http.get(f"/orders/{order_id}")
        assert refused.status_code == 503
        assert fake.calls == calls + 2, "the refused call never reached the server"
        budget = made[0].budget
        assert budget is not None and budget.remaining == 0
        expected = (budget.reset_at - datetime.now(timezone.utc)).total_seconds()
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 25 * 3600
        assert abs(retry_after - expected) <= 5
        assert "budget" in refused.json()["detail"]


@pytest.mark.both_backends
async def test_fastapi_upstream_429_is_503(fake: FakeZigna) -> None:
    _, make = clients_made(retry=RetryPolicy.never())
    async with fastapi_client(fastapi_app.create_app(make)) as http:
        fake.faults.fail_next(1, status=429, retry_after=120)
        response = await http.get(f"/orders/{fake.order_ids[0]}")
        assert response.status_code == 503
        assert 100 <= int(response.headers["Retry-After"]) <= 121


@pytest.mark.both_backends
async def test_fastapi_upstream_failures_are_502(fake: FakeZigna) -> None:
    _, make = clients_made(retry=RetryPolicy.never())
    async with fastapi_client(fastapi_app.create_app(make)) as http:
        order_id = fake.order_ids[0]
        fake.faults.fail_next(1, status=500, body=b"stack trace with secrets")
        server_error = await http.get(f"/orders/{order_id}")
        assert server_error.status_code == 502
        assert "secrets" not in server_error.text
        assert "127.0.0.1" not in server_error.text

        fake.faults.garbage_next(1, match=f"/orders/{order_id}")
        garbage = await http.get(f"/orders/{order_id}")  # 200 with a body that is not JSON
        assert garbage.status_code == 502

        fake.faults.fail_next(1, status=401)
        assert (await http.get(f"/orders/{order_id}")).status_code == 502

        assert (await http.get(f"/orders/{order_id}")).status_code == 200


async def test_fastapi_network_failure_is_502(
    served: tuple[FakeZigna, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("ZIGNA_BASE_URL", "http://127.0.0.1:9/v2")  # discard: nothing listens
    _, make = clients_made(retry=RetryPolicy.never(), timeout=2.0)
    async with fastapi_client(fastapi_app.create_app(make)) as http:
        assert (await http.get("/orders/1")).status_code == 502


async def test_fastapi_startup_fails_without_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ZIGNA_API_KEY", raising=False)
    app = fastapi_app.create_app()
    with pytest.raises(ConfigurationError, match="ZIGNA_API_KEY"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover


def test_retry_after_seconds() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    for module in (fastapi_app, load_example("aiohttp_app")):
        seconds = module.retry_after_seconds
        assert seconds(now + timedelta(seconds=90), now) == 90
        assert seconds(now + timedelta(seconds=90.2), now) == 91
        assert seconds(now + timedelta(milliseconds=10), now) == 1
        assert seconds(now - timedelta(seconds=5), now) == 1
        assert seconds(None, now) == 60


def test_fastapi_module_app_builds_no_client_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """``uvicorn examples.fastapi_app:app`` imports without configuration; the client comes later."""
    monkeypatch.delenv("ZIGNA_API_KEY", raising=False)
    module = importlib.reload(fastapi_app)
    assert not hasattr(module.app.state, "zigna")


# -- aiohttp (asyncio only) ------------------------------------------------------------------


async def test_aiohttp_app(fake: FakeZigna) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    aiohttp_app = load_example("aiohttp_app")
    made, make = clients_made(budget=DailyBudget(9), retry=FAST_RETRY)
    app = aiohttp_app.create_app(make_client=make)
    async with TestClient(TestServer(app)) as http:
        listed = await http.get("/orders", params={"limit": "2"})
        assert listed.status == 200
        assert [o["id"] for o in await listed.json()] == fake.order_ids[:2]

        order_id = fake.order_ids[2]
        one = await http.get(f"/orders/{order_id}")
        assert one.status == 200
        assert (await one.json())["case_number"] == fake.order(order_id)["caseNumber"]

        with_pics = with_pictures(fake)
        pictures = await (await http.get(f"/orders/{with_pics}/pictures")).json()
        assert len(pictures) == len(fake.pictures(with_pics))

        missing = await http.get("/orders/no-such-order")
        assert missing.status == 404
        assert await missing.json() == {"detail": "not found in Zigna"}

        assert (await http.get("/orders", params={"limit": "x"})).status == 400

        fake.faults.fail_next(FAST_RETRY.max_attempts, status=500)  # every attempt fails
        assert (await http.get(f"/orders/{order_id}")).status == 502

        assert (await http.get(f"/orders/{order_id}")).status == 200  # the 9th call
        refused = await http.get(f"/orders/{order_id}")
        assert refused.status == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert made[0].budget is not None and made[0].budget.remaining == 0
        assert not made[0].closed
    assert len(made) == 1
    assert made[0].closed, "cleanup_ctx closed the client"


async def test_aiohttp_upstream_429_is_503(fake: FakeZigna) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    aiohttp_app = load_example("aiohttp_app")
    _, make = clients_made(retry=RetryPolicy.never())
    async with TestClient(TestServer(aiohttp_app.create_app(make_client=make))) as http:
        fake.faults.fail_next(1, status=429, retry_after=300)
        response = await http.get(f"/orders/{fake.order_ids[0]}")
        assert response.status == 503
        assert 280 <= int(response.headers["Retry-After"]) <= 301
