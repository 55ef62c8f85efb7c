"""The default transport's direct path: a download of zigziik's own client goes straight to
the lean HTTP/1.1 pool (`zigziik._request.LeanSender`), with no ``httpx.Request`` or
``httpx.Response`` made for it, and keeps every guarantee of httpx's path.

Over real loopback sockets (the raw servers of `tests/_servers.py`): the direct path is the
one taken, and only where the lean pool is the one httpx's objects would reach with the
same bytes; the request's head is byte for byte httpx's; a body cut short, too long or too
short ends in the documented error, with an ``httpx.Request`` attached, and leaves no file;
an error status keeps its excerpt; the budget records the server's figures.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import _servers as raw
import anyio
import httpx
import pytest

from zigziik import (
    DailyBudget,
    DecodeError,
    IncompleteBodyError,
    IntegrityError,
    NotFoundError,
    Picture,
    RetryPolicy,
    TransportError,
    ZignaClient,
)
from zigziik._http11 import Http11Pool, request_head
from zigziik._net import PoolTransport
from zigziik._request import LeanSender, ReplyHeaders, RequestBuilder, default_client
from zigziik.testing import DEMO_API_KEY

pytestmark = pytest.mark.asyncio

TIMEOUT = 0.5
RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
SMALL = bytes(range(256)) * 400  # 102,400 bytes: received whole, then written at once
LARGE = bytes(range(256)) * 2400  # 614,400 bytes: streamed to the disk thread
RATE = [("X-RateLimit-Limit", "2000"), ("X-RateLimit-Remaining", "1500")]


class Counted:
    """How many requests went through httpx's objects, how many direct."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.generic = 0
        self.direct = 0
        generic = Http11Pool.handle_async_request
        exchange = Http11Pool.exchange

        async def counting(pool: Http11Pool, request: httpx.Request) -> httpx.Response:
            self.generic += 1
            self.direct -= 1  # it calls exchange itself
            return await generic(pool, request)

        async def exchanging(pool: Http11Pool, request: httpx.Request) -> Any:
            self.direct += 1
            return await exchange(pool, request)

        monkeypatch.setattr(Http11Pool, "handle_async_request", counting)
        monkeypatch.setattr(Http11Pool, "exchange", exchanging)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    return Counted(monkeypatch)


def zigna(origin: str, **options: Any) -> ZignaClient:
    options.setdefault("retry", RETRY)
    options.setdefault("timeout", TIMEOUT)
    return ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", **options)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- the path taken ---------------------------------------------------------------------------


async def test_downloads_of_the_default_client_go_direct_and_json_calls_through_httpx(
    counted: Counted, tmp_path: Path
) -> None:
    ok = raw.respond(200, SMALL, content_type="image/jpeg", headers=RATE)
    with raw.RawServer(ok) as server:
        async with zigna(server.origin) as client:
            picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(SMALL))
            path = await client.pictures.download("1", picture, tmp_path)
            by_id = await client.pictures.download("1", 8, tmp_path)
            zipped = await client.pictures.download_zip("1", tmp_path / "zip")
            assert (counted.direct, counted.generic) == (3, 0)
            with pytest.raises(DecodeError):  # the body is no JSON order
                await client.orders.get("1")
            assert (counted.direct, counted.generic) == (3, 1)
    assert path.read_bytes() == SMALL and by_id.read_bytes() == SMALL
    assert (path.name, by_id.name) == ("7-a.jpg", "8.jpg")
    assert zipped is not None and zipped.read_bytes() == SMALL
    sent = server.requests[0]
    assert sent.method == "GET" and sent.target == "/v2/orders/1/pictures/7"
    assert sent.headers["x-apikey"] == DEMO_API_KEY
    assert sent.headers["accept"] == "*/*"
    assert sent.headers["user-agent"].startswith("zigziik/")


