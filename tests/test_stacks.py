"""httpx2 beside httpx: choosing the stack, a caller's httpx2 client, httpx2's errors mapped,
and nothing importing httpx2 unless it is used. (The endpoint, fault, cancellation, secrets
and harvest suites run on both stacks through the ``http_stack`` fixture, see conftest.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
import respx

from zigziik import (
    ConfigurationError,
    NotFoundError,
    TransportError,
    ZignaClient,
    ZiikClient,
)

KEY = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
BASE = "https://api.zigna.dk/v2"

pytestmark = pytest.mark.anyio


def test_nothing_imports_httpx2_unless_it_is_used() -> None:
    script = textwrap.dedent(
        """
        import sys, anyio, httpx
        from zigziik import ZignaClient, ZiikClient
        import zigziik.cli, zigziik.download

        def answer(request):
            return httpx.Response(200, json={"id": "7"})

        async def main():
            async with ZignaClient(KEY) as own:
                assert own.http_stack == "httpx"
            mock = httpx.AsyncClient(transport=httpx.MockTransport(answer))
            async with ZignaClient(KEY, http_client=mock) as zigna:
                await zigna.orders.get("7")
            await mock.aclose()

        anyio.run(main)
        print("httpx2" in sys.modules, "httpcore2" in sys.modules)
        """
    ).replace("KEY", repr(KEY))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]


async def test_the_stack_of_zigziiks_own_client_is_chosen_and_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ZIGZIIK_HTTP_STACK", raising=False)
    async with ZignaClient(KEY) as default:
        assert default.http_stack == "httpx"
        assert "http_stack='httpx'" in repr(default)
    with pytest.raises(ConfigurationError, match="one of httpx, httpx2"):
        ZignaClient(KEY, http_stack="requests")
    monkeypatch.setenv("ZIGZIIK_HTTP_STACK", "curl")
    with pytest.raises(ConfigurationError, match=r"\$ZIGZIIK_HTTP_STACK must be one of"):
        ZignaClient(KEY)
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigurationError, match="does not match"):
            ZignaClient(KEY, http_client=http, http_stack="httpx2")
    with pytest.raises(ConfigurationError, match=r"httpx\.AsyncClient or an httpx2\.AsyncClient"):
        ZignaClient(KEY, http_client=object())  # type: ignore[arg-type]


try:
    import httpx2
except ImportError:  # Python 3.10, or without the httpx2 extra
    httpx2 = None

needs_httpx2 = pytest.mark.needs_python((3, 11))  # httpx2's own floor; the test extra has it


@needs_httpx2
async def test_httpx2_chosen_by_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZIGZIIK_HTTP_STACK", raising=False)
    async with ZignaClient(KEY, http_stack="httpx2") as zigna:
        assert zigna.http_stack == "httpx2"
        assert isinstance(zigna._transport._client, httpx2.AsyncClient)
        assert "http_stack='httpx2'" in repr(zigna)
    monkeypatch.setenv("ZIGZIIK_HTTP_STACK", "httpx2")
    async with ZiikClient("https://acme.ziik.io/api", "token") as ziik:
        assert ziik.http_stack == "httpx2"
        assert "http_stack='httpx2'" in repr(ziik)


@needs_httpx2
async def test_a_callers_httpx2_client_is_used_for_every_call_and_never_closed() -> None:
    with respx.mock(using="httpcore2", base_url=BASE) as mock:
        route = mock.get("/orders/7").respond(json={"id": "7", "statusID": 5})
        mock.get("/orders/8").respond(404, text="no such order")
        mock.get("/orders/9").mock(side_effect=httpx2.ConnectError("refused"))
        async with httpx2.AsyncClient(headers={"X-Trace": "on"}) as http:
            async with ZignaClient(KEY, http_client=http, timeout=httpx2.Timeout(5.0)) as zigna:
                assert zigna.http_stack == "httpx2"
                order = await zigna.orders.get("7")
                assert order.id == "7" and int(order.status_id or 0) == 5
                with pytest.raises(NotFoundError, match="no such order"):
                    await zigna.orders.get("8")
                with pytest.raises(TransportError) as caught:
                    await zigna.orders.get("9")
                assert isinstance(caught.value.__cause__, httpx2.ConnectError)
            assert not http.is_closed
    sent = route.calls.last.request.headers
    assert sent["X-Trace"] == "on"
    assert sent["X-ApiKey"] == KEY
    assert sent["User-Agent"].startswith("zigziik/") and " httpx2/" in sent["User-Agent"]


@needs_httpx2
@pytest.mark.parametrize(
    ("error", "retried"),
    [
        ("ConnectError", True),
        ("ConnectTimeout", True),
        ("ReadTimeout", True),
        ("RemoteProtocolError", True),
        ("UnsupportedProtocol", False),
    ],
)
async def test_httpx2_errors_become_the_same_zigziik_errors(error: str, retried: bool) -> None:
    from zigziik import RetryPolicy

    async def no_sleep(_: float) -> None:
        pass

    with respx.mock(using="httpcore2", base_url=BASE) as mock:
        route = mock.get("/orders/1").mock(side_effect=getattr(httpx2, error)("broken"))
        async with ZignaClient(KEY, http_stack="httpx2", retry=RetryPolicy(jitter=False)) as zigna:
            zigna._transport.sleep = no_sleep
            with pytest.raises(TransportError, match="GET https://api.zigna.dk/v2/orders/1"):
                await zigna.orders.get("1")
    assert route.call_count == (4 if retried else 1)


def test_the_http_fixture_matches_the_stack(http_stack: str, http: Any) -> None:
    assert http.__name__ == http_stack


@needs_httpx2
async def test_httpcore2_keeps_a_connected_orphan_and_zigziik_takes_it_out() -> None:
    """httpcore2 drops a cancelled request's connection while it connects, not once it has
    connected (NEW, owned by no request): the cleanup zigziik does for httpcore 1.0 applies."""
    import httpcore2

    from zigziik._compat import take_orphaned_connections

    pool = httpcore2.AsyncConnectionPool()
    origin = httpcore2.Origin(b"http", b"127.0.0.1", 80)
    connected = httpcore2.AsyncHTTPConnection(origin=origin)
    connected._connection = httpcore2.AsyncHTTP11Connection(origin=origin, stream=None)  # type: ignore[arg-type]
    pool._connections.append(connected)
    assert take_orphaned_connections(pool) == [connected]
    assert pool._connections == []


def test_no_module_catches_one_stacks_errors_only() -> None:
    """An ``except httpx.SomeError`` would let httpx2's error of the same name through: the
    stack-neutral code catches through `zigziik._stacks` (transports.py is httpx-only)."""
    import ast
    from pathlib import Path

    import zigziik

    package = Path(zigziik.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        if path.name == "transports.py" or "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            handler = isinstance(node, ast.ExceptHandler) and node.type is not None
            caught = ast.unparse(node.type) if handler else ""  # type: ignore[union-attr,arg-type]
            # httpx.InvalidURL: links are parsed with httpx.URL whatever the stack.
            if "httpx." in caught.replace("httpx.InvalidURL", ""):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []
