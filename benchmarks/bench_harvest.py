"""Measure 1: harvest throughput (MB/s) of many 2 MB pictures, 8 transfers in flight.

Contenders, each doing the whole job from the same nginx (list the orders, list each order's
pictures, stream every picture to its own file):

* ``zigziik``: ``ZignaClient.harvest(dest, concurrency=8, strategy="pictures")`` (atomic
  temporary files, size checks, manifest, budget and retry layers included).
* ``aiohttp``: one ``ClientSession`` (``limit=8``), a semaphore of 8, ``iter_chunked`` into
  ``open(..., "wb")``, what a careful user would write by hand.
* ``httpx``: one ``AsyncClient``, a semaphore of 8, ``client.stream`` + ``aiter_bytes``.

The server's own figure: raw aiohttp reading the same bodies and discarding them (no disk),
and ``curl --parallel`` (8 in flight) to ``/dev/null``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import httpx

from zigziik import ZignaClient
from zigziik.transports import aiohttp_client

from ._common import Result, Series, Target, alternate, httpx2_available, log, skipped
from ._servers import API_KEY, HarvestSet, Servers

NAME = "harvest"
TITLE = "Harvest throughput, 2 MB pictures, 8 in flight"
UNIT = "MB/s"
CONCURRENCY = 8
CHUNK = 256 * 1024


async def _zigziik(origin: str, dest: Path, stack: str = "httpx") -> int:
    async with ZignaClient(API_KEY, base_url=origin + "/v2", http_stack=stack) as zigna:
        report = await zigna.harvest(dest, concurrency=CONCURRENCY, strategy="pictures")
    if report.failures:
        raise RuntimeError(f"the harvest failed: {report.failures[:3]}")
    return report.bytes


async def _zigziik_aiohttp(origin: str, dest: Path) -> int:
    async with (
        aiohttp_client() as http,
        ZignaClient(API_KEY, base_url=origin + "/v2", http_client=http) as zigna,
    ):
        report = await zigna.harvest(dest, concurrency=CONCURRENCY, strategy="pictures")
    if report.failures:
        raise RuntimeError(f"the harvest failed: {report.failures[:3]}")
    return report.bytes


async def _aiohttp(origin: str, dest: Path, *, write: bool = True) -> int:
    headers = {"X-ApiKey": API_KEY}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    total = 0
    async with aiohttp.ClientSession(origin, connector=connector, headers=headers) as session:

        async def fetch_json(path: str) -> dict[str, object]:
            async with gate, session.get(path) as response:
                response.raise_for_status()
                return json.loads(await response.read())  # type: ignore[no-any-return]

        async def picture(order_id: str, item: dict[str, object]) -> None:
            nonlocal total
            path = f"/v2/orders/{order_id}/pictures/{item['pictureID']}"
            async with gate, session.get(path) as response:
                response.raise_for_status()
                if not write:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        total += len(chunk)
                    return
                with open(dest / order_id / f"{item['pictureID']}.jpg", "wb") as handle:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        handle.write(chunk)
                        total += len(chunk)

        async def order(order_id: str) -> None:
            listing = await fetch_json(f"/v2/orders/{order_id}/pictures")
            (dest / order_id).mkdir(parents=True, exist_ok=True)
            await asyncio.gather(*(picture(order_id, p) for p in listing["pictures"]))  # type: ignore[attr-defined]

        page = await fetch_json("/v2/orders?take=50&skip=0")
        await asyncio.gather(*(order(o["id"]) for o in page["orders"]))  # type: ignore[attr-defined]
    return total


async def _httpx(origin: str, dest: Path) -> int:
    gate = asyncio.Semaphore(CONCURRENCY)
    total = 0
    async with httpx.AsyncClient(base_url=origin, headers={"X-ApiKey": API_KEY}) as client:

        async def fetch_json(path: str) -> dict[str, object]:
            async with gate:
                response = await client.get(path)
                response.raise_for_status()
                return json.loads(response.content)  # type: ignore[no-any-return]

        async def picture(order_id: str, item: dict[str, object]) -> None:
            nonlocal total
            path = f"/v2/orders/{order_id}/pictures/{item['pictureID']}"
            async with gate, client.stream("GET", path) as response:
                response.raise_for_status()
                with open(dest / order_id / f"{item['pictureID']}.jpg", "wb") as handle:
                    async for chunk in response.aiter_bytes(CHUNK):
                        handle.write(chunk)
                        total += len(chunk)

        async def order(order_id: str) -> None:
            listing = await fetch_json(f"/v2/orders/{order_id}/pictures")
            (dest / order_id).mkdir(parents=True, exist_ok=True)
            await asyncio.gather(*(picture(order_id, p) for p in listing["pictures"]))  # type: ignore[attr-defined]

        page = await fetch_json("/v2/orders?take=50&skip=0")
        await asyncio.gather(*(order(o["id"]) for o in page["orders"]))  # type: ignore[attr-defined]
    return total


def _curl(origin: str, paths: list[str], config: Path) -> float | None:
    curl = shutil.which("curl")
    if curl is None:
        return None
    lines = [f'url = "{origin}{p}"\noutput = "/dev/null"' for p in paths]
    config.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    done = subprocess.run(
        [curl, "-s", "--fail", "--parallel", "--parallel-max", str(CONCURRENCY), "-K", str(config)],
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        return None
    return elapsed


def run(servers: Servers, rounds: int) -> Result:
    if servers.nginx is None or servers.files_site is None:
        return skipped(
            NAME, TITLE, UNIT, f"needs nginx to serve the pictures: {servers.nginx_status}"
        )
    origin = servers.nginx.origin("files")
    spec: HarvestSet = servers.harvest_set
    megabytes = spec.total_bytes / 1e6
    work = servers.tmp / "harvest-dest"

    def clean() -> None:
        shutil.rmtree(work, ignore_errors=True)

    def timed(make: object, *, write: bool = True) -> float:
        clean()
        work.mkdir(parents=True)
        start = time.perf_counter()
        if write:
            got = asyncio.run(make(origin, work))  # type: ignore[operator]
        else:
            got = asyncio.run(_aiohttp(origin, work, write=False))
        elapsed = time.perf_counter() - start
        if got != spec.total_bytes:
            raise RuntimeError(f"expected {spec.total_bytes} bytes, got {got}")
        return megabytes / elapsed

    result = Result(NAME, TITLE, UNIT, True, server=servers.nginx.describe())
    result.parameters = {
        "orders": spec.orders,
        "pictures": spec.orders * spec.pictures_per_order,
        "picture_bytes": spec.picture_size,
        "total_MB": round(megabytes, 1),
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "dest": "ext4/page cache under the system temp dir",
    }
    contenders = {
        "zigziik[aiohttp]": lambda: timed(_zigziik_aiohttp),
        "zigziik": lambda: timed(_zigziik),
        "aiohttp": lambda: timed(_aiohttp),
        "httpx": lambda: timed(_httpx),
    }
    if httpx2_available():

        async def over_httpx2(origin: str, dest: Path) -> int:
            return await _zigziik(origin, dest, "httpx2")

        contenders["zigziik (httpx2)"] = lambda: timed(over_httpx2)
    result.series = {name: Series(name) for name in contenders}
    result.series[
        "zigziik[aiohttp]"
    ].note = "harvest with http_client=zigziik.transports.aiohttp_client() (the aiohttp extra)"
    result.series["zigziik"].note = "ZignaClient.harvest(strategy='pictures'), default transport"
    result.series["aiohttp"].note = "raw aiohttp, iter_chunked(256 KiB) -> file"
    result.series["httpx"].note = "raw httpx, aiter_bytes(256 KiB) -> file"
    if "zigziik (httpx2)" in result.series:
        result.series["zigziik (httpx2)"].note = "the harvest over httpx2 (http_stack='httpx2')"
    log(f"{NAME}: warm-up")
    for run_once in contenders.values():
        run_once()
    log(f"{NAME}: {rounds} rounds of {megabytes:.0f} MB each")
    alternate(rounds, list(contenders.items()), result.series, between=clean)

    server_only = Series("aiohttp, no disk", note="raw aiohttp reading and discarding the bodies")
    curl = Series("curl --parallel", note="curl, 8 in flight, to /dev/null (pictures only)")
    for _ in range(rounds):
        server_only.rounds.append(timed(_aiohttp, write=False))
        seconds = _curl(origin, servers.files_site.picture_urls, servers.tmp / "curl.cfg")
        if seconds is not None:
            curl.rounds.append(megabytes / seconds)
    clean()
    result.baselines = {"aiohttp, no disk": server_only}
    if curl.rounds:
        result.baselines["curl"] = curl
    result.target = Target(
        "zigziik[aiohttp]",
        "aiohttp",
        ">=",
        0.9,
        aim=1.0,
        description="harvest (aiohttp transport extra) ÷ raw aiohttp",
    )
    result.judge()
    result.add_ratio("zigziik", "aiohttp")
    result.add_ratio("zigziik", "httpx")
    if "zigziik (httpx2)" in result.series:
        result.add_ratio("zigziik (httpx2)", "aiohttp")
    result.add_ratio("httpx", "aiohttp")
    result.notes.append(
        "zigziik's default transport is httpx's own (h11 parses in Python, copying each body "
        "several times); the aiohttp extra moves the bytes with aiohttp's C parser."
    )
    return result