async def test_the_direct_request_head_is_byte_for_byte_httpxs() -> None:
    client, transport = default_client(httpx.Timeout(5.0))
    assert isinstance(transport, PoolTransport)
    sender = LeanSender(client, transport, _stack())
    builder = RequestBuilder(client, httpx.Timeout(5.0))
    cases = [
        ("http://127.0.0.1:8080/v2/orders/1/pictures/7", {"Accept": "*/*", "X-ApiKey": "k"}),
        ("http://localhost/v2/orders/a%2Fb/pictures/9", {"X-ApiKey": "k"}),
        ("https://api.example.com/v2/orders/1/zip", {"Accept": "*/*", "user-agent": "mine"}),
        ("http://[::1]:9/x/y", {}),
    ]
    async with client:
        for url, headers in cases:
            assert sender._split(url) is not None, url
            lean: Any = sender.prepare(url, headers, None)
            made = builder.build("GET", url, None, None, None, dict(headers))
            assert request_head(lean) == request_head(made), url
            assert type(request_head(lean)) is bytes
            assert lean.url.raw_host == made.url.raw_host and lean.url.port == made.url.port
            assert lean.url.raw_scheme == made.url.raw_scheme


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a b",  # httpx percent-encodes the space
        "http://127.0.0.1/a/%zz",  # and a "%" that starts no escape
        "http://127.0.0.1/a/./b",  # and removes dot segments
        "http://127.0.0.1/a/../b",
        "http://127.0.0.1/a?x=1",  # a query
        "http://127.0.0.1/a#top",  # a fragment
        "http://user@127.0.0.1/a",  # user info
        "http://127.0.0.1/å",  # not ASCII
        "http://127.0.0.1",  # no path
        "ftp://127.0.0.1/a",
        "/v2/orders",
    ],
)
async def test_a_url_httpx_would_change_is_not_sent_direct(url: str) -> None:
    client, transport = default_client(httpx.Timeout(5.0))
    assert isinstance(transport, PoolTransport)
    sender = LeanSender(client, transport, _stack())
    async with client:
        assert sender._split(url) is None
        assert sender.direct_ready(url) is False
        assert sender.direct_ready("http://127.0.0.1/v2/orders/1/pictures/7") is True


async def test_a_patched_pool_or_a_closed_client_is_not_sent_direct() -> None:
    import respx

    client, transport = default_client(httpx.Timeout(5.0))
    assert isinstance(transport, PoolTransport)
    sender = LeanSender(client, transport, _stack())
    url = "http://127.0.0.1:9/v2/orders/1/pictures/7"
    assert sender.direct_ready(url) is True
    with respx.mock(using="httpcore"):
        assert sender.direct_ready(url) is False
    assert sender.direct_ready(url) is True
    await client.aclose()
    assert sender.direct_ready(url) is False


async def test_a_respx_mocked_download_goes_through_httpx_and_is_seen(
    counted: Counted, tmp_path: Path
) -> None:
    import respx

    with respx.mock(using="httpcore") as router:
        route = router.get("https://api.example.com/v2/orders/1/pictures/7").respond(
            200, content=SMALL, headers={"Content-Type": "image/jpeg"}
        )
        async with ZignaClient(DEMO_API_KEY, base_url="https://api.example.com/v2") as client:
            path = await client.pictures.download("1", 7, tmp_path)
    assert route.call_count == 1 and path.read_bytes() == SMALL
    assert counted.direct == 0


# -- faults: the same errors, attempts and leftovers as httpx's path --------------------------


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
async def test_a_reset_mid_body_is_retried_then_an_error_with_an_httpx_request(
    counted: Counted, tmp_path: Path, body: bytes
) -> None:
    reset = raw.reset_mid_body(body, sent=30_000)
    ok = raw.respond(200, body, content_type="image/jpeg")
    with raw.RawServer(raw.scripted(reset, reset, ok)) as server:
        with anyio.fail_after(10):
            async with zigna(server.origin) as client:
                with pytest.raises((TransportError, IncompleteBodyError)) as caught:
                    await client.pictures.download("1", 7, tmp_path)
                assert server.calls == 2
                assert names(tmp_path) == []
                path = await client.pictures.download("1", 7, tmp_path)
    cause = caught.value.__cause__
    assert isinstance(cause, (httpx.ReadError, httpx.RemoteProtocolError))
    assert type(cause.request) is httpx.Request
    assert str(cause.request.url) == server.origin + "/v2/orders/1/pictures/7"
    assert cause.request.headers["x-apikey"] == DEMO_API_KEY
    assert "/v2/orders/1/pictures/7" in str(caught.value)
    assert path.read_bytes() == body and names(tmp_path) == ["7.jpg"]
    assert (counted.direct, counted.generic) == (3, 0)


