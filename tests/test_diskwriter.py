"""The disk thread behind downloads (`zigziik._diskwriter`): order, errors, abort, back-pressure."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from zigziik import _diskwriter
from zigziik._diskwriter import BackgroundFile, DiskThread
from zigziik._safedir import SafeFolder


@pytest.fixture
def disk() -> Iterator[DiskThread]:
    thread = DiskThread(idle_seconds=0.2)
    yield thread
    deadline = time.monotonic() + 5
    while thread.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not thread.running, "the disk thread did not end when idle"


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold every write of the disk thread until the event is set."""
    opened = threading.Event()
    real = _diskwriter._write

    def held(fd: int, data: bytes | memoryview) -> int:
        opened.wait(10)
        return real(fd, data)

    monkeypatch.setattr(_diskwriter, "_write", held)
    monkeypatch.setattr(_diskwriter, "_writev", None)  # every chunk through `held`
    return opened


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition that the disk thread makes true (it cannot set an anyio.Event)."""
    with anyio.fail_after(45):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_chunks_land_in_order(tmp_path: Path, disk: DiskThread) -> None:
    chunks = [bytes([i % 256]) * (1000 + i) for i in range(200)]
    file = BackgroundFile(tmp_path / "a.bin", disk)
    for chunk in chunks:
        file.write(chunk)
    await file.close()
    assert (tmp_path / "a.bin").read_bytes() == b"".join(chunks)
    await wait_until(lambda: disk.queued_bytes == 0)  # counted down after the whole batch


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_files_written_side_by_side_stay_apart(tmp_path: Path, disk: DiskThread) -> None:
    async def one(n: int) -> None:
        file = BackgroundFile(tmp_path / f"{n}.bin", disk)
        for i in range(50):
            file.write(f"{n}:{i};".encode())
            await anyio.lowlevel.checkpoint()
        await file.close()

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(one, n)
    for n in range(20):
        assert (tmp_path / f"{n}.bin").read_bytes() == "".join(
            f"{n}:{i};" for i in range(50)
        ).encode()


@pytest.mark.anyio
async def test_no_chunks_still_make_an_empty_file(tmp_path: Path, disk: DiskThread) -> None:
    file = BackgroundFile(tmp_path / "empty", disk)
    file.write(b"")  # an empty chunk is nothing to queue
    await file.close()
    assert (tmp_path / "empty").read_bytes() == b""


@pytest.mark.anyio
async def test_a_file_that_exists_is_neither_overwritten_nor_deleted(
    tmp_path: Path, disk: DiskThread
) -> None:
    there = tmp_path / "there"
    there.write_bytes(b"keep me")
    file = BackgroundFile(there, disk)
    file.write(b"new")
    with pytest.raises(FileExistsError):
        await file.close()
    file.abort()
    await wait_until(lambda: disk.queued_bytes == 0)
    assert there.read_bytes() == b"keep me"


@pytest.mark.anyio
async def test_a_write_error_is_raised_by_close(tmp_path: Path, disk: DiskThread) -> None:
    file = BackgroundFile(tmp_path / "missing-folder" / "x", disk)
    file.write(b"data")
    with pytest.raises(FileNotFoundError):
        await file.close()
    file.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_an_error_mid_file_stops_its_writes(
    tmp_path: Path, disk: DiskThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _diskwriter._write
    calls = 0

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(_diskwriter, "_write", full_disk)
    monkeypatch.setattr(_diskwriter, "_writev", None)
    file = BackgroundFile(tmp_path / "x", disk)

    async def write_and_close() -> None:
        for _ in range(5):
            file.write(b"12345")
        await file.close()

    with pytest.raises(OSError, match="No space"):  # from a later write, or from close
        await write_and_close()
    assert calls == 2  # nothing written after the failure
    file.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_partial_writes_are_completed(
    tmp_path: Path, disk: DiskThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _diskwriter._write
    monkeypatch.setattr(_diskwriter, "_write", lambda fd, data: real(fd, bytes(data[:3])))
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"abcdefghij")
    await file.close()
    assert (tmp_path / "x").read_bytes() == b"abcdefghij"


@pytest.mark.skipif(_diskwriter._writev is None, reason="no os.writev here")
@pytest.mark.parametrize("short", [0, 1, 4, 5, 9, 12])
def test_a_short_vectored_write_is_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short: int
) -> None:
    """After a writev that wrote only ``short`` bytes, the rest follows, in order."""
    real = _diskwriter._writev
    assert real is not None
    calls: list[int] = []

    def partial(fd: int, chunks: list[bytes]) -> int:
        calls.append(len(chunks))
        return os.write(fd, b"".join(chunks)[:short])

    monkeypatch.setattr(_diskwriter, "_writev", partial)
    target = tmp_path / "x"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        _diskwriter._write_all(fd, [b"abcd", b"e", b"fghijklm"])
    finally:
        os.close(fd)
    assert calls == [3]
    assert target.read_bytes() == b"abcdefghijklm"


@pytest.mark.anyio
async def test_chunks_queued_together_are_written_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gate: threading.Event
) -> None:
    """A file's chunks waiting in the queue go to disk in one vectored write, in order."""
    vectored: list[int] = []

    def counted(fd: int, chunks: list[bytes]) -> int:
        vectored.append(len(chunks))
        return os.write(fd, b"".join(chunks))

    disk = DiskThread(idle_seconds=0.2)
    blocker = BackgroundFile(tmp_path / "blocker", disk)
    blocker.write(b"hold")  # the thread waits on the gate with this one
    await wait_until(lambda: (tmp_path / "blocker").exists())
    monkeypatch.setattr(_diskwriter, "_writev", counted)
    files = [BackgroundFile(tmp_path / f"{n}", disk) for n in range(3)]
    for i in range(10):
        for n, file in enumerate(files):
            file.write(f"{n}.{i};".encode())
    gate.set()
    for file in files:
        await file.close()
    await blocker.close()
    for n in range(3):
        assert (tmp_path / f"{n}").read_bytes() == "".join(f"{n}.{i};" for i in range(10)).encode()
    assert vectored and max(vectored) == 10  # each file's ten chunks in one call


