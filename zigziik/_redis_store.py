"""`RedisBudgetStore`: one budget for processes on many hosts, in Redis (extra ``[redis]``).

Every operation is one Lua script (`zigziik._redis_lua`) run atomically by the server, on one
hash per scope (``<prefix>{<scope>}``: the braces keep it in one Cluster hash slot). The
server's clock (``TIME``) decides when the day is over; the client passes the next local
midnights it computed with `zoneinfo`, so 23- and 25-hour days are right. Scripts are sent by
SHA (``EVALSHA``) and loaded again after ``NOSCRIPT`` (a restarted or flushed server). A key
expires a day after its reset.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._redact import redact_url, scrub_with
from ._redact import register as register_secrets
from .errors import BudgetStoreError, ConfigurationError
from .ratelimit import BudgetLedger, BudgetTerms, RateLimit, from_ms, reset_milliseconds, to_ms

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_PREFIX", "RedisBudgetStore"]

DEFAULT_PREFIX = "zigziik:budget:"
DEFAULT_LEASE = 120.0
REDIS_HINT = "pip install 'zigziik[redis]'"


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not (
        isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _figure(value: int | None) -> str:
    return "" if value is None else str(value)


class RedisBudgetStore:
    """Budgets shared by processes on any number of hosts, in Redis.

    ``url_or_client``: a ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL (the store makes
    its client and closes it), or a ``redis.asyncio.Redis`` / ``RedisCluster`` you built
    (Sentinel, Cluster, your TLS settings; zigziik never closes it). ``prefix`` starts every
    key. ``lease`` (seconds, default 120) bounds how long a process that died with requests
    in flight keeps them weighing on the others; ``timeout`` (seconds, default 5) bounds each
    operation, after which it fails with `BudgetStoreError` and nothing is sent.
    ``clock="client"`` (tests only) decides by the budget's clock instead of the server's.
    Runs under asyncio (redis-py's client is asyncio-only).
    """

    local = False

    def __init__(
        self,
        url_or_client: str | Redis | Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease: float = DEFAULT_LEASE,
        timeout: float = 5.0,
        clock: Literal["server", "client"] = "server",
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigurationError(f"RedisBudgetStore needs redis-py: {REDIS_HINT}") from None
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        if clock not in ("server", "client"):
            raise ValueError(f"clock must be 'server' or 'client', got {clock!r}")
        self.prefix = prefix
        self.lease = _positive("lease", lease)
        self.timeout = _positive("timeout", timeout)
        self._lease_ms = max(1, round(self.lease * 1000))
        self._client_clock = clock == "client"
        self._secrets: tuple[str, ...] = ()
        self._url: str | None = None
        self._client: Any = None
        self._owns_client = isinstance(url_or_client, str)
        if isinstance(url_or_client, str):
            self._url = url_or_client.strip()
            self._name = redact_url(self._url)
            from urllib.parse import unquote, urlsplit

            try:
                password = urlsplit(self._url).password
            except ValueError:
                password = None
            if password:
                self._secrets = (password, unquote(password))
                register_secrets(self)
        else:
            if not hasattr(url_or_client, "evalsha"):
                raise TypeError(
                    "RedisBudgetStore takes a redis:// URL or a redis.asyncio client, got "
                    f"{type(url_or_client).__name__}"
                )
            self._client = url_or_client
            self._name = _describe_client(url_or_client)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._latest: dict[str, BudgetLedger] = {}
        self._lease_prefix = secrets.token_hex(6) + "-"
        self._lease_numbers = itertools.count(1)

    @property
    def name(self) -> str:
        return self._name

    def secrets(self) -> Iterable[str]:
        """The URL's password: scrubbed from every zigziik error message."""
        return self._secrets

    def __repr__(self) -> str:
        return f"RedisBudgetStore({self._name!r}, prefix={self.prefix!r})"

    async def __aenter__(self) -> RedisBudgetStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def key(self, scope: str) -> str:
        """The hash that holds ``scope``'s ledger."""
        return f"{self.prefix}{{{scope}}}"

    def latest(self, scope: str) -> BudgetLedger | None:
        return self._latest.get(scope)

    async def aclose(self) -> None:
        """Close the client the store made (a caller's client stays open)."""
        client, loop = self._client, self._loop
        if self._owns_client and client is not None:
            self._client, self._scripts, self._loop = None, {}, None
            if loop is asyncio.get_running_loop():
                await client.aclose()

    # -- operations ------------------------------------------------------------------------

    async def reserve(
        self, scope: str, terms: BudgetTerms, now: datetime
    ) -> tuple[BudgetLedger, bool, str | None]:
        lease = f"{self._lease_prefix}{next(self._lease_numbers)}"
        reply = await self._call("reserve", scope, terms, now, [lease, str(self._lease_ms)])
        ledger, granted = self._ledger(scope, reply)
        return ledger, granted, lease if granted else None

    async def settle(
        self,
        scope: str,
        terms: BudgetTerms,
        now: datetime,
        lease: str | None,
        rate_limit: RateLimit | None,
    ) -> BudgetLedger:
        figures = ["", "", ""]
        if rate_limit is not None:
            reset = rate_limit.reset_after
            figures = [
                _figure(rate_limit.limit),
                _figure(rate_limit.remaining),
                "" if reset is None else str(reset_milliseconds(reset)),
            ]
        reply = await self._call("settle", scope, terms, now, [lease or "", *figures])
        return self._ledger(scope, reply)[0]

    async def snapshot(self, scope: str, terms: BudgetTerms, now: datetime) -> BudgetLedger:
        reply = await self._call("view", scope, terms, now, [])
        return self._ledger(scope, reply)[0]

    # -- Redis -----------------------------------------------------------------------------

    def _ledger(self, scope: str, reply: Any) -> tuple[BudgetLedger, bool]:
        try:
            granted, limit, reset_at, used, in_flight, cap, _now = (int(x) for x in reply)
        except (TypeError, ValueError):
            raise BudgetStoreError(
                f"unexpected reply from the budget script: {reply!r:.100}", store=self._name
            ) from None
        ledger = BudgetLedger(limit, from_ms(reset_at), used, in_flight, None if cap < 0 else cap)
        self._latest[scope] = ledger
        return ledger, granted == 1

    def _connection(self) -> tuple[Any, dict[str, AsyncScript]]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise BudgetStoreError(
                "RedisBudgetStore runs under asyncio only (redis-py's client is asyncio's); "
                "under trio use SqliteBudgetStore",
                store=self._name,
            ) from None
        if self._owns_client and (self._client is None or self._loop is not loop):
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # No retries: a script whose reply was lost may have run; running it again
            # would count the call twice. The operation fails closed instead.
            self._client = Redis.from_url(
                self._url or "",
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
            )
            self._scripts = {}
            self._loop = loop
        if not self._scripts:
            from ._redis_lua import RESERVE, SETTLE, VIEW

            client = self._client
            self._scripts = {
                "reserve": client.register_script(RESERVE),
                "settle": client.register_script(SETTLE),
                "view": client.register_script(VIEW),
            }
        return self._client, self._scripts

    async def _call(
        self, op: str, scope: str, terms: BudgetTerms, now: datetime, extra: list[str]
    ) -> Any:
        from redis.exceptions import RedisError, ResponseError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        _, scripts = self._connection()
        cap = terms.cap
        args = [
            str(to_ms(now)) if self._client_clock else "",
            str(terms.limit),
            "" if cap is None else str(cap),
            ",".join(str(m) for m in terms.midnights(now)),
            *extra,
        ]
        try:
            if self._owns_client:  # its socket timeouts bound every read and connect
                return await scripts[op](keys=[self.key(scope)], args=args)
            with anyio.fail_after(self.timeout):
                return await scripts[op](keys=[self.key(scope)], args=args)
        except ResponseError as exc:
            text = str(exc)
            if "ZIGZIIK clock" in text:
                raise BudgetStoreError(
                    "the Redis server's clock is days away from this host's; nothing was sent",
                    store=self._name,
                ) from None
            if "ZIGZIIK garbage" in text or "WRONGTYPE" in text:
                reason = text.split("ZIGZIIK ", 1)[-1].split(" script: ", 1)[0]
                raise BudgetStoreError(
                    f"the key {self.key(scope)!r} holds {reason}; nothing was sent",
                    store=self._name,
                ) from None
            raise self._error(exc) from exc
        except (TimeoutError, RedisTimeoutError) as exc:
            raise BudgetStoreError(
                f"no answer within {self.timeout:g} s; nothing was sent", store=self._name
            ) from exc
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> BudgetStoreError:
        detail = scrub_with(f"{type(exc).__name__}: {exc}", self._secrets)
        return BudgetStoreError(f"{detail}; nothing was sent", store=self._name)


def _describe_client(client: Any) -> str:
    """A caller's client, for messages: ``redis://host:port/db`` (never its password)."""
    try:
        kwargs = client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        scheme = (
            "rediss"
            if client.connection_pool.connection_class.__name__.startswith("SSL")
            else "redis"
        )
        return (
            f"{scheme}://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        )
    except AttributeError:
        return f"<{type(client).__name__}>"
