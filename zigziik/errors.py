"""The exception hierarchy: every error zigziik raises on purpose is a `ZigziikError`."""

from __future__ import annotations

from datetime import datetime

from ._redact import scrub

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "BudgetStoreError",
    "ClientClosedError",
    "ConfigurationError",
    "DecodeError",
    "IncompleteBodyError",
    "IntegrityError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "UnprocessableEntityError",
    "WrongEventLoopError",
    "ZigziikError",
]


class ZigziikError(Exception):
    """Base class of every error zigziik raises.

    Its message never holds a secret of a live client: text arguments are scrubbed of every
    spelling of them (see `zigziik._redact`), whoever builds the error from whatever a server
    sent.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigurationError(ZigziikError):
    """A bad API key, base URL or missing credentials; raised before any request."""


class ClientClosedError(ZigziikError, RuntimeError):
    """The client was used after ``aclose()`` (or after its ``async with`` block ended)."""


class WrongEventLoopError(ZigziikError, RuntimeError):
    """The client was used in an event loop other than the one of its first request.

    Its connections belong to that loop (``asyncio.run`` twice, a client made at import time
    and used by two tests' loops, two ``trio.run`` calls): nothing was sent and the budget was
    not touched. Create one client per event loop.
    """


class TransportError(ZigziikError):
    """The network failed (connect, timeout, reset) and retries did not help.

    The underlying httpx exception is the ``__cause__``.
    """

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class BudgetExhaustedError(ZigziikError):
    """No API calls are left in the daily budget; nothing was sent.

    Raised by the transport, it names the request that was not sent (``method``, ``url``).
    """

    def __init__(
        self,
        reset_at: datetime,
        *,
        limit: int | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        detail = f" of {limit}" if limit is not None else ""
        where = f"{method} {url} not sent: " if method and url else ""
        super().__init__(
            f"{where}daily API budget{detail} is exhausted; it resets at {reset_at.isoformat()}"
        )
        self.reset_at = reset_at
        self.limit = limit
        self.method = method
        self.url = url


class BudgetStoreError(ZigziikError):
    """The budget's shared store cannot be reached, timed out, or holds garbage.

    Nothing was sent: without the store nobody can tell how many calls are left (counting in
    this process alone would multiply the budget). ``store`` names it (its URL without a
    password); the message never holds a password or the API key.
    """

    def __init__(self, message: str, *, store: str) -> None:
        super().__init__(f"budget store {store}: {message}")
        self.store = store


class DecodeError(ZigziikError):
    """A response body is not what the API documents."""

    def __init__(self, reason: str, *, method: str | None = None, url: str | None = None) -> None:
        where = f"{method} {url}: " if method and url else ""
        super().__init__(f"{where}{reason}")
        self.reason = scrub(reason)
        self.method = method
        self.url = url


class IntegrityError(ZigziikError):
    """Downloaded bytes do not match what the server promised, or an archive is unsafe."""


class IncompleteBodyError(IntegrityError):
    """The connection ended before ``Content-Length`` bytes arrived (retried like a reset)."""


class APIError(ZigziikError):
    """The server answered with a status code that is not a success."""

    def __init__(
        self,
        status_code: int,
        *,
        method: str,
        url: str,
        body_excerpt: str = "",
    ) -> None:
        message = f"{method} {url} returned HTTP {status_code}"
        if body_excerpt:
            message += f": {body_excerpt}"
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.url = url
        self.body_excerpt = scrub(body_excerpt)


class BadRequestError(APIError):
    """HTTP 400."""


class AuthenticationError(APIError):
    """HTTP 401: the key or token was refused."""


class PermissionDeniedError(APIError):
    """HTTP 403."""


class NotFoundError(APIError):
    """HTTP 404."""


class UnprocessableEntityError(APIError):
    """HTTP 422: the server understood the request but refused its content."""


class RateLimitedError(APIError):
    """HTTP 429: the server's own limit was hit; ``reset_at`` is when it lifts, if known."""

    def __init__(
        self,
        status_code: int,
        *,
        method: str,
        url: str,
        body_excerpt: str = "",
        reset_at: datetime | None = None,
    ) -> None:
        super().__init__(status_code, method=method, url=url, body_excerpt=body_excerpt)
        self.reset_at = reset_at


class ServerError(APIError):
    """HTTP 5xx."""


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
}


def error_for_status(
    status_code: int,
    *,
    method: str,
    url: str,
    body_excerpt: str = "",
    reset_at: datetime | None = None,
) -> APIError:
    """The exception for a non-success status (pure; the transport raises it)."""
    if status_code == 429:
        return RateLimitedError(
            status_code, method=method, url=url, body_excerpt=body_excerpt, reset_at=reset_at
        )
    cls = _STATUS_ERRORS.get(status_code)
    if cls is None:
        cls = ServerError if 500 <= status_code <= 599 else APIError
    return cls(status_code, method=method, url=url, body_excerpt=body_excerpt)
