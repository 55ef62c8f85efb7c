"""Async paginators: follow the API's ``next`` links safely."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Generic, TypeVar

import attrs
import httpx

from ._urls import resolve_link, same_origin, with_params
from .errors import DecodeError

__all__ = ["AsyncPaginator", "Page"]

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
    Each iteration starts again from the first page.
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
        return self._items()

    async def _items(self) -> AsyncGenerator[T, None]:
        # aclosing: closing this generator early (a ``break``) closes ``pages()`` at once,
        # instead of leaving it to the garbage collector (which trio warns about).
        async with aclosing(self.pages()) as pages:
            async for page in pages:
                for item in page:
                    yield item

    async def pages(self) -> AsyncGenerator[list[T], None]:
        """Each page's items, in order."""
        url: str = self._url
        params = self._params
        followed = {_key(url, params)}
        while True:
            page = await self._fetch(url, params)
            if not page.items:
                return
            yield page.items
            if not page.next:
                return
            try:
                next_url = resolve_link(self._base_url, page.next)
                other_origin = not same_origin(next_url, self._base_url)
                key = _key(next_url, None)  # httpx's own parse: what it cannot send is refused
            except (ValueError, httpx.InvalidURL):  # UnicodeError is a ValueError
                raise DecodeError(
                    f"the next link is not a usable URL: {page.next[:200]!r}",
                    method="GET",
                    url=with_params(url, params),
                ) from None
            if other_origin:
                raise DecodeError(
                    f"refusing to follow a next link to another origin: {next_url!r}",
                    method="GET",
                    url=with_params(url, params),
                )
            if key in followed:
                logger.warning("the server repeated the next link %s; stopping", next_url)
                return
            followed.add(key)
            url, params = next_url, None

    async def collect(self, *, limit: int | None = None) -> list[T]:
        """All items in one list (at most ``limit``, fetching no page beyond it)."""
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
        items: list[T] = []
        if limit == 0:
            return items
        async with aclosing(self.pages()) as pages:
            async for page in pages:
                items.extend(page)
                if limit is not None and len(items) >= limit:
                    return items[:limit]
        return items


def _key(url: str, params: Mapping[str, object] | None) -> str:
    parsed = httpx.URL(with_params(url, params))
    query = "&".join(sorted(parsed.query.decode("ascii", "replace").split("&")))
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}?{query}"
