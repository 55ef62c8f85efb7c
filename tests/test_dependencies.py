"""The library works with its core dependencies only (httpx, anyio, attrs, cattrs).

The test environment has many more packages installed (trio brings sniffio, the extras bring
rich, starlette, msgspec, ...). A subprocess blocks them all, so an import that only works
because a test dependency happens to be present fails here and not on a user's machine.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OPTIONAL = [
    "sniffio",
    "trio",
    "rich",
    "starlette",
    "uvicorn",
    "aiohttp",
    "orjson",
    "msgspec",
    "pydantic",
    "fastapi",
    "respx",
    "hypothesis",
    "trustme",
]

SCRIPT = textwrap.dedent(
    """
    import sys

    for name in {blocked!r}:
        sys.modules[name] = None  # any import of it raises ImportError

    import anyio
    import httpx

    import zigziik
    from zigziik import DailyBudget, Order, ZignaClient, ZiikClient
    from zigziik.zigna._convert import decode_json

    KEY = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={{"id": "7", "statusID": 5, "totalPrice": 12.5}})


    async def main() -> None:
        async with ZignaClient(KEY) as own:  # our own httpx client and network layer
            assert own.budget is not None
        mock = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        async with ZignaClient(KEY, http_client=mock, budget=DailyBudget(5)) as zigna:
            order = await zigna.orders.get("7")
            assert type(order) is Order, order
            assert str(order.total_price) == "12.5"
        await mock.aclose()
        async with ZiikClient("https://acme.ziik.io/api", "token") as ziik:
            assert ziik.budget is None


    anyio.run(main)
    body = decode_json(b'{{"id": "1", "totalPrice": 1.25}}', Order, method="GET", url="u")
    assert str(body.total_price) == "1.25"
    print("ok", zigziik.__version__)
    """
)


def test_the_library_needs_only_its_core_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=OPTIONAL)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")


def test_core_dependencies_are_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = {
        dep.split(">")[0].split("=")[0].split("<")[0].strip()
        for dep in project["project"]["dependencies"]
    }
    assert declared == {"httpx", "anyio", "attrs", "cattrs"}
