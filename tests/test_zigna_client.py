"""The Zigna client and the transport under it, against respx mocks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
import respx

import zigziik
from zigziik import (
    APIError,
    AuthenticationError,
    BudgetExhaustedError,
    ClientClosedError,
    ConfigurationError,
    ContactForm,
    DailyBudget,
    DecodeError,
    ExtraProduct,
    HousingType,
    IncompleteBodyError,
    IntegrityError,
    NewOrder,
    NewOrderProducts,
    NotFoundError,
    Order,
    OrderReceipt,
    OrderStatus,
    Package,
    Picture,
    RateLimitedError,
    RetryPolicy,
    Seller,
    ServerError,
    TransportError,
    UnprocessableEntityError,
    ZignaClient,
)
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve

KEY = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
BASE = "https://api.zigna.dk/v2"

pytestmark = pytest.mark.anyio


async def _no_sleep(_: float) -> None:
    await anyio.lowlevel.checkpoint()


def client(**kwargs: Any) -> ZignaClient:
    kwargs.setdefault("retry", RetryPolicy(jitter=False))
    zigna = ZignaClient(KEY, **kwargs)
    zigna._transport.sleep = _no_sleep
    return zigna


@pytest.fixture
def mock() -> respx.MockRouter:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def order_json(order_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": order_id, "statusID": 5, "totalPrice": 100.25, **extra}


def page(ids: list[str], next_link: str | None, take: int = 2, skip: int = 0) -> dict[str, Any]:
    return {
        "response": {"take": take, "skip": skip, "next": next_link},
        "orders": [order_json(i) for i in ids],
    }


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}",
        " 3F2504E0-4F89-11D3-9A0C-0305E82C3301 ",
    ],
)
async def test_guid_keys_are_accepted_and_sent_without_braces(
    mock: respx.MockRouter, key: str
) -> None:
    route = mock.get("/orders/1").respond(json=order_json("1"))
    async with ZignaClient(key) as zigna:
        await zigna.orders.get("1")
    sent = route.calls.last.request.headers
    assert sent["X-ApiKey"] == key.strip().strip("{}")
    assert sent["Accept"] == "application/json"
    assert sent["User-Agent"].startswith(f"zigziik/{zigziik.__version__}")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not-a-guid",
        "3f2504e0-4f89-11d3-9a0c-0305e82c330",
        "{3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        42,
    ],
)
def test_bad_keys_raise_without_showing_the_key(key: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        ZignaClient(key)
    if isinstance(key, str) and key:
        assert key not in str(info.value)


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIGNA_API_KEY", KEY)
    zigna = ZignaClient()
    assert KEY not in repr(zigna)
    anyio.run(zigna.aclose)


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZIGNA_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ZIGNA_API_KEY"):
        ZignaClient()


@pytest.mark.parametrize("url", ["http://api.zigna.dk/v2", "ftp://x", "https://u:p@api.zigna.dk"])
def test_insecure_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        ZignaClient(KEY, base_url=url)


async def test_loopback_http_is_allowed(mock: respx.MockRouter) -> None:
    async with respx.mock(base_url="http://127.0.0.1:8123/v2") as local:
        local.get("/orders/1").respond(json=order_json("1"))
        async with ZignaClient(KEY, base_url="http://127.0.0.1:8123/v2") as zigna:
            assert (await zigna.orders.get("1")).id == "1"


async def test_caller_supplied_client_is_used_and_not_closed(mock: respx.MockRouter) -> None:
    mock.get("/orders/1").respond(json=order_json("1"))
    async with httpx.AsyncClient() as own:
        async with ZignaClient(KEY, http_client=own) as zigna:
            await zigna.orders.get("1")
        assert not own.is_closed
        assert zigna.closed


@pytest.mark.both_backends
async def test_closed_client_raises_a_clear_error(mock: respx.MockRouter) -> None:
    zigna = client()
    await zigna.aclose()
    with pytest.raises(ClientClosedError, match="closed"):
        await zigna.orders.get("1")


def test_wrong_http_client_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="AsyncClient"):
        ZignaClient(KEY, http_client=httpx.Client())  # type: ignore[arg-type]


def test_unclosed_client_warns() -> None:
    zigna = ZignaClient(KEY)
    with pytest.warns(ResourceWarning, match="not closed"):
        zigna.__del__()
    anyio.run(zigna.aclose)


# -- orders ---------------------------------------------------------------------------------------


@pytest.mark.both_backends
async def test_orders_list_follows_next_links(mock: respx.MockRouter) -> None:
    first = mock.get("/orders", params={"take": "2", "skip": "0"}).respond(
        json=page(["1", "2"], "/v2/orders?take=2&skip=2")
    )
    second = mock.get("/orders", params={"take": "2", "skip": "2"}).respond(
        json=page(["3", "4"], "/v2/orders?take=2&skip=4", skip=2)
    )
    third = mock.get("/orders", params={"take": "2", "skip": "4"}).respond(
        json=page(["5"], None, skip=4)
    )
    async with client() as zigna:
        orders = [order async for order in zigna.orders.list(take=2)]
    assert [o.id for o in orders] == ["1", "2", "3", "4", "5"]
    assert all(type(o) is Order for o in orders)
    assert all(type(o.status_id) is OrderStatus for o in orders)
    assert (first.call_count, second.call_count, third.call_count) == (1, 1, 1)


async def test_orders_list_pages(mock: respx.MockRouter) -> None:
    mock.get("/orders", params={"skip": "0"}).respond(
        json=page(["1", "2"], "/v2/orders?take=2&skip=2")
    )
    mock.get("/orders", params={"skip": "2"}).respond(json=page(["3"], ""))
    async with client() as zigna:
        pages = [[o.id for o in p] async for p in zigna.orders.list(take=2).pages()]
    assert pages == [["1", "2"], ["3"]]


async def test_orders_list_stops_on_an_empty_page(mock: respx.MockRouter) -> None:
    mock.get("/orders", params={"skip": "0"}).respond(json=page(["1"], "/v2/orders?take=2&skip=2"))
    empty = mock.get("/orders", params={"skip": "2"}).respond(
        json=page([], "/v2/orders?take=2&skip=4")
    )
    async with client() as zigna:
        ids = [o.id async for o in zigna.orders.list(take=2)]
    assert ids == ["1"]
    assert empty.call_count == 1


async def test_orders_list_does_not_loop_on_a_repeated_next(mock: respx.MockRouter) -> None:
    route = mock.get("/orders").respond(json=page(["1", "2"], "/v2/orders?take=2&skip=0"))
    async with client() as zigna:
        ids = [o.id async for o in zigna.orders.list(take=2)]
    assert ids == ["1", "2"]
    assert route.call_count == 1


async def test_orders_list_detects_a_cycle_of_next_links(mock: respx.MockRouter) -> None:
    mock.get("/orders", params={"skip": "0"}).respond(json=page(["1"], "/v2/orders?skip=2&take=2"))
    back = mock.get("/orders", params={"skip": "2"}).respond(
        json=page(["2"], "/v2/orders?take=2&skip=0")
    )
    async with client() as zigna:
        ids = [o.id async for o in zigna.orders.list(take=2)]
    assert ids == ["1", "2"]
    assert back.call_count == 1


async def test_orders_list_detects_a_cycle_that_misses_the_first_page(
    mock: respx.MockRouter,
) -> None:
    """A -> B -> C -> B: the paginator must remember every link it followed, not only the
    first page."""
    mock.get("/orders", params={"skip": "0"}).respond(json=page(["1"], "/v2/orders?skip=2&take=2"))
    b = mock.get("/orders", params={"skip": "2"}).respond(
        json=page(["2"], "/v2/orders?take=2&skip=4")
    )
    c = mock.get("/orders", params={"skip": "4"}).respond(
        json=page(["3"], "/v2/orders?take=2&skip=2")
    )
    async with client() as zigna:
        with anyio.fail_after(45):
            ids = [o.id async for o in zigna.orders.list(take=2)]
    assert ids == ["1", "2", "3"]
    assert (b.call_count, c.call_count) == (1, 1)


async def test_orders_list_refuses_a_next_link_to_another_origin(mock: respx.MockRouter) -> None:
    mock.get("/orders").respond(json=page(["1"], "https://evil.example/v2/orders?skip=2"))
    async with client() as zigna:
        with pytest.raises(DecodeError, match="another origin"):
            _ = [o async for o in zigna.orders.list()]


async def test_orders_list_collect_with_limit(mock: respx.MockRouter) -> None:
    mock.get("/orders", params={"skip": "0"}).respond(
        json=page(["1", "2"], "/v2/orders?take=2&skip=2")
    )
    later = mock.get("/orders", params={"skip": "2"}).respond(json=page(["3"], None))
    async with client() as zigna:
        assert [o.id for o in await zigna.orders.list(take=2).collect(limit=2)] == ["1", "2"]
        assert later.call_count == 0


@pytest.mark.parametrize(("take", "skip"), [(0, 0), (-1, 0), (10, -1)])
async def test_orders_list_validates_paging(take: int, skip: int) -> None:
    async with client() as zigna:
        with pytest.raises(ValueError, match="take|skip"):
            zigna.orders.list(take=take, skip=skip)


async def test_orders_list_with_a_broken_page_raises_decode_error(mock: respx.MockRouter) -> None:
    mock.get("/orders").respond(json={"response": {"next": None}, "orders": [{"floors": "two"}]})
    async with client() as zigna:
        with pytest.raises(DecodeError, match="floors") as info:
            _ = [o async for o in zigna.orders.list()]
    assert "GET https://api.zigna.dk/v2/orders?take=50&skip=0" in str(info.value)


async def test_orders_get(mock: respx.MockRouter) -> None:
    mock.get("/orders/A%2F1").respond(json=order_json("A/1", floors=3))
    async with client() as zigna:
        order = await zigna.orders.get("A/1")
    assert order.id == "A/1"
    assert type(order.total_price) is Decimal
    assert order.total_price == Decimal("100.25")


async def test_orders_create_sends_camel_case_and_is_not_retried(mock: respx.MockRouter) -> None:
    route = mock.post("/orders").respond(
        json={"status": "OK", "orderNumber": "Z-1001", "created": "2026-11-22T10:00:00"}
    )
    new = NewOrder(
        floors=1,
        products=NewOrderProducts("P1", ["E1"]),
        case_number="C-9",
        contact_form=ContactForm.NO_CONTACT,
        m2=80,
        seller=Seller(name="Ole", postal_code="2100"),
        home_type=2,
    )
    async with client() as zigna:
        receipt = await zigna.orders.create(new)
    assert receipt == OrderReceipt("OK", "Z-1001", datetime(2026, 11, 22, 10, 0))
    body = json.loads(route.calls.last.request.content)
    assert body["products"] == {"packageName": "P1", "extraProducts": ["E1"]}
    assert body["contactForm"] == 2
    assert body["homeType"] == 2
    assert body["caseNumber"] == "C-9"
    assert route.calls.last.request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_orders_create_is_not_retried_after_an_answer(
    mock: respx.MockRouter, status: int
) -> None:
    route = mock.post("/orders").respond(status, headers={"Retry-After": "1"})
    async with client() as zigna:
        with pytest.raises(APIError):
            await zigna.orders.create(_new_order())
    assert route.call_count == 1


async def test_orders_create_is_not_retried_after_a_read_timeout(
    mock: respx.MockRouter, http: Any
) -> None:
    route = mock.post("/orders").mock(side_effect=http.ReadTimeout("slow"))
    async with client() as zigna:
        with pytest.raises(TransportError, match="timed out"):
            await zigna.orders.create(_new_order())
    assert route.call_count == 1


@pytest.mark.both_backends
async def test_orders_create_is_retried_when_the_connection_never_opened(
    http: Any,
    mock: respx.MockRouter,
) -> None:
    route = mock.post("/orders").mock(
        side_effect=[
            http.ConnectError("refused"),
            httpx.Response(200, json={"status": "OK", "orderNumber": "Z-2"}),
        ]
    )
    async with client() as zigna:
        receipt = await zigna.orders.create(_new_order())
    assert receipt.order_number == "Z-2"
    assert route.call_count == 2


async def test_orders_create_refuses_a_dict() -> None:
    async with client() as zigna:
        with pytest.raises(TypeError, match="NewOrder"):
            await zigna.orders.create({"floors": 1})  # type: ignore[arg-type]


def _new_order() -> NewOrder:
    return NewOrder(
        floors=1,
        products=NewOrderProducts("P1"),
        case_number="C",
        contact_form=1,
        m2=1,
        seller=Seller(),
        home_type=1,
    )


async def test_catalogs(mock: respx.MockRouter) -> None:
    mock.get("/orders/packages").respond(
        json=[
            {
                "id": "P1",
                "name": "Basic",
                "extraProducts": [{"id": "E1", "name": "Drone", "description": "Aerial"}],
            }
        ]
    )
    mock.get("/orders/housingtypes").respond(
        json=[{"id": 1, "name": "Villa"}, {"id": 2, "name": "Flat"}]
    )
    mock.get("/orders/extraproducts").respond(
        json=[{"id": "E1", "name": "Drone", "description": "Aerial"}]
    )
    async with client() as zigna:
        packages = await zigna.orders.packages()
        housing = await zigna.orders.housing_types()
        extras = await zigna.orders.extra_products()
    assert packages == [Package("P1", "Basic", [ExtraProduct("E1", "Drone", "Aerial")])]
    assert housing == [HousingType(1, "Villa"), HousingType(2, "Flat")]
    assert type(housing[0].id) is int
    assert extras == [ExtraProduct("E1", "Drone", "Aerial")]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, APIError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (405, APIError),
    ],
)
async def test_error_statuses_map_to_exceptions(
    mock: respx.MockRouter, status: int, cls: type[APIError]
) -> None:
    route = mock.get("/orders/1").respond(status, text=f"problem {KEY} here")
    async with client() as zigna:
        with pytest.raises(cls) as info:
            await zigna.orders.get("1")
    error = info.value
    assert error.status_code == status
    assert error.method == "GET"
    assert error.url == f"{BASE}/orders/1"
    assert "problem" in str(error)
    assert KEY not in str(error) and KEY not in repr(error)
    assert KEY.lower() not in str(error).lower()
    assert route.call_count == 1


@pytest.mark.both_backends
async def test_server_errors_are_retried_then_raised(mock: respx.MockRouter) -> None:
    route = mock.get("/orders/1").respond(503, text="down")
    budget = DailyBudget()
    async with client(budget=budget) as zigna:
        with pytest.raises(ServerError):
            await zigna.orders.get("1")
    assert route.call_count == 4
    assert budget.used == 4  # every attempt counts


async def test_server_error_then_success(mock: respx.MockRouter) -> None:
    mock.get("/orders/1").mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json=order_json("1"))]
    )
    async with client() as zigna:
        assert (await zigna.orders.get("1")).id == "1"


async def test_connect_errors_become_transport_errors(mock: respx.MockRouter, http: Any) -> None:
    route = mock.get("/orders/1").mock(side_effect=http.ConnectError("refused"))
    async with client() as zigna:
        with pytest.raises(TransportError) as info:
            await zigna.orders.get("1")
    assert isinstance(info.value.__cause__, http.ConnectError)
    assert "GET https://api.zigna.dk/v2/orders/1" in str(info.value)
    assert route.call_count == 4


@pytest.mark.both_backends
async def test_429_with_a_near_reset_is_retried(mock: respx.MockRouter) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    mock.get("/orders/1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(200, json=order_json("1")),
        ]
    )
    async with client() as zigna:
        zigna._transport.sleep = sleep
        await zigna.orders.get("1")
    assert slept == [2.0]


async def test_429_with_a_far_reset_raises_rate_limited(mock: respx.MockRouter) -> None:
    route = mock.get("/orders/1").respond(
        429, headers={"X-RateLimit-Reset": "3600", "X-RateLimit-Remaining": "0"}
    )
    budget = DailyBudget()
    before = datetime.now(timezone.utc)
    async with client(budget=budget) as zigna:
        with pytest.raises(RateLimitedError) as info:
            await zigna.orders.get("1")
    assert route.call_count == 1
    reset_at = info.value.reset_at
    assert reset_at is not None
    assert before + timedelta(seconds=3590) < reset_at < before + timedelta(seconds=3700)
    assert budget.remaining == 0  # the 429's headers were recorded too


async def test_200_with_html_is_a_decode_error(mock: respx.MockRouter) -> None:
    mock.get("/orders/1").respond(
        200, text="<html>maintenance</html>", headers={"Content-Type": "text/html"}
    )
    async with client() as zigna:
        with pytest.raises(DecodeError, match="not JSON"):
            await zigna.orders.get("1")


async def test_200_with_empty_body_is_a_decode_error(mock: respx.MockRouter) -> None:
    mock.get("/orders/packages").respond(200)
    async with client() as zigna:
        with pytest.raises(DecodeError, match="empty"):
            await zigna.orders.packages()


# -- the budget -----------------------------------------------------------------------------------


@pytest.mark.both_backends
async def test_budget_lets_exactly_the_remaining_calls_through(mock: respx.MockRouter) -> None:
    route = mock.get(url__regex=r"/orders/\d+$").mock(
        side_effect=lambda request: httpx.Response(
            200, json=order_json(request.url.path.rsplit("/", 1)[1])
        )
    )
    budget = DailyBudget(10)
    outcomes: list[object] = []

    async def one(zigna: ZignaClient, n: int) -> None:
        try:
            outcomes.append(await zigna.orders.get(str(n)))
        except BudgetExhaustedError as exc:
            outcomes.append(exc)

    async with client(budget=budget) as zigna, anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(one, zigna, n)
    assert route.call_count == 10
    assert sum(isinstance(o, Order) for o in outcomes) == 10
    exhausted = [o for o in outcomes if isinstance(o, BudgetExhaustedError)]
    assert len(exhausted) == 40
    assert exhausted[0].reset_at == budget.reset_at
    assert budget.remaining == 0


async def test_server_remaining_lowers_the_budget(mock: respx.MockRouter) -> None:
    mock.get("/orders/1").respond(
        json=order_json("1"), headers={"X-RateLimit-Limit": "2000", "X-RateLimit-Remaining": "3"}
    )
    route2 = mock.get("/orders/2").respond(json=order_json("2"))
    budget = DailyBudget()
    async with client(budget=budget) as zigna:
        await zigna.orders.get("1")
        assert budget.remaining == 3
        for _ in range(3):
            await zigna.orders.get("2")
        with pytest.raises(BudgetExhaustedError):
            await zigna.orders.get("2")
    assert route2.call_count == 3


@pytest.mark.both_backends
async def test_budget_wait_mode_waits_for_the_reset(mock: respx.MockRouter) -> None:
    now = [datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)]
    budget = DailyBudget(1, on_exhausted="wait", max_wait=60, clock=lambda: now[0])
    mock.get("/orders/1").respond(
        json=order_json("1"), headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += timedelta(seconds=seconds)

    async with client(budget=budget) as zigna:
        zigna._transport.sleep = sleep
        await zigna.orders.get("1")
        await zigna.orders.get("1")
    assert slept == [30.0]


def test_budget_must_be_a_daily_budget() -> None:
    with pytest.raises(ConfigurationError, match="DailyBudget"):
        ZignaClient(KEY, budget=10)  # type: ignore[arg-type]


# -- pictures ----------------------------------------------------------------------------------------


JPEG = b"\xff\xd8\xff\xe0" + b"x" * 1000 + b"\xff\xd9"


async def test_pictures_list(mock: respx.MockRouter) -> None:
    mock.get("/orders/7/pictures").respond(
        json={
            "order": order_json("7"),
            "pictures": [
                {
                    "pictureID": 1,
                    "originalFileName": "a.jpg",
                    "link": "x",
                    "size": 10,
                    "width": 4,
                    "height": 3,
                }
            ],
        }
    )
    async with client() as zigna:
        result = await zigna.pictures.list("7")
    assert result.order is not None and result.order.id == "7"
    assert result.pictures == [Picture(1, "a.jpg", "x", 10, 4, 3)]
    assert type(result.pictures[0].picture_id) is int


async def test_download_by_id_names_the_file_from_the_content_type(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    route = mock.get("/orders/7/pictures/12").respond(
        content=JPEG, headers={"Content-Type": "image/jpeg"}
    )
    async with client() as zigna:
        path = await zigna.pictures.download("7", 12, tmp_path)
    assert path == tmp_path / "12.jpg"
    assert path.read_bytes() == JPEG
    assert route.calls.last.request.headers["Accept"] == "*/*"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["12.jpg"]


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [
        ("application/pdf", ".pdf"),
        ("application/x-shockwave-flash", ".swf"),
        ("image/jpeg; charset=binary", ".jpg"),
    ],
)
async def test_download_extensions(
    mock: respx.MockRouter, tmp_path: Path, content_type: str, ext: str
) -> None:
    mock.get("/orders/7/pictures/3").respond(
        content=b"data", headers={"Content-Type": content_type}
    )
    async with client() as zigna:
        path = await zigna.pictures.download("7", 3, tmp_path)
    assert path.name == f"3{ext}"


async def test_download_picture_uses_a_safe_name_and_checks_size(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/orders/7/pictures/5").respond(content=JPEG, headers={"Content-Type": "image/jpeg"})
    picture = Picture(picture_id=5, original_file_name="../../etc/passwd.jpg", size=len(JPEG))
    async with client() as zigna:
        path = await zigna.pictures.download("7", picture, tmp_path / "out")
    assert path.parent == tmp_path / "out"
    assert path.read_bytes() == JPEG
    assert ".." not in path.name and "/" not in path.name


async def test_download_skips_a_complete_file_without_a_call(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    route = mock.get("/orders/7/pictures/5").respond(
        content=JPEG, headers={"Content-Type": "image/jpeg"}
    )
    picture = Picture(picture_id=5, original_file_name="living room.jpg", size=len(JPEG))
    budget = DailyBudget()
    async with client(budget=budget) as zigna:
        first = await zigna.pictures.download("7", picture, tmp_path)
        second = await zigna.pictures.download("7", picture, tmp_path)
    assert first == second
    assert route.call_count == 1
    assert budget.used == 1


@pytest.mark.both_backends
async def test_download_size_mismatch_raises_and_leaves_no_file(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/orders/7/pictures/5").respond(content=JPEG, headers={"Content-Type": "image/jpeg"})
    picture = Picture(picture_id=5, original_file_name="a.jpg", size=len(JPEG) + 1)
    async with client() as zigna:
        with pytest.raises(IntegrityError, match="size"):
            await zigna.pictures.download("7", picture, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def big_pictures() -> Iterator[tuple[FakeZigna, str]]:
    """A loopback fake whose pictures span several MiB (the disk thread is woken per MiB)."""
    fake = FakeZigna(orders=1, pictures_per_order=(1, 1), picture_size=6 << 20, seed=5)
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


@pytest.mark.both_backends
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("404", NotFoundError),
        ("truncate", IncompleteBodyError),  # half the body, then the connection closes
        ("reset", TransportError),  # a quarter, then an RST
        ("longer", IncompleteBodyError),  # Content-Length 7 bytes more than the body
        ("size", IntegrityError),  # every byte, but not the picture's size
    ],
)
async def test_download_errors_leave_no_file(
    big_pictures: tuple[FakeZigna, str], tmp_path: Path, fault: str, expected: type[Exception]
) -> None:
    """Failures after the temporary file was opened and written to (all but the 404, which
    never opens one): the file is removed, nothing is left in the folder."""
    fake, base = big_pictures
    order_id = fake.order_ids[0]
    (listing,) = fake.pictures(order_id)
    size = listing["size"]
    picture = Picture(
        picture_id=listing["pictureID"], original_file_name=listing["originalFileName"], size=size
    )
    match = f"/pictures/{picture.picture_id}"
    if fault == "404":
        fake.faults.fail_next(1, 404, match)
    elif fault == "truncate":
        fake.faults.truncate_next(1, match)
    elif fault == "reset":
        fake.faults.reset_next(1, match)
    elif fault == "longer":
        fake.faults.wrong_length_next(1, match, delta=+7)
    else:
        picture = attrs.evolve(picture, size=size + 1)
    received = 0

    def progress(count: int) -> None:
        nonlocal received
        received += count

    try:
        async with ZignaClient(
            DEMO_API_KEY, base_url=base, retry=RetryPolicy.never(), timeout=10
        ) as zigna:
            with pytest.raises(expected) as caught:
                await zigna.pictures.download(order_id, picture, tmp_path, progress=progress)
    finally:
        fake.faults.clear()
    assert type(caught.value) is expected
    assert list(tmp_path.iterdir()) == []
    if fault == "reset":  # an RST may discard some of the quarter that was sent
        assert received > 0
    elif fault != "404":
        assert received >= size // 4 > 1 << 20  # written towards the temporary file


async def test_download_into_a_file_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    async with client() as zigna:
        with pytest.raises(NotADirectoryError):
            await zigna.pictures.download("7", 5, target)


async def test_download_zip(mock: respx.MockRouter, tmp_path: Path) -> None:
    mock.get("/orders/7/pictures/zip").respond(
        content=b"PK\x03\x04zip", headers={"Content-Type": "application/zip"}
    )
    async with client() as zigna:
        path = await zigna.pictures.download_zip("7", tmp_path)
    assert path == tmp_path / "7.zip"
    assert path.read_bytes() == b"PK\x03\x04zip"


@pytest.mark.both_backends
async def test_download_zip_204_returns_none_and_writes_nothing(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/orders/7/pictures/zip").respond(204)
    async with client() as zigna:
        assert await zigna.pictures.download_zip("7", tmp_path) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.both_backends
async def test_upload_and_replace_send_multipart(mock: respx.MockRouter, tmp_path: Path) -> None:
    upload = mock.post("/orders/7/pictures").respond(200)
    replace = mock.post("/orders/7/pictures/5").respond(200)
    source = tmp_path / "kitchen.jpg"
    source.write_bytes(JPEG)
    async with client() as zigna:
        assert await zigna.pictures.upload("7", source) is None
        assert await zigna.pictures.replace("7", 5, source) is None
    for route in (upload, replace):
        request = route.calls.last.request
        assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
        assert b'filename="kitchen.jpg"' in request.content
        assert b"Content-Type: image/jpeg" in request.content
        assert JPEG in request.content


async def test_upload_of_a_missing_file_fails_before_any_request(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    route = mock.post("/orders/7/pictures").respond(200)
    async with client() as zigna:
        with pytest.raises(FileNotFoundError, match="nothing.jpg"):
            await zigna.pictures.upload("7", tmp_path / "nothing.jpg")
    assert route.call_count == 0


# -- logging -------------------------------------------------------------------------------------


async def test_one_debug_line_per_request_without_secrets(
    mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    mock.get("/orders/1").mock(
        side_effect=[httpx.Response(500), httpx.Response(200, json=order_json("1"))]
    )
    with caplog.at_level(logging.DEBUG):
        async with client() as zigna:
            await zigna.orders.get("1")
    lines = [r.getMessage() for r in caplog.records if r.name == "zigziik"]
    answered = [line for line in lines if "->" in line]
    assert answered == [
        line
        for line in answered
        if line.startswith("GET /v2/orders/1 -> ") and "budget left" in line
    ]
    assert len(answered) == 2
    assert any("retry 1" in line for line in lines)
    everything = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert KEY not in everything and KEY.lower() not in everything.lower()


async def test_a_picture_answered_with_204_is_an_error_and_writes_nothing(
    mock: respx.MockRouter, tmp_path: Path
) -> None:
    mock.get("/orders/7/pictures/5").respond(204)
    async with client() as zigna:
        with pytest.raises(DecodeError, match="204"):
            await zigna.pictures.download("7", 5, tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_the_stack_under_test_is_the_one_used(
    mock: respx.MockRouter, http_stack: str, http: Any
) -> None:
    route = mock.get("/orders/1").respond(json=order_json("1"))
    async with client() as zigna:
        assert zigna.http_stack == http_stack
        assert isinstance(zigna._transport._client, http.AsyncClient)
        await zigna.orders.get("1")
    assert f" {http_stack}/" in route.calls.last.request.headers["User-Agent"]
