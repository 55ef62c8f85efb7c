"""New files written by a helper thread, so the event loop keeps receiving while bytes reach disk.

Copying a chunk into the page cache costs about as much CPU as receiving it. Done in the
event loop's thread, as hand-written download code does, the two take turns on one core;
handed to a helper thread (``os.write`` releases the GIL), they overlap on two.

A `BackgroundFile` queues its chunks to the shared `DiskThread` in order and never blocks the
loop: `BackgroundFile.write` only appends to a queue, `BackgroundFile.close` awaits the last
write and the close, `BackgroundFile.abort` (synchronous, so it is safe in ``finally`` after
a cancellation) drops what is queued and deletes the file. Bytes queued across all files are
bounded (``high_water``); a writer over the bound awaits `BackgroundFile.drain`, so a slow disk
slows the downloads down instead of filling memory.

The thread starts on first use and ends after ``idle_seconds`` with nothing to do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio

from ._loops import running_asyncio_loop
from ._safedir import NEW_FILE_FLAGS, SafeFolder

__all__ = ["BackgroundFile", "DiskThread", "default_disk_thread"]


class _Marker:
    """A queue entry that is not bytes to write."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_CLOSE: Final = _Marker("close")
_ABORT: Final = _Marker("abort")
# Module attributes, so tests can slow the thread down or make it fail.
_write = os.write
_writev: Callable[[int, list[bytes]], int] | None = getattr(os, "writev", None)
_BATCH_ITEMS = 64  # well under any system's IOV_MAX (1024 on Linux, 16 is POSIX's minimum)
_WAKE_BYTES = 1 << 20  # a waiting thread is woken by this much data, or by close or abort


class _Waker:
    """Wakes one task of the running event loop from another thread (asyncio or trio)."""

    def __init__(self) -> None:
        loop = running_asyncio_loop()
        if loop is None:  # not asyncio: trio (anyio's only other backend), imported
            trio: Any = importlib.import_module("trio")  # (trio is not a dependency)

            event = trio.Event()
            token = trio.lowlevel.current_trio_token()

            def wake_trio() -> None:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(event.set)

            self.wake: Callable[[], None] = wake_trio
            self._wait_trio = event.wait
            self._future: asyncio.Future[None] | None = None
            return
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        def wake_asyncio() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(resolve)

        self.wake = wake_asyncio
        self._future = future

    async def wait(self) -> None:
        if self._future is not None:
            await self._future
        else:
            await self._wait_trio()


