"""Streaming, verified, atomic downloads (`pictures.download`, `download_zip`) over real sockets."""

from __future__ import annotations

import errno
import gc
import gzip
import os
import random
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _servers as raw
import anyio
import httpx
import pytest
import respx

from zigziik import (
    DecodeError,
    IncompleteBodyError,
    IntegrityError,
    RetryPolicy,
    TransportError,
    ZignaClient,
    download,
)
from zigziik._filenames import picture_file_name
from zigziik._safedir import SafeFolder
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve
from zigziik.zigna.models import Picture

FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.002, jitter=False)


_BASES: dict[int, str] = {}


@pytest.fixture
def fake() -> Iterator[FakeZigna]:
    fake = FakeZigna(orders=6, picture_size=(600_000, 900_000), pictures_per_order=(3, 4))
    with serve(fake.app) as origin:
        _BASES[id(fake)] = origin + "/v2"
        yield fake
        del _BASES[id(fake)]


def client(fake: FakeZigna, **options: Any) -> ZignaClient:
    """A client of the served ``fake`` (quick retries unless told otherwise)."""
    options.setdefault("retry", FAST_RETRY)
    return ZignaClient(DEMO_API_KEY, base_url=_BASES[id(fake)], **options)


def pictures_of(fake: FakeZigna) -> list[tuple[str, Picture]]:
    found = []
    for order_id in fake.order_ids:
        for item in fake.pictures(order_id):
            picture = Picture(
                picture_id=item["pictureID"],
                original_file_name=item["originalFileName"],
                size=item["size"],
            )
            found.append((order_id, picture))
    return found


def a_picture(fake: FakeZigna, kind: str = "image/jpeg") -> tuple[str, Picture]:
    for order_id, picture in pictures_of(fake):
        assert picture.picture_id is not None
        if fake.picture_content_type(order_id, picture.picture_id) == kind:
            return order_id, picture
    raise AssertionError(f"no {kind} picture")


def everything(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize(
    ("kind", "extension"),
    [
        ("image/jpeg", ".jpg"),
        ("application/pdf", ".pdf"),
        ("application/x-shockwave-flash", ".swf"),
    ],
)
async def test_download_is_byte_exact(
    fake: FakeZigna, tmp_path: Path, kind: str, extension: str
) -> None:
    order_id, picture = a_picture(fake, kind)
    assert picture.picture_id is not None
    async with client(fake) as zigna:
        path = await zigna.pictures.download(order_id, picture, tmp_path)
    assert isinstance(path, Path)
    assert path.parent == tmp_path
    assert path.suffix == extension
    assert path.name == picture_file_name(picture.picture_id, picture.original_file_name, kind)
    assert path.read_bytes() == fake.picture_bytes(order_id, picture.picture_id)
    assert everything(tmp_path) == [path.name]


@pytest.mark.anyio
async def test_download_by_bare_id_names_the_file_from_its_type(
    fake: FakeZigna, tmp_path: Path
) -> None:
    order_id, picture = a_picture(fake, "application/pdf")
    assert picture.picture_id is not None
    async with client(fake) as zigna:
        path = await zigna.pictures.download(order_id, picture.picture_id, tmp_path)
    assert path.name == f"{picture.picture_id}.pdf"
    assert path.read_bytes() == fake.picture_bytes(order_id, picture.picture_id)
    assert fake.calls == 1


@pytest.mark.anyio
async def test_progress_reports_every_byte(fake: FakeZigna, tmp_path: Path) -> None:
    order_id, picture = a_picture(fake)
    seen: list[int] = []
    async with client(fake) as zigna:
        await zigna.pictures.download(order_id, picture, tmp_path, progress=seen.append)
    assert all(type(n) is int and n > 0 for n in seen)
    assert sum(seen) == picture.size
    assert len(seen) > 1  # streamed in chunks, not in one piece


@pytest.mark.anyio
async def test_a_complete_file_is_skipped_without_a_call(fake: FakeZigna, tmp_path: Path) -> None:
    order_id, picture = a_picture(fake)
    async with client(fake) as zigna:
        first = await zigna.pictures.download(order_id, picture, tmp_path)
        fake.reset_stats()
        again = await zigna.pictures.download(order_id, picture, tmp_path)
    assert again == first
    assert fake.calls == 0


@pytest.mark.anyio
async def test_a_file_of_the_wrong_size_is_replaced(fake: FakeZigna, tmp_path: Path) -> None:
    order_id, picture = a_picture(fake)
    assert picture.picture_id is not None
    async with client(fake) as zigna:
        path = await zigna.pictures.download(order_id, picture, tmp_path)
        path.write_bytes(b"half a picture")
        fake.reset_stats()
        again = await zigna.pictures.download(order_id, picture, tmp_path)
    assert again == path
    assert fake.calls == 1
    assert path.read_bytes() == fake.picture_bytes(order_id, picture.picture_id)


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("truncate", IncompleteBodyError),
        ("reset", TransportError),
        ("longer", IncompleteBodyError),
        ("shorter", IntegrityError),
    ],
)
async def test_a_broken_body_leaves_no_file(
    fake: FakeZigna, tmp_path: Path, fault: str, error: type[Exception]
) -> None:
    order_id, picture = a_picture(fake)
    match = f"/pictures/{picture.picture_id}"
    attempts = FAST_RETRY.max_attempts
    if fault == "truncate":
        fake.faults.truncate_next(attempts, match=match)
    elif fault == "reset":
        fake.faults.reset_next(attempts, match=match)
    elif fault == "longer":
        fake.faults.wrong_length_next(attempts, match=match, delta=100)
    else:
        fake.faults.wrong_length_next(attempts, match=match, delta=-100)
    async with client(fake) as zigna:
        with pytest.raises(error) as caught:
            await zigna.pictures.download(order_id, picture, tmp_path)
    assert isinstance(caught.value, (IntegrityError, TransportError))
    assert everything(tmp_path) == []
    # A short but well-formed body is an integrity error at once; broken ones are retried.
    assert fake.calls == (1 if fault == "shorter" else attempts)


