"""An optional httpx transport backed by aiohttp, for bulk downloads (``zigziik[aiohttp]``).

zigziik's default is httpx's own transport (so respx and every httpx tool keep working). Its
HTTP/1.1 parser (h11) copies each body several times in Python, which caps a harvest of large
pictures at about half of what aiohttp's C parser reaches on the same machine. When that
matters, hand the client an httpx client whose transport is aiohttp::

    from zigziik.transports import aiohttp_client

    async with aiohttp_client() as http, ZignaClient(key, http_client=http) as zigna:
        await zigna.harvest("pictures")

Everything above the transport stays the same: budget, retries, errors, atomic downloads.
httpx still builds requests, follows (or not) redirects and decodes ``Content-Encoding``;
aiohttp only moves the bytes (``auto_decompress=False``). aiohttp's errors become the httpx
errors they correspond to, so retries and error messages behave as with httpx's transport.
It runs under asyncio only (aiohttp has no trio support); respx does not see its requests.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

try:
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError("zigziik.transports needs aiohttp: pip install 'zigziik[aiohttp]'") from exc

from ._net import default_ssl_context
from ._request import DEFAULT_TIMEOUT, send_direct

__all__ = ["AiohttpClient", "AiohttpTransport", "aiohttp_client"]

_DIRECT_HEADERS_KEPT = 16
# aiohttp stops reading a connection once twice this much waits unread (64 KiB by default:
# with 256 KiB reads, a pause and a resume, two epoll_ctl calls, for nearly every read).
_READ_BUFSIZE = 1 << 20


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    """httpx's (pool, connect, read) timeouts of ``request``."""
    spec: dict[str, float | None] = request.extensions.get("timeout", {})
    return spec.get("pool"), spec.get("connect"), spec.get("read")


@functools.lru_cache(maxsize=32)
def _client_timeout(
    pool: float | None, connect: float | None, read: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


def _map_error(exc: BaseException, request: httpx.Request, *, body: bool) -> httpx.HTTPError:
    """The httpx error matching an aiohttp one (what zigziik's retry policy classifies)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(exc, (aiohttp.ClientOSError, OSError)):
        return (httpx.ReadError if body else httpx.ConnectError)(text, request=request)
    return httpx.RemoteProtocolError(text, request=request)


_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class _IdleWatch:
    """Fails a body that receives nothing for ``timeout`` seconds, with one timer per body.

    aiohttp's own ``sock_read`` timeout moves a timer on every chunk (a cancelled timer
    handle and a new one each time, a few percent of a bulk download); this one only
    notes the time of the last chunk, and its timer, when it fires, looks at that.
    """

    def __init__(self, response: aiohttp.ClientResponse, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._content = response.content
        self._timeout = timeout
        self.last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            self.last + timeout, self._check
        )

    def poke(self) -> None:
        self.last = self._loop.time()

    def _check(self) -> None:
        due = self.last + self._timeout
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self._content.set_exception(
            aiohttp.ServerTimeoutError(f"no data for {self._timeout:g} s while reading the body")
        )

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _watch_body(response: aiohttp.ClientResponse, timeout: float | None) -> _IdleWatch | None:
    """Swap aiohttp's per-chunk read timer for an `_IdleWatch` (until the next request)."""
    if not timeout or response.content.is_eof():
        return None
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    if protocol is None or not hasattr(protocol, "read_timeout"):  # pragma: no cover
        return None  # an aiohttp without the setter: its own timer stays
    protocol.read_timeout = None  # the next chunk drops aiohttp's timer; the next request
    return _IdleWatch(response, timeout)  # sets its own read timeout again