class BackgroundFile:
    """A new file (created exclusively: it must not exist) written by a `DiskThread`.

    Chunks are written in the order given. The file is created by the thread on the first
    chunk, or by `close` when there was none. Given a ``folder``, ``path`` is a name in it,
    and the file is made and removed through the folder's descriptor (never through a link).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        thread: DiskThread | None = None,
        *,
        folder: SafeFolder | None = None,
    ) -> None:
        self.folder = folder
        self.path = Path(path) if folder is None else folder.path / path
        self.name = self.path.name
        self._thread = thread if thread is not None else default_disk_thread()
        # Orders the thread's create against `abort`; re-entrant, as a `ReceivedFile` dropped
        # while it is held can be collected (and aborted) right there.
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._aborted = False
        self._created = False
        self._closing = False
        self._error: BaseException | None = None
        self._waker: _Waker | None = None

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Queue ``chunk`` (returns at once; see `must_drain`).

        Raises the disk's error if an earlier chunk failed. Anything but `bytes` is copied
        first: a transport may reuse its buffer once this returns, long before the thread
        writes it.
        """
        if self._closing or self._aborted:
            raise ValueError(f"write to a closed file: {self.path}")
        if self._error is not None:  # the disk failed already: stop the download now
            raise self._error
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if chunk:
            self._thread.submit(self, chunk)

    @property
    def must_drain(self) -> bool:
        """Whether the bytes queued (by every file) are over the bound: await `drain` then."""
        return self._thread.over_high_water

    async def drain(self) -> None:
        """Wait until the queued bytes are back under the bound."""
        await self._thread.drain()

    async def close(self) -> None:
        """Wait until every chunk is written and the file closed; raise the first error.

        Moving the file to its final name is the caller's, after this returns: a caller
        cancelled while waiting must be able to `abort` (delete) it instead, even when the
        thread has finished meanwhile. On an error, too, the caller must call `abort`.
        """
        if self._closing:
            raise ValueError(f"the file is already closed: {self.path}")
        self._closing = True
        waker = _Waker()
        self._waker = waker
        self._thread.submit(self, _CLOSE)
        await waker.wait()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Drop whatever is still queued and delete the file (synchronous, idempotent)."""
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
            created = self._created
        if created:
            # Deleting here makes the file gone when this returns (the thread may still hold
            # it open, which POSIX allows; elsewhere the thread deletes it once closed).
            with contextlib.suppress(OSError):
                self._unlink()
        self._thread.submit(self, _ABORT)

    # -- run by the thread -----------------------------------------------------------------

    def _handle(self, marker: _Marker) -> None:
        if marker is _CLOSE:
            self._finish()
        elif marker is _ABORT:
            with contextlib.suppress(OSError):  # nothing may escape into the thread's loop
                self._release()
            if self._created:  # never a file that was there before (O_EXCL refused it)
                with contextlib.suppress(OSError):
                    self._unlink()

    def _write_chunks(self, chunks: list[bytes]) -> None:
        if self._error is not None or self._aborted:
            return
        try:
            fd = self._open()
            if fd is not None:
                _write_all(fd, chunks)
        except BaseException as exc:  # reported by close()
            self._error = exc

    def _open(self) -> int | None:
        if self._fd is None:
            with self._lock:
                if self._aborted:
                    return None
                if self.folder is not None:
                    self._fd = self.folder.create(self.name)
                else:
                    self._fd = os.open(self.path, NEW_FILE_FLAGS, 0o666)
                self._created = True
        return self._fd

    def _unlink(self) -> None:
        if self.folder is not None:
            self.folder.unlink(self.name)
        else:
            os.unlink(self.path)

    def _finish(self) -> None:
        try:
            if self._error is None and not self._aborted:
                self._open()  # an empty body still gives a file
            self._release()
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        finally:
            if self._waker is not None:
                self._waker.wake()

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class DiskThread:
    """One helper thread writing the chunks of every `BackgroundFile` given to it, in order."""

    def __init__(
        self,
        *,
        high_water: int = 16 << 20,
        low_water: int = 8 << 20,
        idle_seconds: float = 10.0,
    ) -> None:
        if not 0 <= low_water <= high_water:
            raise ValueError("need 0 <= low_water <= high_water")
        self.high_water = high_water
        self.low_water = low_water
        self.idle_seconds = idle_seconds
        self._lock = threading.RLock()  # re-entrant for the same reason as BackgroundFile's
        self._below_low_water = threading.Condition(self._lock)
        self._work = threading.Condition(self._lock)
        self._items: collections.deque[tuple[BackgroundFile, bytes | _Marker]] = collections.deque()
        self._queued_bytes = 0
        self._unannounced = 0  # bytes queued since the thread was last woken
        self._waiting = False  # the thread sleeps until woken (for tests)
        self._wake_bytes = max(1, min(_WAKE_BYTES, high_water // 2))
        self._thread: threading.Thread | None = None

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet written."""
        return self._queued_bytes

    @property
    def over_high_water(self) -> bool:
        return self._queued_bytes > self.high_water

    @property
    def running(self) -> bool:
        return self._thread is not None

    def submit(self, file: BackgroundFile, data: bytes | _Marker) -> None:
        with self._lock:
            self._items.append((file, data))
            if isinstance(data, _Marker):
                wake = True  # someone waits for it (close), or it frees a file (abort)
            else:
                self._queued_bytes += len(data)
                self._unannounced += len(data)
                # The thread is woken once per _WAKE_BYTES, not per chunk: every wake-up
                # is a GIL hand-over the event loop's thread pays for.
                wake = self._unannounced >= self._wake_bytes
            if wake:
                self._unannounced = 0
                self._work.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="zigziik-disk-writer", daemon=True
                )
                self._thread.start()

    async def drain(self) -> None:
        """Wait (in a worker thread, abandoned on cancellation) until under ``low_water``."""
        if self._queued_bytes > self.low_water:
            await anyio.to_thread.run_sync(self._wait_for_low_water, abandon_on_cancel=True)

    def _wait_for_low_water(self) -> None:
        with self._below_low_water:
            self._work.notify()  # whatever is queued is waited for now
            self._below_low_water.wait_for(lambda: self._queued_bytes <= self.low_water)

    def _run(self) -> None:
        items = self._items
        while True:
            with self._lock:
                if not items:
                    self._waiting = True
                    self._work.wait(self.idle_seconds)
                    self._waiting = False
                    if not items:  # idle: end (submit() queues under this lock: none is lost)
                        self._thread = None
                        return
                # Whatever is waiting goes in one round: one system call per file for its
                # chunks instead of one per chunk.
                batch = [items.popleft() for _ in range(min(len(items), _BATCH_ITEMS))]
            done = _serve_batch(batch)
            with self._lock:
                self._queued_bytes -= done
                if self._queued_bytes <= self.low_water:
                    self._below_low_water.notify_all()


