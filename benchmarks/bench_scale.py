"""Measure: peak memory of a harvest against its size, 3,000 to 100,000 pictures (MB).

Each size is one harvest in a fresh process (`benchmarks._scale_child`) from a minimal fast
API server in another (`benchmarks._scale_server`: 30 pictures of 2 KB per order), into an
empty folder on the disk. The figure is the harvest's peak RSS above the process's RSS
before it started. Flat memory means the same figure at every size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ._common import Result, Series, Target, log
from ._servers import Servers

NAME = "scale"
TITLE = "Harvest peak RSS against its size (30 pictures of 2 KB per order)"
UNIT = "MB"
PER_ORDER = 30
SIZE = 2_000
ROOT = Path(__file__).resolve().parent.parent


def measure(pictures: int, work: Path, *, concurrency: int = 8) -> dict[str, float]:
    """One harvest of ``pictures`` pictures in a child process; its JSON figures."""
    orders = max(1, pictures // PER_ORDER)
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._scale_server", str(orders), str(PER_ORDER), str(SIZE)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        origin = server.stdout.readline().strip()
        if not origin.startswith("http://"):
            raise RuntimeError("the scale server did not start")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks._scale_child", origin, str(work), str(concurrency)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the harvest failed: {child.stderr[-2000:]}")
        figures: dict[str, float] = json.loads(child.stdout.strip().splitlines()[-1])
        if figures["written"] != orders * PER_ORDER or figures["failed"]:
            raise RuntimeError(f"the harvest was incomplete: {figures}")
        return figures
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        if server.stdout is not None:
            server.stdout.close()
        shutil.rmtree(work, ignore_errors=True)


def run(servers: Servers, *, quick: bool) -> Result:
    sizes = [150, 600] if quick else [3_000, 15_000, 45_000, 100_000]
    result = Result(NAME, TITLE, UNIT, False, server="benchmarks._scale_server (asyncio, raw)")
    result.parameters = {"sizes": sizes, "pictures_per_order": PER_ORDER, "picture_bytes": SIZE}
    for size in sizes:
        log(f"{NAME}: {size} pictures")
        figures = measure(size, servers.tmp / "scale-dest")
        series = Series(
            f"{size} pictures",
            note=f"{figures['seconds']} s, {figures['calls']} calls; resume (everything done) "
            f"{figures['resume_seconds']} s, {figures['resume_calls']} calls",
        )
        series.rounds.append(figures["over_kb"] / 1024)
        result.series[series.label] = series
    first, last = result.series[f"{sizes[0]} pictures"], result.series[f"{sizes[-1]} pictures"]
    growth = Series("growth", note=f"peak RSS at {sizes[-1]} minus at {sizes[0]} pictures")
    growth.rounds.append(last.median - first.median)
    result.series["growth"] = growth
    result.target = Target(
        "growth", None, "<=", 25.0, description=f"MB more at {sizes[-1]} than at {sizes[0]}"
    )
    result.judge()
    return result
