"""Measure 2: per-call overhead, 400 sequential ``orders.get`` (µs per call).

* ``zigziik``: ``await zigna.orders.get(order_id)``: budget reservation, the retry loop,
  rate-limit headers, status mapping, JSON decoding and conversion to a frozen ``Order``.
* ``httpx+json``: ``await client.get(url)`` then ``json.loads(response.content)``.

The server's own figure: raw aiohttp ``get`` + ``read()`` (no decoding), same sequence.
Each round makes a fresh client and one untimed warm-up call (the connection), then times
the calls.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import httpx

from zigziik import ZignaClient

from ._common import Result, Series, Target, alternate, log
from ._servers import API_KEY, Servers

NAME = "calls"
TITLE = "Per-call overhead, sequential orders.get"
UNIT = "µs/call"


def _ids(servers: Servers, count: int) -> list[str]:
    ids = servers.api_order_ids()
    return [ids[i % len(ids)] for i in range(count)]


async def _zigziik(origin: str, ids: list[str], *, stock: bool = False) -> float:
    # stock: the caller's own plain httpx.AsyncClient (httpx's own network stream, headers per
    # request), to tell zigziik's layers apart from its leaner byte stream.
    async with (
        httpx.AsyncClient() as http,
        ZignaClient(API_KEY, base_url=origin + "/v2", http_client=http if stock else None) as zigna,
    ):
        await zigna.orders.get(ids[0])
        start = time.perf_counter()
        for order_id in ids:
            order = await zigna.orders.get(order_id)
        elapsed = time.perf_counter() - start
    assert order.id == ids[-1]
    return elapsed / len(ids) * 1e6


async def _httpx(origin: str, ids: list[str]) -> float:
    headers = {"X-ApiKey": API_KEY}
    async with httpx.AsyncClient(base_url=origin + "/v2", headers=headers) as client:
        (await client.get(f"/orders/{ids[0]}")).raise_for_status()
        start = time.perf_counter()
        for order_id in ids:
            response = await client.get(f"/orders/{order_id}")
            response.raise_for_status()
            order = json.loads(response.content)
        elapsed = time.perf_counter() - start
    assert order["id"] == ids[-1]
    return elapsed / len(ids) * 1e6


async def _aiohttp(origin: str, ids: list[str]) -> float:
    headers = {"X-ApiKey": API_KEY}
    async with aiohttp.ClientSession(origin, headers=headers) as session:
        async with session.get(f"/v2/orders/{ids[0]}") as response:
            await response.read()
        start = time.perf_counter()
        for order_id in ids:
            async with session.get(f"/v2/orders/{order_id}") as response:
                response.raise_for_status()
                await response.read()
        elapsed = time.perf_counter() - start
    return elapsed / len(ids) * 1e6


def run(servers: Servers, rounds: int, calls: int) -> Result:
    origin, server = servers.api_origin()
    ids = _ids(servers, calls)
    result = Result(NAME, TITLE, UNIT, False, server=server)
    result.parameters = {"calls_per_round": calls, "rounds": rounds, "order_json_bytes": "~900"}
    contenders = {
        "zigziik": lambda: asyncio.run(_zigziik(origin, ids)),
        "httpx+json": lambda: asyncio.run(_httpx(origin, ids)),
        "zigziik, own httpx client": lambda: asyncio.run(_zigziik(origin, ids, stock=True)),
    }
    result.series = {name: Series(name) for name in contenders}
    result.series["zigziik"].note = "ZignaClient.orders.get -> Order"
    result.series[
        "zigziik, own httpx client"
    ].note = "the same with http_client=httpx.AsyncClient() (httpx's stock network stream)"
    result.series["httpx+json"].note = "httpx.AsyncClient.get + json.loads"
    log(f"{NAME}: warm-up, then {rounds} rounds of {calls} calls")
    for run_once in contenders.values():
        run_once()
    alternate(rounds, list(contenders.items()), result.series)
    floor = Series("aiohttp, no decoding", note="raw aiohttp get + read(): the server's floor")
    for _ in range(rounds):
        floor.rounds.append(asyncio.run(_aiohttp(origin, ids)))
    result.baselines = {floor.label: floor}
    result.target = Target(
        "zigziik", "httpx+json", "<=", 1.15, aim=1.05, description="orders.get ÷ httpx+json.loads"
    )
    result.judge()
    result.add_ratio("zigziik, own httpx client", "httpx+json")
    return result