@pytest.mark.anyio
async def test_a_body_broken_once_is_retried_into_a_whole_file(
    fake: FakeZigna, tmp_path: Path
) -> None:
    order_id, picture = a_picture(fake)
    assert picture.picture_id is not None
    fake.faults.truncate_next(1, match=f"/pictures/{picture.picture_id}")
    fake.faults.reset_next(1, match=f"/pictures/{picture.picture_id}")
    async with client(fake) as zigna:
        path = await zigna.pictures.download(order_id, picture, tmp_path)
    assert path.read_bytes() == fake.picture_bytes(order_id, picture.picture_id)
    assert everything(tmp_path) == [path.name]
    assert fake.calls == 3


@pytest.mark.anyio
async def test_a_listing_size_that_disagrees_is_an_integrity_error(
    fake: FakeZigna, tmp_path: Path
) -> None:
    order_id, picture = a_picture(fake)
    assert picture.size is not None
    wrong = Picture(
        picture_id=picture.picture_id, original_file_name="x.jpg", size=picture.size + 1
    )
    async with client(fake) as zigna:
        with pytest.raises(IntegrityError, match="size"):
            await zigna.pictures.download(order_id, wrong, tmp_path)
    assert everything(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_cancellation_mid_body_leaves_no_file(fake: FakeZigna, tmp_path: Path) -> None:
    order_id, picture = a_picture(fake)
    chunks = 0
    with anyio.CancelScope() as scope:

        def progress(n: int) -> None:
            nonlocal chunks
            chunks += 1
            scope.cancel()

        async with client(fake) as zigna:
            await zigna.pictures.download(order_id, picture, tmp_path, progress=progress)
    assert scope.cancelled_caught
    assert chunks >= 1
    assert everything(tmp_path) == []


@pytest.mark.anyio
async def test_a_stalled_body_times_out_and_leaves_no_file(fake: FakeZigna, tmp_path: Path) -> None:
    order_id, picture = a_picture(fake)
    fake.faults.stall_next(1, match=f"/pictures/{picture.picture_id}", seconds=5)
    async with client(fake, timeout=0.2, retry=RetryPolicy.never()) as zigna:
        with pytest.raises(TransportError, match="timed out"):
            await zigna.pictures.download(order_id, picture, tmp_path)
    assert everything(tmp_path) == []


@pytest.mark.anyio
async def test_zip_download_and_empty_orders(fake: FakeZigna, tmp_path: Path) -> None:
    full = next(o for o in fake.order_ids if fake.pictures(o))
    empty = next(o for o in fake.order_ids if not fake.pictures(o))
    async with client(fake) as zigna:
        path = await zigna.pictures.download_zip(full, tmp_path / "full")
        nothing = await zigna.pictures.download_zip(empty, tmp_path / "empty")
    assert path is not None
    assert path.name == f"{full}.zip"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names == [p["originalFileName"] for p in fake.pictures(full)]
        for item in fake.pictures(full):
            data = archive.read(item["originalFileName"])
            assert data == fake.picture_bytes(full, item["pictureID"])
    assert nothing is None
    assert everything(tmp_path / "empty") == []


@pytest.mark.anyio
async def test_a_truncated_zip_leaves_no_file(fake: FakeZigna, tmp_path: Path) -> None:
    full = next(o for o in fake.order_ids if fake.pictures(o))
    fake.faults.truncate_next(FAST_RETRY.max_attempts, match="/zip")
    async with client(fake) as zigna:
        with pytest.raises(IncompleteBodyError):
            await zigna.pictures.download_zip(full, tmp_path)
    assert everything(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_slow_disk_holds_the_download_back(
    fake: FakeZigna, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With little room for queued bytes, the body waits for the disk and still lands whole."""
    import time

    from zigziik import _diskwriter

    disk = _diskwriter.DiskThread(high_water=64 << 10, low_water=16 << 10, idle_seconds=0.5)
    monkeypatch.setattr(_diskwriter, "default_disk_thread", lambda: disk)
    real = _diskwriter._write
    most = 0

    def slow_write(fd: int, data: bytes | memoryview) -> int:
        nonlocal most
        most = max(most, disk.queued_bytes)
        time.sleep(0.002)
        return real(fd, data)

    monkeypatch.setattr(_diskwriter, "_write", slow_write)
    drains = 0
    real_drain = disk.drain

    async def counted_drain() -> None:
        nonlocal drains
        drains += 1
        await real_drain()

    monkeypatch.setattr(disk, "drain", counted_drain)
    order_id, picture = a_picture(fake)
    assert picture.picture_id is not None and picture.size is not None
    async with client(fake) as zigna:
        path = await zigna.pictures.download(order_id, picture, tmp_path)
    assert path.read_bytes() == fake.picture_bytes(order_id, picture.picture_id)
    # Bounded by the high-water mark plus the chunk that crossed it (at most 1 MiB).
    assert most <= disk.high_water + (1 << 20)
    assert drains >= 1
    assert everything(tmp_path) == [path.name]


@pytest.mark.anyio
async def test_a_full_disk_fails_the_download_and_leaves_nothing(
    fake: FakeZigna, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zigziik import _diskwriter

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_diskwriter, "_write", full)
    monkeypatch.setattr(_diskwriter, "_writev", full)
    order_id, picture = a_picture(fake)
    async with client(fake) as zigna:
        with pytest.raises(OSError, match="No space"):
            await zigna.pictures.download(order_id, picture, tmp_path)
    assert everything(tmp_path) == []


# -- the pure helpers, without HTTP (from the download module's mutants) ------------------------


def response_with(**headers: str) -> httpx.Response:
    return httpx.Response(200, headers=headers, request=httpx.Request("GET", "http://t/x"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12),
        (" 12 ", 12),
        ("0", 0),
        ("-1", None),
        ("+5", None),
        ("1e3", None),
        ("12, 12", None),
        ("", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits: isdigit() says yes, int() would take them
    ],
)
def test_content_length_is_a_single_non_negative_ascii_integer(
    value: str, expected: int | None
) -> None:
    headers = [(b"Content-Length", value.encode())]
    response = httpx.Response(200, headers=headers, request=httpx.Request("GET", "http://t/x"))
    assert download.content_length(response) == expected
    assert download.content_length(response_with()) is None


def test_content_type_is_the_header_as_sent() -> None:
    assert download.content_type(response_with(**{"Content-Type": "image/JPEG; q=1"})) == (
        "image/JPEG; q=1"
    )
    assert download.content_type(response_with()) is None


def test_ensure_folder_creates_missing_parents_and_refuses_a_file(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "c"
    assert download.ensure_folder(str(nested)) == nested and nested.is_dir()
    assert download.ensure_folder(nested) == nested
    (tmp_path / "file").write_bytes(b"keep")
    with pytest.raises(NotADirectoryError) as excinfo:
        download.ensure_folder(tmp_path / "file")
    assert str(excinfo.value) == f"dest_dir exists and is not a folder: {tmp_path / 'file'}"
    assert (tmp_path / "file").read_bytes() == b"keep"


def test_ensure_folder_accepts_a_folder_another_process_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shards starting at once: both find dest_dir missing, one makes it first."""
    target = tmp_path / "dest"
    real_stat = os.stat
    raced: list[bool] = []

    def not_yet(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if Path(path) == target and not raced:
            raced.append(True)
            os.mkdir(target)  # the other process, between this check and our mkdir
            raise FileNotFoundError(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", not_yet)
    assert download.ensure_folder(target) == target
    monkeypatch.undo()
    assert target.is_dir()


def test_is_complete_file_wants_a_regular_file_of_exactly_the_size(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    (tmp_path / "dir").mkdir()
    assert download.is_complete_file(tmp_path / "f", 5) is True
    assert download.is_complete_file(tmp_path / "f", 4) is False
    assert download.is_complete_file(tmp_path / "link", 5) is False
    assert download.is_complete_file(tmp_path / "dir", (tmp_path / "dir").lstat().st_size) is False
    assert download.is_complete_file(tmp_path / "missing", 0) is False


def test_an_existing_complete_file_is_found_by_name_or_by_stem_and_size(tmp_path: Path) -> None:
    (tmp_path / "5-IMG.jpg").write_bytes(b"x" * 10)
    (tmp_path / "6-scan.pdf").write_bytes(b"x" * 3)
    (tmp_path / "6-scan2.pdf").write_bytes(b"x" * 7)
    (tmp_path / "7-x.jpg").symlink_to(tmp_path / "5-IMG.jpg")
    find = download.existing_complete_file
    assert find(tmp_path, "5-IMG.jpg", 10) == tmp_path / "5-IMG.jpg"
    assert find(tmp_path, "5-IMG.jpg", 11) is None
    assert find(tmp_path, "5-IMG.jpg", None) is None  # no size known: never skipped
    assert find(tmp_path, "5-IMG", 10) == tmp_path / "5-IMG.jpg"  # any extension
    assert find(tmp_path, "6-scan", 7) is None  # "6-scan2.pdf" is another picture's
    assert find(tmp_path, "6-scan", 3) == tmp_path / "6-scan.pdf"
    assert find(tmp_path, "7-x", 10) is None  # a link is never a complete file
    assert find(tmp_path / "missing", "5-IMG", 10) is None


def test_a_pictures_name_waits_for_the_responses_type() -> None:
    name = download.picture_name_for(42, "Facade")
    assert name("image/jpeg") == picture_file_name(42, "Facade", "image/jpeg")
    assert name("application/pdf").endswith(".pdf")
    assert name(None) == picture_file_name(42, "Facade", None)
    made = download.picture_name_for(42, "Facade.png", known="42-Facade.png")
    assert made("application/pdf") == made(None) == "42-Facade.png"  # made once, kept


def new_file(path: Path, chunks: list[bytes]) -> Any:
    """`download._write_new_file` of ``path``, through its folder's descriptor."""
    return download._write_new_file(SafeFolder.open(path.parent), path.name, chunks)


@pytest.mark.parametrize("vectored", [True, False])
def test_a_small_body_is_written_whole_in_one_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vectored: bool
) -> None:
    if not vectored:
        monkeypatch.setattr(download, "_writev", None)
    chunks = [b"abc", b"", b"defgh", b"i" * 5000]
    old = os.umask(0)
    try:
        written = new_file(tmp_path / "new.part", chunks)
    finally:
        os.umask(old)
    assert written.path == tmp_path / "new.part"
    assert written.path.read_bytes() == b"".join(chunks)
    assert stat.S_IMODE(written.path.stat().st_mode) == 0o666
    (path,) = [new_file(tmp_path / "one.part", [b"only"]).path]
    assert path.read_bytes() == b"only"


def test_short_system_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write, real_writev = os.write, os.writev

    def short_write(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data)[:3])

    def short_writev(fd: int, chunks: list[bytes]) -> int:
        return real_writev(fd, [chunks[0][:2]])

    monkeypatch.setattr(os, "write", short_write)
    monkeypatch.setattr(download, "_writev", short_writev)
    several = new_file(tmp_path / "a.part", [b"hello ", b"world", b"!"])
    assert several.path.read_bytes() == b"hello world!"
    one = new_file(tmp_path / "b.part", [b"single chunk"])
    assert one.path.read_bytes() == b"single chunk"


def test_a_small_body_of_one_chunk_takes_one_write_and_of_several_one_vectored_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write, real_writev = os.write, os.writev
    calls: list[tuple[str, int]] = []

    def write(fd: int, data: Any) -> int:
        calls.append(("write", len(data)))
        return real_write(fd, data)

    def writev(fd: int, chunks: list[bytes]) -> int:
        calls.append(("writev", len(chunks)))
        return real_writev(fd, chunks)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(download, "_writev", writev)
    new_file(tmp_path / "one.part", [b"ab"])
    new_file(tmp_path / "two.part", [b"cd", b"e"])
    assert calls == [("write", 2), ("writev", 2)]
    assert (tmp_path / "two.part").read_bytes() == b"cde"


def test_a_failing_small_write_leaves_no_file_and_never_touches_an_existing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "there.part").write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        new_file(tmp_path / "there.part", [b"mine"])
    assert (tmp_path / "there.part").read_bytes() == b"theirs"

    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr(download, "_writev", full)
    for chunks in ([b"one"], [b"one", b"two"]):
        with pytest.raises(OSError, match="No space"):
            new_file(tmp_path / "new.part", chunks)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["there.part"]


def test_a_written_small_file_is_aborted_once(tmp_path: Path) -> None:
    written = new_file(tmp_path / "x.part", [b"x"])
    written.abort()
    assert not written.path.exists()
    written.path.write_bytes(b"someone else's, later")
    written.abort()  # idempotent: a second abort deletes nothing
    assert written.path.read_bytes() == b"someone else's, later"


@pytest.mark.anyio
async def test_a_received_small_file_is_moved_or_deleted(tmp_path: Path) -> None:
    written = new_file(tmp_path / "a.part", [b"data"])
    received = download.ReceivedFile(written, tmp_path / "a.jpg")
    assert await received.finish() == tmp_path / "a.jpg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]
    (tmp_path / "b.jpg").mkdir()  # the final name is taken by a folder: the move fails
    blocked = download.ReceivedFile(new_file(tmp_path / "b.part", [b"data"]), tmp_path / "b.jpg")
    with pytest.raises(IsADirectoryError):
        await blocked.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg"]
    dropped = download.ReceivedFile(new_file(tmp_path / "c.part", [b"data"]), tmp_path / "c.jpg")
    del dropped
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg"]
    kept = download.ReceivedFile(new_file(tmp_path / "d.part", [b"data"]), tmp_path / "d.jpg")
    await kept.finish()
    del kept
    gc.collect()  # a finished file is left alone when collected
    assert (tmp_path / "d.jpg").read_bytes() == b"data"


# -- what a failed download says -------------------------------------------------------------

SMALL_BODY = bytes(range(256)) * 40  # 10,240 bytes: written whole once received
BIG_BODY = bytes(range(256)) * 1600  # 409,600 bytes: streamed to the disk thread


def sized(body: bytes, extra: int = 0) -> Picture:
    return Picture(picture_id=7, original_file_name="a.jpg", size=len(body) + extra)


@pytest.mark.anyio
@pytest.mark.parametrize("body", [SMALL_BODY, BIG_BODY], ids=["small", "big"])
@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        (
            "cut",
            IncompleteBodyError,
            "the connection ended after {cut} of {length} bytes (Content-Length)",
        ),
        (
            "long",
            IntegrityError,
            "received {short} bytes, the picture's size is {length}; not saved as 7-a.jpg",
        ),
        (
            "size",
            IntegrityError,
            "received {length} bytes, the picture's size is {more}; not saved as 7-a.jpg",
        ),
        ("204", DecodeError, "the server answered 204 No Content where a file was expected"),
    ],
)
async def test_a_failed_download_says_what_went_wrong_in_full(
    tmp_path: Path, body: bytes, case: str, error: type[Exception], message: str
) -> None:
    """The reason a user reads, whole, over a real socket (small and streamed bodies)."""
    cut = len(body) // 4
    behaviour, picture = {
        "cut": (raw.short_body(body[:cut], declared=len(body)), 7),
        "long": (raw.long_body(body, declared=len(body) - 100), sized(body)),
        "size": (raw.respond(200, body, content_type="image/jpeg"), sized(body, 1)),
        "204": (raw.respond(204), 7),
    }[case]
    with raw.RawServer(behaviour) as server:
        async with ZignaClient(
            DEMO_API_KEY, base_url=server.origin + "/v2", retry=RetryPolicy(max_attempts=1)
        ) as zigna:
            with pytest.raises(error) as caught:
                await zigna.pictures.download("1", picture, tmp_path)
    expected = message.format(cut=cut, length=len(body), short=len(body) - 100, more=len(body) + 1)
    assert str(caught.value) == f"GET {server.origin}/v2/orders/1/pictures/7: {expected}"
    assert everything(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("body", [SMALL_BODY, BIG_BODY], ids=["small", "big"])
@pytest.mark.parametrize("declared", [-100, 100], ids=["short", "long"])
async def test_a_body_that_is_not_its_content_length_through_a_lax_transport_is_refused(
    tmp_path: Path, body: bytes, declared: int
) -> None:
    """A caller's transport that does not enforce the framing (a mock, a proxy's): the byte
    count is still checked against Content-Length, and the reason says both."""
    length = len(body) + declared
    with respx.mock(base_url="https://api.zigna.test/v2", using="httpcore") as router:
        router.get("/orders/1/pictures/7").respond(
            200, content=body, headers={"Content-Type": "image/jpeg", "Content-Length": str(length)}
        )
        async with (
            httpx.AsyncClient() as http,
            ZignaClient(
                DEMO_API_KEY,
                base_url="https://api.zigna.test/v2",
                http_client=http,
                retry=RetryPolicy(max_attempts=1),
            ) as zigna,
        ):
            with pytest.raises(IncompleteBodyError) as caught:
                await zigna.pictures.download("1", 7, tmp_path)
    assert str(caught.value) == (
        f"GET https://api.zigna.test/v2/orders/1/pictures/7: received {len(body)} bytes, "
        f"Content-Length said {length}"
    )
    assert everything(tmp_path) == []


def in_two_pieces(body: bytes, **headers: str) -> raw.Behaviour:
    """``body`` (as it goes on the wire) in two writes, the second after a pause."""

    async def behaviour(connection: raw.Connection, request: raw.RawRequest) -> None:
        fields = [("Content-Length", str(len(body))), *headers.items()]
        await connection.send(raw.head(200, fields) + body[: len(body) // 2])
        await anyio.sleep(0.2)
        await connection.send(body[len(body) // 2 :])

    return behaviour


@pytest.mark.anyio
@pytest.mark.parametrize("size", [100_000, 600_000], ids=["small", "big"])
@pytest.mark.parametrize("known", [True, False], ids=["sized", "bare-id"])
async def test_a_gzip_encoded_body_arriving_in_pieces_is_saved_decoded(
    tmp_path: Path, size: int, known: bool
) -> None:
    """``Content-Length`` counts the encoded bytes, the picture's size the decoded ones: a
    compressible body arriving in pieces was cut short after its first (a small body was
    refused as longer than it said, its decoded bytes counted against Content-Length)."""
    # Small: 2 bits a byte, so half of the encoded body decodes to more than all of it says.
    # Big: 4 bits a byte, so that the encoded body is still over INLINE_BYTES.
    alphabet = b"abcd" if size < 500_000 else b"abcdefghijklmnop"
    body = bytes(random.Random(size).choices(alphabet, k=size))
    encoded = gzip.compress(body)
    assert len(encoded) < len(body)  # Content-Length says less than the file's size
    assert (len(encoded) > download.INLINE_BYTES) is (size > 500_000)  # both paths
    picture = sized(body) if known else 7
    behaviour = in_two_pieces(encoded, **{"Content-Type": "image/jpeg", "Content-Encoding": "gzip"})
    with raw.RawServer(behaviour) as server:
        async with ZignaClient(
            DEMO_API_KEY, base_url=server.origin + "/v2", retry=RetryPolicy(max_attempts=1)
        ) as zigna:
            path = await zigna.pictures.download("1", picture, tmp_path)
    assert path.read_bytes() == body
    assert everything(tmp_path) == [path.name]


# -- where a body goes, and when a long one looks for a cancellation -------------------------


class _Chunks:
    """Chunks handed over without ever waiting (no await: as from a full socket buffer);
    ``each`` is called before each one is."""

    def __init__(self, pieces: list[bytes], each: Any = None) -> None:
        self._pieces = iter(pieces)
        self._each = each

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        piece = next(self._pieces, None)
        if piece is None:
            raise StopAsyncIteration
        if self._each is not None:
            self._each()
        return piece


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_body_of_exactly_inline_bytes_is_written_at_once_one_more_by_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body declared at most 256 KiB is complete on disk (under its temporary name) when it
    is received; one byte more goes to the disk thread (held here, so not yet written)."""
    from zigziik import _diskwriter

    held = threading.Event()
    real = _diskwriter._write

    def gated(fd: int, data: Any) -> int:
        held.wait(30)
        return real(fd, data)

    monkeypatch.setattr(_diskwriter, "_write", gated)
    monkeypatch.setattr(_diskwriter, "_writev", None)
    monkeypatch.setattr(_diskwriter, "_default", _diskwriter.DiskThread(idle_seconds=0.2))
    folder = SafeFolder.open(tmp_path)
    try:
        for size, at_once in [(256 * 1024, True), (256 * 1024 + 1, False)]:
            body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            receiver = download.FileReceiver(folder, lambda _type, size=size: f"{size}.jpg")
            received = await receiver._receive(
                "u", {"content-length": str(size)}, _Chunks([body[:1000], body[1000:]]), None
            )
            on_disk = [p for p in tmp_path.iterdir() if p.name.startswith(f".{size}.jpg.")]
            assert (sum(p.stat().st_size for p in on_disk) == size) is at_once, size
            if not at_once:
                held.set()
            assert await received.finish() == tmp_path / f"{size}.jpg"
            assert (tmp_path / f"{size}.jpg").read_bytes() == body
    finally:
        held.set()
    assert everything(tmp_path) == ["262144.jpg", "262145.jpg"]


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize("cancel_after", [0, 9], ids=["before", "after-the-first-check"])
async def test_a_body_that_never_waits_looks_for_a_cancellation_every_8_mib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cancel_after: int
) -> None:
    """Chunks that arrive without the connection ever waiting: the receiver stops for a
    cancellation once 8 MiB have been written since it last looked (at 8 MiB, then 16),
    not at every chunk and not later, and leaves no file."""
    from zigziik import _diskwriter

    monkeypatch.setattr(_diskwriter, "_default", _diskwriter.DiskThread(high_water=1 << 30))
    given = 0

    def count() -> None:
        nonlocal given
        given += 1
        if given == cancel_after + 1:
            scope.cancel()

    receiver = download.FileReceiver(SafeFolder.open(tmp_path), lambda _type: "big.jpg")
    with anyio.CancelScope() as scope:
        await receiver._receive("u", {}, _Chunks([b"m" * (1 << 20)] * 40, count), None)
    assert scope.cancelled_caught
    assert given == (8 if not cancel_after else 16)
    with anyio.fail_after(30):
        while everything(tmp_path):  # noqa: ASYNC110 - the disk thread deletes it
            await anyio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("size", [10_000, 400_000], ids=["small", "big"])
async def test_progress_reports_every_byte_of_a_small_body_too(tmp_path: Path, size: int) -> None:
    seen: list[int] = []
    pieces = [b"p" * 1000] * (size // 1000)
    receiver = download.FileReceiver(
        SafeFolder.open(tmp_path), lambda _type: "p.jpg", progress=seen.append
    )
    received = await receiver._receive("u", {"content-length": str(size)}, _Chunks(pieces), None)
    await received.finish()
    assert seen == [1000] * (size // 1000)
    assert all(type(n) is int for n in seen)


@pytest.mark.anyio
async def test_a_small_body_longer_than_it_said_is_not_read_further(tmp_path: Path) -> None:
    """Refused once past its Content-Length: the rest (a lying server's gigabytes) is
    never read, nor kept."""
    handed: list[int] = []
    pieces = [b"L" * 8] * 1000
    receiver = download.FileReceiver(SafeFolder.open(tmp_path), lambda _type: "l.jpg")
    chunks = _Chunks(pieces, lambda: handed.append(1))
    with pytest.raises(IncompleteBodyError) as caught:
        await receiver._receive("u", {"content-length": "10"}, chunks, None)
    assert str(caught.value) == "GET u: received 16 bytes, Content-Length said 10"
    assert len(handed) == 2
    assert everything(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("headers", [{"content-length": "0"}, {}], ids=["declared", "chunked"])
async def test_an_empty_body_is_an_empty_file(tmp_path: Path, headers: dict[str, str]) -> None:
    receiver = download.FileReceiver(SafeFolder.open(tmp_path), lambda _type: "e.jpg")
    received = await receiver._receive("u", headers, _Chunks([]), None)
    assert await received.finish() == tmp_path / "e.jpg"
    assert (tmp_path / "e.jpg").read_bytes() == b""
    assert everything(tmp_path) == ["e.jpg"]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [10_000, 400_000], ids=["small", "big"])
async def test_a_body_without_content_length_is_saved_whole(tmp_path: Path, size: int) -> None:
    """Chunked (no Content-Length): nothing to hold it against but the picture's size."""
    body = bytes(range(250)) * (size // 250)
    pieces = [body[i : i + 4096] for i in range(0, size, 4096)]
    receiver = download.FileReceiver(SafeFolder.open(tmp_path), lambda _type: "c.jpg")
    received = await receiver._receive("u", {}, _Chunks(pieces), None)
    assert (await received.finish()).read_bytes() == body
    sized_receiver = download.FileReceiver(
        SafeFolder.open(tmp_path), lambda _type: "d.jpg", expected_size=size + 1
    )
    with pytest.raises(IntegrityError, match="the picture's size is"):
        await sized_receiver._receive("u", {}, _Chunks(pieces), None)
    assert everything(tmp_path) == ["c.jpg"]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [10_000, 400_000], ids=["small", "big"])
async def test_a_received_file_is_moved_in_its_folder_even_once_that_is_swapped_for_a_link(
    tmp_path: Path, size: int
) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "elsewhere").mkdir()
    receiver = download.FileReceiver(SafeFolder.open(tmp_path / "dest"), lambda _type: "f.jpg")
    received = await receiver._receive(
        "u", {"content-length": str(size)}, _Chunks([b"f" * size]), None
    )
    (tmp_path / "dest").rename(tmp_path / "moved")
    (tmp_path / "dest").symlink_to(tmp_path / "elsewhere")
    assert await received.complete() == "f.jpg"
    assert everything(tmp_path / "moved") == ["f.jpg"]
    assert (tmp_path / "moved" / "f.jpg").read_bytes() == b"f" * size
    assert everything(tmp_path / "elsewhere") == []


def test_a_received_file_collected_at_shutdown_raises_nothing() -> None:
    """At interpreter shutdown the disk thread cannot start: the abort's RuntimeError is
    swallowed there (a hidden temporary file is left, never a final name)."""

    class Shutdown:
        name = ".x.part"

        def abort(self) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

    received = download.ReceivedFile(Shutdown(), Path("x.jpg"))  # type: ignore[arg-type]
    received.__del__()  # no exception
    received._settled = True


@pytest.mark.anyio
async def test_the_direct_path_says_what_went_wrong_in_full_and_a_zip_answered_204_is_none(
    tmp_path: Path,
) -> None:
    """The aiohttp extra's direct path (no httpx Response made): the same reasons, whole, with
    the method and the URL, as the generic path's."""
    from zigziik.transports import aiohttp_client

    cut = len(SMALL_BODY) // 4
    short = raw.short_body(SMALL_BODY[:cut], declared=len(SMALL_BODY))
    script = raw.scripted(raw.respond(204), raw.respond(204), short)
    with raw.RawServer(script) as server:
        base = server.origin + "/v2"
        async with (
            aiohttp_client() as http,
            ZignaClient(
                DEMO_API_KEY, base_url=base, http_client=http, retry=RetryPolicy(max_attempts=1)
            ) as zigna,
        ):
            with pytest.raises(DecodeError) as no_picture:
                await zigna.pictures.download("1", 7, tmp_path)
            assert await zigna.pictures.download_zip("1", tmp_path) is None
            with pytest.raises(IncompleteBodyError) as cut_zip:
                await zigna.pictures.download_zip("1", tmp_path)
    assert str(no_picture.value) == (
        f"GET {base}/orders/1/pictures/7: the server answered 204 No Content where a file "
        "was expected"
    )
    assert str(cut_zip.value) == (
        f"GET {base}/orders/1/pictures/zip: the connection ended after {cut} of "
        f"{len(SMALL_BODY)} bytes (Content-Length)"
    )
    assert everything(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("size", [10_000, 400_000], ids=["small", "big"])
async def test_a_received_file_aborted_is_deleted_and_a_finished_one_is_left_alone(
    tmp_path: Path, size: int
) -> None:
    receiver = download.FileReceiver(SafeFolder.open(tmp_path), lambda _type: "a.jpg")
    headers = {"content-length": str(size)}
    dropped = await receiver._receive("u", headers, _Chunks([b"a" * size]), None)
    dropped.abort()
    dropped.abort()  # idempotent
    with anyio.fail_after(30):
        while everything(tmp_path):  # noqa: ASYNC110 - the disk thread deletes a big one
            await anyio.sleep(0.01)
    kept = await receiver._receive("u", headers, _Chunks([b"k" * size]), None)
    path = await kept.finish()
    kept.abort()  # after the move: nothing to delete, nothing raised
    assert everything(tmp_path) == ["a.jpg"]
    assert path.read_bytes() == b"k" * size


class _Stream(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> Any:
        yield self._body


def _response(status: int, body: bytes = b"") -> httpx.Response:
    request = httpx.Request("GET", "https://api.zigna.test/v2/orders/1/zip")
    headers = {"Content-Length": str(len(body))} if status != 204 else {}
    return httpx.Response(status, headers=headers, stream=_Stream(body), request=request)


@pytest.mark.anyio
async def test_stream_to_file_passes_on_every_option(tmp_path: Path) -> None:
    folder = SafeFolder.open(tmp_path)
    with pytest.raises(DecodeError, match="204 No Content"):  # by default a 204 is an error
        await download.stream_to_file(folder, lambda _type: "z.zip")(_response(204))
    with pytest.raises(DecodeError, match="204 No Content"):
        await download.FileReceiver(folder, lambda _type: "z.zip")(_response(204))
    allowed = download.stream_to_file(folder, lambda _type: "z.zip", no_content_ok=True)
    assert await allowed(_response(204)) is None
    with pytest.raises(IntegrityError, match="the picture's size is 3; not saved as z.zip"):
        await download.stream_to_file(folder, lambda _type: "z.zip", expected_size=3)(
            _response(200, b"four")
        )
    seen: list[int] = []
    writer = download.stream_to_file(
        folder, lambda _type: "z.zip", expected_size=4, progress=seen.append
    )
    assert await writer(_response(200, b"four")) == tmp_path / "z.zip"
    assert seen == [4]
    assert (tmp_path / "z.zip").read_bytes() == b"four"
    assert everything(tmp_path) == ["z.zip"]


def test_a_failed_small_write_whose_cleanup_fails_too_raises_the_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def gone(self: SafeFolder, name: str) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)

    monkeypatch.setattr(os, "write", full)
    monkeypatch.setattr(download, "_writev", full)
    monkeypatch.setattr(SafeFolder, "unlink", gone)
    with pytest.raises(OSError, match="No space left on device"):
        new_file(tmp_path / "new.part", [b"one"])


@pytest.mark.anyio
async def test_a_small_body_in_a_reused_buffer_is_copied_before_it_is_kept(
    tmp_path: Path,
) -> None:
    """A transport may hand over the same buffer again, refilled: each piece is kept as it
    was when handed over."""
    buffer = bytearray(b"a" * 100)

    class Refilled:
        def __init__(self) -> None:
            self.given = 0

        def __aiter__(self) -> Refilled:
            return self

        async def __anext__(self) -> bytearray:
            if self.given == 2:
                raise StopAsyncIteration
            if self.given == 1:
                buffer[:] = b"b" * 100
            self.given += 1
            return buffer

    receiver = download.FileReceiver(SafeFolder.open(tmp_path), lambda _type: "r.jpg")
    received = await receiver._receive("u", {"content-length": "200"}, Refilled(), None)
    assert (await received.finish()).read_bytes() == b"a" * 100 + b"b" * 100


def cut_encoded(encoded: bytes, sent: int) -> raw.Behaviour:
    """A gzip body's first ``sent`` bytes (its Content-Length says all of it), then a FIN."""

    async def behaviour(connection: raw.Connection, request: raw.RawRequest) -> None:
        fields = [
            ("Content-Type", "image/jpeg"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", str(len(encoded))),
        ]
        await connection.send(raw.head(200, fields) + encoded[:sent])
        connection.close()

    return behaviour


@pytest.mark.anyio
@pytest.mark.parametrize("size", [100_000, 600_000], ids=["small", "big"])
async def test_a_compressed_body_cut_short_counts_the_bytes_that_came_on_the_wire(
    tmp_path: Path, size: int
) -> None:
    """Cut after half of its encoded bytes, which decode to more than Content-Length says:
    still incomplete, and the reason counts the bytes as they came."""
    alphabet = b"abcd" if size < 500_000 else b"abcdefghijklmnop"
    encoded = gzip.compress(bytes(random.Random(size).choices(alphabet, k=size)))
    half = len(encoded) // 2
    with raw.RawServer(cut_encoded(encoded, half)) as server:
        async with ZignaClient(
            DEMO_API_KEY, base_url=server.origin + "/v2", retry=RetryPolicy(max_attempts=1)
        ) as zigna:
            with pytest.raises(IncompleteBodyError) as caught:
                await zigna.pictures.download("1", 7, tmp_path)
    assert str(caught.value) == (
        f"GET {server.origin}/v2/orders/1/pictures/7: the connection ended after {half} of "
        f"{len(encoded)} bytes (Content-Length)"
    )
    assert everything(tmp_path) == []


@pytest.mark.anyio
async def test_small_bodies_read_to_their_end_leave_the_connection_for_the_next(
    tmp_path: Path,
) -> None:
    with raw.RawServer(raw.respond(200, SMALL_BODY, content_type="image/jpeg")) as server:
        async with ZignaClient(DEMO_API_KEY, base_url=server.origin + "/v2") as zigna:
            for picture_id in (7, 8, 9):
                await zigna.pictures.download("1", picture_id, tmp_path)
    assert server.calls == 3
    assert server.connections == 1
    assert everything(tmp_path) == ["7.jpg", "8.jpg", "9.jpg"]


@pytest.mark.anyio
async def test_a_body_that_needs_no_decoding_is_read_from_the_transports_stream(
    tmp_path: Path,
) -> None:
    """Not through httpx's decoding iterators (two layers per chunk, for nothing)."""

    class Undecoded(httpx.Response):
        async def aiter_bytes(self, chunk_size: int | None = None) -> Any:
            raise AssertionError("read through httpx's decoding iterators")
            yield b""  # pragma: no cover

    request = httpx.Request("GET", "https://api.zigna.test/v2/orders/1/pictures/7")
    for name, body in (("small", SMALL_BODY), ("big", BIG_BODY)):
        response = Undecoded(
            200, headers={"Content-Length": str(len(body))}, stream=_Stream(body), request=request
        )
        receiver = download.FileReceiver(SafeFolder.open(tmp_path), picture_name_for_test(name))
        received = await receiver(response)
        assert received is not None
        assert (await received.finish()).read_bytes() == body


@pytest.mark.anyio
async def test_a_received_file_given_a_path_is_named_by_its_last_part(tmp_path: Path) -> None:
    received = download.ReceivedFile(new_file(tmp_path / "a.part", [b"a"]), tmp_path / "a.jpg")
    assert received.name == "a.jpg"
    name = await received.complete()
    assert type(name) is str and name == "a.jpg"
    assert (tmp_path / "a.jpg").read_bytes() == b"a"


def picture_name_for_test(name: str) -> download.NameFor:
    return lambda _content_type: name


def cut_chunked(body: bytes) -> raw.Behaviour:
    """A chunked body (no Content-Length) cut in the middle of its only chunk."""

    async def behaviour(connection: raw.Connection, request: raw.RawRequest) -> None:
        fields = [("Content-Type", "image/jpeg"), ("Transfer-Encoding", "chunked")]
        await connection.send(raw.head(200, fields) + f"{len(body):x}\r\n".encode() + body[:1000])
        connection.close()

    return behaviour


@pytest.mark.anyio
async def test_a_chunked_body_cut_short_is_a_transport_error_not_an_incomplete_one(
    tmp_path: Path,
) -> None:
    """Without Content-Length there is no declared length to be short of: the connection's
    own error, as it is."""
    with raw.RawServer(cut_chunked(BIG_BODY)) as server:
        async with ZignaClient(
            DEMO_API_KEY, base_url=server.origin + "/v2", retry=RetryPolicy(max_attempts=1)
        ) as zigna:
            with pytest.raises(TransportError) as caught:
                await zigna.pictures.download("1", 7, tmp_path)
    assert type(caught.value) is TransportError
    assert "Content-Length" not in str(caught.value)
    assert everything(tmp_path) == []
