"""Which event loop runs this code: asyncio's running loop, or trio's run token.

Used to bind a client to the loop of its first request, to pick the connection pool of
zigziik's own client, and to wake a task from the disk thread. trio is never imported here:
when it is not imported already, this is not trio's event loop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ._compat import running_asyncio_loop

__all__ = ["on_asyncio", "running_asyncio_loop", "running_loop", "trio_token"]

_current_trio_token: Callable[[], object] | None = None  # found once trio is imported


def trio_token() -> object | None:
    """The running trio run's token; ``None`` when not under trio."""
    global _current_trio_token
    current = _current_trio_token
    if current is None:
        trio = sys.modules.get("trio")
        if trio is None:  # then this is not trio's event loop
            return None
        current = _current_trio_token = trio.lowlevel.current_trio_token
    try:
        return current()
    except RuntimeError:  # trio is imported but not running here
        return None


def running_loop() -> object | None:
    """What identifies the running event loop: asyncio's loop, or trio's run token.

    ``None`` when neither can be told (no event loop zigziik knows runs this code).
    """
    loop = running_asyncio_loop()
    return loop if loop is not None else trio_token()


def on_asyncio() -> bool:
    """Whether this runs in asyncio's event loop (under trio there is no running asyncio loop)."""
    return running_asyncio_loop() is not None
