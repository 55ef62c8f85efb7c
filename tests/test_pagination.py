"""AsyncPaginator on its own (a fetch function, no HTTP): limits, the end, and what it says."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from zigziik._urls import with_params
from zigziik.errors import DecodeError
from zigziik.pagination import AsyncPaginator, Page

BASE = "https://api.zigna.dk/v2"


class Server:
    """Pages by URL; records every fetch."""

    def __init__(self, pages: dict[str, Page[int]]) -> None:
        self.pages = pages
        self.fetched: list[str] = []

    async def fetch(self, url: str, params: Mapping[str, object] | None) -> Page[int]:
        full = with_params(url, params)
        self.fetched.append(full)
        return self.pages[full]

    def paginator(self) -> AsyncPaginator[int]:
        return AsyncPaginator(self.fetch, BASE + "/orders", {"take": 2}, base_url=BASE)


FIRST = BASE + "/orders?take=2"


def test_repr_names_the_first_page() -> None:
    assert repr(Server({}).paginator()) == f"<AsyncPaginator {FIRST}>"


@pytest.mark.parametrize("bad", [-1, True, False])
def test_collect_refuses_a_bad_limit_naming_it(bad: Any) -> None:
    server = Server({})
    with pytest.raises(ValueError, match="limit must be") as caught:
        anyio.run(lambda: server.paginator().collect(limit=bad))
    assert str(caught.value) == f"limit must be a non-negative int or None, got {bad!r}"
    assert server.fetched == []


def test_collect_limits() -> None:
    server = Server(
        {
            FIRST: Page([1, 2], "/v2/orders?skip=2"),
            BASE + "/orders?skip=2": Page([3, 4], None),
        }
    )
    assert anyio.run(lambda: server.paginator().collect(limit=0)) == []
    assert server.fetched == []
    assert anyio.run(lambda: server.paginator().collect(limit=1)) == [1]
    assert server.fetched == [FIRST]
    assert anyio.run(lambda: server.paginator().collect(limit=3)) == [1, 2, 3]
    assert anyio.run(lambda: server.paginator().collect()) == [1, 2, 3, 4]


async def drain(pages: Any) -> list[list[int]]:
    return [page async for page in pages]


@pytest.mark.anyio
async def test_after_the_end_nothing_more_is_fetched_or_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The end is remembered: asking again fetches nothing, follows no link, logs nothing."""
    repeated = BASE + "/orders?skip=2"
    server = Server(
        {FIRST: Page([1], "/v2/orders?skip=2"), repeated: Page([2], "/v2/orders?skip=2")}
    )
    pages = server.paginator().pages()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert await drain(pages) == [[1], [2]]
        for _ in range(2):
            with pytest.raises(StopAsyncIteration):
                await pages.__anext__()
    assert server.fetched == [FIRST, repeated]
    assert [r.getMessage() for r in caplog.records] == [
        f"the server repeated the next link {repeated}; stopping"
    ]


@pytest.mark.anyio
async def test_an_empty_page_ends_it_for_good(caplog: pytest.LogCaptureFixture) -> None:
    second = BASE + "/orders?skip=2"
    server = Server({FIRST: Page([1], "/v2/orders?skip=2"), second: Page([], "/v2/orders?skip=4")})
    pages = server.paginator().pages()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert await drain(pages) == [[1]]
        with pytest.raises(StopAsyncIteration):
            await pages.__anext__()
    assert server.fetched == [FIRST, second]
    assert caplog.records == []


@pytest.mark.anyio
@pytest.mark.parametrize("close", ["pages", "items"])
async def test_a_closed_iterator_fetches_nothing_more(close: str) -> None:
    server = Server(
        {FIRST: Page([1, 2], "/v2/orders?skip=2"), BASE + "/orders?skip=2": Page([3], None)}
    )
    iterator: Any = server.paginator().pages() if close == "pages" else aiter(server.paginator())
    await iterator.__anext__()
    await iterator.aclose()
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()
    assert server.fetched == [FIRST]


@pytest.mark.anyio
async def test_a_refused_link_names_the_page_with_its_query() -> None:
    server = Server({FIRST: Page([1], "https://evil.example/v2/orders?skip=2")})
    with pytest.raises(DecodeError) as caught:
        await server.paginator().collect()
    assert str(caught.value).startswith(f"GET {FIRST}: refusing to follow a next link")
