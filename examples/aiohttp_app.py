"""Embedding zigziik in aiohttp.web: one `ZignaClient` per app, made in ``cleanup_ctx``.

aiohttp is asyncio-only, so this app runs on asyncio (zigziik itself runs on asyncio and trio).

- ``zigna_client`` is a ``cleanup_ctx`` generator: it creates the client (configured from the
  environment: ``ZIGNA_API_KEY``, and ``ZIGNA_BASE_URL`` if set) when the app starts, stores it
  under the ``ZIGNA`` app key, and closes it when the app shuts down.
- Handlers read it with ``request.app[ZIGNA]``: one connection pool and one daily budget for
  every request. Several worker processes (gunicorn with aiohttp's worker) share one count
  through the store ``ZIGZIIK_BUDGET_STORE`` names (``sqlite:///path.db`` on one host,
  ``redis://host:6379/0`` across hosts); the client opens it and closes it.
- The ``zigna_errors`` middleware turns zigziik's errors into HTTP answers:
  `BudgetExhaustedError` (no calls left today) and an upstream 429 become ``503`` with
  ``Retry-After``; `NotFoundError` becomes ``404``; any other upstream failure (`APIError`,
  `TransportError`, `DecodeError`) becomes ``502``, without echoing upstream details.

Run it with ``python -m aiohttp.web -H 127.0.0.1 -P 8080 examples.aiohttp_app:create_app``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from zigziik import (
    APIError,
    BudgetExhaustedError,
    BudgetStoreError,
    DecodeError,
    NotFoundError,
    Order,
    RateLimitedError,
    TransportError,
    ZignaClient,
)

__all__ = ["ZIGNA", "create_app", "order_summary", "retry_after_seconds", "zigna_errors"]

logger = logging.getLogger(__name__)

ZIGNA = web.AppKey("zigna", ZignaClient)
"""Where the app keeps its one client."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def order_summary(order: Order) -> dict[str, Any]:
    """The JSON an order becomes (the price as a string keeps its decimals exact)."""
    return {
        "id": order.id,
        "status_id": order.status_id,
        "status": order.status,
        "case_number": order.case_number,
        "created": order.created.isoformat() if order.created else None,
        "total_price": str(order.total_price) if order.total_price is not None else None,
        "is_urgent": order.is_urgent,
        "city": order.seller.city if order.seller is not None else None,
    }


def retry_after_seconds(reset_at: datetime | None, now: datetime | None = None) -> int:
    """Whole seconds until ``reset_at`` (at least 1), for a ``Retry-After`` header."""
    if reset_at is None:
        return 60
    now = now or datetime.now(timezone.utc)
    return max(1, math.ceil((reset_at - now).total_seconds()))


@web.middleware
async def zigna_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """zigziik's errors -> 503 (+ Retry-After), 404 or 502."""
    try:
        return await handler(request)
    except (BudgetExhaustedError, RateLimitedError) as exc:
        return web.json_response(
            {"detail": "the Zigna API budget for today is spent; try again later"},
            status=503,
            headers={"Retry-After": str(retry_after_seconds(exc.reset_at))},
        )
    except BudgetStoreError as exc:  # nothing was sent: the budget cannot be checked
        logger.warning("the budget store failed: %s", exc)  # names the store, no password
        return web.json_response(
            {"detail": "the Zigna API budget cannot be checked; try again later"},
            status=503,
            headers={"Retry-After": "5"},
        )
    except NotFoundError:
        return web.json_response({"detail": "not found in Zigna"}, status=404)
    except (APIError, TransportError, DecodeError) as exc:
        logger.warning("Zigna call failed: %s", exc)  # messages never contain the API key
        return web.json_response({"detail": "the Zigna API failed; try again later"}, status=502)


routes = web.RouteTableDef()


@routes.get("/orders")
async def list_orders(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "10"))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None
    if not 1 <= limit <= 100:
        raise web.HTTPBadRequest(text="limit must be between 1 and 100")
    zigna = request.app[ZIGNA]
    orders = await zigna.orders.list(take=limit).collect(limit=limit)
    return web.json_response([order_summary(order) for order in orders])


@routes.get("/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    order = await request.app[ZIGNA].orders.get(request.match_info["order_id"])
    return web.json_response(order_summary(order))


@routes.get("/orders/{order_id}/pictures")
async def list_pictures(request: web.Request) -> web.Response:
    listing = await request.app[ZIGNA].pictures.list(request.match_info["order_id"])
    return web.json_response(
        [
            {"picture_id": p.picture_id, "original_file_name": p.original_file_name, "size": p.size}
            for p in listing.pictures
        ]
    )


def create_app(
    argv: list[str] | None = None, *, make_client: Callable[[], ZignaClient] = ZignaClient
) -> web.Application:
    """The app; ``make_client`` builds its one client (default: `ZignaClient` from env).

    ``argv`` is there for ``python -m aiohttp.web ... examples.aiohttp_app:create_app``.
    """

    async def zigna_client(app: web.Application) -> AsyncIterator[None]:
        async with make_client() as zigna:
            app[ZIGNA] = zigna
            yield

    app = web.Application(middlewares=[zigna_errors])
    app.cleanup_ctx.append(zigna_client)
    app.add_routes(routes)
    return app
