"""Embedding zigziik in FastAPI: one `ZignaClient` per app, shared by every request.

- The client is created in the app's ``lifespan`` (configured from the environment:
  ``ZIGNA_API_KEY``, and ``ZIGNA_BASE_URL`` if set) and closed when the app shuts down.
  Creating a client per request would throw away httpx's connection pool each time and give
  every request a budget of its own.
- Several workers (``uvicorn --workers 4``, gunicorn) are several processes: each would count
  the key's 2,000 calls on its own. Give them one store, and they share one count:
  ``ZIGZIIK_BUDGET_STORE=sqlite:///var/lib/app/zigna-budget.db`` (one host) or
  ``redis://redis:6379/0`` (many hosts); ``ZIGZIIK_DAILY_LIMIT`` keeps the service below the
  key's limit (for cron jobs sharing the key). The client opens that store and closes it.
- Routes get it through the ``get_zigna`` dependency (``Zigna`` is the annotated shortcut).
- zigziik's errors become HTTP answers in one place: `BudgetExhaustedError` (no calls left
  today) and an upstream 429 become ``503 Service Unavailable`` with ``Retry-After``;
  `NotFoundError` becomes ``404``; any other upstream failure (`APIError`, `TransportError`,
  `DecodeError`) becomes ``502 Bad Gateway``, without echoing upstream details to the caller.

Run it with ``uvicorn examples.fastapi_app:app`` (``ZIGNA_API_KEY`` set), or try it against
the fake server: ``ZIGNA_API_KEY=5a1d2c3e-7b8f-4a6d-9e0c-1f2a3b4c5d6e
ZIGNA_BASE_URL=http://127.0.0.1:<port>/v2`` with a `zigziik.testing.FakeZigna` served by
`zigziik.testing.serve`. It runs on asyncio or trio (Starlette is anyio-based).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from zigziik import (
    APIError,
    BudgetExhaustedError,
    BudgetStoreError,
    DecodeError,
    NotFoundError,
    Order,
    Picture,
    RateLimitedError,
    TransportError,
    ZignaClient,
)

__all__ = [
    "OrderSummary",
    "PictureSummary",
    "Zigna",
    "app",
    "create_app",
    "get_zigna",
    "retry_after_seconds",
]

logger = logging.getLogger(__name__)


# -- response models -------------------------------------------------------------------------


class OrderSummary(BaseModel):
    id: str | None
    status_id: int | None
    status: str | None
    case_number: str | None
    created: datetime | None
    total_price: Decimal | None
    is_urgent: bool | None
    city: str | None

    @classmethod
    def of(cls, order: Order) -> OrderSummary:
        return cls(
            id=order.id,
            status_id=order.status_id,
            status=order.status,
            case_number=order.case_number,
            created=order.created,
            total_price=order.total_price,
            is_urgent=order.is_urgent,
            city=order.seller.city if order.seller is not None else None,
        )


class PictureSummary(BaseModel):
    picture_id: int | None
    original_file_name: str | None
    size: int | None

    @classmethod
    def of(cls, picture: Picture) -> PictureSummary:
        return cls(
            picture_id=picture.picture_id,
            original_file_name=picture.original_file_name,
            size=picture.size,
        )


# -- the shared client -----------------------------------------------------------------------


def get_zigna(request: Request) -> ZignaClient:
    """The app's one `ZignaClient` (created in ``lifespan``)."""
    client: ZignaClient = request.app.state.zigna
    return client


Zigna = Annotated[ZignaClient, Depends(get_zigna)]


# -- errors -> HTTP --------------------------------------------------------------------------


def retry_after_seconds(reset_at: datetime | None, now: datetime | None = None) -> int:
    """Whole seconds until ``reset_at`` (at least 1), for a ``Retry-After`` header."""
    if reset_at is None:
        return 60
    now = now or datetime.now(timezone.utc)
    return max(1, math.ceil((reset_at - now).total_seconds()))


async def budget_exhausted(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, (BudgetExhaustedError, RateLimitedError))
    seconds = retry_after_seconds(exc.reset_at)
    return JSONResponse(
        {"detail": "the Zigna API budget for today is spent; try again later"},
        status_code=503,
        headers={"Retry-After": str(seconds)},
    )


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "not found in Zigna"}, status_code=404)


async def bad_gateway(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("Zigna call failed: %s", exc)  # messages never contain the API key
    return JSONResponse({"detail": "the Zigna API failed; try again later"}, status_code=502)


async def budget_store_down(request: Request, exc: Exception) -> JSONResponse:
    # Nothing was sent: without its shared store the budget cannot tell what is left.
    logger.error("the budget store failed: %s", exc)  # names the store, never a password
    return JSONResponse(
        {"detail": "the Zigna API budget cannot be checked; try again later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


# -- the app ---------------------------------------------------------------------------------


def create_app(make_client: Callable[[], ZignaClient] = ZignaClient) -> FastAPI:
    """The app; ``make_client`` builds its one client (default: `ZignaClient` from env)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with make_client() as zigna:
            app.state.zigna = zigna
            yield

    app = FastAPI(title="Orders via zigziik", lifespan=lifespan)
    app.add_exception_handler(BudgetExhaustedError, budget_exhausted)
    app.add_exception_handler(RateLimitedError, budget_exhausted)
    app.add_exception_handler(NotFoundError, not_found)
    for upstream_failure in (APIError, TransportError, DecodeError):
        app.add_exception_handler(upstream_failure, bad_gateway)
    app.add_exception_handler(BudgetStoreError, budget_store_down)

    @app.get("/orders")
    async def list_orders(
        zigna: Zigna, limit: Annotated[int, Query(ge=1, le=100)] = 10
    ) -> list[OrderSummary]:
        orders = await zigna.orders.list(take=limit).collect(limit=limit)
        return [OrderSummary.of(order) for order in orders]

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, zigna: Zigna) -> OrderSummary:
        return OrderSummary.of(await zigna.orders.get(order_id))

    @app.get("/orders/{order_id}/pictures")
    async def list_pictures(order_id: str, zigna: Zigna) -> list[PictureSummary]:
        listing = await zigna.pictures.list(order_id)
        return [PictureSummary.of(picture) for picture in listing.pictures]

    @app.get("/budget")
    async def budget(zigna: Zigna) -> dict[str, int | str | None]:
        """The key's budget as its store has it now (every worker's calls; spends none)."""
        if zigna.budget is None:
            return {"limit": None, "used": None, "remaining": None, "reset_at": None}
        now = await zigna.budget.snapshot()
        return {
            "limit": now.limit,
            "used": now.used,
            "remaining": now.remaining,
            "reset_at": now.reset_at.isoformat(),
            "store": zigna.budget.store.name,
        }

    return app


app = create_app()
"""For ``uvicorn examples.fastapi_app:app``; the client is only built when the app starts."""