@pytest.mark.anyio
async def test_abort_deletes_the_file_even_while_writes_are_queued(
    tmp_path: Path, disk: DiskThread, gate: threading.Event
) -> None:
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"first")
    file.write(b"second")
    await wait_until(lambda: (tmp_path / "x").exists())  # created, its first write held
    file.abort()
    assert list(tmp_path.iterdir()) == []  # gone as abort returns
    gate.set()
    await wait_until(lambda: disk.queued_bytes == 0)
    await anyio.sleep(0.05)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        file.write(b"late")


@pytest.mark.anyio
async def test_abort_before_the_thread_creates_the_file(
    tmp_path: Path, disk: DiskThread, gate: threading.Event
) -> None:
    blocker = BackgroundFile(tmp_path / "blocker", disk)
    blocker.write(b"x")  # holds the thread
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"never")
    file.abort()
    gate.set()
    await blocker.close()
    await wait_until(lambda: disk.queued_bytes == 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_cancelled_while_closing_then_aborted_leaves_nothing(
    tmp_path: Path, disk: DiskThread, gate: threading.Event
) -> None:
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"held")
    with anyio.move_on_after(0.1) as scope:
        try:
            await file.close()
        finally:
            file.abort()
    assert scope.cancelled_caught
    gate.set()
    await wait_until(lambda: disk.queued_bytes == 0)
    await anyio.sleep(0.05)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_writers_wait_when_too_much_is_queued(tmp_path: Path, gate: threading.Event) -> None:
    disk = DiskThread(high_water=100, low_water=40, idle_seconds=0.2)
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"a" * 60)
    assert not file.must_drain
    file.write(b"b" * 60)
    assert file.must_drain
    assert disk.queued_bytes == 120
    drained = False

    async def drain() -> None:
        nonlocal drained
        await file.drain()
        drained = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        await anyio.sleep(0.1)
        assert not drained  # the disk is held: the writer waits
        gate.set()
    assert drained
    await file.close()
    assert (tmp_path / "x").read_bytes() == b"a" * 60 + b"b" * 60


