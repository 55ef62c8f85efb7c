"""`RedisBudgetStore`: one budget for processes on many hosts, in Redis (extra ``[redis]``).

Every operation is one run of a Lua script (`zigziik._redis_lua`), atomic in the server: the
settlements waiting in `zigziik._pending`, then the reservation (one round trip per call), on one
hash per scope (``<prefix>{<scope>}``: the braces keep it in one Cluster hash slot). The
server's clock (``TIME``) decides when the day is over; the client passes the next local
midnights it computed with `zoneinfo`, so 23- and 25-hour days are right. Scripts are sent by
SHA (``EVALSHA``) and loaded again after ``NOSCRIPT`` (a restarted or flushed server). A key
expires a day after its reset.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import sys
from collections.abc import Awaitable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._pending import FLUSH_DELAY, PendingSettlements, newest_ms
from ._redact import redact_url, scrub_with
from ._redact import register as register_secrets
from .errors import BudgetStoreError, ConfigurationError
from .ratelimit import (
    BudgetLedger,
    BudgetTerms,
    RateLimit,
    Settlement,
    from_ms,
    reset_milliseconds,
    to_ms,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_PREFIX", "RedisBudgetStore"]

DEFAULT_PREFIX = "zigziik:budget:"
DEFAULT_LEASE = 120.0
REDIS_HINT = "pip install 'zigziik[redis]'"
logger = logging.getLogger("zigziik")


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
    its client and closes it; the query takes redis-py's connection options, such as
    ``?ssl_ca_certs=/path/ca.pem``), or a ``redis.asyncio.Redis`` / ``RedisCluster`` you built
    (Sentinel, Cluster, your TLS settings; zigziik never closes it). ``prefix`` starts every
    key. ``lease`` (seconds, default 120) bounds how long a process that died with requests
    in flight keeps them weighing on the others; ``timeout`` (seconds, default 5) bounds each
    operation, after which it fails with `BudgetStoreError` and nothing is sent.
    ``replicas`` (default 0): a reservation waits (``WAIT``, at most a quarter of ``timeout``)
    until that many replicas have it, else it is not sent (`BudgetStoreError`) and stays
    counted; behind Sentinel, ``replicas=1`` keeps a failover from losing counts.
    ``clock="client"`` (tests only) decides by the budget's clock instead of the server's.
    Runs under asyncio (redis-py's client is asyncio-only).
    """

    local = False
    deferred_settlements = True

    def __init__(
        self,
        url_or_client: str | Redis | Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease: float = DEFAULT_LEASE,
        timeout: float = 5.0,
        replicas: int = 0,
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
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ValueError(f"replicas must be a whole number >= 0, got {replicas!r}")
        self.replicas = replicas
        self._wait_ms = max(1, round(self.timeout * 250))  # a quarter of it: twice after NOSCRIPT
        self._lease_ms = max(1, round(self.lease * 1000))
        self._client_clock = clock == "client"
        self._secrets: tuple[str, ...] = ()
        self._url: str | None = None
        self._client: Any = None
        self._owns_client = isinstance(url_or_client, str)
        if isinstance(url_or_client, str):
            self._url = url_or_client.strip()
            self._name, query_secrets = _hide_query_secrets(redact_url(self._url))
            from urllib.parse import unquote, urlsplit

            try:
                password = urlsplit(self._url).password
            except ValueError:
                password = None
            self._secrets = (*((password, unquote(password)) if password else ()), *query_secrets)
            if self._secrets:
                register_secrets(self)
            self._check_url()
        else:
            if not hasattr(url_or_client, "evalsha"):
                raise TypeError(
                    "RedisBudgetStore takes a redis:// URL or a redis.asyncio client, got "
                    f"{type(url_or_client).__name__}"
                )
            self._client = url_or_client
            self._name = _describe_client(url_or_client)
        self._cluster = hasattr(url_or_client, "nodes_manager") and hasattr(
            url_or_client, "initialize"
        )
        if self._cluster and replicas:
            raise ConfigurationError(
                "replicas= needs WAIT on the connection that ran the script, which a "
                "RedisCluster client cannot promise; use it with a Redis or Sentinel client"
            )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Any = None  # the store's own (a URL), bound to ``_loop``
        self._lock: asyncio.Lock | None = None  # one command at a time on it
        self._script: AsyncScript | None = None  # a caller's client's
        self._latest: dict[str, BudgetLedger] = {}
        self._lease_prefix = secrets.token_hex(6) + "-"
        self._lease_numbers = itertools.count(1)
        self._pending = PendingSettlements()
        self._flush_delay: float | None = FLUSH_DELAY  # None: only operations send them
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._flushes: set[asyncio.Future[None]] = set()

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
        """Send the settlements still waiting, then close the connection the store made (a
        caller's client stays open)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._pending and loop is not None:
            try:
                await self.flush()
            except BudgetStoreError as exc:
                logger.warning("could not send settlements to the budget store: %s", exc)
        connection, bound = self._connection, self._loop
        self._connection, self._lock, self._loop = None, None, None
        if connection is not None and bound is loop:
            await connection.disconnect()

    # -- operations ------------------------------------------------------------------------

    async def reserve(
        self, scope: str, terms: BudgetTerms, now: datetime
    ) -> tuple[BudgetLedger, bool, str | None]:
        lease = f"{self._lease_prefix}{next(self._lease_numbers)}"
        settlements = self._pending.take(scope)
        try:
            reply = await self._call(scope, terms, to_ms(now), lease, settlements)
        except BaseException:
            self._pending.restore(scope, terms, settlements)
            raise
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
        """Keep the settlement for the next operation on ``scope`` (see `zigziik._pending`);
        the ledger returned is this process's view with it applied."""
        ledger = self._latest[scope] = self._pending.keep(
            self._latest.get(scope), scope, terms, now, lease, rate_limit
        )
        self._arm_flush()
        return ledger

    async def snapshot(self, scope: str, terms: BudgetTerms, now: datetime) -> BudgetLedger:
        settlements = self._pending.take(scope)
        try:
            reply = await self._call(scope, terms, to_ms(now), None, settlements)
        except BaseException:
            self._pending.restore(scope, terms, settlements)
            raise
        return self._ledger(scope, reply)[0]

    async def flush(self, scope: str | None = None) -> None:
        """Send the settlements still waiting (of ``scope``, or of every scope) now."""
        taken = self._pending.take_all() if scope is None else self._pending.take_scope(scope)
        for index, (waiting_scope, terms, settlements) in enumerate(taken):
            try:
                reply = await self._call(
                    waiting_scope, terms, newest_ms(settlements), None, settlements
                )
            except BaseException:
                for later_scope, later_terms, later in taken[index:]:
                    self._pending.restore(later_scope, later_terms, later)
                raise
            self._ledger(waiting_scope, reply)

    def _arm_flush(self, delay: float | None = None) -> None:
        if self._flush_delay is None:
            return
        if delay is None:
            delay = self._flush_delay
        loop = asyncio.get_running_loop()
        timer = self._timer
        if timer is not None and self._timer_loop is loop and not timer.cancelled():
            return
        self._timer, self._timer_loop = loop.call_later(delay, self._timer_fired), loop

    def _timer_fired(self) -> None:
        self._timer = None
        due = self._pending.due_in(self._flush_delay or FLUSH_DELAY)
        if due is None:
            return
        if due > 0:  # reservations took what waited; the newer ones are not due yet
            self._arm_flush(due)
            return
        task = asyncio.ensure_future(self._flush_quietly())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except BudgetStoreError as exc:  # kept for the next operation; leases bound the rest
            logger.warning("could not send settlements to the budget store: %s", exc)

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

    def _make_connection(self) -> Any:
        """A new, unconnected connection to the URL's server (its query's options applied)."""
        from redis.asyncio import ConnectionPool
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # One connection of its own, no retries: a script whose reply was lost may have run,
        # and running it again would count the call twice. No socket timeout either: `_call`
        # bounds the whole operation (redis-py's would start a task for every write).
        pool = ConnectionPool.from_url(
            self._url or "",
            socket_timeout=None,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        return pool.make_connection()  # type: ignore[no-untyped-call, unused-ignore]

    def _check_url(self) -> None:
        """A misspelt or bad option in the URL (``?ssl_ca_cert=``, ``?db=first``) is a
        `ConfigurationError` now rather than a failure at the first call: build a connection
        (nothing is connected) and drop it."""
        from redis.exceptions import RedisError

        try:
            self._make_connection()
        except (TypeError, ValueError, RedisError) as exc:
            detail = scrub_with(str(exc), self._secrets)
            raise ConfigurationError(
                f"bad Redis URL {self._name!r}: {detail} (the query takes redis-py's "
                "connection options, such as ssl_ca_certs=/path/ca.pem)"
            ) from None

    def _bind(self) -> None:
        """Make the store's connection (or the caller's client's script) for this loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise BudgetStoreError(
                "RedisBudgetStore runs under asyncio only (redis-py's client is asyncio's); "
                "under trio use SqliteBudgetStore",
                store=self._name,
            ) from None
        if self._owns_client:
            if self._loop is not loop:
                connection = self._make_connection()
                self._connection, self._lock, self._loop = connection, asyncio.Lock(), loop
        elif self._script is None:
            from ._redis_lua import EXCHANGE

            self._script = self._client.register_script(EXCHANGE)

    async def _call(
        self,
        scope: str,
        terms: BudgetTerms,
        now_ms: int,
        lease: str | None,
        settlements: list[Settlement],
    ) -> Any:
        from redis.exceptions import RedisError, ResponseError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self._bind()
        cap = terms.cap
        key = self.key(scope)
        args = [
            str(now_ms) if self._client_clock else "",
            str(terms.limit),
            "" if cap is None else str(cap),
            terms.midnights_text(from_ms(now_ms)),
            "v" if lease is None else "r",
            lease or "",
            str(self._lease_ms),
            ";".join(_settlement(settlement, now_ms) for settlement in settlements),
        ]
        wait = self.replicas > 0 and lease is not None
        try:
            if self._owns_client:
                reply, acked = await _within(self.timeout, self._evalsha(key, args, wait))
            else:
                reply, acked = await _within(self.timeout, self._run_script(key, args, wait))
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
                    f"the key {key!r} holds {reason}; nothing was sent", store=self._name
                ) from None
            raise self._error(exc) from exc
        except (TimeoutError, RedisTimeoutError) as exc:
            raise BudgetStoreError(
                f"no answer within {self.timeout:g} s; nothing was sent", store=self._name
            ) from exc
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc
        except Exception as exc:  # a caller's client that broke otherwise: still fail closed
            if self._owns_client:
                raise
            raise self._error(exc) from exc
        if wait and (type(acked) is not int or acked < self.replicas):
            # Counted on this server only: a failover may lose it, so the call is not sent.
            raise BudgetStoreError(
                f"the reservation reached {acked} of the {self.replicas} replica(s) it needs "
                f"within {self._wait_ms} ms (a failover, or a replica down); nothing was sent",
                store=self._name,
            )
        return reply

    async def _run_script(self, key: str, args: list[str], wait: bool) -> tuple[Any, Any]:
        """The script on a caller's client (redis-py loads it again after ``NOSCRIPT``);
        with ``wait``, then ``WAIT`` on the same connection (one pipeline): (reply, acked)."""
        assert self._script is not None
        if self._cluster:
            # A RedisCluster's first commands, sent at once by several tasks, race its own
            # start (redis-py 8.1: some fail with AttributeError): let it find its nodes first.
            # Once it has, this returns at once.
            await self._client.initialize()
        if not wait:
            return await self._script(keys=[key], args=args), None
        from redis.exceptions import NoScriptError

        from ._redis_lua import EXCHANGE, EXCHANGE_SHA

        for attempt in (1, 2):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.evalsha(EXCHANGE_SHA, 1, key, *args)
                pipe.wait(self.replicas, self._wait_ms)
                reply, acked = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and attempt == 1:  # nothing ran
                await self._client.script_load(EXCHANGE)
                continue
            for result in (reply, acked):
                if isinstance(result, BaseException):
                    raise result
            return reply, acked
        raise AssertionError("unreachable")  # pragma: no cover

    async def _evalsha(self, key: str, args: list[str], wait: bool) -> tuple[Any, Any]:
        """``EVALSHA`` on the store's own connection (``SCRIPT LOAD`` after ``NOSCRIPT``);
        with ``wait``, ``WAIT`` sent with it (one round trip): (reply, acked)."""
        from redis.exceptions import NoScriptError, ResponseError

        from ._redis_lua import EXCHANGE, EXCHANGE_SHA

        connection, lock = self._connection, self._lock
        assert connection is not None
        assert lock is not None
        command = _pack("EVALSHA", EXCHANGE_SHA, "1", key, *args)
        if wait:
            command += _pack("WAIT", str(self.replicas), str(self._wait_ms))
        async with lock:
            for attempt in (1, 2):
                await connection.send_packed_command(command, check_health=False)
                try:
                    reply = await connection.read_response()
                except ResponseError as exc:
                    if wait:  # WAIT's answer comes all the same: read it
                        await connection.read_response()
                    if attempt == 2 or not isinstance(exc, NoScriptError):
                        raise
                    # Nothing ran: load the script, then run it.
                    await connection.send_packed_command(
                        _pack("SCRIPT", "LOAD", EXCHANGE), check_health=False
                    )
                    await connection.read_response()
                    continue
                return reply, await connection.read_response() if wait else None
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: BaseException) -> BudgetStoreError:
        detail = scrub_with(f"{type(exc).__name__}: {exc}", self._secrets)
        return BudgetStoreError(f"{detail}; nothing was sent", store=self._name)


async def _within(seconds: float, operation: Awaitable[Any]) -> Any:
    """``operation``, or `TimeoutError` after ``seconds``."""
    if sys.version_info >= (3, 11):  # half of anyio's cost per operation (no cancel scope)
        async with asyncio.timeout(seconds):
            return await operation
    with anyio.fail_after(seconds):
        return await operation


def _settlement(settlement: Settlement, now_ms: int) -> str:
    """``lease,limit,remaining,reset_ms,age_ms`` (the script's ARGV[8], one entry)."""
    lease = settlement.lease or ""
    rate_limit = settlement.rate_limit
    age = settlement.age(now_ms)
    if rate_limit is None:
        return f"{lease},,,,{age}"
    reset = rate_limit.reset_after
    return (
        f"{lease},{_figure(rate_limit.limit)},{_figure(rate_limit.remaining)},"
        f"{'' if reset is None else reset_milliseconds(reset)},{age}"
    )


def _pack(*args: str) -> bytes:
    """A Redis command in RESP (what redis-py's ``pack_command`` makes, without its cost)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _hide_query_secrets(url: str) -> tuple[str, tuple[str, ...]]:
    """``url`` with the values of its query's ``*password*`` options (``password=``,
    ``ssl_password=``) replaced by ``***``, and those values."""
    from urllib.parse import unquote_plus

    head, mark, query = url.partition("?")
    if not mark:
        return url, ()
    query, hash_mark, fragment = query.partition("#")
    found: list[str] = []
    pieces = []
    for piece in query.split("&"):
        name, equals, value = piece.partition("=")
        if equals and value and "password" in unquote_plus(name).lower():
            found.extend(dict.fromkeys((value, unquote_plus(value))))
            piece = f"{name}=***"
        pieces.append(piece)
    return f"{head}?{'&'.join(pieces)}{hash_mark}{fragment}", tuple(found)


def _describe_client(client: Any) -> str:
    """A caller's client, for messages (never its password): ``redis://host:port/db``
    (``rediss://`` with TLS), ``unix://path``, ``redis+cluster://host:port`` (a Cluster, by its
    first startup node) or ``redis+sentinel://service/db`` (a Sentinel's ``master_for``)."""
    try:
        if hasattr(client, "nodes_manager"):  # redis.asyncio.cluster.RedisCluster
            scheme = _scheme(client.connection_kwargs.get("connection_class"))
            nodes = client.startup_nodes
            where = f"{nodes[0].host}:{nodes[0].port}" if nodes else "?"
            return f"{scheme}+cluster://{where}"
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        scheme = _scheme(pool.connection_class)
        service = getattr(pool, "service_name", None)
        if isinstance(service, str):
            return f"{scheme}+sentinel://{service}/{kwargs.get('db', 0)}"
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return (
            f"{scheme}://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        )
    except AttributeError:
        return f"<{type(client).__name__}>"


def _scheme(connection_class: object) -> str:
    """``rediss`` for redis-py's TLS connections (``SSLConnection``, Sentinel's
    ``SentinelManagedSSLConnection``), else ``redis``."""
    return "rediss" if "SSL" in getattr(connection_class, "__name__", "") else "redis"
