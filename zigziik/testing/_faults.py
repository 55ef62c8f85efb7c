"""Fault injection shared by both fakes: a thread-safe queue of one-shot faults and the ASGI
middleware that applies them.

How a broken connection is produced under uvicorn (h11): the middleware reaches the connection's
asyncio transport (the bound ``send`` of uvicorn's request cycle has it; the recorder stores it in
the scope under ``TRANSPORT_SCOPE_KEY``), writes part of the body, then ``close()``\\s it (a clean
FIN: the client sees fewer bytes than ``Content-Length``) or sets ``SO_LINGER`` to zero and
``abort()``\\s it (an RST: the client sees "connection reset"). It then waits until uvicorn has
noticed the disconnect before returning, so uvicorn logs nothing. Without a reachable transport
(``httpx.ASGITransport``, other servers) it raises `InjectedDisconnect` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import anyio
import anyio.lowlevel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "TRANSPORT_SCOPE_KEY",
    "FaultKind",
    "FaultMiddleware",
    "Faults",
    "InjectedDisconnect",
    "InjectedFault",
    "find_transport",
    "request_target",
]

TRANSPORT_SCOPE_KEY = "zigziik.testing.transport"

FaultKind = Literal["fail", "truncate", "reset", "stall", "hang", "wrong_length", "garbage"]

_DEFAULT_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


class InjectedDisconnect(Exception):
    """Raised by the fault middleware to break a response when no socket can be reached."""


class _Cut(Exception):
    """Internal: stops the wrapped app after the connection was cut."""


@dataclass
class _Rule:
    kind: FaultKind
    remaining: int
    match: str | None = None
    method: str | None = None
    status: int = 503
    retry_after: float | str | None = None
    headers: Mapping[str, str] | None = None
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    seconds: float = 30.0
    delta: int = 1

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.match is None or self.match in target


@dataclass(frozen=True)
class InjectedFault:
    """A record of one fault that fired: what, on which request."""

    kind: FaultKind
    method: str
    path: str


@dataclass
class Faults:
    """Runtime-switchable faults, safe to change from the test thread while a fake is served.

    ``latency`` (seconds) delays every request before it is answered. The ``*_next`` methods
    queue one-shot faults for the next ``n`` requests whose path-with-query contains ``match``
    (and whose method is ``method``, if given); the first queued fault that matches a request
    fires. ``fired`` lists the faults that have fired, in order.
    """

    latency: float = 0.0
    fired: list[InjectedFault] = field(default_factory=list, init=False)
    _rules: list[_Rule] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _add(self, rule: _Rule) -> None:
        if rule.remaining < 1:
            raise ValueError("n must be at least 1")
        with self._lock:
            self._rules.append(rule)

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        match: str | None = None,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        method: str | None = None,
        body: bytes = b"",
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` without running the app."""
        self._add(
            _Rule(
                "fail",
                n,
                match,
                method,
                status=status,
                retry_after=retry_after,
                headers=dict(headers or {}),
                body=body,
            )
        )

    def truncate_next(
        self, n: int = 1, match: str | None = None, *, method: str | None = None
    ) -> None:
        """Send the real headers (full ``Content-Length``) but only half the body, then close."""
        self._add(_Rule("truncate", n, match, method))

    def reset_next(
        self, n: int = 1, match: str | None = None, *, method: str | None = None
    ) -> None:
        """Send the headers and a quarter of the body, then abort the connection with an RST."""
        self._add(_Rule("reset", n, match, method))

    def stall_next(
        self,
        n: int = 1,
        match: str | None = None,
        seconds: float = 30.0,
        *,
        method: str | None = None,
    ) -> None:
        """Send the headers, then wait ``seconds`` (or until the client leaves) before the body."""
        self._add(_Rule("stall", n, match, method, seconds=seconds))

    def hang_next(
        self,
        n: int = 1,
        match: str | None = None,
        seconds: float = 30.0,
        *,
        method: str | None = None,
    ) -> None:
        """Answer nothing for ``seconds`` (or until the client leaves), not even headers; then
        answer as usual. The request is counted (``calls``) but the app, and so its rate
        limit, sees it only if the wait ends."""
        self._add(_Rule("hang", n, match, method, seconds=seconds))

    def wrong_length_next(
        self,
        n: int = 1,
        match: str | None = None,
        delta: int = 1,
        *,
        method: str | None = None,
    ) -> None:
        """Lie in ``Content-Length`` by ``delta`` bytes.

        ``delta > 0``: the header promises more than the body has; the whole real body is sent,
        then the connection is closed. ``delta < 0``: the header promises less and exactly that
        many bytes are sent, as a complete, well-formed (short) response.
        """
        if delta == 0:
            raise ValueError("delta must not be 0")
        self._add(_Rule("wrong_length", n, match, method, delta=delta))

    def garbage_next(
        self,
        n: int = 1,
        match: str | None = None,
        body: bytes = _DEFAULT_GARBAGE,
        content_type: str = "text/html; charset=utf-8",
        *,
        status: int = 200,
        method: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` and ``body`` (not the app's)."""
        self._add(
            _Rule("garbage", n, match, method, status=status, body=body, content_type=content_type)
        )

    def clear(self) -> None:
        """Drop every queued one-shot fault (``latency`` stays as it is)."""
        with self._lock:
            self._rules.clear()

    @property
    def pending(self) -> int:
        """How many one-shot faults are still queued."""
        with self._lock:
            return sum(rule.remaining for rule in self._rules)

    def take(self, method: str, target: str) -> _Rule | None:
        """Pop one use of the first rule that matches this request (used by the middleware)."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(method, target):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        del self._rules[index]
                    self.fired.append(InjectedFault(rule.kind, method, target))
                    return replace(rule)
        return None


def request_target(scope: Scope) -> str:
    """The request's path plus ``?query`` if any, as recorded in ``fake.requests``."""
    path: str = scope.get("path", "")
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def find_transport(send: Send) -> asyncio.Transport | None:
    """The connection's asyncio transport behind uvicorn's ``send``, or ``None``."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if isinstance(transport, asyncio.Transport):
        return transport
    return None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _set_header(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    headers[:] = [(k, v) for k, v in headers if k.lower() != name]
    headers.append((name, value))


def _is_cut(exc: BaseException) -> bool:
    if isinstance(exc, _Cut):
        return True
    inner = getattr(exc, "exceptions", None)
    return bool(inner) and all(_is_cut(e) for e in inner)  # type: ignore[union-attr]


async def _drain_request(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _drained() -> Message:
    """The ``receive`` of a request whose body was read already."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def _wait_disconnect(receive: Receive, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    return False


def _format_retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Shaper:
    """Wraps ``send`` for one response and applies a body fault to it."""

    def __init__(self, rule: _Rule, scope: Scope, receive: Receive, send: Send) -> None:
        self.rule = rule
        self.scope = scope
        self.receive = receive
        self.send = send
        self.transport: asyncio.Transport | None = scope.get(TRANSPORT_SCOPE_KEY) or find_transport(
            send
        )
        self.limit: int | None = None  # body bytes to pass before acting
        self.sent = 0
        self.dead = False  # connection cut, or response already finished by us

    async def __call__(self, message: Message) -> None:
        if self.dead:
            await anyio.lowlevel.checkpoint()
            raise _Cut
        if message["type"] == "http.response.start":
            await self._start(message)
        elif message["type"] == "http.response.body":
            await self._body(message.get("body", b""), message.get("more_body", False))
        else:  # pragma: no cover - not HTTP
            await self.send(message)

    async def _start(self, message: Message) -> None:
        headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        raw_length = _header(headers, b"content-length")
        length = int(raw_length) if raw_length is not None else None
        kind = self.rule.kind
        if kind == "wrong_length" and length is None:
            kind = self.rule.kind = "truncate"  # nothing to lie about: degrade to truncation
        if kind == "truncate":
            self.limit = (length or 0) // 2
        elif kind == "reset":
            self.limit = (length or 0) // 4
        elif kind == "wrong_length" and length is not None:
            declared = max(0, length + self.rule.delta)
            _set_header(headers, b"content-length", str(declared).encode())
            self.limit = declared if self.rule.delta < 0 else None
        await self.send({**message, "headers": headers})
        if kind == "stall" and await _wait_disconnect(self.receive, self.rule.seconds):
            self.dead = True

    async def _body(self, body: bytes, more_body: bool) -> None:
        kind = self.rule.kind
        if self.limit is None:  # stall (after it), or wrong_length with delta > 0
            if kind == "wrong_length" and not more_body:
                if body:
                    await self.send({"type": "http.response.body", "body": body, "more_body": True})
                await self._cut("close")
            else:
                await self.send(
                    {"type": "http.response.body", "body": body, "more_body": more_body}
                )
            return
        room = self.limit - self.sent
        part = body[:room]
        self.sent += len(part)
        reached = self.sent >= self.limit
        if kind == "wrong_length":  # delta < 0: finish cleanly at the declared length
            finish = reached or not more_body
            await self.send({"type": "http.response.body", "body": part, "more_body": not finish})
            if finish:
                self.dead = True
                if more_body:
                    raise _Cut
            return
        if part:
            await self.send({"type": "http.response.body", "body": part, "more_body": True})
        if reached or not more_body:
            await self._cut("rst" if kind == "reset" else "close")

    async def _cut(self, how: Literal["close", "rst"]) -> None:
        self.dead = True
        transport = self.transport
        if transport is None:
            raise InjectedDisconnect(f"injected {self.rule.kind} fault")
        if how == "rst":
            # Let the headers and the partial body reach the client first.
            with anyio.move_on_after(1.0):
                # The transport offers no event for "drained": poll.
                while transport.get_write_buffer_size() > 0 and not transport.is_closing():  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            await anyio.sleep(0.05)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        await _wait_disconnect(self.receive, 5.0)
        raise _Cut


class FaultMiddleware:
    """ASGI middleware applying a `Faults` object's latency and queued faults."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        latency = self.faults.latency
        if latency > 0:
            await anyio.sleep(latency)
        rule = self.faults.take(scope["method"], request_target(scope))
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.kind == "hang":
            await _drain_request(receive)
            if not await _wait_disconnect(receive, rule.seconds):
                await self.app(scope, _drained, send)
        elif rule.kind in ("fail", "garbage"):
            await _drain_request(receive)
            await _respond(send, rule)
        else:
            shaper = _Shaper(rule, scope, receive, send)
            try:
                await self.app(scope, receive, shaper)
            except BaseException as exc:
                if not _is_cut(exc):
                    raise


async def _respond(send: Send, rule: _Rule) -> None:
    if rule.kind == "garbage":
        body, content_type = rule.body, rule.content_type
    else:
        body, content_type = rule.body, "text/plain; charset=utf-8"
    headers: dict[str, str] = {"content-type": content_type, "content-length": str(len(body))}
    if rule.retry_after is not None:
        headers["retry-after"] = _format_retry_after(rule.retry_after)
    for key, value in (rule.headers or {}).items():
        headers[key.lower()] = value
    raw: list[tuple[bytes, bytes]] = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": rule.status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