@pytest.mark.anyio
async def test_a_drain_can_be_cancelled(tmp_path: Path, gate: threading.Event) -> None:
    disk = DiskThread(high_water=10, low_water=5, idle_seconds=0.2)
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"x" * 20)
    with anyio.move_on_after(0.1) as scope:
        await file.drain()
    assert scope.cancelled_caught
    file.abort()
    gate.set()
    await wait_until(lambda: disk.queued_bytes == 0)


@pytest.mark.anyio
async def test_the_thread_ends_when_idle_and_starts_again(tmp_path: Path) -> None:
    disk = DiskThread(idle_seconds=0.05)
    assert not disk.running
    first = BackgroundFile(tmp_path / "1", disk)
    first.write(b"1")
    await first.close()
    await wait_until(lambda: not disk.running)
    second = BackgroundFile(tmp_path / "2", disk)
    second.write(b"2")
    await second.close()
    assert (tmp_path / "2").read_bytes() == b"2"


@pytest.mark.anyio
async def test_the_thread_is_a_named_daemon(tmp_path: Path, gate: threading.Event) -> None:
    """Named, to be found in a thread dump; a daemon, so a process never waits at exit for a
    write that a slow disk holds up."""
    disk = DiskThread(idle_seconds=0.2)
    before = set(threading.enumerate())
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"x")
    (thread,) = set(threading.enumerate()) - before
    assert (thread.name, thread.daemon) == ("zigziik-disk-writer", True)
    gate.set()
    await file.close()
    await wait_until(lambda: not disk.running)


@pytest.mark.anyio
async def test_close_twice_is_an_error(tmp_path: Path, disk: DiskThread) -> None:
    file = BackgroundFile(tmp_path / "x", disk)
    await file.close()
    with pytest.raises(ValueError, match="already closed"):
        await file.close()
    with pytest.raises(ValueError, match="closed"):
        file.write(b"x")


def test_the_water_marks_are_checked() -> None:
    with pytest.raises(ValueError, match="low_water"):
        DiskThread(high_water=10, low_water=20)


def test_the_shared_thread_is_one_per_process() -> None:
    assert _diskwriter.default_disk_thread() is _diskwriter.default_disk_thread()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_thread() -> None:
    parent = _diskwriter.default_disk_thread()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        own = _diskwriter.default_disk_thread()
        ok = isinstance(own, DiskThread) and own is not parent
        ok = ok and own is _diskwriter.default_disk_thread()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_after_a_fork_the_shared_thread_and_its_lock_are_made_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the fork hook does, run in this process (mutmut sees no call made in a child).
    monkeypatch.setattr(_diskwriter, "_default", _diskwriter.default_disk_thread())
    monkeypatch.setattr(_diskwriter, "_default_lock", _diskwriter._default_lock)
    parent, parent_lock = _diskwriter._default, _diskwriter._default_lock
    _diskwriter._forget_after_fork()
    assert _diskwriter._default is None
    assert _diskwriter._default_lock is not parent_lock
    with _diskwriter._default_lock:  # a fresh lock, free: the parent's may be held forever
        pass
    fresh = _diskwriter.default_disk_thread()
    assert type(fresh) is DiskThread
    assert fresh is not parent
    assert _diskwriter.default_disk_thread() is fresh


@pytest.mark.anyio
async def test_a_received_file_is_finished_under_its_final_name(
    tmp_path: Path, disk: DiskThread
) -> None:
    from zigziik.download import ReceivedFile

    file = BackgroundFile(tmp_path / ".x.part", disk)
    file.write(b"picture")
    received = ReceivedFile(file, tmp_path / "x.jpg")
    assert await received.finish() == tmp_path / "x.jpg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jpg"]
    received.abort()  # too late to matter: the finished file stays
    assert (tmp_path / "x.jpg").read_bytes() == b"picture"


