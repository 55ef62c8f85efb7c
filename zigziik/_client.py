"""What both clients share: the transport's lifecycle, context management, leak warnings."""

from __future__ import annotations

import warnings
from types import TracebackType
from typing import TypeVar

from ._transport import Transport
from .errors import ClientClosedError
from .ratelimit import DailyBudget

__all__ = ["BaseClient"]

_C = TypeVar("_C", bound="BaseClient")


class BaseClient:
    """An async context manager around one `Transport`.

    Use one client per event loop (httpx's connection pool belongs to the loop that first
    used it). Closing it closes its own httpx client, never one the caller passed in.
    """

    _transport: Transport

    async def __aenter__(self: _C) -> _C:
        if self._transport.closed:
            raise ClientClosedError(
                f"{type(self).__name__} for {self._transport.base_url} is closed; "
                "create a new client instead of re-entering a closed one"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client; further calls raise `ClientClosedError`."""
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def http_stack(self) -> str:
        """The HTTP stack this client sends through: ``"httpx"`` or ``"httpx2"``."""
        return self._transport.stack.name

    @property
    def budget(self) -> DailyBudget | None:
        """The daily call budget this client counts against (``None``: not tracked)."""
        return self._transport.budget

    def __del__(self) -> None:
        transport = getattr(self, "_transport", None)
        if transport is not None and transport.owns_client and not transport.closed:
            warnings.warn(
                f"{type(self).__name__} for {transport.base_url} was not closed; use "
                "'async with' or 'await client.aclose()'",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
