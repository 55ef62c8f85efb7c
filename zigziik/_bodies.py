"""Response bodies: reading one whole, reading it straight from the transport's stream,
closing a response under cancellation, and the short, scrubbed excerpt of an error body."""

from __future__ import annotations

from collections.abc import Iterable

import anyio
import httpx

from ._checks import one_line
from ._redact import scrub_with
from ._stacks import async_streams, http_errors

__all__ = ["close_response", "excerpt", "plain_body", "read_body", "read_excerpt"]

EXCERPT_BYTES = 2048
"""How much of an error body is read for its excerpt."""
_EXCERPT_CHARS = 300


def plain_body(response: httpx.Response) -> httpx.AsyncByteStream | None:
    """The body's stream as the transport gives it, when its bytes need no decoding (no
    ``Content-Encoding``) and nothing has read it yet; else ``None`` (use `aiter_bytes`).

    Reading it directly skips httpx's two iterator layers per chunk; the caller counts the
    bytes itself (`Response.num_bytes_downloaded` stays 0).
    """
    stream = response.stream
    if (
        "content-encoding" in response.headers
        or not isinstance(stream, async_streams())
        or response.is_stream_consumed
    ):
        return None
    return stream  # type: ignore[return-value]  # an AsyncByteStream of one stack or other


async def read_body(response: httpx.Response) -> bytes:
    """The default consumer: the whole body."""
    stream = plain_body(response)
    if stream is None:
        return await response.aread()
    body = b"".join([chunk async for chunk in stream])
    await close_response(response)  # at once: the connection is free for the next request
    return body


async def close_response(response: httpx.Response) -> None:
    """Close ``response`` (freeing its connection) even when the caller is being cancelled."""
    if response.is_closed:  # closed already (no cancel scope to pay for)
        return
    with anyio.CancelScope(shield=True):
        await response.aclose()


async def read_excerpt(response: httpx.Response) -> bytes:
    """The first `EXCERPT_BYTES` or so of an error body; what arrived if it breaks off."""
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= EXCERPT_BYTES:
                break
    except http_errors():
        pass  # the status says enough; a broken error body is not worth a retry
    return bytes(body)


def excerpt(body: bytes, secrets: Iterable[str]) -> str:
    """One line of at most 300 characters of ``body``, scrubbed of ``secrets``."""
    # Scrub before the whitespace is squeezed and the text cut: either could break up a secret.
    return one_line(scrub_with(body.decode("utf-8", errors="replace"), secrets), _EXCERPT_CHARS)
