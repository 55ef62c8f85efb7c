"""``python -m benchmarks._calls_child KIND ORIGIN CALLS ID...``: make CALLS sequential
``orders.get`` calls (one warm-up first) with one contender of the ``cpu`` measure, then
exit. The ``instructions`` measure runs it under valgrind, twice per contender."""

from __future__ import annotations

import asyncio
import sys
import time

from .bench_calls import _aiohttp, _zigziik


def main(argv: list[str]) -> None:
    kind, origin, calls, *ids = argv
    chosen = [ids[i % len(ids)] for i in range(int(calls))]
    clock = time.process_time
    if kind == "zigziik":
        asyncio.run(_zigziik(origin, chosen, clock=clock))
    elif kind == "zigziik (httpx2)":
        asyncio.run(_zigziik(origin, chosen, stack="httpx2", clock=clock))
    elif kind == "aiohttp+json":
        asyncio.run(_aiohttp(origin, chosen, decode=True, clock=clock))
    else:
        raise SystemExit(f"unknown contender {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
