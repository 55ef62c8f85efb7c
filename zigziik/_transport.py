"""The one place a request is sent: budget -> httpx -> record headers -> map errors -> retry.

Everything that decides (headers, budget arithmetic, retry delays, status mapping, JSON
conversion) lives in pure modules, and the layers below this one each do one job: building
and dispatching a request (``_request``), response bodies and excerpts (``_bodies``),
authentication (``_auth``), event-loop identity (``_loops``). This module only sequences them
around ``await``s: the send, retry and re-authenticate loop.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, TypeVar, cast

import anyio
import httpx

from ._auth import Authenticator
from ._bodies import close_response, excerpt, read_body, read_excerpt
from ._calls import record_call
from ._compat import quiet_httpcore_detection
from ._convert import ModelConverter
from ._direct import DirectConsumer, DirectSender
from ._loops import running_loop
from ._net import PoolTransport
from ._redact import register as register_secrets
from ._request import (
    JSON,
    FileUpload,
    LeanSender,
    RequestBuilder,
    TimeoutArg,
    default_client,
    dispatch,
    encode_json,
    make_timeout,
    user_agent,
)
from ._stacks import Stack, chosen_stack, stack_of
from ._urls import validate_base_url, with_params
from .errors import (
    APIError,
    BudgetExhaustedError,
    ClientClosedError,
    ConfigurationError,
    IncompleteBodyError,
    TransportError,
    WrongEventLoopError,
    error_for_status,
)
from .ratelimit import DailyBudget, RateLimit, parse_rate_limit
from .retry import Failure, FailureKind, RetryPolicy, parse_retry_after

__all__ = ["Consumer", "Transport"]

T = TypeVar("T")

logger = logging.getLogger("zigziik")

Consumer = Callable[[httpx.Response], Awaitable[T]]


_bind_lock = threading.Lock()  # two threads' loops may race for a client's first request


class Transport:
    """Sends every request of one client. Safe to share between tasks of one event loop.

    Its first request binds it to the running event loop (httpx's pool and its connections
    belong to that loop); a request from any other loop raises `WrongEventLoopError` before
    anything is sent or counted.
    """

    def __init__(
        self,
        *,
        base_url: str,
        auth: Authenticator,
        converter: ModelConverter,
        http_client: httpx.AsyncClient | None = None,
        http_stack: str | None = None,
        timeout: TimeoutArg = None,
        retry: RetryPolicy | None = None,
        budget: DailyBudget | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.base_url = validate_base_url(base_url)
        self._auth = auth
        self.converter = converter
        register_secrets(auth)  # every ZigziikError message is scrubbed of them from now on
        quiet_httpcore_detection()  # a plain install's failed import per lock (see _compat)
        if http_client is None:
            stack = chosen_stack(http_stack)
        else:
            found = stack_of(http_client)
            if found is None:
                raise ConfigurationError(
                    "http_client must be an httpx.AsyncClient or an httpx2.AsyncClient, got "
                    f"{type(http_client).__name__}"
                )
            if http_stack is not None and http_stack != found.name:
                raise ConfigurationError(
                    f"http_stack={http_stack!r} does not match the http_client given (an "
                    f"{found.name}.AsyncClient); http_stack chooses the stack of zigziik's own "
                    "client"
                )
            stack = found
        self.stack: Stack = stack
        self._owns_client = http_client is None
        self._timeout: httpx.Timeout | None = (
            stack.make_timeout(make_timeout(timeout))
            if timeout is not None or http_client is None
            else None
        )
        # On a client of our own, requests go straight to its transport: httpx's client layer
        # adds an auth flow, a redirect loop, event hooks and cookie extraction (which builds
        # urllib request objects for every response), none of which it is configured to use,
        # about a tenth of a small call. A caller's client is always used through `send`.
        self._direct: httpx.AsyncBaseTransport | None = None
        if http_client is None:
            self._client, self._direct = default_client(self._timeout, stack)
        else:
            self._client = http_client
        # Headers every request sends: set once on a client of our own, per request otherwise.
        self._per_request_headers = (
            {} if self._owns_client else {"Accept": JSON, "User-Agent": user_agent(stack)}
        )
        self._builder = RequestBuilder(self._client, self._timeout, stack)
        # A client that can send a plain GET past httpx's objects (the aiohttp extra's, or
        # zigziik's own over its lean pool): downloads go that way (see zigziik._direct).
        self._sender: DirectSender | None = (
            http_client if isinstance(http_client, DirectSender) else None
        )
        if isinstance(self._direct, PoolTransport):
            self._sender = LeanSender(self._client, self._direct, stack)
        self.retry = retry if retry is not None else RetryPolicy()
        self.budget = budget
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._closed = False
        # The event loop of the first request (asyncio's loop or trio's run token), once bound.
        # A plain reference: the pool's connections refer to that loop anyway.
        self._loop: object | None = None
        self.sleep: Callable[[float], Awaitable[None]] = anyio.sleep

    def __repr__(self) -> str:
        return f"<Transport {self.base_url}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def owns_client(self) -> bool:
        return self._owns_client

    async def aclose(self) -> None:
        """Close the owned httpx client (a caller-supplied one is left open).

        From an event loop other than the one the client sent requests in, it only marks the
        client closed and emits a `ResourceWarning`: the pool's connections belong to that loop
        (usually gone by then; closing them from here fails inside asyncio or races with it),
        so they are left to the garbage collector.
        """
        if self._closed:
            return
        self._closed = True
        if not self._owns_client:
            return
        bound = self._loop
        if bound is not None:
            loop = running_loop()
            if loop is not None and loop is not bound:
                warnings.warn(
                    f"the client for {self.base_url} was closed from another event loop than "
                    "the one it sent requests in; its connections belong to that loop and were "
                    "left to the garbage collector. Close a client in the loop that used it",
                    ResourceWarning,
                    stacklevel=3,
                    source=self,
                )
                return
        await self._client.aclose()

    def _bind(self, loop: object | None) -> None:
        """Bind to ``loop`` on the first request; refuse a request from any other loop."""
        if loop is None:  # not a loop zigziik can tell apart: nothing to compare
            return
        with _bind_lock:
            bound = self._loop
            if bound is None:
                self._loop = bound = loop
        if bound is not loop:
            raise WrongEventLoopError(
                f"the client for {self.base_url} belongs to another event loop (the one it "
                "first sent a request in) and cannot be used from this one; create one client "
                "per event loop"
            )

    def url(self, *segments: str) -> str:
        """The base URL joined with already-quoted path segments."""
        return "/".join((self.base_url, *segments))

    def secrets(self) -> tuple[str, ...]:
        return tuple(self._auth.secrets())

    async def request_json(
        self,
        method: str,
        url: str,
        target: Any,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """Send, then convert the JSON body to ``target`` (`DecodeError` if it is not)."""
        body = await self.request(method, url, params=params, json_body=json_body)
        return self.converter.decode_json(body, target, method=method, url=with_params(url, params))

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        upload: FileUpload | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
    ) -> bytes:
        """`send` that reads the whole body."""
        return await self.send(
            method,
            url,
            params=params,
            json_body=json_body,
            upload=upload,
            headers=headers,
            consume=read_body,
            authenticate=authenticate,
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        consume: Consumer[T],
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        upload: FileUpload | None = None,
        headers: Mapping[str, str] | None = None,
        accept: str = JSON,
        authenticate: bool = True,
    ) -> T:
        """Send one logical request, retrying as the policy allows.

        ``consume`` reads a successful response (it runs inside the retry loop, so a body
        broken mid-way is retried like a reset connection). Error statuses raise the mapped
        `APIError`; network failures raise `TransportError` once retries are spent.
        """
        if self._closed:
            raise ClientClosedError(f"the client for {self.base_url} is closed")
        loop = running_loop()
        if loop is not self._loop:  # the first request, or another event loop
            self._bind(loop)
        method = method.upper()
        if self._client.is_closed:  # a caller's client, closed by its owner
            raise ClientClosedError(
                f"{method} {with_params(url, params)}: the httpx client passed as "
                "http_client was closed by its owner"
            )
        content = None
        base_headers = self._per_request_headers.copy()
        if accept != JSON:
            base_headers["Accept"] = accept
        if json_body is not None:
            content = encode_json(json_body)
            base_headers["Content-Type"] = JSON
        if headers:
            base_headers.update(headers)
        direct = (
            cast("DirectConsumer[Any]", consume)
            if self._sender is not None
            and method == "GET"
            and not params
            and upload is None
            and content is None
            and hasattr(consume, "direct")
            else None
        )
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            sent_auth: Mapping[str, str] = {}
            if authenticate:
                sent_auth = await self._auth.headers(self)
            outcome = await self._attempt(
                method,
                url,
                params,
                content,
                upload,
                {**base_headers, **sent_auth},
                consume,
                direct,
            )
            if outcome.failure is None:
                return outcome.value  # type: ignore[no-any-return]
            failure, error = outcome.failure, outcome.error
            if (
                isinstance(error, APIError)
                and error.status_code == 401
                and authenticate
                and not reauthenticated
                and await self._auth.unauthorized(self, sent_auth)
            ):
                reauthenticated = True
                attempt -= 1
                continue
            delay = self.retry.delay_for(attempt, method, failure)
            if delay is None:
                raise error
            logger.debug(
                "%s %s failed (%s); retry %d in %.2fs",
                method,
                with_params(url, params),
                _describe(error),
                attempt,
                delay,
            )
            await self.sleep(delay)

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        content: bytes | None,
        upload: FileUpload | None,
        headers: dict[str, str],
        consume: Consumer[Any],
        direct: DirectConsumer[Any] | None = None,
    ) -> _Outcome:
        """One try: a value, or how it failed and the error to raise if it is not retried.

        ``direct``: ``consume``'s way to take a direct reply, when the request may go so."""
        lease = await self._reserve(method, url, params)
        record_call()
        settled = False
        budget = self.budget

        async def settle(rate_limit: RateLimit | None) -> None:
            nonlocal settled
            if not settled:
                settled = True
                if budget is not None:
                    await budget.settle(rate_limit, lease=lease)

        opened: list[BinaryIO] = []
        started = time.perf_counter()
        try:
            sender = self._sender
            if direct is not None and sender is not None and sender.direct_ready(url):
                return await self._exchange_direct(sender, url, headers, direct, settle, started)
            files = None
            if upload is not None:
                handle, files = upload.open()
                opened.append(handle)
            request = self._builder.build(method, url, params, content, files, headers)
            try:
                response = await dispatch(self._client, self._direct, request)
            except self.stack.transport_error as exc:
                await settle(None)
                kind = FailureKind.CONNECT if isinstance(exc, self.stack.connect_errors) else None
                return self._network_failure(exc, kind, method, str(request.url))
            try:
                rate_limit = parse_rate_limit(response.headers)
                await settle(rate_limit if rate_limit.present else None)
                self._log_response(method, request, response, started)
                if response.is_success:
                    try:
                        return _Outcome(value=await consume(response))
                    except IncompleteBodyError as exc:
                        return _Outcome(failure=Failure(FailureKind.TRANSPORT), error=exc)
                    except self.stack.transport_error as exc:
                        return self._network_failure(exc, None, method, str(request.url))
                return await self._status_failure(method, str(request.url), response, rate_limit)
            finally:
                await close_response(response)
        finally:
            for stream in opened:
                stream.close()
            if not settled:  # cancelled or failed: the budget shields a shared store's call
                await settle(None)

    async def _exchange_direct(
        self,
        sender: DirectSender,
        url: str,
        headers: dict[str, str],
        consume: DirectConsumer[Any],
        settle: Callable[[RateLimit | None], Awaitable[None]],
        started: float,
    ) -> _Outcome:
        """`_attempt`'s exchange for a direct GET: no httpx ``Request`` or ``Response`` unless
        the status is an error (for its excerpt)."""
        try:
            reply = await sender.direct_get(url, headers, self._timeout)
        except self.stack.transport_error as exc:
            await settle(None)
            kind = FailureKind.CONNECT if isinstance(exc, self.stack.connect_errors) else None
            return self._network_failure(exc, kind, "GET", url)
        try:
            rate_limit = parse_rate_limit(reply.headers)
            await settle(rate_limit if rate_limit.present else None)
            status = reply.status_code
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "GET %s -> %d in %.3fs (direct)", url, status, time.perf_counter() - started
                )
            if 200 <= status < 300:
                try:
                    return _Outcome(value=await consume.direct(reply, url))
                except IncompleteBodyError as exc:
                    return _Outcome(failure=Failure(FailureKind.TRANSPORT), error=exc)
                except self.stack.transport_error as exc:
                    return self._network_failure(exc, None, "GET", url)
            response = reply.as_response()
            try:
                return await self._status_failure("GET", url, response, rate_limit)
            finally:
                await close_response(response)
        finally:
            reply.release()

    async def _reserve(self, method: str, url: str, params: Mapping[str, Any] | None) -> str | None:
        """Reserve one call (or wait for the reset, if the budget says so); its lease."""
        if self.budget is None:
            return None
        while True:
            try:
                decision = await self.budget.reserve()
            except BudgetExhaustedError as exc:
                raise BudgetExhaustedError(
                    exc.reset_at, limit=exc.limit, method=method, url=with_params(url, params)
                ) from None
            if decision.granted:
                return decision.lease
            logger.info("daily budget exhausted; waiting %.1fs for its reset", decision.wait)
            await self.sleep(decision.wait)

    def _network_failure(
        self,
        exc: Exception,
        kind: FailureKind | None,
        method: str,
        url: str,
    ) -> _Outcome:
        if kind is None:
            broken = isinstance(exc, self.stack.broken_errors)
            kind = FailureKind.TRANSPORT if broken else FailureKind.FATAL
        what = "timed out" if isinstance(exc, self.stack.timeout_error) else "failed"
        # No scrub here: every ZigziikError scrubs its message of the registered secrets.
        detail = _network_detail(exc)
        error = TransportError(f"{method} {url} {what}: {detail}", method=method, url=url)
        error.__cause__ = exc
        return _Outcome(failure=Failure(kind), error=error)

    async def _status_failure(
        self,
        method: str,
        url: str,
        response: httpx.Response,
        rate_limit: RateLimit,
    ) -> _Outcome:
        body = await read_excerpt(response)
        now = self._now()
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        wait = retry_after if retry_after is not None else rate_limit.reset_after
        reset_at = now + timedelta(seconds=wait) if wait is not None else None
        error = error_for_status(
            response.status_code,
            method=method,
            url=url,
            body_excerpt=excerpt(body, self.secrets()),
            reset_at=reset_at,
        )
        failure = Failure(
            FailureKind.STATUS,
            status_code=response.status_code,
            retry_after=retry_after,
            reset_after=rate_limit.reset_after,
        )
        return _Outcome(failure=failure, error=error)

    def _log_response(
        self, method: str, request: httpx.Request, response: httpx.Response, started: float
    ) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        left = self.budget.remaining if self.budget is not None else "unlimited"
        logger.debug(
            "%s %s -> %d in %.3fs (budget left: %s)",
            method,
            request.url.raw_path.decode("ascii", "replace"),
            response.status_code,
            time.perf_counter() - started,
            left,
        )


class _Outcome:
    """One attempt's result: ``value``, or a ``failure`` and the ``error`` to raise for it."""

    __slots__ = ("error", "failure", "value")

    def __init__(
        self,
        value: Any = None,
        failure: Failure | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.value = value
        self.failure = failure
        self.error: BaseException = error if error is not None else _NO_ERROR


_NO_ERROR = AssertionError("no error")  # never raised: an outcome without a failure has a value


def _network_detail(exc: BaseException) -> str:
    """What went wrong, from the first exception along the cause chain that says something.

    Under trio httpx's ConnectError for a refused certificate has no text of its own; the
    `ssl.SSLCertVerificationError` two causes down does.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if text:
            return text if current is exc else f"{type(exc).__name__}: {text}"
        current = current.__cause__ or current.__context__
    return type(exc).__name__


def _describe(error: BaseException) -> str:
    if isinstance(error, APIError):
        return f"HTTP {error.status_code}"
    cause = error.__cause__
    return type(cause).__name__ if cause is not None else type(error).__name__
