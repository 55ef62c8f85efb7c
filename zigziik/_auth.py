"""How a client proves who it is: the `Authenticator` protocol and fixed headers.

Zigna's ``X-ApiKey`` and a fixed Ziik bearer token are both `StaticHeaders`; Ziik's login
(log in, renew, log in again after a 401) lives with the Ziik client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from ._transport import Transport

__all__ = ["Authenticator", "StaticHeaders"]


class Authenticator(Protocol):
    """How a client proves who it is. Implementations never log or repr their secrets."""

    async def headers(self, transport: Transport) -> Mapping[str, str]:
        """Headers to add to the next request (may log in first)."""

    async def unauthorized(self, transport: Transport, sent: Mapping[str, str]) -> bool:
        """A 401 answered ``sent``: refresh and return True to resend once, else False."""

    def secrets(self) -> Iterable[str]:
        """Every secret value, so that error messages can be scrubbed of them."""


@attrs.frozen
class StaticHeaders:
    """Fixed authentication headers; a 401 is final (there is nothing to refresh).

    ``secret_values`` are the secrets inside the headers (scrubbed from every message); by
    default the header values themselves.
    """

    values: Mapping[str, str] = attrs.field(repr=False)
    secret_values: tuple[str, ...] | None = attrs.field(default=None, repr=False)

    @classmethod
    def bearer(cls, token: str) -> StaticHeaders:
        """``Authorization: Bearer <token>``, the token itself the secret."""
        return cls({"Authorization": f"Bearer {token}"}, (token,))

    async def headers(self, transport: Transport) -> Mapping[str, str]:
        return self.values

    async def unauthorized(self, transport: Transport, sent: Mapping[str, str]) -> bool:
        return False

    def secrets(self) -> Iterable[str]:
        if self.secret_values is not None:
            return self.secret_values
        return tuple(self.values.values())
