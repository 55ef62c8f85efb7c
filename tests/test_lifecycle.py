"""Client lifecycle: who closes which httpx client, closed-client errors, leak warnings.

The rules (both clients share them through `BaseClient`):

- a caller-supplied ``http_client`` is used as is and never closed by us;
- our own httpx client is closed by ``aclose()`` or at the end of ``async with``;
- ``aclose()`` twice is fine;
- any call on a closed client raises `ClientClosedError` (a `RuntimeError` too), and so does
  entering a closed client again with ``async with``: a closed client is not reusable;
- a client that owns its httpx client and is garbage-collected unclosed emits a
  ``ResourceWarning`` (one whose httpx client belongs to the caller does not: the caller owns
  the resources).
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zigziik import ClientClosedError, ZignaClient, ZigziikError, ZiikClient
from zigziik._client import BaseClient
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve
from zigziik.testing._ziik import FakeZiik

pytestmark = pytest.mark.anyio

ZIIK_TOKEN = "lifecycle-test-token"


@pytest.fixture(scope="module")
def zigna_base() -> Iterator[str]:
    fake = FakeZigna(orders=3, pictures_per_order=2, picture_size=2_000, daily_limit=None)
    with serve(fake.app) as origin:
        yield origin + "/v2"


@pytest.fixture(scope="module")
def ziik_base() -> Iterator[str]:
    fake = FakeZiik(units=5, token=ZIIK_TOKEN)
    with serve(fake.app) as origin:
        yield origin + "/api"


def owned_httpx(client: BaseClient) -> httpx.AsyncClient:
    """The httpx client a zigziik client created for itself (white-box, on purpose)."""
    transport = client._transport
    assert transport.owns_client
    inner = transport._client
    assert isinstance(inner, httpx.AsyncClient)
    return inner


def make_zigna(base: str, **kwargs: Any) -> ZignaClient:
    return ZignaClient(DEMO_API_KEY, base_url=base, **kwargs)


def make_ziik(base: str, **kwargs: Any) -> ZiikClient:
    return ZiikClient(base, ZIIK_TOKEN, **kwargs)


# -- a caller's httpx client is never closed ---------------------------------------------------


@pytest.mark.both_backends
async def test_caller_client_survives_aclose_and_context_exit(zigna_base: str) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        zigna = make_zigna(zigna_base, http_client=http)
        assert not zigna.closed
        first = await zigna.orders.list().collect(limit=1)
        await zigna.aclose()
        assert zigna.closed
        assert not http.is_closed

        async with make_zigna(zigna_base, http_client=http) as again:
            order = await again.orders.get(first[0].id)
        assert again.closed
        assert not http.is_closed

        # still usable by its owner, and by a third client
        response = await http.get(f"{zigna_base}/orders/{order.id}")
        assert response.status_code == 401  # no key: the caller's own plain request
        async with make_zigna(zigna_base, http_client=http) as third:
            assert (await third.orders.get(order.id)).id == order.id
    assert http.is_closed


@pytest.mark.both_backends
async def test_caller_client_survives_ziik_close(ziik_base: str) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        async with make_ziik(ziik_base, http_client=http) as ziik:
            units = await ziik.units.list().collect()
            assert units
        assert ziik.closed
        assert not http.is_closed


async def test_caller_client_closed_by_its_owner_is_not_our_business(zigna_base: str) -> None:
    http = httpx.AsyncClient()
    zigna = make_zigna(zigna_base, http_client=http)
    await http.aclose()
    # our client is not closed (the caller closed theirs); a request fails the httpx way
    assert not zigna.closed
    with pytest.raises((RuntimeError, ZigziikError)):
        await zigna.orders.get("x")
    await zigna.aclose()


# -- our own httpx client is closed -----------------------------------------------------------


@pytest.mark.both_backends
async def test_own_client_closed_on_context_exit(zigna_base: str) -> None:
    async with make_zigna(zigna_base) as zigna:
        inner = owned_httpx(zigna)
        await zigna.orders.list().collect(limit=1)
        assert not inner.is_closed
    assert zigna.closed
    assert inner.is_closed


@pytest.mark.both_backends
async def test_own_client_closed_on_aclose(zigna_base: str, ziik_base: str) -> None:
    zigna = make_zigna(zigna_base)
    ziik = make_ziik(ziik_base)
    await zigna.orders.list().collect(limit=1)
    await ziik.units.list().collect(limit=1)
    await zigna.aclose()
    await ziik.aclose()
    assert owned_httpx(zigna).is_closed
    assert owned_httpx(ziik).is_closed


async def test_own_client_closed_when_the_block_raises(zigna_base: str) -> None:
    with pytest.raises(LookupError):
        async with make_zigna(zigna_base) as zigna:
            raise LookupError("boom")
    assert zigna.closed
    assert owned_httpx(zigna).is_closed


async def test_unused_client_closes_cleanly(zigna_base: str) -> None:
    zigna = make_zigna(zigna_base)
    await zigna.aclose()
    assert zigna.closed
    assert owned_httpx(zigna).is_closed


@pytest.mark.both_backends
async def test_double_aclose_is_fine(zigna_base: str, ziik_base: str) -> None:
    for client in (make_zigna(zigna_base), make_ziik(ziik_base)):
        await client.aclose()
        await client.aclose()
        assert client.closed
    async with make_zigna(zigna_base) as zigna:
        await zigna.aclose()  # closing inside the block, then the block's own close
    assert zigna.closed


# -- a closed client says so ---------------------------------------------------------------------


@pytest.mark.both_backends
async def test_closed_zigna_raises_client_closed_error(zigna_base: str, tmp_path: Path) -> None:
    async with make_zigna(zigna_base) as zigna:
        order_id = (await zigna.orders.list().collect(limit=1))[0].id
        paginator = zigna.orders.list(take=1)
    upload = tmp_path / "up.jpg"
    upload.write_bytes(b"\xff\xd8\xff\xd9")
    calls = [
        lambda: zigna.orders.get(order_id),
        lambda: zigna.orders.packages(),
        lambda: paginator.collect(),
        lambda: zigna.pictures.list(order_id),
        lambda: zigna.pictures.download(order_id, 1, tmp_path),
        lambda: zigna.pictures.download_zip(order_id, tmp_path),
        lambda: zigna.pictures.upload(order_id, upload),
    ]
    for call in calls:
        with pytest.raises(ClientClosedError, match="closed") as info:
            await call()
        assert isinstance(info.value, RuntimeError)
        assert zigna_base in str(info.value)
    assert not any(p.name.endswith(".zip") for p in tmp_path.iterdir())


@pytest.mark.both_backends
async def test_closed_ziik_raises_client_closed_error(ziik_base: str) -> None:
    ziik = make_ziik(ziik_base)
    unit = (await ziik.units.list().collect(limit=1))[0]
    await ziik.aclose()
    with pytest.raises(ClientClosedError):
        await ziik.units.get(unit.id)
    with pytest.raises(ClientClosedError):
        await ziik.units.list().collect()
    with pytest.raises(ClientClosedError):
        async for _node in ziik.units.walk(unit.id):
            pass


async def test_paginator_stops_with_client_closed_error_mid_iteration(zigna_base: str) -> None:
    zigna = make_zigna(zigna_base)
    seen: list[str | None] = []

    async def iterate_and_close() -> None:
        async for order in zigna.orders.list(take=1):
            seen.append(order.id)
            await zigna.aclose()

    with pytest.raises(ClientClosedError):
        await iterate_and_close()
    assert len(seen) == 1


@pytest.mark.both_backends
async def test_reentering_a_closed_client_raises(zigna_base: str, ziik_base: str) -> None:
    async with make_zigna(zigna_base) as zigna:
        pass
    with pytest.raises(ClientClosedError, match="closed"):
        async with zigna:
            pytest.fail("entered a closed client")  # pragma: no cover
    ziik = make_ziik(ziik_base)
    await ziik.aclose()
    with pytest.raises(ClientClosedError):
        async with ziik:
            pytest.fail("entered a closed client")  # pragma: no cover


async def test_entering_twice_before_close_is_allowed(zigna_base: str) -> None:
    """Nested ``async with`` on an open client works; the inner exit closes it."""
    zigna = make_zigna(zigna_base)
    async with zigna:
        async with zigna as same:
            assert same is zigna
        assert zigna.closed
    assert zigna.closed


# -- garbage collected unclosed: ResourceWarning -------------------------------------------------


def collect_warnings(make: Any) -> list[warnings.WarningMessage]:
    """Build a client with ``make()``, drop every reference, collect, return the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = make()
        del client
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_unclosed_zigna_warns_when_collected(zigna_base: str) -> None:
    caught = collect_warnings(lambda: make_zigna(zigna_base))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "ZignaClient" in message
    assert "not closed" in message
    assert zigna_base in message
    assert DEMO_API_KEY not in message


def test_unclosed_ziik_warns_when_collected(ziik_base: str) -> None:
    caught = collect_warnings(lambda: make_ziik(ziik_base))
    assert len(caught) == 1
    assert "ZiikClient" in str(caught[0].message)
    assert ZIIK_TOKEN not in str(caught[0].message)


async def test_closed_client_does_not_warn(zigna_base: str) -> None:
    zigna = make_zigna(zigna_base)
    await zigna.orders.list().collect(limit=1)
    await zigna.aclose()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del zigna
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_client_on_a_caller_http_client_does_not_warn(zigna_base: str) -> None:
    async with httpx.AsyncClient() as http:
        assert collect_warnings(lambda: make_zigna(zigna_base, http_client=http)) == []


def test_half_built_client_does_not_warn() -> None:
    """A constructor that fails (bad key) leaves nothing to close and nothing to warn about."""

    def bad() -> None:
        try:
            ZignaClient("not-a-guid", base_url="http://127.0.0.1:9/v2")
        except ZigziikError:
            return None
        raise AssertionError("expected a ConfigurationError")  # pragma: no cover

    assert collect_warnings(bad) == []
