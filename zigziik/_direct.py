"""A direct exchange: a GET whose body goes straight to its consumer, with no httpx
``Request`` or ``Response`` built for it.

Building an ``httpx.Request`` (its URL parsed, its headers merged and normalised) and an
``httpx.Response`` around a transport's answer is most of what a small download costs above
the network when the bytes themselves move fast (the aiohttp extra). An HTTP client that can
send a plain GET without them is a `DirectSender`; a consumer that can take its answer is a
`DirectConsumer`. The transport (``zigziik._transport``) uses the pair when both are there and
the request is a plain GET, and httpx's own objects otherwise: budget, retries, error mapping
and every check of the body stay the transport's and the consumer's, whichever way it goes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import httpx

__all__ = ["DirectConsumer", "DirectReply", "DirectSender"]

T_co = TypeVar("T_co", covariant=True)


class DirectReply(Protocol):
    """The status, headers and body of one answer to a direct GET."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The response's headers; lookups by name ignore case."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The body, each piece as it arrived; the stack's transport errors
        (``httpx.RemoteProtocolError`` for a body cut short, ...)."""

    def release(self) -> None:
        """Done with it (synchronous, idempotent): the connection is reused when the body
        was read to its end, else closed."""

    def as_response(self) -> httpx.Response:
        """The same answer as an ``httpx.Response`` (body unread), for what only httpx's
        objects do: an error status's excerpt, a ``Content-Encoding`` to decode."""


@runtime_checkable
class DirectSender(Protocol):
    """An HTTP client (an ``httpx.AsyncClient`` subclass) that can send a direct GET."""

    def direct_ready(self, url: str) -> bool:
        """Whether a GET of ``url`` may go direct: nothing the client is configured with
        (auth, hooks, cookies, redirects, parameters) would change it."""

    async def direct_get(self, url: str, headers: Mapping[str, str], timeout: Any) -> DirectReply:
        """Send ``GET url`` with the client's headers and ``headers`` (which win), within
        ``timeout`` (an ``httpx.Timeout``; ``None``: the client's); the answer's body unread.
        Failures are the stack's transport errors, as its transport's would be."""


class DirectConsumer(Protocol[T_co]):
    """A transport consumer that can also take a `DirectReply` of a successful status."""

    async def __call__(self, response: httpx.Response) -> T_co: ...

    async def direct(self, reply: DirectReply, url: str) -> T_co:
        """Consume ``reply`` (an answer to ``GET url``); the transport releases it after."""
