"""Measure 3: listing, 100 pages of 50 orders (ms for all pages).

* ``zigziik``: ``async for page in zigna.orders.list().pages()`` (frozen attrs ``Order``s).
* ``httpx+pydantic``: ``client.get`` then ``POrderPage.model_validate_json(response.content)``
  (pydantic v2, the same fields, aliases, ``Decimal`` and ``datetime`` types), following the
  page's ``next`` link.

The server's own figure: raw aiohttp fetching the same pages without decoding them (it follows
the same ``skip`` sequence).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx

from zigziik import ZignaClient
from zigziik._convert import use_fast_json

from ._common import Result, Series, Target, alternate, httpx2_available, log
from ._peers import POrderPage
from ._servers import API_KEY, PAGE_SIZE, Servers

NAME = "listing"
TITLE = "Listing, pages of 50 orders"
UNIT = "ms"


def _zigziik_stdlib(origin: str, pages: int) -> float:
    previous = use_fast_json(False)
    try:
        return asyncio.run(_zigziik(origin, pages))
    finally:
        use_fast_json(previous)


async def _zigziik(origin: str, pages: int, stack: str = "httpx") -> float:
    async with ZignaClient(API_KEY, base_url=origin + "/v2", http_stack=stack) as zigna:
        start = time.perf_counter()
        count = 0
        async for page in zigna.orders.list(take=PAGE_SIZE).pages():
            count += len(page)
        elapsed = time.perf_counter() - start
    if count != pages * PAGE_SIZE:
        raise RuntimeError(f"expected {pages * PAGE_SIZE} orders, got {count}")
    return elapsed * 1e3


async def _httpx_pydantic(origin: str, pages: int) -> float:
    headers = {"X-ApiKey": API_KEY}
    async with httpx.AsyncClient(base_url=origin, headers=headers) as client:
        start = time.perf_counter()
        count = 0
        url: str | None = f"/v2/orders?take={PAGE_SIZE}&skip=0"
        while url:
            response = await client.get(url)
            response.raise_for_status()
            page = POrderPage.model_validate_json(response.content)
            count += len(page.orders)
            url = page.response.next if page.response else None
        elapsed = time.perf_counter() - start
    if count != pages * PAGE_SIZE:
        raise RuntimeError(f"expected {pages * PAGE_SIZE} orders, got {count}")
    return elapsed * 1e3


async def _aiohttp(origin: str, pages: int) -> float:
    headers = {"X-ApiKey": API_KEY}
    async with aiohttp.ClientSession(origin, headers=headers) as session:
        start = time.perf_counter()
        for page in range(pages):
            async with session.get(f"/v2/orders?take={PAGE_SIZE}&skip={page * PAGE_SIZE}") as r:
                r.raise_for_status()
                await r.read()
        elapsed = time.perf_counter() - start
    return elapsed * 1e3


def run(servers: Servers, rounds: int) -> Result:
    origin, server = servers.api_origin()
    pages = servers.api_pages
    result = Result(NAME, f"{TITLE} (x{pages})", UNIT, False, server=server)
    result.parameters = {"pages": pages, "orders_per_page": PAGE_SIZE, "rounds": rounds}
    contenders = {
        "zigziik": lambda: asyncio.run(_zigziik(origin, pages)),
        "httpx+pydantic": lambda: asyncio.run(_httpx_pydantic(origin, pages)),
        "zigziik, stdlib json": lambda: _zigziik_stdlib(origin, pages),
    }
    if httpx2_available():
        contenders["zigziik (httpx2)"] = lambda: asyncio.run(_zigziik(origin, pages, "httpx2"))
    result.series = {name: Series(name) for name in contenders}
    result.series[
        "zigziik"
    ].note = "ZignaClient.orders.list().pages() -> attrs Orders (msgspec parser: the fast extra)"
    result.series["zigziik, stdlib json"].note = "the same without the fast extra (json.loads)"
    result.series["httpx+pydantic"].note = "httpx get + pydantic v2 model_validate_json"
    log(f"{NAME}: warm-up, then {rounds} rounds of {pages} pages")
    for run_once in contenders.values():
        run_once()
    alternate(rounds, list(contenders.items()), result.series)
    floor = Series("aiohttp, no decoding", note="raw aiohttp get + read(): the server's floor")
    for _ in range(rounds):
        floor.rounds.append(asyncio.run(_aiohttp(origin, pages)))
    result.baselines = {floor.label: floor}
    result.target = Target(
        "zigziik",
        "httpx+pydantic",
        "<=",
        1.1,
        aim=0.8,
        description="orders.list ÷ httpx+pydantic",
    )
    result.judge()
    result.add_ratio("zigziik, stdlib json", "httpx+pydantic")
    if "zigziik (httpx2)" in result.series:
        result.series["zigziik (httpx2)"].note = "orders.list over httpx2 (http_stack='httpx2')"
        result.add_ratio("zigziik (httpx2)", "httpx+pydantic")
    return result