@pytest.mark.anyio
async def test_a_received_file_dropped_unfinished_is_deleted(
    tmp_path: Path, disk: DiskThread
) -> None:
    import gc

    from zigziik.download import ReceivedFile

    file = BackgroundFile(tmp_path / ".x.part", disk)
    file.write(b"picture")
    received = ReceivedFile(file, tmp_path / "x.jpg")
    del received
    gc.collect()
    await wait_until(lambda: disk.queued_bytes == 0)
    await anyio.sleep(0.05)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_received_file_cancelled_while_finishing_is_deleted(
    tmp_path: Path, disk: DiskThread, gate: threading.Event
) -> None:
    from zigziik.download import ReceivedFile

    file = BackgroundFile(tmp_path / ".x.part", disk)
    file.write(b"picture")
    received = ReceivedFile(file, tmp_path / "x.jpg")
    with anyio.move_on_after(0.1) as scope:
        await received.finish()
    assert scope.cancelled_caught
    gate.set()
    await wait_until(lambda: disk.queued_bytes == 0)
    await anyio.sleep(0.05)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_a_reused_buffer_is_copied_before_it_is_queued(
    tmp_path: Path, disk: DiskThread, gate: threading.Event
) -> None:
    """A transport that refills one buffer for every chunk still gets every chunk written."""
    buffer = bytearray(b"first")
    view = memoryview(bytearray(b"third"))
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(buffer)
    buffer[:] = b"secnd"
    file.write(buffer)
    file.write(view)
    view[:] = b"XXXXX"
    gate.set()
    await file.close()
    assert (tmp_path / "x").read_bytes() == b"firstsecndthird"


