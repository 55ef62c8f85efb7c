"""The service examples with several workers sharing one budget through the environment's store.

The FastAPI example runs under a real ``uvicorn --workers 4`` (four processes on one listening
socket, handed to uvicorn with ``--fd``: no port race), with ``ZIGZIIK_BUDGET_STORE`` naming a
SQLite file; a burst of concurrent requests must reach the upstream fake exactly as often as
the budget allows. The aiohttp example runs two apps in this process on one Redis store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from _redis import RedisServer

from zigziik.testing import DEMO_API_KEY, FakeZigna, serve

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio


@pytest.fixture
def upstream() -> Iterator[tuple[FakeZigna, str]]:
    fake = FakeZigna(
        orders=3, pictures_per_order=1, picture_size=500, daily_limit=None, latency=0.01
    )
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


@pytest.mark.slow
@pytest.mark.timeout(300)  # real uvicorn workers: a loaded machine starts them slowly
async def test_fastapi_under_uvicorn_with_4_workers_sends_exactly_the_budget(
    upstream: tuple[FakeZigna, str], tmp_path: Path
) -> None:
    fake, base = upstream
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "ZIGNA_API_KEY": DEMO_API_KEY,
        "ZIGNA_BASE_URL": base,
        "ZIGZIIK_BUDGET_STORE": f"sqlite://{tmp_path / 'service-budget.db'}",
        "ZIGZIIK_DAILY_LIMIT": "25",
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, before the burst
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.fastapi_app:app",
                "--workers",
                "4",
                "--fd",
                str(listener.fileno()),
                "--log-level",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
    listener.close()
    try:
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("Application startup complete") < 4:
            assert server.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the four workers did not start"
            await anyio.sleep(0.1)
        order = fake.order_ids[0]
        statuses: Counter[int] = Counter()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
        ) as http:

            async def call() -> None:
                statuses[(await http.get(f"/orders/{order}")).status_code] += 1

            async with anyio.create_task_group() as tg:
                for _ in range(80):
                    tg.start_soon(call)
            budget = (await http.get("/budget")).json()
        assert fake.calls == 25, "the upstream saw exactly the shared budget"
        assert statuses == {200: 25, 503: 55}
        assert (budget["limit"], budget["used"], budget["remaining"]) == (25, 25, 0)
        assert budget["store"].endswith("service-budget.db")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    pids = {
        line.split("[")[1].split("]")[0]
        for line in log.read_text().splitlines()
        if "Started server process" in line
    }
    assert len(pids) >= 4, "four worker processes served"


async def test_two_aiohttp_apps_share_the_environments_redis_store(
    upstream: tuple[FakeZigna, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from test_examples import load_example

    fake, base = upstream
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
        monkeypatch.setenv("ZIGNA_BASE_URL", base)
        monkeypatch.setenv("ZIGZIIK_BUDGET_STORE", redis.url)
        monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", "5")
        aiohttp_app = load_example("aiohttp_app")
        order = fake.order_ids[0]
        async with (
            TestClient(TestServer(aiohttp_app.create_app())) as one,
            TestClient(TestServer(aiohttp_app.create_app())) as two,
        ):
            statuses = [
                (await (one if i % 2 else two).get(f"/orders/{order}")).status for i in range(8)
            ]
            assert statuses == [200] * 5 + [503] * 3
            assert fake.calls == 5
            redis.stop()
            down = await one.get(f"/orders/{order}")
            assert down.status == 503, "no store: nothing sent, a clear answer"
            assert "cannot be checked" in (await down.json())["detail"]
            assert fake.calls == 5
    finally:
        redis.kill()
