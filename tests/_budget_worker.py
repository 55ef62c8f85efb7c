"""One worker process of the shared-budget proofs (``test_budget_processes.py``).

It builds a `ZignaClient` whose budget lives in the store given, prints ``ready``, waits for a
line on stdin (so that every worker starts at once), then runs ``--tasks`` tasks that call
``orders.get`` until the shared budget is spent, and prints one JSON line with what happened.

A task that is refused retries while the store still shows calls in flight (another process's
answer may still lower or free the count) and stops once nothing is left and nothing is in
flight. A `BudgetStoreError` (the store down) is counted, and the task tries again shortly:
nothing may be sent meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import anyio

from zigziik import (
    BudgetExhaustedError,
    BudgetStoreError,
    DailyBudget,
    RedisBudgetStore,
    RetryPolicy,
    SqliteBudgetStore,
    ZignaClient,
)
from zigziik.ratelimit import BudgetStore
from zigziik.testing import DEMO_API_KEY


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--store", required=True, help="sqlite:PATH, redis:URL or redis-cluster:HOST:PORT"
    )
    parser.add_argument("--base", required=True)
    parser.add_argument("--order", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--lease", type=float, default=120.0)
    parser.add_argument("--calls", type=int, default=0, help="calls per task at most (0: no limit)")
    parser.add_argument("--clock-file", default=None, help="the time, as epoch seconds, in a file")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    return parser.parse_args()


def make_store(spec: str, lease: float, client_clock: bool) -> tuple[BudgetStore, Any]:
    """The store ``spec`` names, and the Redis client the worker built for it (or None)."""
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        return SqliteBudgetStore(where, lease=lease), None
    clock: Literal["client", "server"] = "client" if client_clock else "server"
    if kind == "redis-cluster":  # host:port of one node: the client finds the others
        from redis.asyncio.cluster import RedisCluster

        host, _, port = where.rpartition(":")
        client = RedisCluster(host=host, port=int(port))
        return RedisBudgetStore(client, lease=lease, timeout=5.0, clock=clock), client
    return RedisBudgetStore(where, lease=lease, timeout=1.0, clock=clock), None


async def main(args: argparse.Namespace) -> dict[str, object]:
    clock = None
    if args.clock_file is not None:
        path = Path(args.clock_file)

        def clock() -> datetime:
            return datetime.fromtimestamp(float(path.read_text()), timezone.utc)

    store, client = make_store(args.store, args.lease, args.clock_file is not None)
    budget = DailyBudget(args.limit, store=store, clock=clock)
    sent = exhausted = store_errors = 0
    reset_at: set[str] = set()
    deadline = time.monotonic() + args.max_seconds
    async with ZignaClient(
        DEMO_API_KEY, base_url=args.base, budget=budget, retry=RetryPolicy.never(), timeout=30
    ) as zigna:
        if client is not None:  # a cluster's client finds its nodes before the start
            await client.initialize()
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)

        async def task() -> None:
            nonlocal sent, exhausted, store_errors
            done = 0
            while time.monotonic() < deadline and (args.calls == 0 or done < args.calls):
                try:
                    await zigna.orders.get(args.order)
                except BudgetExhaustedError as exc:
                    exhausted += 1
                    reset_at.add(exc.reset_at.isoformat())
                    try:
                        left = await budget.snapshot()
                    except BudgetStoreError:
                        store_errors += 1
                        await anyio.sleep(0.05)
                        continue
                    if left.remaining == 0 and left.in_flight == 0:
                        return
                    await anyio.sleep(0.02)
                except BudgetStoreError:
                    store_errors += 1
                    await anyio.sleep(0.05)
                else:
                    sent += 1
                    done += 1

        async with anyio.create_task_group() as tg:
            for _ in range(args.tasks):
                tg.start_soon(task)
    await store.aclose()
    if client is not None:
        await client.aclose()
    return {
        "sent": sent,
        "exhausted": exhausted,
        "store_errors": store_errors,
        "reset_at": sorted(reset_at),
        "finished": time.time(),
    }


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, parse())), flush=True)
