"""Which failures are retried, and how long to wait first. Pure: no I/O, no sleeping."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import attrs

from ._checks import is_int

__all__ = ["Failure", "FailureKind", "RetryPolicy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class FailureKind(enum.Enum):
    """How an attempt failed."""

    CONNECT = "connect"
    """The request provably never reached the server (refused, DNS, connect timeout)."""
    TRANSPORT = "transport"
    """The connection broke after the request may have been sent (timeout, reset, cut body)."""
    STATUS = "status"
    """The server answered with an error status."""
    FATAL = "fatal"
    """Not a condition a retry could cure (a bad URL, a protocol error on our side)."""


@attrs.frozen
class Failure:
    """One failed attempt, as far as the retry decision needs to know it."""

    kind: FailureKind
    status_code: int | None = None
    retry_after: float | None = None
    """The response's ``Retry-After``, in seconds."""
    reset_after: float | None = None
    """The response's ``X-RateLimit-Reset``, in seconds."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; else ``None``."""
    if value is None:
        return None
    text = value.strip()
    if not text or not text.isascii():
        return None
    if text.isdigit():
        return float(min(int(text), 10**9))
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Capped exponential backoff with jitter, honouring ``Retry-After``.

    Idempotent methods are retried on connection errors, timeouts, broken bodies and the
    ``retry_statuses``; any method is retried on a connect error (the request never left).
    A 429 is retried only when its ``Retry-After`` or ``X-RateLimit-Reset`` is at most
    ``max_server_wait`` seconds away; a 5xx whose ``Retry-After`` is further than that is
    not retried either. ``max_attempts`` counts the first try.
    """

    max_attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_server_wait: float = 10.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS
    jitter: bool = True
    random: Callable[[], float] = attrs.field(default=random.random, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not is_int(self.max_attempts):
            raise TypeError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        _check_positive("base_delay", self.base_delay)
        _check_positive("max_delay", self.max_delay)
        _check_positive("max_server_wait", self.max_server_wait)

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that sends every request once."""
        return cls(max_attempts=1)

    def is_idempotent(self, method: str) -> bool:
        return method.upper() in self.idempotent_methods

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based), jitter included."""
        exponent = min(max(attempt - 1, 0), 62)
        delay = min(self.max_delay, self.base_delay * (2.0**exponent))
        if self.jitter:
            delay *= 0.5 + 0.5 * self.random()
        return delay

    def delay_for(self, attempt: int, method: str, failure: Failure) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up and raise."""
        if attempt >= self.max_attempts or failure.kind is FailureKind.FATAL:
            return None
        if failure.kind is FailureKind.CONNECT:
            return self.backoff(attempt)
        if not self.is_idempotent(method):
            return None
        if failure.kind is FailureKind.TRANSPORT:
            return self.backoff(attempt)
        if failure.status_code not in self.retry_statuses:
            return None
        if failure.status_code == 429:
            wait = failure.retry_after if failure.retry_after is not None else failure.reset_after
            if wait is None or wait > self.max_server_wait:
                return None
            return max(wait, 0.0)
        if failure.retry_after is not None:
            if failure.retry_after > self.max_server_wait:
                return None
            return failure.retry_after
        return self.backoff(attempt)
