"""``python -m benchmarks._scale_child BASE_URL DEST [CONCURRENCY]``: one harvest, its memory peak.

The baseline is taken after every import and a first event loop; the peak is the highest
``VmRSS`` a helper thread sees, sampling every 10 ms during the harvest, or the kernel's
``VmHWM`` (reset first through ``/proc/self/clear_refs``) if higher: the kernel updates that
counter lazily, and misses peaks of memory freed again before it looks. Prints ``{"baseline_kb", "peak_kb", "over_kb", "written", "skipped",
"failed", "calls", "seconds", "reset", "resume_seconds", "resume_calls", "resume_written"}``
as JSON: ``resume_*`` are a second run of the same harvest, with everything already done
(the listing, the manifest's records and a look at every file).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
from pathlib import Path

from zigziik import ZignaClient

from ._rss_child import _reset_peak, _status
from ._servers import API_KEY


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
    sampled = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal sampled
        while not done.wait(0.01):
            sampled = max(sampled, _status("VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        result = asyncio.run(_harvest(base_url, dest, concurrency))
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - start
    peak = max(sampled, _status("VmHWM"))
    # Resume: the same harvest again, everything on disk and in the manifest.
    start = time.perf_counter()
    again = asyncio.run(_harvest(base_url, dest, concurrency))
    resume_seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "baseline_kb": baseline,
                "peak_kb": peak,
                "over_kb": peak - baseline,
                **result,
                "seconds": round(seconds, 3),
                "reset": reset,
                "resume_seconds": round(resume_seconds, 3),
                "resume_calls": again["calls"],
                "resume_written": again["written"],
            }
        )
    )


if __name__ == "__main__":
    main()
