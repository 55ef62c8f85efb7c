"""Async paginators: follow the API's ``next`` links safely."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Generic, TypeVar

import attrs
import httpx

from ._urls import resolve_link, same_origin, with_params
from .errors import DecodeError

__all__ = ["AsyncPaginator"]

T = TypeVar("T")

logger = logging.getLogger("zigziik")


@attrs.frozen
class Page(Generic[T]):
    """One page of results and the raw ``next`` link the server gave (``None`` at the end)."""

    items: list[T]
    next: str | None = None


FetchPage = Callable[[str, Mapping[str, object] | None], Awaitable[Page[T]]]


class AsyncPaginator(Generic[T]):
    """Iterate items with ``async for``, or whole pages with ``.pages()``.

    It stops at a missing or empty ``next``, an empty page, or a ``next`` it has already
    followed (a server bug that would otherwise loop forever). A ``next`` pointing to another
    origin raises `DecodeError`: following it would send the credentials elsewhere.
    Each iteration starts again from the first page. No async generators are involved:
    leaving a loop early (``break``) needs no ``aclosing`` and leaves nothing behind.
    """

    def __init__(
        self,
        fetch: FetchPage[T],
        url: str,
        params: Mapping[str, object] | None,
        *,
        base_url: str,
    ) -> None:
        self._fetch = fetch
        self._url = url
        self._params = dict(params) if params else None
        self._base_url = base_url

    def __repr__(self) -> str:
        return f"<AsyncPaginator {with_params(self._url, self._params)}>"

    def __aiter__(self) -> AsyncIterator[T]:
        return _Items(_Cursor(self))

    def pages(self) -> AsyncIterator[list[T]]:
        """Each page's items, in order: ``async for page in paginator.pages()``."""
        return _Pages(_Cursor(self))

    async def collect(self, *, limit: int | None = None) -> list[T]:
        """All items in one list (at most ``limit``, fetching no page beyond it)."""
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
        items: list[T] = []
        if limit == 0:
            return items
        async for page in self.pages():
            items.extend(page)
            if limit is not None and len(items) >= limit:
                return items[:limit]
        return items


class _Cursor(Generic[T]):
    """One walk along the ``next`` links: `next_page` returns each page's items, then ``None``.

    A plain object rather than an async generator, so that leaving an ``async for`` early
    leaves nothing to finalize (trio warns about async generators left to the GC, and PEP 533
    is not in the language): there is no open resource between two pages.
    """

    def __init__(self, paginator: AsyncPaginator[T]) -> None:
        self._fetch = paginator._fetch
        self._base_url = paginator._base_url
        self._url: str = paginator._url
        self._params = paginator._params
        self._followed = {_key(self._url, self._params)}
        self._next: str | None = None
        self._started = False
        self._done = False

    def close(self) -> None:
        self._done = True

    async def next_page(self) -> list[T] | None:
        if self._done:
            return None
        if self._started and not self._advance():
            self._done = True
            return None
        self._started = True
        page = await self._fetch(self._url, self._params)
        if not page.items:
            self._done = True
            return None
        self._next = page.next
        return page.items

    def _advance(self) -> bool:
        """Move to the last page's ``next`` link; False at the end (or on a repeated link)."""
        url, params, link = self._url, self._params, self._next
        if not link:
            return False
        try:
            next_url = resolve_link(self._base_url, link)
            other_origin = not same_origin(next_url, self._base_url)
            key = _key(next_url, None)  # httpx's own parse: what it cannot send is refused
        except (ValueError, httpx.InvalidURL):  # UnicodeError is a ValueError
            raise DecodeError(
                f"the next link is not a usable URL: {link[:200]!r}",
                method="GET",
                url=with_params(url, params),
            ) from None
        if other_origin:
            raise DecodeError(
                f"refusing to follow a next link to another origin: {next_url!r}",
                method="GET",
                url=with_params(url, params),
            )
        if key in self._followed:
            logger.warning("the server repeated the next link %s; stopping", next_url)
            return False
        self._followed.add(key)
        self._url, self._params = next_url, None
        return True


class _Pages(Generic[T]):
    """``paginator.pages()``: an async iterator of pages (``aclose()`` kept for `aclosing`)."""

    def __init__(self, cursor: _Cursor[T]) -> None:
        self._cursor = cursor

    def __aiter__(self) -> _Pages[T]:
        return self

    async def __anext__(self) -> list[T]:
        page = await self._cursor.next_page()
        if page is None:
            raise StopAsyncIteration
        return page

    async def aclose(self) -> None:
        self._cursor.close()


class _Items(Generic[T]):
    """``async for item in paginator``: the pages' items, one by one."""

    def __init__(self, cursor: _Cursor[T]) -> None:
        self._cursor = cursor
        self._buffer: deque[T] = deque()

    def __aiter__(self) -> _Items[T]:
        return self

    async def __anext__(self) -> T:
        while not self._buffer:
            page = await self._cursor.next_page()
            if page is None:
                raise StopAsyncIteration
            self._buffer.extend(page)
        return self._buffer.popleft()

    async def aclose(self) -> None:
        self._buffer.clear()
        self._cursor.close()


def _key(url: str, params: Mapping[str, object] | None) -> str:
    parsed = httpx.URL(with_params(url, params))
    query = "&".join(sorted(parsed.query.decode("ascii", "replace").split("&")))
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}?{query}"