def _write_batch(batch: list[tuple[BackgroundFile, bytes | _Marker]]) -> int:
    """Handle a batch, each file's entries in their order; return the bytes it held."""
    by_file: dict[BackgroundFile, list[bytes | _Marker]] = {}
    total = 0
    for file, data in batch:
        by_file.setdefault(file, []).append(data)
        if not isinstance(data, _Marker):
            total += len(data)
    for file, entries in by_file.items():
        chunks: list[bytes] = []
        for data in entries:
            if isinstance(data, _Marker):
                if chunks:
                    file._write_chunks(chunks)
                    chunks = []
                file._handle(data)
            else:
                chunks.append(data)
        if chunks:
            file._write_chunks(chunks)
    return total


def _serve_batch(batch: list[tuple[BackgroundFile, bytes | _Marker]]) -> int:
    """`_write_batch`, and should anything still escape it: every file of the batch failed
    (and woken, if it waits), never a dead thread with writers waiting on it forever."""
    try:
        return _write_batch(batch)
    except BaseException as exc:  # every step above catches its own: a last resort
        for file, data in batch:
            if file._error is None:
                file._error = exc
            if data is _CLOSE and file._waker is not None:
                file._waker.wake()
        return sum(len(data) for _, data in batch if not isinstance(data, _Marker))


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """Write every chunk, in order, whatever the system calls manage at a time."""
    if len(chunks) == 1 or _writev is None:
        for chunk in chunks:
            written = _write(fd, chunk)
            if written < len(chunk):
                _write_rest(fd, memoryview(chunk)[written:])
        return
    written = _writev(fd, chunks)
    for chunk in chunks:  # after a partial writev (rare on a regular file): the rest
        if written >= len(chunk):
            written -= len(chunk)
            continue
        _write_rest(fd, memoryview(chunk)[written:])
        written = 0


def _write_rest(fd: int, view: memoryview) -> None:
    while view:
        view = view[_write(fd, view) :]


_default: DiskThread | None = None
_default_lock = threading.Lock()


def default_disk_thread() -> DiskThread:
    """The process's shared `DiskThread` (a new one in a forked child)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = DiskThread()
    return _default


def _forget_after_fork() -> None:
    global _default, _default_lock
    _default = None
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
