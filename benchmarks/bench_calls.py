"""Measure 2: per-call overhead, 400 sequential ``orders.get`` (µs per call); and measure 2b,
``cpu``: the CPU time this process spends per call (µs, `time.process_time`: user and
system), zigziik against raw aiohttp + `json.loads`, the least a user could write.

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
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
import httpx

from zigziik import ZignaClient

from ._common import Result, Series, Target, alternate, httpx2_available, log, skipped
from ._servers import API_KEY, Servers

NAME = "calls"
TITLE = "Per-call overhead, sequential orders.get"
UNIT = "µs/call"


def _ids(servers: Servers, count: int) -> list[str]:
    ids = servers.api_order_ids()
    return [ids[i % len(ids)] for i in range(count)]


Clock = Callable[[], float]


async def _zigziik(
    origin: str,
    ids: list[str],
    *,
    stock: bool = False,
    stack: str = "httpx",
    clock: Clock = time.perf_counter,
) -> float:
    # stock: the caller's own plain httpx.AsyncClient (httpx's own network stream, headers per
    # request), to tell zigziik's layers apart from its own HTTP/1.1 pool.
    async with (
        httpx.AsyncClient() as http,
        ZignaClient(
            API_KEY,
            base_url=origin + "/v2",
            http_client=http if stock else None,
            http_stack=None if stock else stack,
        ) as zigna,
    ):
        await zigna.orders.get(ids[0])
        start = clock()
        for order_id in ids:
            order = await zigna.orders.get(order_id)
        elapsed = clock() - start
    assert order.id == ids[-1]
    return elapsed / len(ids) * 1e6


async def _httpx(origin: str, ids: list[str], *, clock: Clock = time.perf_counter) -> float:
    headers = {"X-ApiKey": API_KEY}
    async with httpx.AsyncClient(base_url=origin + "/v2", headers=headers) as client:
        (await client.get(f"/orders/{ids[0]}")).raise_for_status()
        start = clock()
        for order_id in ids:
            response = await client.get(f"/orders/{order_id}")
            response.raise_for_status()
            order = json.loads(response.content)
        elapsed = clock() - start
    assert order["id"] == ids[-1]
    return elapsed / len(ids) * 1e6


async def _aiohttp(
    origin: str, ids: list[str], *, decode: bool = False, clock: Clock = time.perf_counter
) -> float:
    headers = {"X-ApiKey": API_KEY}
    async with aiohttp.ClientSession(origin, headers=headers) as session:
        async with session.get(f"/v2/orders/{ids[0]}") as response:
            await response.read()
        start = clock()
        for order_id in ids:
            async with session.get(f"/v2/orders/{order_id}") as response:
                response.raise_for_status()
                body = await response.read()
                if decode:
                    order = json.loads(body)
        elapsed = clock() - start
    if decode:
        assert order["id"] == ids[-1]
    return elapsed / len(ids) * 1e6


def _measure(
    result: Result,
    contenders: dict[str, Callable[[], float]],
    notes: dict[str, str],
    rounds: int,
    message: str,
) -> None:
    """A series per contender (with its note), one warm-up each, then alternating rounds."""
    notes.setdefault("zigziik (httpx2)", "the same over httpx2 (http_stack='httpx2')")
    result.series = {name: Series(name, note=notes.get(name, "")) for name in contenders}
    log(message)
    for run_once in contenders.values():
        run_once()
    alternate(rounds, list(contenders.items()), result.series)


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
    if httpx2_available():
        contenders["zigziik (httpx2)"] = lambda: asyncio.run(_zigziik(origin, ids, stack="httpx2"))
    notes = {
        "zigziik": "ZignaClient.orders.get -> Order",
        "zigziik, own httpx client": "the same with http_client=httpx.AsyncClient() "
        "(httpx's stock network stream)",
        "httpx+json": "httpx.AsyncClient.get + json.loads",
    }
    _measure(result, contenders, notes, rounds, f"{NAME}: warm-up, then {rounds} rounds")
    floor = Series("aiohttp, no decoding", note="raw aiohttp get + read(): the server's floor")
    for _ in range(rounds):
        floor.rounds.append(asyncio.run(_aiohttp(origin, ids)))
    result.baselines = {floor.label: floor}
    result.target = Target(
        "zigziik", "httpx+json", "<=", 1.15, aim=1.05, description="orders.get ÷ httpx+json.loads"
    )
    result.judge()
    result.add_ratio("zigziik, own httpx client", "httpx+json")
    if "zigziik (httpx2)" in result.series:
        result.add_ratio("zigziik (httpx2)", "httpx+json")
    return result


CPU_NAME = "cpu"
CPU_TITLE = "CPU per call, sequential orders.get (this process only)"
CPU_UNIT = "µs CPU/call"


def run_cpu(servers: Servers, rounds: int, calls: int) -> Result:
    """CPU time per call: zigziik ÷ raw aiohttp + json.loads (the server is another process)."""
    origin, server = servers.api_origin()
    ids = _ids(servers, calls)
    result = Result(CPU_NAME, CPU_TITLE, CPU_UNIT, False, server=server)
    result.parameters = {"calls_per_round": calls, "rounds": rounds, "clock": "process_time"}
    cpu = time.process_time
    contenders = {
        "zigziik": lambda: asyncio.run(_zigziik(origin, ids, clock=cpu)),
        "aiohttp+json": lambda: asyncio.run(_aiohttp(origin, ids, decode=True, clock=cpu)),
        "httpx+json": lambda: asyncio.run(_httpx(origin, ids, clock=cpu)),
    }
    if httpx2_available():
        contenders["zigziik (httpx2)"] = lambda: asyncio.run(
            _zigziik(origin, ids, stack="httpx2", clock=cpu)
        )
    notes = {
        "zigziik": "ZignaClient.orders.get -> Order (budget, retries, headers)",
        "aiohttp+json": "aiohttp ClientSession.get + read + json.loads",
        "httpx+json": "httpx.AsyncClient.get + json.loads",
    }
    _measure(result, contenders, notes, rounds, f"{CPU_NAME}: warm-up, then {rounds} rounds")
    result.target = Target(
        "zigziik",
        "aiohttp+json",
        "<=",
        3.0,
        description="CPU per orders.get ÷ raw aiohttp + json.loads",
    )
    result.judge()
    result.add_ratio("httpx+json", "aiohttp+json")
    if "zigziik (httpx2)" in result.series:
        result.add_ratio("zigziik (httpx2)", "aiohttp+json")
    return result


INSTR_NAME = "instructions"
INSTR_TITLE = "Instructions per call, sequential orders.get (valgrind, this process only)"
INSTR_UNIT = "instructions/call"


def _instructions(kind: str, origin: str, ids: list[str], calls: int) -> int:
    """Instructions the process executes for ``calls`` calls and its start, under valgrind."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        *(["-P"] if sys.version_info >= (3, 11) else []),
        "-m",
        "benchmarks._calls_child",
        kind,
        origin,
        str(calls),
        *ids[:100],
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{kind} under valgrind failed: {done.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def run_instructions(servers: Servers, rounds: int, calls: int) -> Result:
    """Instructions per call, zigziik ÷ raw aiohttp + json.loads: a count that the machine's
    load does not change (unlike CPU seconds). Each contender runs ``calls // 5`` and
    ``calls`` calls in a process of its own under valgrind; the difference, divided by the
    calls between, leaves out the start (imports, the first connection)."""
    if shutil.which("valgrind") is None:
        return skipped(INSTR_NAME, INSTR_TITLE, INSTR_UNIT, "valgrind is not installed")
    origin, server = servers.api_origin()
    ids = servers.api_order_ids()
    result = Result(INSTR_NAME, INSTR_TITLE, INSTR_UNIT, False, server=server)
    few = max(calls // 5, 1)
    result.parameters = {"calls": [few, calls], "rounds": rounds, "tool": "valgrind cachegrind"}
    kinds = ["zigziik", "aiohttp+json"]
    if httpx2_available():
        kinds.append("zigziik (httpx2)")
    result.series = {kind: Series(kind) for kind in kinds}
    log(f"{INSTR_NAME}: {rounds} round(s) of {few} and {calls} calls under valgrind")
    for _ in range(rounds):
        for kind in kinds:
            fewer = _instructions(kind, origin, ids, few)
            more = _instructions(kind, origin, ids, calls)
            result.series[kind].rounds.append((more - fewer) / (calls - few))
    result.target = Target(
        "zigziik",
        "aiohttp+json",
        "<=",
        3.0,
        description="instructions per orders.get ÷ raw aiohttp + json.loads",
    )
    result.judge()
    if "zigziik (httpx2)" in result.series:
        result.add_ratio("zigziik (httpx2)", "aiohttp+json")
    return result
