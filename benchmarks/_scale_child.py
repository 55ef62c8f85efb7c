"""``python -m benchmarks._scale_child BASE_URL DEST [CONCURRENCY]``: one harvest, its memory peak.

The baseline is taken after every import and a first event loop; then the kernel's peak
counter is reset (``/proc/self/clear_refs``), so ``VmHWM`` afterwards is the peak reached
during the harvest. Prints ``{"baseline_kb", "peak_kb", "over_kb", "written", "skipped",
"failed", "calls", "seconds", "reset"}`` as JSON.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from pathlib import Path

from zigziik import ZignaClient

API_KEY = "5a1d2c3e-7b8f-4a6d-9e0c-1f2a3b4c5d6e"


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


async def _warm_up() -> None:
    await asyncio.sleep(0)


async def _harvest(base_url: str, dest: Path, concurrency: int) -> dict[str, int]:
    async with ZignaClient(API_KEY, base_url=base_url + "/v2") as zigna:
        report = await zigna.harvest(dest, concurrency=concurrency, strategy="pictures")
    return {
        "written": report.written,
        "skipped": report.skipped,
        "failed": report.failed,
        "calls": report.calls,
    }


def main() -> None:
    base_url, dest = sys.argv[1], Path(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    asyncio.run(_warm_up())
    gc.collect()
    baseline = _status("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    result = asyncio.run(_harvest(base_url, dest, concurrency))
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    print(
        json.dumps(
            {
                "baseline_kb": baseline,
                "peak_kb": peak,
                "over_kb": peak - baseline,
                **result,
                "seconds": round(seconds, 3),
                "reset": reset,
            }
        )
    )


if __name__ == "__main__":
    main()
