"""Measure: many small files, 2,000 pictures of 20 KB from nginx, 8 in flight (files/s).

The same harvest written to tmpfs (``/dev/shm``: no file system work to speak of, so the
CPU each file costs decides) and to the disk under the system's temporary folder (where the
file system's own work is shared by every contender), in one run, rounds alternating:

* ``zigziik``: ``ZignaClient.harvest(dest, concurrency=8, strategy="pictures")``, default
  transport (temporary name, size checks, rename, manifest, budget and retry included).
* ``zigziik[aiohttp]``: the same over ``zigziik.transports.aiohttp_client()``.
* ``aiohttp``: raw aiohttp, what a careful user writes by hand: one session (``limit=8``), a
  semaphore of 8, ``open(path, "wb")`` and ``iter_chunked`` (no temporary name, no check).

Every timed round starts from a flushed file system: the previous round's 2,000 files are
deleted, the destination made again, and ``os.sync()`` called, all before the clock starts.
Without it the deletion's journal commit (and, on a file system mounted with ``discard``,
its discards) lands inside the next contender's timed window, so which contender pays for
them is chance: disk rounds swung 2-3x from one to the next. The order of the contenders
also rotates from round to round (``alternate(rotate=True)``), so no contender always
follows the same one. Every contender is measured the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from ._common import Result, Series, Target, alternate, log, skipped
from ._servers import HarvestSet, Servers
from .bench_harvest import _aiohttp, _zigziik, _zigziik_aiohttp

NAME = "small"
TITLE = "Many small files: 2,000 pictures of 20 KB, 8 in flight"
UNIT = "files/s"
TMPFS = Path("/dev/shm")

TARGETS = {
    # (place, contender): at least this much of raw aiohttp's files per second
    ("tmpfs", "zigziik"): 0.3,
    ("tmpfs", "zigziik[aiohttp]"): 0.6,
    ("disk", "zigziik"): 0.8,
    ("disk", "zigziik[aiohttp]"): 0.95,
}


def run(servers: Servers, rounds: int) -> Result:
    if servers.nginx is None or servers.small_site is None:
        return skipped(
            NAME, TITLE, UNIT, f"needs nginx to serve the pictures: {servers.nginx_status}"
        )
    origin = servers.nginx.origin("small")
    spec: HarvestSet = servers.small_set
    pictures = spec.orders * spec.pictures_per_order
    places: dict[str, Path] = {"disk": servers.tmp}
    if TMPFS.is_dir():
        places["tmpfs"] = Path(tempfile.mkdtemp(prefix="zzbench-", dir=TMPFS))
    result = Result(NAME, TITLE, UNIT, True, server=servers.nginx.describe())
    result.parameters = {
        "flushed": "os.sync() before each timed round; contenders' order rotates per round",
        "orders": spec.orders,
        "pictures": pictures,
        "picture_bytes": spec.picture_size,
        "concurrency": 8,
        "rounds": rounds,
        "places": {name: str(path) for name, path in places.items()},
    }
    makers = {
        "zigziik": _zigziik,
        "zigziik[aiohttp]": _zigziik_aiohttp,
        "aiohttp": _aiohttp,
    }
    contenders: list[tuple[str, Callable[[], float]]] = []
    for place, root in places.items():
        work = root / "small-dest"

        def clean(work: Path = work) -> None:
            shutil.rmtree(work, ignore_errors=True)

        for name, make in makers.items():

            def timed(make: object = make, work: Path = work, clean: object = clean) -> float:
                clean()  # type: ignore[operator]
                work.mkdir(parents=True)
                os.sync()  # the deletion's journal commit and discards: before the clock
                start = time.perf_counter()
                got = anyio.run(make, origin, work)  # type: ignore[arg-type]
                elapsed = time.perf_counter() - start
                if got != pictures * spec.picture_size:
                    raise RuntimeError(f"expected {pictures * spec.picture_size} bytes, got {got}")
                return pictures / elapsed

            contenders.append((f"{name} ({place})", timed))
    result.series = {label: Series(label) for label, _ in contenders}
    log(f"{NAME}: warm-up")
    for _, once in contenders:
        once()
    log(f"{NAME}: {rounds} rounds of {pictures} files in each of {', '.join(places)}")
    try:
        alternate(rounds, contenders, result.series, rotate=True)
    finally:
        for place, root in places.items():
            shutil.rmtree(root / "small-dest", ignore_errors=True)
            if place == "tmpfs":
                shutil.rmtree(root, ignore_errors=True)
    passed = True
    for (place, name), value in TARGETS.items():
        if place not in places:
            continue
        ratio = result.add_ratio(f"{name} ({place})", f"aiohttp ({place})")
        passed = passed and ratio >= value
        result.notes.append(f"{name} ÷ aiohttp on {place}: {ratio:.2f} (target ≥ {value})")
    first = next(iter(TARGETS))
    if first[0] in places:
        result.target = Target(
            f"{first[1]} ({first[0]})",
            f"aiohttp ({first[0]})",
            ">=",
            TARGETS[first],
            description="files/s ÷ raw aiohttp (every target in the notes)",
        )
        result.judge()
        result.passed = passed
    for place in places:
        seconds = 1e6 / result.series[f"aiohttp ({place})"].median
        mine = 1e6 / result.series[f"zigziik ({place})"].median
        fast = 1e6 / result.series[f"zigziik[aiohttp] ({place})"].median
        result.notes.append(
            f"{place}: µs per file: aiohttp {seconds:.0f}, zigziik {mine:.0f}, "
            f"zigziik[aiohttp] {fast:.0f}"
        )
    return result