@pytest.mark.anyio
async def test_a_disk_error_stops_further_writes_at_once(tmp_path: Path, disk: DiskThread) -> None:
    file = BackgroundFile(tmp_path / "missing-folder" / "x", disk)
    file.write(b"first")
    await wait_until(lambda: disk.queued_bytes == 0)
    with pytest.raises(FileNotFoundError):
        file.write(b"second")
    file.abort()


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_broken_batch_fails_its_files_and_the_thread_lives_on(
    tmp_path: Path, disk: DiskThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should anything escape the per-file handling, the waiting writers get the error
    instead of waiting forever, and the thread serves the next file."""
    real = _diskwriter._write_batch
    broken = True

    def once_broken(batch: list[tuple[BackgroundFile, object]]) -> int:
        nonlocal broken
        if broken:
            broken = False
            raise RuntimeError("broken batch")
        return real(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(_diskwriter, "_write_batch", once_broken)
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"data")
    with anyio.fail_after(45), pytest.raises(RuntimeError, match="broken batch"):
        await file.close()
    file.abort()
    after = BackgroundFile(tmp_path / "y", disk)
    after.write(b"fine")
    with anyio.fail_after(45):
        await after.close()
    assert (tmp_path / "y").read_bytes() == b"fine"
    await wait_until(lambda: disk.queued_bytes == 0)


@pytest.mark.anyio
async def test_a_broken_batch_that_holds_a_close_wakes_its_closer(
    tmp_path: Path, disk: DiskThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The close itself in the broken round (an empty file: nothing else of it is queued)."""
    real = _diskwriter._write_batch
    file = BackgroundFile(tmp_path / "x", disk)
    broke: list[list[object]] = []

    def broken_with_the_close(batch: list[tuple[BackgroundFile, object]]) -> int:
        if not broke and any(f is file for f, _ in batch):
            broke.append([d for _, d in batch])
            raise RuntimeError("broken batch")
        return real(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(_diskwriter, "_write_batch", broken_with_the_close)
    with anyio.fail_after(10), pytest.raises(RuntimeError, match="broken batch"):
        await file.close()
    assert broke == [[_diskwriter._CLOSE]]
    file.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_the_thread_is_woken_by_close_and_by_a_drain_not_only_by_bulk(
    tmp_path: Path,
) -> None:
    """Small writes wait for more before the thread wakes; close and drain wake it at once."""
    disk = DiskThread(high_water=1000, low_water=10, idle_seconds=30)
    first = BackgroundFile(tmp_path / "first", disk)
    with anyio.fail_after(45):
        await first.close()  # the thread has started, done this, and now waits
    await wait_until(lambda: disk._waiting)
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"a" * 100)  # under the wake-up amount (500 here)
    await anyio.sleep(0.05)
    assert disk.queued_bytes == 100  # not written yet
    with anyio.fail_after(45):
        await file.drain()  # over low water: the drain wakes the thread
    assert disk.queued_bytes <= disk.low_water
    file.write(b"b" * 10)
    with anyio.fail_after(45):
        await file.close()  # and so does close
    assert (tmp_path / "x").read_bytes() == b"a" * 100 + b"b" * 10
    assert (tmp_path / "first").read_bytes() == b""
    gone = BackgroundFile(tmp_path / "y", disk)
    gone.write(b"c")
    gone.abort()
    await wait_until(lambda: disk.queued_bytes == 0)


def test_a_thread_not_yet_started_does_not_say_it_waits() -> None:
    """`_waiting` is false until the thread has started and gone to sleep: the tests that
    wait for it would otherwise go on before the thread is there."""
    disk = DiskThread(idle_seconds=0.2)
    assert disk._waiting is False


@pytest.mark.anyio
async def test_the_thread_says_it_waits_only_while_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_waiting`, which the tests above rely on to know the thread is asleep, is false again
    as soon as it wakes: here while it is held in a write."""
    entered, release = threading.Event(), threading.Event()
    real = _diskwriter._write

    def held(fd: int, data: bytes | memoryview) -> int:
        entered.set()
        release.wait(10)
        return real(fd, data)

    monkeypatch.setattr(_diskwriter, "_write", held)
    monkeypatch.setattr(_diskwriter, "_writev", None)
    disk = DiskThread(high_water=2, low_water=0, idle_seconds=30)
    first = BackgroundFile(tmp_path / "first", disk)
    with anyio.fail_after(45):
        await first.close()  # the thread has started, done this, and now waits
    await wait_until(lambda: disk._waiting)
    file = BackgroundFile(tmp_path / "x", disk)
    try:
        file.write(b"ab")  # the wake-up amount (1 here): wakes it, and it writes
        await wait_until(entered.is_set)
        assert not disk._waiting
    finally:
        release.set()
    with anyio.fail_after(45):
        await file.close()
    assert (tmp_path / "x").read_bytes() == b"ab"


@pytest.mark.anyio
async def test_a_new_file_gets_the_usual_permissions(tmp_path: Path, disk: DiskThread) -> None:
    """rw for all, less the umask, like any file a program makes: never executable."""
    old = os.umask(0)
    try:
        file = BackgroundFile(tmp_path / "x", disk)
        file.write(b"data")
        await file.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o666


@pytest.mark.anyio
async def test_an_empty_file_whose_name_is_taken_fails_its_close(
    tmp_path: Path, disk: DiskThread
) -> None:
    """No chunk: the file is made by close, and close raises when it cannot be."""
    there = tmp_path / "there"
    there.write_bytes(b"keep me")
    file = BackgroundFile(there, disk)
    with pytest.raises(FileExistsError):
        await file.close()
    file.abort()
    await wait_until(lambda: disk.queued_bytes == 0)
    assert there.read_bytes() == b"keep me"


@pytest.mark.anyio
async def test_a_file_that_could_not_be_made_is_not_tried_again_at_close(
    tmp_path: Path, disk: DiskThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x"
    real_open = os.open
    tries: list[str] = []

    def fails_once(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if Path(path) == target:
            tries.append("open")
            if len(tries) == 1:
                raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", fails_once)
    file = BackgroundFile(target, disk)
    file.write(b"data")
    with pytest.raises(OSError, match="Too many open files"):
        await file.close()
    assert tries == ["open"]
    assert not target.exists()
    file.abort()


@pytest.mark.anyio
async def test_a_drain_ends_as_soon_as_exactly_low_water_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = threading.Event(), threading.Event()
    entered: list[int] = []
    real = _diskwriter._write

    def held(fd: int, data: bytes | memoryview) -> int:
        entered.append(len(data))
        (first if len(entered) == 1 else second).wait(30)
        return real(fd, data)

    monkeypatch.setattr(_diskwriter, "_write", held)
    monkeypatch.setattr(_diskwriter, "_writev", None)
    disk = DiskThread(high_water=10, low_water=4, idle_seconds=0.2)
    file = BackgroundFile(tmp_path / "x", disk)
    try:
        file.write(b"a" * 10)  # the thread takes it and is held in its write
        await wait_until(lambda: len(entered) == 1)
        file.write(b"b" * 4)  # 14 queued, over the bound; this one is held when written
        assert file.must_drain
        async with anyio.create_task_group() as group:
            group.start_soon(file.drain)
            await wait_until(lambda: bool(disk._below_low_water._waiters))  # type: ignore[attr-defined]
            first.set()  # the 10 bytes are written: exactly low water (4) is left
            with anyio.fail_after(10):  # long before the held write is let go
                await wait_until(lambda: not disk._below_low_water._waiters)  # type: ignore[attr-defined]
        assert disk.queued_bytes == 4
    finally:
        first.set()
        second.set()
    await file.close()
    assert (tmp_path / "x").read_bytes() == b"a" * 10 + b"b" * 4
    await wait_until(lambda: disk.queued_bytes == 0)


def test_one_chunk_takes_one_write_and_several_one_vectored_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _diskwriter._writev is None:  # pragma: no cover - every POSIX system has writev
        pytest.fail("no os.writev here")
    real_writev = _diskwriter._writev
    calls: list[tuple[str, int]] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        calls.append(("write", len(data)))
        return os.write(fd, data)

    def writev(fd: int, chunks: list[bytes]) -> int:
        calls.append(("writev", len(chunks)))
        return real_writev(fd, chunks)

    monkeypatch.setattr(_diskwriter, "_write", write)
    monkeypatch.setattr(_diskwriter, "_writev", writev)
    fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        _diskwriter._write_all(fd, [b"ab"])
        _diskwriter._write_all(fd, [b"cd", b"e"])
    finally:
        os.close(fd)
    assert calls == [("write", 2), ("writev", 2)]
    assert (tmp_path / "x").read_bytes() == b"abcde"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_close_whose_event_loop_has_ended_does_not_kill_the_thread(
    tmp_path: Path, gate: threading.Event, backend: str
) -> None:
    """The thread finishes a file whose closer gave up and whose event loop is gone since:
    waking that loop fails, and the thread lives on for the next loop's files."""
    disk = DiskThread(idle_seconds=5)

    async def abandoned() -> None:
        file = BackgroundFile(tmp_path / "abandoned", disk)
        file.write(b"x")  # the thread is held in its write until the loop has ended
        with anyio.move_on_after(0.1):
            await file.close()

    async def later() -> None:
        file = BackgroundFile(tmp_path / "later", disk)
        file.write(b"y")
        with anyio.fail_after(10):
            await file.close()

    anyio.run(abandoned, backend=backend)
    gate.set()
    anyio.run(later, backend=backend)
    assert (tmp_path / "later").read_bytes() == b"y"
    assert (tmp_path / "abandoned").read_bytes() == b"x"


@pytest.mark.anyio
async def test_an_aborted_file_is_closed_by_the_thread(tmp_path: Path, disk: DiskThread) -> None:
    """Its descriptor is released, not only its name deleted: a long harvest that aborts
    many downloads must not run out of descriptors."""
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"data")
    await wait_until(lambda: file._fd is not None)
    fd = file._fd
    assert fd is not None
    file.abort()
    assert not (tmp_path / "x").exists()
    with anyio.fail_after(10):
        while file._fd is not None:  # noqa: ASYNC110 - the thread releases it
            await anyio.sleep(0.005)
    with pytest.raises(OSError, match="Bad file descriptor") as closed:
        os.fstat(fd)
    assert closed.value.errno == errno.EBADF


@pytest.mark.anyio
async def test_a_failing_close_of_an_aborted_file_harms_no_other_file(
    tmp_path: Path, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error closing an aborted file's descriptor (EIO) is the aborted file's alone: the
    next file in the same round is written and closed as if nothing happened."""
    disk = DiskThread(idle_seconds=0.2)
    aborted = BackgroundFile(tmp_path / "aborted", disk)
    aborted.write(b"a")  # created, then held in its write by the gate
    await wait_until(lambda: aborted._fd is not None)
    broken = aborted._fd
    real_close = os.close
    failed: list[int] = []

    def close(fd: int) -> None:
        real_close(fd)
        if fd == broken and not failed:  # once: the number is free for the next file then
            failed.append(fd)
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "close", close)
    aborted.abort()
    other = BackgroundFile(tmp_path / "other", disk)
    other.write(b"b")
    async with anyio.create_task_group() as group:
        group.start_soon(other.close)  # queued with the abort, in the round after the gate
        await wait_until(lambda: disk._items and disk._items[-1][1] is _diskwriter._CLOSE)
        gate.set()
    assert failed == [broken]
    assert (tmp_path / "other").read_bytes() == b"b"
    assert not (tmp_path / "aborted").exists()


@pytest.mark.anyio
async def test_chunks_queued_before_a_write_failed_are_not_written_after_it(
    tmp_path: Path, disk: DiskThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    calls: list[bytes] = []

    def fails(fd: int, data: bytes | memoryview) -> int:
        calls.append(bytes(data))
        release.wait(10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_diskwriter, "_write", fails)
    monkeypatch.setattr(_diskwriter, "_writev", None)
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"1")  # the thread is held in its write
    await wait_until(lambda: calls == [b"1"])
    file.write(b"2")  # queued before the write fails: a round of its own
    release.set()
    with pytest.raises(OSError, match="No space"):
        await file.close()
    assert calls == [b"1"]
    file.abort()


@pytest.mark.anyio
async def test_a_file_in_a_folder_is_made_through_the_folder_even_once_it_is_swapped_for_a_link(
    tmp_path: Path, disk: DiskThread
) -> None:
    """Given an open folder, the file is made in that folder (through its descriptor), never
    through its path: a folder swapped for a link meanwhile is not written through."""
    (tmp_path / "dest").mkdir()
    (tmp_path / "elsewhere").mkdir()
    folder = SafeFolder.open(tmp_path / "dest")
    file = BackgroundFile("x.part", disk, folder=folder)
    assert file.folder is folder
    assert (file.path, file.name) == (tmp_path / "dest" / "x.part", "x.part")
    (tmp_path / "dest").rename(tmp_path / "moved")
    (tmp_path / "dest").symlink_to(tmp_path / "elsewhere")
    file.write(b"data")
    await file.close()
    assert (tmp_path / "moved" / "x.part").read_bytes() == b"data"
    assert list((tmp_path / "elsewhere").iterdir()) == []
    gone = BackgroundFile("y.part", disk, folder=folder)
    gone.write(b"data")
    await wait_until(lambda: (tmp_path / "moved" / "y.part").exists())
    gone.abort()
    assert sorted(p.name for p in (tmp_path / "moved").iterdir()) == ["x.part"]
    with pytest.raises(ValueError, match="^write to a closed file: ") as refused:
        gone.write(b"more")
    assert str(refused.value) == f"write to a closed file: {tmp_path / 'dest' / 'y.part'}"


# -- exact messages and boundaries (from the disk writer's mutants) ----------------------------


@pytest.mark.anyio
async def test_misuse_is_refused_naming_the_file(tmp_path: Path, disk: DiskThread) -> None:
    file = BackgroundFile(tmp_path / "x", disk)
    await file.close()
    with pytest.raises(ValueError, match="^the file is already closed: ") as closing:
        await file.close()
    assert str(closing.value) == f"the file is already closed: {tmp_path / 'x'}"
    with pytest.raises(ValueError, match="^write to a closed file: ") as writing:
        file.write(b"x")
    assert str(writing.value) == f"write to a closed file: {tmp_path / 'x'}"
    aborted = BackgroundFile(tmp_path / "y", disk)
    aborted.abort()
    with pytest.raises(ValueError, match="^write to a closed file: "):
        aborted.write(b"y")


def test_the_water_marks_are_checked_exactly() -> None:
    for high, low in [(10, 20), (10, -1)]:
        with pytest.raises(ValueError, match="^need ") as excinfo:
            DiskThread(high_water=high, low_water=low)
        assert str(excinfo.value) == "need 0 <= low_water <= high_water"
    same = DiskThread(high_water=10, low_water=10)  # equal marks, and zero, are allowed
    assert (same.high_water, same.low_water, same.idle_seconds) == (10, 10, 10.0)
    assert DiskThread(high_water=0, low_water=0).low_water == 0
    assert repr(_diskwriter._CLOSE) == "<close>" and repr(_diskwriter._ABORT) == "<abort>"


def test_a_queue_marker_made_now_says_what_it_is() -> None:
    # The module's own markers were made at import, before a mutant of _Marker is active.
    assert repr(_diskwriter._Marker("close")) == "<close>"


def test_the_thread_is_woken_every_half_high_water_at_most_a_mebibyte() -> None:
    assert DiskThread()._wake_bytes == 1 << 20
    assert DiskThread(high_water=1000, low_water=0)._wake_bytes == 500
    assert DiskThread(high_water=1, low_water=0)._wake_bytes == 1
    odd = DiskThread(high_water=1001, low_water=0)._wake_bytes  # half, rounded down: a count
    assert type(odd) is int and odd == 500


@pytest.mark.anyio
async def test_the_thread_is_woken_by_exactly_the_wake_up_amount_counted_from_zero(
    tmp_path: Path,
) -> None:
    """The first bytes queued count towards a wake-up like any others, and the thread wakes
    when the bytes queued since its last wake-up reach the amount (half of 65: 32), not later."""
    disk = DiskThread(high_water=65, low_water=0, idle_seconds=30)
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"a" * 31)  # starts the thread, which writes it and waits: 31 since a wake-up
    await wait_until(lambda: disk._waiting and disk.queued_bytes == 0)
    file.write(b"b")  # the 32nd: wakes it
    with anyio.fail_after(10):  # long before the thread would look again by itself (30 s)
        while disk.queued_bytes:  # noqa: ASYNC110
            await anyio.sleep(0.005)
    await wait_until(lambda: disk._waiting)
    file.write(b"c" * 31)  # counted from zero again since that wake-up: 31, it sleeps on
    await anyio.sleep(0.3)
    assert disk.queued_bytes == 31
    file.write(b"d")  # the 32nd since
    with anyio.fail_after(10):
        while disk.queued_bytes:  # noqa: ASYNC110
            await anyio.sleep(0.005)
    await file.close()
    assert (tmp_path / "x").read_bytes() == b"a" * 31 + b"b" + b"c" * 31 + b"d"


@pytest.mark.anyio
async def test_over_high_water_means_more_than_it(tmp_path: Path, gate: threading.Event) -> None:
    disk = DiskThread(high_water=10, low_water=4, idle_seconds=0.2)
    file = BackgroundFile(tmp_path / "x", disk)
    try:
        file.write(b"0123456789")
        assert disk.queued_bytes == 10
        assert disk.over_high_water is False and file.must_drain is False
        file.write(b"a")
        assert disk.over_high_water is True and file.must_drain is True
    finally:
        gate.set()
    await file.close()
    assert (tmp_path / "x").read_bytes() == b"0123456789a"
    await wait_until(lambda: disk.queued_bytes == 0)
    assert disk.over_high_water is False


@pytest.mark.anyio
async def test_a_drain_at_the_low_water_mark_returns_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = DiskThread(high_water=10, low_water=4)
    disk._queued_bytes = 4  # as if 4 bytes were queued

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("drain waited in a worker thread")

    monkeypatch.setattr(_diskwriter.anyio.to_thread, "run_sync", never)
    await disk.drain()


@pytest.mark.anyio
async def test_a_drain_to_a_low_water_mark_of_zero_ends_once_all_is_written(
    tmp_path: Path, gate: threading.Event
) -> None:
    """low_water=0: a writer over the bound waits until nothing at all is queued, no longer."""
    disk = DiskThread(high_water=10, low_water=0, idle_seconds=0.2)
    file = BackgroundFile(tmp_path / "x", disk)
    file.write(b"y" * 20)
    assert file.must_drain
    gate.set()
    with anyio.fail_after(10):
        await file.drain()
    assert disk.queued_bytes == 0
    await file.close()
    assert (tmp_path / "x").read_bytes() == b"y" * 20
    await wait_until(lambda: not disk.running)
