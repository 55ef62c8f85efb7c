"""Client lifecycle: who closes which httpx client, closed-client errors, leak warnings.

The rules (both clients share them through `BaseClient`):

- a caller-supplied ``http_client`` is used as is and never closed by us;
- our own httpx client is closed by ``aclose()`` or at the end of ``async with``;
- ``aclose()`` twice is fine;
- any call on a closed client raises `ClientClosedError` (a `RuntimeError` too), and so does
  entering a closed client again with ``async with``: a closed client is not reusable;
- a client that owns its httpx client and is garbage-collected unclosed emits a
  ``ResourceWarning`` (one whose httpx client belongs to the caller does not: the caller owns
  the resources);
- a client belongs to the event loop of its first request (asyncio's loop, or trio's run): a
  call from any other loop raises `WrongEventLoopError` (a `RuntimeError` too) before anything
  is sent or counted, and ``aclose()`` from another loop marks it closed with a
  ``ResourceWarning`` (its connections belong to the other loop) instead of failing inside
  asyncio. A client never used yet may be used in any loop.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from zigziik import (
    ClientClosedError,
    DailyBudget,
    WrongEventLoopError,
    ZignaClient,
    ZigziikError,
    ZiikClient,
)
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
    budget = DailyBudget(10)
    zigna = make_zigna(zigna_base, http_client=http, budget=budget)
    await http.aclose()
    # our client is not closed (the caller closed theirs); a request fails before anything is
    # sent or counted, with a ZigziikError (also a RuntimeError, as httpx's own would be)
    assert not zigna.closed
    with pytest.raises(ClientClosedError) as caught:
        await zigna.orders.get("x")
    assert type(caught.value) is ClientClosedError and isinstance(caught.value, RuntimeError)
    assert f"GET {zigna_base}/orders/x: " in str(caught.value)
    assert "the httpx client passed as http_client was closed by its owner" in str(caught.value)
    assert budget.used == 0
    assert not zigna.closed
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


# -- one client per event loop ------------------------------------------------------------------

Runner = Callable[..., Any]


def run_asyncio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    async def main() -> Any:
        return await fn(*args)

    return asyncio.run(main())


RUNNERS: dict[str, Runner] = {"asyncio": run_asyncio, "trio": trio.run}
ZIIK_PASSWORD = "lifecycle-Pa55word-secret"


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a coroutine function in a new event loop of its own: ``asyncio.run`` or ``trio.run``."""
    return RUNNERS[request.param]


@pytest.fixture
def fresh_zigna() -> Iterator[tuple[FakeZigna, str]]:
    """A fake of this test's own, so that its request count is this test's."""
    fake = FakeZigna(orders=2, pictures_per_order=1, picture_size=500, daily_limit=None)
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