async def _pieces(
    response: aiohttp.ClientResponse,
    watch: _IdleWatch | None,
    request: Callable[[], httpx.Request],
) -> AsyncIterator[bytes]:
    """The body, one received piece at a time, as it came off the socket (`iter_any` would
    join whatever is waiting into a new bytes object: a copy); aiohttp's errors as httpx's
    (``request``: the request they name, made only then)."""
    content = response.content
    try:
        while True:
            chunk, end_of_http_chunk = await content.readchunk()
            if not chunk:
                if end_of_http_chunk:
                    continue
                break
            if watch is not None:
                watch.poke()
            yield chunk
    except _ERRORS as exc:
        raise _map_error(exc, request(), body=True) from exc
    finally:
        if watch is not None:
            watch.cancel()


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp delivers it (every chunk waiting, in one piece)."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, read_timeout: float | None
    ) -> None:
        self._response = response
        self._request = request
        self._watch = _watch_body(response, read_timeout)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _pieces(self._response, self._watch, lambda: self._request)

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._response.release()


async def _request_body(request: httpx.Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream:  # type: ignore[union-attr]
        yield chunk


def _httpx_response(
    response: aiohttp.ClientResponse, request: httpx.Request, read_timeout: float | None
) -> httpx.Response:
    """``response`` (its body unread) as an ``httpx.Response`` to ``request``."""
    version = response.version
    return httpx.Response(
        status_code=response.status,
        headers=response.raw_headers,
        stream=_Body(response, request, read_timeout),
        request=request,
        extensions={
            "http_version": f"HTTP/{version.major}.{version.minor}".encode()
            if version is not None
            else b"HTTP/1.1",
            "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
        },
    )


class _DirectReply:
    """A `zigziik._direct.DirectReply` over an aiohttp response: its headers as aiohttp
    parsed them, its body read with aiohttp's own reader, one received piece at a time."""

    __slots__ = ("_read_timeout", "_response", "_sent", "_url", "_watch", "headers", "status_code")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        url: str,
        sent: CIMultiDict[str],
        read_timeout: float | None,
    ) -> None:
        self._response = response
        self._url = url
        self._sent = sent
        self._read_timeout = read_timeout
        self._watch: _IdleWatch | None = None
        self.status_code = response.status
        self.headers: CIMultiDictProxy[str] = response.headers

    def _request(self) -> httpx.Request:
        """The request as httpx would have made it (built only for an error or a fallback)."""
        return httpx.Request("GET", self._url, headers=list(self._sent.items()))

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._watch = _watch_body(self._response, self._read_timeout)
        return _pieces(self._response, self._watch, self._request)

    def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._response.release()

    def as_response(self) -> httpx.Response:
        return _httpx_response(self._response, self._request(), self._read_timeout)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` sending through one `aiohttp.ClientSession`.

    ``limit`` bounds the connections (as httpx's ``max_connections``); ``ssl_context`` defaults
    to httpx's verifying context. ``trust_env=True`` lets aiohttp take proxies from
    ``HTTP(S)_PROXY``/``NO_PROXY`` (and ``.netrc``): it reads them again for every request, which
    costs about a fifth of a bulk harvest, so it is off unless asked for. The session is made on
    first use, inside the running loop.
    """

    def __init__(
        self,
        *,
        limit: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        trust_env: bool = False,
    ) -> None:
        self._limit = limit
        self._ssl = ssl_context
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            context = self._ssl if self._ssl is not None else default_ssl_context()
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=context)
            self._session = aiohttp.ClientSession(
                connector=connector,
                read_bufsize=_READ_BUFSIZE,
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies (if any)
                trust_env=self._trust_env,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        headers = [
            (key.decode("latin-1"), value.decode("latin-1")) for key, value in request.headers.raw
        ]
        data: Any = None
        try:
            content = request.content
        except httpx.RequestNotRead:  # a streamed body (multipart upload): stream it on
            data = _request_body(request)
        else:
            data = content or None
        timeouts = _timeouts(request)
        try:
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=_client_timeout(*timeouts),
                compress=None,
            )
        except _ERRORS as exc:
            raise _map_error(exc, request, body=False) from exc
        return _httpx_response(response, request, timeouts[2])

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            await asyncio.sleep(0)  # let the connections' close callbacks run (aiohttp's advice)


class AiohttpClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` over `AiohttpTransport` whose `send` goes straight to aiohttp.

    httpx's client wraps every request in machinery zigziik does not use: an auth flow, a
    redirect loop, event hooks, a proxy lookup and cookie extraction (which builds urllib
    request objects for every response), about a sixth of a bulk harvest's time. When none of
    it is configured (no ``auth``, no event hooks, no redirects followed), this client sends the
    request as built to the transport; otherwise it is httpx's own `send`. Cookies are not
    kept (neither API uses them); proxies only with ``trust_env=True`` (see `AiohttpTransport`).
    """

    def __init__(self, *, limit: int = 100, trust_env: bool = False, **kwargs: Any) -> None:
        if "transport" in kwargs or "mounts" in kwargs or "proxy" in kwargs:
            raise TypeError("AiohttpClient makes its own transport; use httpx.AsyncClient")
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("follow_redirects", False)
        self._aiohttp = AiohttpTransport(limit=limit, trust_env=trust_env)
        self._direct_headers: dict[tuple[Any, ...], CIMultiDict[str]] = {}
        super().__init__(transport=self._aiohttp, trust_env=False, **kwargs)

    # -- the direct GET (zigziik._direct): no httpx Request or Response per download ------

    def direct_ready(self, url: str) -> bool:
        """Whether ``GET url`` may skip httpx's objects: nothing configured here would act
        on it (auth, hooks, cookies, redirects, parameters, an overridden ``send``)."""
        hooks = self.event_hooks
        return (
            self.auth is None
            and not self.follow_redirects
            and not hooks["request"]
            and not hooks["response"]
            and not self.is_closed
            and not self.params
            and not self.cookies
            and type(self).send is AiohttpClient.send
            and type(self).build_request is httpx.AsyncClient.build_request
            and url.isascii()
            and "@" not in url  # no user info (a path segment's "@" is always quoted)
        )

    def _merged_headers(self, headers: Mapping[str, str]) -> CIMultiDict[str]:
        """The client's headers updated with ``headers``, as httpx merges them (made once
        for each set of headers)."""
        key = (tuple(self.headers.raw), tuple(headers.items()))
        merged = self._direct_headers.get(key)
        if merged is None:
            joined = httpx.Headers(self.headers)
            joined.update(headers)
            merged = CIMultiDict(joined.multi_items())
            if len(self._direct_headers) >= _DIRECT_HEADERS_KEPT:
                self._direct_headers.clear()
            self._direct_headers[key] = merged
        return merged

    async def direct_get(self, url: str, headers: Mapping[str, str], timeout: Any) -> _DirectReply:
        """``GET url`` straight to aiohttp (see `zigziik._direct.DirectSender`)."""
        spec: httpx.Timeout = self.timeout if timeout is None else timeout
        sent = self._merged_headers(headers)
        session = self._aiohttp._get_session()
        try:
            response = await session.request(
                "GET",
                URL(url, encoded=True),
                headers=sent,
                allow_redirects=False,
                timeout=_client_timeout(spec.pool, spec.connect, spec.read),
                compress=None,
            )
        except _ERRORS as exc:
            request = httpx.Request("GET", url, headers=list(sent.items()))
            raise _map_error(exc, request, body=False) from exc
        return _DirectReply(response, url, sent, spec.read)

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        plain = (
            auth is httpx.USE_CLIENT_DEFAULT
            and follow_redirects is not True
            and self.auth is None
            and not self.follow_redirects
            and not self.event_hooks["request"]
            and not self.event_hooks["response"]
            and not self.is_closed
            and "timeout" in request.extensions
            and not request.url.userinfo
        )
        if not plain:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        response = await send_direct(self._aiohttp, request)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


def aiohttp_client(*, limit: int = 100, trust_env: bool = False, **kwargs: Any) -> AiohttpClient:
    """An httpx client over aiohttp, for ``ZignaClient(http_client=...)`` (see `AiohttpClient`).

    It belongs to the caller (close it, or use it with ``async with``). Other keyword
    arguments go to `httpx.AsyncClient` (``timeout`` defaults to zigziik's own).
    """
    return AiohttpClient(limit=limit, trust_env=trust_env, **kwargs)
