"""Measure 4: peak RSS over one 300 MB download (MB above the process's baseline).

Each download runs in a fresh process (``benchmarks._rss_child``) against nginx (another
process): baseline RSS after all imports, kernel peak counter reset, one download to disk, then
``VmHWM``. Contenders: ``pictures.download`` with the default transport and with the aiohttp
extra, raw httpx and raw aiohttp streaming to a file, alternating.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ._common import Result, Series, Target, log, skipped
from ._servers import Servers, write_big_file

NAME = "rss"
TITLE = "Peak RSS over a single download"
UNIT = "MB over baseline"
MODES = ("zigziik", "zigziik[aiohttp]", "httpx", "aiohttp")


def _child(mode: str, url: str, dest: Path) -> dict[str, float]:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._rss_child", mode, url, str(dest)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} download failed: {done.stderr.strip()[-500:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(dest, ignore_errors=True)
    return figures


def run(servers: Servers, rounds: int, size: int) -> Result:
    if servers.nginx is None or servers.files_site is None:
        return skipped(
            NAME, TITLE, UNIT, f"needs nginx for a large file: {servers.nginx_status}", higher=False
        )
    path = write_big_file(servers.files_site.root, size)
    url = servers.nginx.origin("files") + path
    dest = servers.tmp / "rss-dest"
    result = Result(NAME, f"{TITLE} of {size / 1e6:.0f} MB", UNIT, False)
    result.server = servers.nginx.describe()
    result.parameters = {"bytes": size, "rounds": rounds, "process": "fresh per download"}
    result.series = {mode: Series(mode) for mode in MODES}
    result.series["zigziik"].note = "pictures.download (default transport), atomic write"
    result.series["zigziik[aiohttp]"].note = "pictures.download over the aiohttp extra"
    result.series["httpx"].note = "raw httpx stream, aiter_bytes(256 KiB) -> file"
    result.series["aiohttp"].note = "raw aiohttp, iter_chunked(256 KiB) -> file"
    baselines = Series("baseline RSS", note="RSS after imports (MB), zigziik's processes")
    speed = Series("zigziik MB/s", note="the same downloads' throughput (one process each)")
    log(f"{NAME}: {rounds} rounds of {len(MODES)} downloads of {size / 1e6:.0f} MB")
    reset = True
    for _ in range(rounds):
        for mode in MODES:
            figures = _child(mode, url, dest)
            if figures["bytes"] != size:
                raise RuntimeError(f"{mode}: expected {size} bytes, got {figures['bytes']}")
            result.series[mode].rounds.append(figures["over_kb"] / 1024)
            reset = reset and bool(figures["reset"])
            if mode == "zigziik":
                baselines.rounds.append(figures["baseline_kb"] / 1024)
                speed.rounds.append(size / 1e6 / figures["seconds"])
    result.baselines = {baselines.label: baselines, speed.label: speed}
    if not reset:
        result.notes.append(
            "/proc/self/clear_refs was not writable: peaks include the import-time peak"
        )
    result.target = Target(
        "zigziik", None, "<=", 80.0, description="peak RSS over baseline, MB (< 80)"
    )
    result.judge()
    return result