async def test_a_refused_connection_is_a_connect_error_with_an_httpx_request() -> None:
    port = raw.closed_port()
    async with zigna(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(TransportError) as caught:
            await client.pictures.download("1", 7, Path("unused"))
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert type(cause.request) is httpx.Request
    assert str(cause.request.url) == f"http://127.0.0.1:{port}/v2/orders/1/pictures/7"


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
async def test_a_body_shorter_or_longer_than_declared_saves_nothing(
    counted: Counted, tmp_path: Path, body: bytes
) -> None:
    short = raw.short_body(body[:40_000], declared=len(body))
    long = raw.long_body(body + b"extra", declared=len(body))
    with raw.RawServer(raw.scripted(short, short, long)) as server:
        with anyio.fail_after(10):
            async with zigna(server.origin) as client:
                with pytest.raises(IncompleteBodyError, match="Content-Length"):
                    await client.pictures.download("1", 7, tmp_path)
                assert names(tmp_path) == []
                # Bytes beyond the declared length: the body is the declared bytes, the
                # connection is not reused (the next request opens another).
                path = await client.pictures.download("1", 8, tmp_path)
    assert path.read_bytes() == body
    assert counted.generic == 0


async def test_a_body_of_another_size_than_the_pictures_is_refused(
    counted: Counted, tmp_path: Path
) -> None:
    ok = raw.respond(200, SMALL, content_type="image/jpeg")
    with raw.RawServer(ok) as server:
        async with zigna(server.origin) as client:
            picture = Picture(picture_id=7, original_file_name="a.jpg", size=len(SMALL) + 1)
            with pytest.raises(IntegrityError):
                await client.pictures.download("1", picture, tmp_path)
    assert names(tmp_path) == [] and server.calls == 1 and counted.direct == 1


async def test_an_error_status_keeps_its_excerpt_and_a_gzip_body_is_decoded(
    counted: Counted, tmp_path: Path
) -> None:
    missing = raw.respond(404, b'{"message": "no such picture here"}')
    zipped = gzip.compress(SMALL)
    encoded = raw.respond(
        200, zipped, content_type="image/jpeg", headers=[("Content-Encoding", "gzip")]
    )
    with raw.RawServer(raw.scripted(missing, encoded)) as server:
        async with zigna(server.origin) as client:
            with pytest.raises(NotFoundError, match="no such picture here") as caught:
                await client.pictures.download("1", 7, tmp_path)
            path = await client.pictures.download("1", 8, tmp_path)
    assert caught.value.status_code == 404
    assert path.read_bytes() == SMALL
    assert (counted.direct, counted.generic) == (2, 0)


async def test_the_budget_takes_the_servers_figures_with_nothing_in_flight(
    tmp_path: Path,
) -> None:
    ok = raw.respond(200, SMALL, content_type="image/jpeg", headers=RATE)
    with raw.RawServer(ok) as server:
        budget = DailyBudget(limit=5000)
        async with zigna(server.origin, budget=budget) as client:
            await client.pictures.download("1", 7, tmp_path)
    assert budget.limit == 2000 and budget.remaining == 1500
    assert budget.in_flight == 0


# -- the pure parts ---------------------------------------------------------------------------


async def test_reply_headers_ignore_case_and_join_repeated_ones() -> None:
    headers = ReplyHeaders(
        [(b"Content-Type", b"image/jpeg"), (b"X-Thing", b"a"), (b"x-thing", b"b")]
    )
    assert headers["content-type"] == "image/jpeg" and headers["CONTENT-TYPE"] == "image/jpeg"
    assert headers.get("Content-Type") == "image/jpeg" and headers.get("nope") is None
    assert headers.get("nope", "x") == "x"
    assert "CONTENT-type" in headers and "content-length" not in headers and 1 not in headers
    assert headers["x-thing"] == "a, b"  # as httpx.Headers.get joins them
    assert httpx.Headers([("X-Thing", "a"), ("x-thing", "b")])["x-thing"] == "a, b"
    assert all(type(v) is str for v in headers.values())
    with pytest.raises(KeyError):
        headers["nope"]


def _stack() -> Any:
    from zigziik._stacks import HTTPX

    return HTTPX


async def test_a_reply_released_mid_body_closes_its_connection_at_once() -> None:
    with raw.RawServer(raw.trickle(b"abcdef", every=0.01)) as server:
        client, transport = default_client(httpx.Timeout(5.0))
        assert isinstance(transport, PoolTransport)
        sender = LeanSender(client, transport, _stack())
        async with client:
            url = server.origin + "/v2/orders/1/pictures/7"
            assert sender.direct_ready(url)
            reply = await sender.direct_get(url, {}, None)
            assert reply.status_code == 200 and type(reply.status_code) is int
            assert reply.headers["content-length"] == "6"
            pieces = reply.__aiter__()
            assert await pieces.__anext__() == b"a"
            assert [c.is_closed() for c in transport.lean_pool._all] == [False]
            reply.release()  # synchronous: no await between it and the check
            assert transport.lean_pool.connections == []
            reply.release()  # idempotent
            await pieces.aclose()
