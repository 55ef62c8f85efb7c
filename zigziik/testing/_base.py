"""What both fakes share: request recording, in-flight accounting, the middleware chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._faults import TRANSPORT_SCOPE_KEY, FaultMiddleware, Faults, find_transport, request_target

__all__ = ["FakeServer", "RequestRecord"]


@dataclass
class RequestRecord:
    """One request as the fake saw it. ``end`` and ``status`` are ``None`` until it finished.

    ``start`` and ``end`` are ``time.monotonic()`` readings taken in the server.
    """

    method: str
    path: str
    start: float
    end: float | None = None
    status: int | None = None


class FakeServer:
    """Base of `FakeZigna` and `FakeZiik`: observability and faults. Thread-safe to read."""

    def __init__(self, *, latency: float = 0.0) -> None:
        self.faults = Faults(latency=latency)
        self._stats_lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self.app: ASGIApp = self._build_app()

    def _build_app(self) -> ASGIApp:  # pragma: no cover - overridden
        raise NotImplementedError

    def _chain(self, app: ASGIApp, *between: Callable[[ASGIApp], ASGIApp]) -> ASGIApp:
        """recorder -> ``between`` (outermost first) -> faults -> ``app``."""
        inner: ASGIApp = FaultMiddleware(app, self.faults)
        for wrap in reversed(between):
            inner = wrap(inner)
        return _Recorder(inner, self)

    # -- observability ---------------------------------------------------------------------

    @property
    def records(self) -> list[RequestRecord]:
        """Every request so far, in arrival order (a copy)."""
        with self._stats_lock:
            return list(self._records)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path with query) of every request so far, in arrival order."""
        with self._stats_lock:
            return [(r.method, r.path) for r in self._records]

    @property
    def timings(self) -> list[tuple[float, float | None]]:
        """(start, end) monotonic times of every request, in arrival order."""
        with self._stats_lock:
            return [(r.start, r.end) for r in self._records]

    @property
    def calls(self) -> int:
        """How many requests arrived."""
        with self._stats_lock:
            return len(self._records)

    @property
    def in_flight(self) -> int:
        """Requests currently being handled."""
        with self._stats_lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The peak number of requests handled at the same time."""
        with self._stats_lock:
            return self._max_in_flight

    def reset_stats(self) -> None:
        """Forget recorded requests and the in-flight peak (faults and data stay)."""
        with self._stats_lock:
            self._records.clear()
            self._max_in_flight = self._in_flight

    def _begin(self, method: str, path: str) -> RequestRecord:
        record = RequestRecord(method, path, time.monotonic())
        with self._stats_lock:
            self._records.append(record)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return record

    def _finish(self, record: RequestRecord) -> None:
        with self._stats_lock:
            record.end = time.monotonic()
            self._in_flight -= 1


class _Recorder:
    """Outermost middleware: records the request and exposes the socket to the fault layer."""

    def __init__(self, app: ASGIApp, owner: FakeServer) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = self.owner._begin(scope["method"], request_target(scope))
        scope = {**scope, TRANSPORT_SCOPE_KEY: find_transport(send)}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.owner._finish(record)
