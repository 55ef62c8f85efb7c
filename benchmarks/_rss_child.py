"""``python -m benchmarks._rss_child MODE URL DEST``: one download, then its memory peak as JSON.

The baseline is taken after every import (and a first event loop), then the kernel's peak
counter is reset (``/proc/self/clear_refs``), so ``VmHWM`` afterwards is the peak reached
during the download itself. Printed: ``{"baseline_kb", "peak_kb", "over_kb", "bytes",
"seconds", "reset"}``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path

import aiohttp
import httpx

from zigziik import ZignaClient
from zigziik.transports import aiohttp_client

from ._servers import API_KEY

CHUNK = 256 * 1024


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _zigziik(url: str, dest: Path, *, fast: bool) -> int:
    base, _, rest = url.partition("/v2/")
    order_id, picture_id = rest.split("/")[1], int(rest.split("/")[-1])
    if fast:
        async with (
            aiohttp_client() as http,
            ZignaClient(API_KEY, base_url=base + "/v2", http_client=http) as zigna,
        ):
            path = await zigna.pictures.download(order_id, picture_id, dest)
    else:
        async with ZignaClient(API_KEY, base_url=base + "/v2") as zigna:
            path = await zigna.pictures.download(order_id, picture_id, dest)
    return path.stat().st_size


async def _httpx(url: str, dest: Path) -> int:
    total = 0
    async with (
        httpx.AsyncClient(headers={"X-ApiKey": API_KEY}) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        with open(dest / "picture.jpg", "wb") as handle:
            async for chunk in response.aiter_bytes(CHUNK):
                handle.write(chunk)
                total += len(chunk)
    return total


async def _aiohttp(url: str, dest: Path) -> int:
    total = 0
    async with (
        aiohttp.ClientSession(headers={"X-ApiKey": API_KEY}) as session,
        session.get(url) as response,
    ):
        response.raise_for_status()
        with open(dest / "picture.jpg", "wb") as handle:
            async for chunk in response.content.iter_chunked(CHUNK):
                handle.write(chunk)
                total += len(chunk)
    return total


def main() -> None:
    mode, url, dest = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    runs = {
        "zigziik": lambda: _zigziik(url, dest, fast=False),
        "zigziik[aiohttp]": lambda: _zigziik(url, dest, fast=True),
        "httpx": lambda: _httpx(url, dest),
        "aiohttp": lambda: _aiohttp(url, dest),
    }
    asyncio.run(asyncio.sleep(0))  # the event loop's own allocations belong to the baseline
    baseline = _status("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    size = asyncio.run(runs[mode]())
    seconds = time.perf_counter() - start
    peak = _status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "baseline_kb": baseline,
                "peak_kb": peak,
                "over_kb": peak - baseline,
                "bytes": size,
                "seconds": seconds,
                "reset": reset,
            }
        )
    )


if __name__ == "__main__":
    main()