def collect_leftovers(pool: weakref.ref[httpx.AsyncClient]) -> None:
    """Collect the connections of a loop that is gone now, here rather than in a later test.

    They were never closed (closing them needs their own loop), so asyncio and trio warn.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert pool() is None, "the test still holds the client"


def assert_wrong_loop_message(message: str, base: str, *secrets: str) -> None:
    assert base in message
    assert "another event loop" in message
    assert "one client per event loop" in message
    for secret in secrets:
        assert secret not in message
        assert secret.lower() not in message.lower()


def test_a_second_event_loop_is_refused_before_anything_is_sent(
    run: Runner, fresh_zigna: tuple[FakeZigna, str]
) -> None:
    fake, base = fresh_zigna
    budget = DailyBudget()
    zigna = make_zigna(base, budget=budget)
    pool = weakref.ref(owned_httpx(zigna))

    assert run(zigna.orders.packages)
    assert fake.calls == 1
    assert budget.used == 1

    for _ in range(2):  # the first loop stays the client's: every later loop is refused
        with pytest.raises(WrongEventLoopError) as info:
            run(zigna.orders.packages)
        error = info.value
        assert isinstance(error, ZigziikError) and isinstance(error, RuntimeError)
        assert not isinstance(error, ClientClosedError)
        assert_wrong_loop_message(str(error), base, DEMO_API_KEY)
        assert DEMO_API_KEY not in repr(error)
        del info, error
    assert fake.calls == 1  # nothing was sent...
    assert budget.used == 1  # ...nor counted
    assert budget.in_flight == 0
    assert not zigna.closed  # refused, not broken: its own loop could still use it

    with pytest.warns(ResourceWarning, match="another event loop"):
        run(zigna.aclose)
    del zigna
    collect_leftovers(pool)


def test_a_ziik_login_is_not_attempted_from_a_second_loop(run: Runner) -> None:
    fake = FakeZiik(units=4, password=ZIIK_PASSWORD)
    with serve(fake.app) as origin:
        base = origin + "/api"
        now = [time.time()]
        ziik = ZiikClient(base, username="demo", password=ZIIK_PASSWORD, clock=lambda: now[0])
        pool = weakref.ref(owned_httpx(ziik))

        assert run(collect_units, ziik)
        assert fake.logins == 1
        sent = fake.calls
        now[0] += 2 * 3600  # the token has expired: the next call would log in first
        with pytest.raises(WrongEventLoopError) as info:
            run(collect_units, ziik)
        assert_wrong_loop_message(str(info.value), base, ZIIK_PASSWORD)
        assert fake.calls == sent
        assert (fake.logins, fake.renewals) == (1, 0)
        del info
        with pytest.warns(ResourceWarning):
            run(ziik.aclose)
        del ziik
        collect_leftovers(pool)


async def collect_units(ziik: ZiikClient) -> list[Any]:
    return await ziik.units.list().collect()


def test_aclose_from_another_loop_marks_the_client_closed_with_a_resource_warning(
    run: Runner, fresh_zigna: tuple[FakeZigna, str]
) -> None:
    fake, base = fresh_zigna
    zigna = make_zigna(base)
    run(zigna.orders.packages)
    inner = owned_httpx(zigna)
    pool = weakref.ref(inner)

    with pytest.warns(ResourceWarning) as caught:
        run(zigna.aclose)  # no "Event loop is closed" from deep inside asyncio
    assert len(caught) == 1
    message = str(caught[0].message)
    assert base in message
    assert "another event loop" in message
    assert DEMO_API_KEY not in message
    assert zigna.closed
    assert not inner.is_closed  # its connections were left alone: they belong to the first loop

    with pytest.raises(ClientClosedError):
        run(zigna.orders.packages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(zigna.aclose)  # closing again is quiet
    assert fake.calls == 1
    del zigna, inner, caught
    collect_leftovers(pool)


def test_a_client_not_used_yet_may_be_used_in_any_loop(
    run: Runner, fresh_zigna: tuple[FakeZigna, str]
) -> None:
    fake, base = fresh_zigna
    made_outside = make_zigna(base)  # like a client made at import time

    async def use_and_close() -> None:
        async with made_outside:
            await made_outside.orders.packages()

    run(use_and_close)
    assert made_outside.closed
    assert owned_httpx(made_outside).is_closed

    holder: list[ZignaClient] = []

    async def make() -> None:
        holder.append(make_zigna(base))  # made in one loop, never used there

    async def use() -> None:
        async with holder[0] as zigna:
            await zigna.orders.packages()

    run(make)
    run(use)
    assert holder[0].closed
    assert owned_httpx(holder[0]).is_closed
    assert fake.calls == 2


def test_the_first_loop_keeps_its_client_after_another_is_refused(
    fresh_zigna: tuple[FakeZigna, str],
) -> None:
    """Two loops alive at once: the refused one changes nothing; the owner closes it cleanly."""
    fake, base = fresh_zigna
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        zigna = make_zigna(base)
        first.run_until_complete(zigna.orders.packages())
        with pytest.raises(WrongEventLoopError):
            second.run_until_complete(zigna.orders.packages())
        first.run_until_complete(zigna.orders.packages())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            first.run_until_complete(zigna.aclose())
        assert owned_httpx(zigna).is_closed
    finally:
        first.close()
        second.close()
    assert fake.calls == 2


def test_a_caller_http_client_is_bound_to_one_loop_too(
    fresh_zigna: tuple[FakeZigna, str],
) -> None:
    fake, base = fresh_zigna
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        http = httpx.AsyncClient(timeout=5.0)
        zigna = make_zigna(base, http_client=http)
        first.run_until_complete(zigna.orders.packages())
        with pytest.raises(WrongEventLoopError):
            second.run_until_complete(zigna.orders.packages())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second.run_until_complete(zigna.aclose())  # nothing of ours to close: no warning
        assert zigna.closed
        assert not http.is_closed
        first.run_until_complete(http.aclose())
    finally:
        first.close()
        second.close()
    assert fake.calls == 1


def test_two_threads_loops_racing_for_a_new_client_one_wins(
    fresh_zigna: tuple[FakeZigna, str],
) -> None:
    fake, base = fresh_zigna
    zigna = make_zigna(base)
    pool = weakref.ref(owned_httpx(zigna))
    start = threading.Barrier(2, timeout=10)
    outcomes: list[str] = []

    async def call(client: ZignaClient) -> None:
        start.wait()  # both loops run before either sends
        await client.orders.packages()

    def thread(client: ZignaClient) -> None:
        try:
            asyncio.run(call(client))
        except WrongEventLoopError:
            outcomes.append("refused")
        else:
            outcomes.append("sent")

    threads = [threading.Thread(target=thread, args=(zigna,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["refused", "sent"]
    assert fake.calls == 1
    with pytest.warns(ResourceWarning):
        run_asyncio(zigna.aclose)
    del zigna, threads
    collect_leftovers(pool)
