"""Every access zigziik makes to private parts of httpcore (and httpcore2) and asyncio, in
one place.

Each one is checked against the installed version: a version this module does not know
gets the plain public behaviour (nothing patched, nothing taken), never a crash. httpx's and
aiohttp's private parts are not used at all.

* ``asyncio._get_running_loop``: the running loop or ``None``, without the exception
  `asyncio.get_running_loop` raises outside a loop (a C function; in ``asyncio.__all__``).
* httpcore 1.0's event-loop detection (``httpcore._synchronization.current_async_library``)
  tries ``import sniffio`` for every lock, event and shield it creates. Without sniffio
  installed (a plain install: anyio 4 no longer needs it) each try is a failed import that
  searches ``sys.path``, about 34 µs, several times per request. Without sniffio httpcore
  always answers ``"asyncio"`` (trio cannot be installed without sniffio), so
  `quiet_httpcore_detection` gives httpcore a function that answers exactly that, once
  checked, with the same errors httpcore raises when anyio is missing. httpcore2 imports
  sniffio once and needs none of this.
* httpcore 1.0 keeps in its pool a connection whose request was cancelled after the
  connection was assigned but before the request started (encode/httpcore#1093), and
  httpcore2 2.16 still keeps one that had connected: `take_orphaned_connections` reads the
  pool's connection and request lists to take them out.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "HTTPCORE_1_0",
    "quiet_httpcore_detection",
    "running_asyncio_loop",
    "take_orphaned_connections",
]


def _version(module: Any) -> tuple[int, ...]:
    text = str(getattr(module, "__version__", ""))
    parts: list[int] = []
    for piece in text.split(".")[:2]:
        if not piece.isdigit():
            return ()
        parts.append(int(piece))
    return tuple(parts)


def _get_running_loop() -> Callable[[], asyncio.AbstractEventLoop | None]:
    private = getattr(asyncio.events, "_get_running_loop", None)
    if callable(private):
        return private  # type: ignore[no-any-return]

    def public() -> asyncio.AbstractEventLoop | None:  # pragma: no cover - no known Python
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    return public


running_asyncio_loop = _get_running_loop()
"""The running asyncio loop, or ``None`` (under trio, or outside any loop)."""


try:
    import httpcore
except ImportError:  # pragma: no cover - httpcore is a dependency
    httpcore = None  # type: ignore[assignment]

HTTPCORE_1_0 = httpcore is not None and _version(httpcore) == (1, 0)
"""Whether the installed httpcore is the 1.0 series whose private parts this module knows."""


_quieted = False
_quiet_lock = threading.Lock()


def quiet_httpcore_detection() -> bool:
    """Spare httpcore 1.0 its failed ``import sniffio`` per lock and event when sniffio is not
    installed (see the module docstring). Returns whether httpcore's detection is now the
    quiet one; does nothing with sniffio installed or with another httpcore."""
    global _quieted
    if _quieted:
        return True
    if not HTTPCORE_1_0:
        return False
    synchronization = getattr(httpcore, "_synchronization", None)
    original = getattr(synchronization, "current_async_library", None)
    if synchronization is None or not callable(original):
        return False
    if _installed("sniffio"):
        return False  # httpcore asks sniffio, which is quick
    anyio_missing = getattr(synchronization, "anyio", None) is None

    def current_async_library() -> str:
        if anyio_missing:  # pragma: no cover - anyio is a dependency
            return str(original())  # httpcore's own error
        return "asyncio"

    with _quiet_lock:
        synchronization.current_async_library = current_async_library
        _quieted = True
    return True


def _installed(name: str) -> bool:
    """Whether ``import name`` would find a module (without importing it)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_MISSING = object()


def _never_used(connection: Any, core: Any) -> bool:
    """Whether a pool connection has not started a request: still connecting, or connected
    and ``NEW`` (an HTTP/2 connection or anything unknown counts as used: left alone)."""
    inner = getattr(connection, "_connection", _MISSING)
    if inner is _MISSING:
        return False
    if inner is None:
        return True  # connecting (a failed connect reports itself closed)
    state = getattr(inner, "_state", None)
    return type(inner) is core.AsyncHTTP11Connection and getattr(state, "name", "") == "NEW"


def _pool_core(pool: object) -> Any:
    """The httpcore whose pool ``pool`` is, if it is one whose internals are known here:
    httpcore 1.0, or httpcore2 2.16 (only if something imported it already)."""
    if HTTPCORE_1_0 and type(pool) is httpcore.AsyncConnectionPool:
        return httpcore
    core2 = sys.modules.get("httpcore2")
    if core2 is not None and _version(core2) == (2, 16) and type(pool) is core2.AsyncConnectionPool:
        return core2
    return None


def take_orphaned_connections(pool: object) -> list[Any]:
    """Take out of an httpcore 1.0 pool the connections a cancelled request left behind; the
    caller closes them.

    httpcore 1.0 leaves a connection in its pool when the request it was made for is
    cancelled after the connection was assigned but before the request started
    (encode/httpcore#1093): still connecting, or connected and ``NEW``. It is never idle,
    closed or expired, so the pool neither reuses nor closes it; it holds a pool slot, and
    once connected a socket, until the client closes. Such a connection is owned by none of
    the pool's pending requests and has served none. httpcore2 2.16 drops such a connection
    while it is still connecting, but keeps one that has connected: the same cleanup applies
    to its pool. Any other pool is left alone.
    """
    core = _pool_core(pool)
    if core is None:
        return []
    connections = getattr(pool, "_connections", None)
    requests = getattr(pool, "_requests", None)
    lock = getattr(pool, "_optional_thread_lock", None)
    if not isinstance(connections, list) or not isinstance(requests, list) or lock is None:
        return []
    with lock:
        owned = {id(getattr(request, "connection", None)) for request in requests}
        orphans = [
            c
            for c in connections
            if id(c) not in owned and not c.is_idle() and not c.is_closed() and _never_used(c, core)
        ]
        for connection in orphans:
            connections.remove(connection)
    return orphans
