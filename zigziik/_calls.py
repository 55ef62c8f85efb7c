"""Counting the API calls one piece of work spends, exactly, even on a shared client.

The transport calls `record_call` each time it reserves a request (retries included: every
request counts against the daily budget). `count_calls` activates a counter for the current
task and every task it starts from then on (context variables are copied into child tasks
by asyncio and trio alike), so work running concurrently on the same client in other tasks
is not counted. Counters nest: an outer counter also sees the calls of an inner one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["CallCounter", "count_calls", "record_call"]


class CallCounter:
    """How many requests were reserved while this counter was active."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __repr__(self) -> str:
        return f"CallCounter(count={self.count})"


_active: ContextVar[tuple[CallCounter, ...]] = ContextVar("zigziik_call_counters", default=())


@contextmanager
def count_calls() -> Iterator[CallCounter]:
    """Count the requests sent by this task, and by the tasks it starts, inside the block."""
    counter = CallCounter()
    token = _active.set((*_active.get(), counter))
    try:
        yield counter
    finally:
        _active.reset(token)


def record_call() -> None:
    """One request was reserved (called by the transport; cheap when nothing counts)."""
    for counter in _active.get():
        counter.count += 1
