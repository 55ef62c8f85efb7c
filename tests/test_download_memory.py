"""A large download streams: a client process receiving a 192 MiB picture over a real loopback
socket grows its peak RSS by a small fraction of that (the disk thread holds at most its high
water mark, 16 MiB, plus what is in transit), also when its disk is slower than the network.
Measured in a subprocess (``ru_maxrss``), so nothing else the test session holds counts; no
timing is checked."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import _servers as raw
import pytest

SIZE = 192 << 20
CHUNK = 1 << 20
GROWTH_BOUND = 64 << 20  # a body held whole would be at least SIZE


def pattern(index: int) -> bytes:
    """The ``index``-th MiB of the body: different for every MiB, cheap to make again."""
    return index.to_bytes(4, "big") * (CHUNK // 4)


def big_body() -> raw.Behaviour:
    async def behaviour(connection: raw.Connection, request: raw.RawRequest) -> None:
        size = SIZE if request.target.endswith("/5") else CHUNK  # /6: the warm-up
        headers = [("Content-Type", "image/jpeg"), ("Content-Length", str(size))]
        await connection.send(raw.head(200, headers))
        for index in range(size // CHUNK):
            await connection.send(pattern(index))

    return behaviour


CLIENT = textwrap.dedent(
    """
    import json, resource, sys
    import os, time
    import anyio
    from zigziik import ZignaClient, _diskwriter
    from zigziik.testing import DEMO_API_KEY

    if sys.argv[3] == "slow-disk":  # 100 MB/s: the loopback network is several times faster
        def slowly(fd, data):
            size = len(data) if isinstance(data, bytes) else sum(map(len, data))
            time.sleep(size / 100e6)
            return os.writev(fd, [data]) if isinstance(data, bytes) else os.writev(fd, data)
        _diskwriter._write = _diskwriter._writev = slowly

    async def main(base, dest):
        async with ZignaClient(DEMO_API_KEY, base_url=base, timeout=60) as zigna:
            await zigna.pictures.download("1", 6, dest)  # imports, connection, disk thread
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            path = await zigna.pictures.download("1", 5, dest)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"path": str(path), "before_kib": before, "after_kib": after}))

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("disk", ["fast-disk", "slow-disk"])
def test_a_large_download_streams_to_disk_in_bounded_memory(tmp_path: Path, disk: str) -> None:
    with raw.RawServer(big_body()) as server:
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, server.origin + "/v2", str(tmp_path), disk],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    path = Path(result["path"])
    assert path.name == "5.jpg" and path.stat().st_size == SIZE
    with path.open("rb") as file:
        for index in (0, 1, 95, SIZE // CHUNK - 1):
            file.seek(index * CHUNK)
            assert file.read(CHUNK) == pattern(index), index
    growth = (result["after_kib"] - result["before_kib"]) * 1024
    assert growth < GROWTH_BOUND, f"peak RSS grew by {growth >> 20} MiB for a {SIZE >> 20} MiB body"
