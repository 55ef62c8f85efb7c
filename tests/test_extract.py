"""safe_extract: unsafe archives are refused before anything is written; extraction is
all-or-nothing, also when cancelled."""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from zigziik import _extract
from zigziik._extract import (
    CHUNK_SIZE,
    RATIO_CHECK_MIN_BYTES,
    UnsafeArchiveError,
    _copy_member,
    _Limits,
    _Progress,
    safe_extract,
    safe_extract_sync,
)
from zigziik.errors import IntegrityError

pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")

Entry = tuple[str | zipfile.ZipInfo, bytes]


def make_zip(path: Path, entries: Iterable[Entry], *, method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def mode_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def tree(root: Path) -> list[str] | None:
    """Every entry below ``root`` (files and folders, hidden ones too), or None if absent."""
    if not root.exists():
        return None
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def patch_central(path: Path, index: int, **fields: int) -> None:
    """Overwrite fields of the ``index``-th central directory record (and its local header).

    Fields: ``flags``, ``crc``, ``compress_size``, ``file_size`` (uncompressed), ``name_byte`` (a (position, byte)
    pair packed as position * 256 + byte, replacing one byte of the file name).
    """
    data = bytearray(path.read_bytes())
    central = -1
    for _ in range(index + 1):
        central = data.index(b"PK\x01\x02", central + 1)
    (local,) = struct.unpack_from("<I", data, central + 42)
    name_len = struct.unpack_from("<H", data, central + 28)[0]
    assert data[local : local + 4] == b"PK\x03\x04"
    for field, value in fields.items():
        if field == "flags":
            struct.pack_into("<H", data, central + 8, value)
            struct.pack_into("<H", data, local + 6, value)
        elif field == "crc":
            struct.pack_into("<I", data, central + 16, value)
            struct.pack_into("<I", data, local + 14, value)
        elif field == "compress_size":
            struct.pack_into("<I", data, central + 20, value)
            struct.pack_into("<I", data, local + 18, value)
        elif field == "file_size":
            struct.pack_into("<I", data, central + 24, value)
            struct.pack_into("<I", data, local + 22, value)
        elif field == "name_byte":
            position, byte = divmod(value, 256)
            assert position < name_len
            data[central + 46 + position] = byte
            data[local + 30 + position] = byte
        else:
            raise AssertionError(field)
    path.write_bytes(bytes(data))


def problems_of(excinfo: pytest.ExceptionInfo[UnsafeArchiveError]) -> str:
    return "\n".join(excinfo.value.problems)


# --------------------------------------------------------------------------------------------
# Good archives


GOOD_ENTRIES: list[Entry] = [
    ("readme.txt", b"hello\n"),
    ("photos/", b""),
    ("photos/IMG_0001.jpg", os.urandom(50_000)),
    ("photos/sub/IMG_0002.jpg", os.urandom(3 * CHUNK_SIZE + 17)),
    ("empty.bin", b""),
    ("Villa på 120 m² (stue).jpg", b"\xff\xd8\xff" + bytes(1000)),
    ("implied/dir/file.txt", b"x" * 10),
]


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_good_zip_extracts_byte_exact(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "good.zip", GOOD_ENTRIES)
    dest = tmp_path / "out" / "nested"
    paths = await safe_extract(zip_path, dest)
    files = [(name, data) for name, data in GOOD_ENTRIES if isinstance(name, str)]
    files = [(name, data) for name, data in files if not name.endswith("/")]
    assert paths == [dest / name for name, _ in files]
    for (_, data), path in zip(files, paths, strict=True):
        assert path.read_bytes() == data
    assert tree(dest) == sorted(
        [
            "Villa på 120 m² (stue).jpg",
            "empty.bin",
            "implied/",
            "implied/dir/",
            "implied/dir/file.txt",
            "photos/",
            "photos/IMG_0001.jpg",
            "photos/sub/",
            "photos/sub/IMG_0002.jpg",
            "readme.txt",
        ]
    )


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods(tmp_path: Path, method: int) -> None:
    data = os.urandom(100_000)
    zip_path = make_zip(tmp_path / "m.zip", [("a/b.bin", data)], method=method)
    (path,) = safe_extract_sync(zip_path, tmp_path / "out")
    assert path.read_bytes() == data


def test_relative_paths_and_harmless_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    zip_path = make_zip(Path("r.zip"), [("./a//b/./c.txt", b"c"), ("d\\e.txt", b"e")])
    paths = safe_extract_sync("r.zip", "out")
    assert paths == [tmp_path / "out" / "a" / "b" / "c.txt", tmp_path / "out" / "d" / "e.txt"]
    assert all(p.is_absolute() for p in paths)
    assert zip_path.exists()


def test_empty_archive_creates_dest(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "empty.zip", [])
    assert safe_extract_sync(zip_path, tmp_path / "out") == []
    assert tree(tmp_path / "out") == []


def test_overwrites_existing_files_and_keeps_others(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "photos").mkdir(parents=True)
    (dest / "photos" / "a.jpg").write_bytes(b"old")
    (dest / "keep.txt").write_bytes(b"keep")
    zip_path = make_zip(tmp_path / "z.zip", [("photos/a.jpg", b"new")])
    safe_extract_sync(zip_path, dest)
    assert (dest / "photos" / "a.jpg").read_bytes() == b"new"
    assert (dest / "keep.txt").read_bytes() == b"keep"
    assert tree(dest) == ["keep.txt", "photos/", "photos/a.jpg"]


def test_extracted_files_get_ordinary_permissions(tmp_path: Path) -> None:
    info = mode_info("run.sh", stat.S_IFREG | 0o4777)  # setuid, world-writable
    zip_path = make_zip(tmp_path / "p.zip", [(info, b"#!/bin/sh\n")])
    (path,) = safe_extract_sync(zip_path, tmp_path / "out")
    mode = path.stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_IXUSR)
    assert mode & stat.S_IRUSR


# --------------------------------------------------------------------------------------------
# Unsafe archives: refused, all offenders named, nothing written


UNSAFE_NAMES = [
    ("../evil.txt", "'..' segment"),
    ("a/../../evil.txt", "'..' segment"),
    ("..\\evil.txt", "'..' segment"),
    ("a\\..\\..\\evil.txt", "'..' segment"),
    ("/etc/passwd", "absolute path"),
    ("\\windows\\evil.txt", "absolute path"),
    ("//server/share/x", "absolute path"),
    ("C:evil.txt", "drive letter"),
    ("C:\\evil.txt", "drive letter"),
    ("c:/evil.txt", "drive letter"),
    ("a/b:stream", "':' in name (drive letter or NTFS stream on Windows)"),
    ("a/.../b.txt", "segment '...' of only dots and spaces"),
    ("a/.. /b.txt", "segment '.. ' of only dots and spaces"),
    ("con.txt", "Windows device name 'con.txt'"),
    ("x/NUL", "Windows device name 'NUL'"),
    ("x/COM\u00b9.jpg", "Windows device name 'COM\u00b9.jpg'"),
    ("new\nline.txt", "control character (NUL, newline, ...) in name"),
    ("esc\x1b[31m.txt", "control character (NUL, newline, ...) in name"),
    ("x/" + "y" * 256, "segment longer than 255 bytes"),
]


@pytest.mark.parametrize(("name", "reason"), UNSAFE_NAMES)
def test_unsafe_names_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    zip_path = make_zip(tmp_path / "bad.zip", [("ok.txt", b"fine"), (name, b"evil")])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, dest)
    assert excinfo.value.members == (name,)
    assert excinfo.value.problems == (f"{name!r}: {reason}",)  # the whole reason a user reads
    assert repr(name) in str(excinfo.value)
    assert tree(dest) is None
    assert tree(tmp_path) == ["bad.zip"]


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_all_offenders_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    entries: list[Entry] = [("ok.txt", b"fine")]
    entries += [(name, b"evil") for name, _ in UNSAFE_NAMES]
    entries.append((symlink_info("link"), b"/etc/passwd"))
    entries.append(("ok2/ok.txt", b"fine"))
    zip_path = make_zip(tmp_path / "bad.zip", entries)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "existing.txt").write_bytes(b"untouched")
    with pytest.raises(IntegrityError) as excinfo:
        await safe_extract(zip_path, dest)
    assert isinstance(excinfo.value, UnsafeArchiveError)
    assert excinfo.value.members == (*(name for name, _ in UNSAFE_NAMES), "link")
    message = str(excinfo.value)
    assert "bad.zip" in message
    for name, _ in UNSAFE_NAMES:
        assert repr(name) in message
    assert "'ok.txt'" not in message
    assert tree(dest) == ["existing.txt"]
    assert (dest / "existing.txt").read_bytes() == b"untouched"


def test_many_offenders_are_all_listed_in_problems(tmp_path: Path) -> None:
    names = [f"../x{i}.txt" for i in range(1005)]
    zip_path = make_zip(tmp_path / "many.zip", [(name, b"") for name in names])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.members == tuple(names)
    assert len(excinfo.value.problems) == 1005
    message = str(excinfo.value)
    assert "'../x999.txt'" in message
    assert "'../x1000.txt'" not in message
    assert "and 5 more (see .problems)" in message
    assert tree(tmp_path / "out") is None


def test_nul_in_member_name(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "nul.zip", [("evil.sh.jpg", b"x")])
    patch_central(zip_path, 0, name_byte=7 * 256 + 0)  # "evil.sh\x00jpg"
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.members == ("evil.sh\x00jpg",)
    assert excinfo.value.problems == (
        "'evil.sh\\x00jpg': control character (NUL, newline, ...) in name",
    )
    assert tree(tmp_path / "out") is None


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (stat.S_IFLNK | 0o777, "symbolic link"),
        (stat.S_IFIFO | 0o644, "special file (device, FIFO or socket)"),
        (stat.S_IFCHR | 0o644, "special file (device, FIFO or socket)"),
        (stat.S_IFBLK | 0o644, "special file (device, FIFO or socket)"),
        (stat.S_IFSOCK | 0o644, "special file (device, FIFO or socket)"),
    ],
)
def test_links_and_special_files_are_refused(tmp_path: Path, mode: int, reason: str) -> None:
    zip_path = make_zip(tmp_path / "s.zip", [(mode_info("photos/x.jpg", mode), b"../../etc")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.members == ("photos/x.jpg",)
    assert excinfo.value.problems == (f"'photos/x.jpg': {reason}",)
    assert tree(tmp_path / "out") is None


def test_directory_mode_without_slash(tmp_path: Path) -> None:
    empty_dir = mode_info("folder", stat.S_IFDIR | 0o755)
    zip_path = make_zip(tmp_path / "d.zip", [(empty_dir, b""), ("folder/a.txt", b"a")])
    assert safe_extract_sync(zip_path, tmp_path / "out") == [tmp_path / "out/folder/a.txt"]
    with_data = mode_info("folder", stat.S_IFDIR | 0o755)
    bad = make_zip(tmp_path / "bad.zip", [(with_data, b"data")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(bad, tmp_path / "out2")
    assert excinfo.value.problems == (
        "'folder': directory mode on a member with data",
        "'folder': directory entry with data",
    )
    assert tree(tmp_path / "out2") is None


@pytest.mark.parametrize("flags", [0x1, 0x41])
def test_encrypted_members_are_refused(tmp_path: Path, flags: int) -> None:
    zip_path = make_zip(tmp_path / "e.zip", [("a.txt", b"a"), ("secret.txt", b"s")])
    patch_central(zip_path, 1, flags=flags)
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.members == ("secret.txt",)
    assert excinfo.value.problems == ("'secret.txt': encrypted",)
    assert tree(tmp_path / "out") is None


def test_unsupported_compression_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "c.zip", [("a.txt", b"a")])
    data = bytearray(zip_path.read_bytes())
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<H", data, central + 10, 99)  # AES
    zip_path.write_bytes(bytes(data))
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.problems == ("'a.txt': unsupported compression method 99",)


def test_zip_bomb_is_refused_by_ratio(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "bomb.zip", [("zeros.bin", bytes(8 * 1024 * 1024))])
    info = zipfile.ZipFile(zip_path).getinfo("zeros.bin")
    assert info.file_size / info.compress_size > 200
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.members == ("zeros.bin",)
    ratio = info.file_size / info.compress_size
    assert excinfo.value.problems == (
        f"'zeros.bin': compression ratio {ratio:.0f}:1 over the limit of 200:1 (zip bomb?)",
    )
    assert tree(tmp_path / "out") is None
    # a looser ratio lets it through
    (path,) = safe_extract_sync(zip_path, tmp_path / "out", max_ratio=100_000)
    assert path.stat().st_size == 8 * 1024 * 1024


def test_small_compressible_members_are_exempt_from_the_ratio(tmp_path: Path) -> None:
    size = RATIO_CHECK_MIN_BYTES - 1
    zip_path = make_zip(tmp_path / "z.zip", [("zeros.bin", bytes(size))])
    (path,) = safe_extract_sync(zip_path, tmp_path / "out")
    assert path.stat().st_size == size


def test_declared_total_over_the_bound(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "t.zip", [("a.bin", os.urandom(600)), ("b.bin", b"x" * 600)])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out", max_total_bytes=1000)
    assert excinfo.value.problems == ("declared total of 1200 bytes is over the limit of 1000",)
    assert excinfo.value.members == ()
    assert tree(tmp_path / "out") is None
    assert len(safe_extract_sync(zip_path, tmp_path / "out", max_total_bytes=1200)) == 2


def test_too_many_members(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "n.zip", [(f"{i}.txt", b"") for i in range(11)])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out", max_members=10)
    assert excinfo.value.problems == ("11 members, more than the limit of 10",)
    assert excinfo.value.members == ()
    assert excinfo.value.zip_path == str(zip_path)
    assert str(excinfo.value).startswith(f"unsafe zip archive {str(zip_path)!r}, nothing")
    assert tree(tmp_path / "out") is None
    assert len(safe_extract_sync(zip_path, tmp_path / "out", max_members=11)) == 11


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        (["a.txt", "a.txt"], "duplicate of 'a.txt' (names are compared ignoring case)"),
        (
            ["dir/a.txt", "dir\\a.txt"],
            "duplicate of 'dir/a.txt' (names are compared ignoring case)",
        ),
        (
            ["dir/a.txt", "dir//./a.txt"],
            "duplicate of 'dir/a.txt' (names are compared ignoring case)",
        ),
        (["IMG.JPG", "img.jpg"], "duplicate of 'IMG.JPG' (names are compared ignoring case)"),
        (["Dir/a.txt", "dir/A.TXT"], "duplicate of 'Dir/a.txt' (names are compared ignoring case)"),
        (
            ["\u00e9.txt", "e\u0301.txt"],
            "duplicate of '\u00e9.txt' (names are compared ignoring case)",
        ),
        (["a.txt", "a.txt."], "duplicate of 'a.txt' (names are compared ignoring case)"),
        (["a", "a/b.txt"], "parent 'a' is a file in this archive"),
        (["a/b.txt", "a"], "file name is also a directory in this archive"),
        (["a/", "A"], "file name is also a directory in this archive"),
        (["a", "a/"], "directory duplicates the file 'a'"),
    ],
)
def test_colliding_members_are_refused(tmp_path: Path, names: list[str], reason: str) -> None:
    entries: list[Entry] = [(name, b"" if name.endswith("/") else b"x") for name in names]
    zip_path = make_zip(tmp_path / "dup.zip", entries)
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.members == (names[1],)
    assert excinfo.value.problems == (f"{names[1]!r}: {reason}",)
    assert tree(tmp_path / "out") is None


def test_duplicate_directory_entries_are_fine(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "d.zip", [("a/", b""), ("A/", b""), ("a/b.txt", b"b")])
    assert safe_extract_sync(zip_path, tmp_path / "out") == [tmp_path / "out/a/b.txt"]


def test_symlink_inside_dest_pointing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "photos").symlink_to(outside, target_is_directory=True)
    zip_path = make_zip(tmp_path / "l.zip", [("photos/x.jpg", b"x"), ("photos/sub/", b"")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, dest)
    assert excinfo.value.members == ("photos/x.jpg", "photos/sub/")
    assert excinfo.value.problems == (
        "'photos/x.jpg': resolves outside the destination",
        "'photos/sub/': resolves outside the destination",
    )
    assert tree(outside) == []


def test_symlink_inside_dest_pointing_inside_is_not_followed_either(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "real").mkdir(parents=True)
    (dest / "photos").symlink_to(dest / "real", target_is_directory=True)
    zip_path = make_zip(tmp_path / "l.zip", [("photos/x.jpg", b"x"), ("ok.jpg", b"y")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, dest)
    assert excinfo.value.members == ("photos/x.jpg",)
    assert "symbolic link" in problems_of(excinfo)
    assert tree(dest / "real") == []
    assert not (dest / "ok.jpg").exists()  # nothing written when any member is refused


@pytest.mark.parametrize("first", [True, False], ids=["before-its-first-member", "mid-way"])
def test_a_folder_swapped_for_a_link_after_validation_is_refused_before_writing(
    tmp_path: Path, first: bool
) -> None:
    """Validation passes; then, while extracting, a folder inside dest is replaced by a link to
    a folder outside. The re-check just before each write refuses it: nothing lands outside,
    and the call leaves nothing of its own behind."""
    zip_path = make_zip(
        tmp_path / "a.zip",
        [("a/one.txt", b"1" * (3 * CHUNK_SIZE)), ("b/two.txt", b"2"), ("b/three.txt", b"3")],
    )
    dest = tmp_path / "dest"
    (dest / "b").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    calls = 0

    def swap() -> None:
        nonlocal calls
        calls += 1
        if calls == (1 if first else 3):  # before "a/one.txt", or while it is written
            (dest / "b").rmdir()
            (dest / "b").symlink_to(outside, target_is_directory=True)

    with pytest.raises(IntegrityError, match="would be written through the symbolic link 'b'"):
        safe_extract_sync(zip_path, dest, checkpoint=swap)
    assert calls >= 3
    assert tree(outside) == []
    assert tree(dest) == ["b/"] and (dest / "b").is_symlink()  # "a/" and its file removed again


def test_symlinked_dest_itself_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    zip_path = make_zip(tmp_path / "l.zip", [("a/x.jpg", b"x")])
    assert safe_extract_sync(zip_path, tmp_path / "link") == [tmp_path / "link/a/x.jpg"]
    assert (real / "a" / "x.jpg").read_bytes() == b"x"


def test_conflicts_with_existing_files(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "is_dir").mkdir(parents=True)
    (dest / "is_file").write_bytes(b"f")
    zip_path = make_zip(
        tmp_path / "c.zip", [("is_dir", b"x"), ("is_file/a.txt", b"x"), ("is_file/", b"")]
    )
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, dest)
    assert excinfo.value.problems == (
        "'is_dir': would replace an existing directory",
        "'is_file/a.txt': 'is_file' exists and is not a directory",
        "'is_file/': exists and is not a directory",
    )
    assert tree(dest) == ["is_dir/", "is_file"]


def test_member_would_overwrite_the_archive(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "order.zip", [("order.zip", b"x")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path)
    assert excinfo.value.problems == ("'order.zip': would overwrite the archive itself",)
    assert tree(tmp_path) == ["order.zip"]


# --------------------------------------------------------------------------------------------
# Corrupt archives and lying headers


@pytest.mark.parametrize(
    "content", [b"", b"not a zip at all", b"PK\x05\x06" + bytes(10), b"PK\x03\x04garbage"]
)
def test_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.zip"
    path.write_bytes(content)
    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(path, tmp_path / "out")
    assert (
        str(excinfo.value) == f"{str(path)!r} is not a readable zip archive: File is not a zip file"
    )
    assert tree(tmp_path / "out") is None


def test_missing_file_and_bad_dest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        safe_extract_sync(tmp_path / "missing.zip", tmp_path / "out")
    zip_path = make_zip(tmp_path / "a.zip", [("a.txt", b"a")])
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "file")
    assert str(excinfo.value) == (
        f"destination {str(tmp_path / 'file')!r} exists and is not a directory"
    )


def test_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_ratio"):
        safe_extract_sync("x.zip", "out", max_ratio=0)
    with pytest.raises(ValueError, match="negative"):
        safe_extract_sync("x.zip", "out", max_members=-1)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_crc_error_removes_everything_already_written(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "existing.txt").write_bytes(b"untouched")
    big = os.urandom(2 * CHUNK_SIZE)
    zip_path = make_zip(
        tmp_path / "crc.zip",
        [("a/first.bin", big), ("b/c/second.bin", b"second" * 1000), ("third.bin", b"3")],
    )
    patch_central(zip_path, 1, crc=zlib.crc32(b"something else"))
    with pytest.raises(IntegrityError, match=r"'b/c/second\.bin' is corrupt.*CRC"):
        await safe_extract(zip_path, dest)
    assert tree(dest) == ["existing.txt"]


def test_header_declaring_fewer_bytes_than_the_data(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "lie.zip", [("a.bin", b"a" * 5000)])
    patch_central(zip_path, 0, file_size=100)
    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert str(excinfo.value) == (
        f"zip archive {str(zip_path)!r}: member 'a.bin' is corrupt: Bad CRC-32 for file 'a.bin'"
    )
    assert tree(tmp_path / "out") is None


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_header_declaring_more_bytes_than_the_data(tmp_path: Path, method: int) -> None:
    zip_path = make_zip(
        tmp_path / "lie.zip", [("ok.bin", b"ok"), ("a.bin", b"a" * 5000)], method=method
    )
    patch_central(zip_path, 1, file_size=9000)
    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert str(excinfo.value) == (
        f"zip archive {str(zip_path)!r}: member 'a.bin' has 5000 bytes, not the 9000 it declares"
    )
    assert tree(tmp_path / "out") is None


def test_actual_bytes_are_bounded_even_if_zipfile_returned_more() -> None:
    class LyingZip:
        def open(self, info: zipfile.ZipInfo) -> io.BytesIO:
            return io.BytesIO(b"x" * 5000)

    info = zipfile.ZipInfo("a.bin")
    info.file_size = 100
    out = io.BytesIO()
    with pytest.raises(
        IntegrityError,
        match="^zip archive 'z.zip': member 'a.bin' is larger than the 100 bytes it declares$",
    ):
        _copy_member(LyingZip(), info, out, "z.zip", _Limits(10**9, 10, 200.0), _Progress(), None)  # type: ignore[arg-type]
    assert out.getvalue() == b""
    info.file_size = 5000
    with pytest.raises(
        IntegrityError, match="^zip archive 'z.zip': more than 1000 bytes decompressed$"
    ):
        _copy_member(LyingZip(), info, out, "z.zip", _Limits(1000, 10, 200.0), _Progress(), None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Interruption and cancellation: nothing half-written remains


def big_zip(path: Path, members: int = 12, size: int = 3 * CHUNK_SIZE) -> Path:
    return make_zip(
        path,
        [(f"d{i % 3}/f{i}.bin", os.urandom(size)) for i in range(members)],
        method=zipfile.ZIP_STORED,
    )


@pytest.mark.parametrize("stop_after", [1, 2, 5, 20, 47])
def test_interrupted_sync_extraction_leaves_nothing(tmp_path: Path, stop_after: int) -> None:
    zip_path = big_zip(tmp_path / "big.zip")
    dest = tmp_path / "out"
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1
        if calls == stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_extract_sync(zip_path, dest, checkpoint=checkpoint)
    assert calls == stop_after
    assert tree(dest) is None
    assert tree(tmp_path) == ["big.zip"]


def test_failing_final_rename_removes_placed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = make_zip(tmp_path / "r.zip", [(f"f{i}.txt", b"x") for i in range(5)])
    dest = tmp_path / "out"
    real_replace = os.replace
    done = 0

    def flaky_replace(src: str, dst: str, **dir_fds: int | None) -> None:
        nonlocal done
        if done == 3:
            raise OSError("disk on fire")
        real_replace(src, dst, **dir_fds)
        done += 1

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk on fire"):
        safe_extract_sync(zip_path, dest)
    assert tree(dest) is None


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_cancellation_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = big_zip(tmp_path / "big.zip")
    dest = tmp_path / "out"
    real_check: Callable[[], None] = anyio.from_thread.check_cancelled
    calls = 0
    with anyio.CancelScope() as scope:

        def check() -> None:
            # cancel from the event loop in the middle of the third file, then let the real
            # check notice it
            nonlocal calls
            calls += 1
            if calls == 8:
                anyio.from_thread.run_sync(scope.cancel)
            real_check()

        monkeypatch.setattr(anyio.from_thread, "check_cancelled", check)
        await safe_extract(zip_path, dest)
    assert scope.cancelled_caught
    assert calls == 8
    assert tree(dest) is None
    assert tree(tmp_path) == ["big.zip"]


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_timeout_on_a_large_archive_leaves_no_partial_files(tmp_path: Path) -> None:
    zip_path = big_zip(tmp_path / "big.zip", members=40, size=1024 * 1024)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "existing.txt").write_bytes(b"untouched")
    result: list[Path] = []
    with anyio.move_on_after(0.01) as scope:
        result = await safe_extract(zip_path, dest)
    after = tree(dest)
    assert after is not None
    assert not [name for name in after if name.endswith(".part")]
    if scope.cancelled_caught:
        assert after == ["existing.txt"]
    else:  # the machine was fast enough: then everything is there
        assert len(result) == 40
        assert all(path.stat().st_size == 1024 * 1024 for path in result)
    # and the event loop was not blocked meanwhile: a second extraction works
    assert len(await safe_extract(zip_path, tmp_path / "again")) == 40


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_event_loop_is_not_blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every member is written off the event loop's thread, and the loop keeps running while
    they are: a ticker task advances between the first member's write and the last one's."""
    zip_path = big_zip(tmp_path / "big.zip", members=20, size=1024 * 1024)
    loop_thread = threading.get_ident()
    ticks = 0
    writes: list[tuple[int, int]] = []  # (thread, ticks so far) as each member is written
    real_write = _extract._write_member

    def write_member(*args: Any) -> str:
        writes.append((threading.get_ident(), ticks))
        return real_write(*args)

    monkeypatch.setattr(_extract, "_write_member", write_member)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.001)  # not a busy loop: it would starve the worker of the GIL

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()  # the ticker has started
        result = await safe_extract(zip_path, tmp_path / "out")
        tg.cancel_scope.cancel()
    assert len(result) == 20 and len(writes) == 20
    assert loop_thread not in {thread for thread, _ in writes}
    assert writes[-1][1] > writes[0][1], "the event loop stood still while members were written"


# --------------------------------------------------------------------------------------------
# Property: whatever the member names, either a refusal with nothing written, or every file
# extracted inside dest with the right bytes.

NAME_PIECES = st.sampled_from(
    [
        "a",
        "B",
        "photo.jpg",
        "IMG.JPG",
        "img.jpg",
        "..",
        ".",
        "",
        "/",
        "\\",
        "C:",
        "con",
        " ",
        "...",
        "\u00e9",
        "e\u0301",
        "\u202e",
        "x" * 30,
        "\t",
        "\x7f",
        "~",
        "$",
        ":",
    ]
)
member_names = st.lists(NAME_PIECES, min_size=1, max_size=6).map("".join).filter(bool)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(member_names, st.binary(max_size=64)), max_size=5))
def test_any_archive_is_refused_cleanly_or_extracted_inside(
    entries: list[tuple[str, bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        zip_path = make_zip(root / "any.zip", [(name, data) for name, data in entries])
        dest = root / "zone" / "dest"
        (root / "zone").mkdir()
        refused: UnsafeArchiveError | None = None
        try:
            paths = safe_extract_sync(zip_path, dest)
        except UnsafeArchiveError as exc:
            refused = exc
        event("refused" if refused is not None else "extracted")
        if refused is not None:
            assert refused.problems
            assert tree(root / "zone") == []
            assert sorted(os.listdir(root)) == ["any.zip", "zone"]
            return
        real_dest = os.path.realpath(dest)
        written = {p for p in dest.rglob("*") if p.is_file()}
        assert set(paths) == written
        assert sorted(os.listdir(root)) == ["any.zip", "zone"]
        assert os.listdir(root / "zone") == ["dest"]
        files = [(n, d) for n, d in entries if not n.replace("\\", "/").endswith("/")]
        assert len(paths) == len(files)
        for path, (name, data) in zip(paths, files, strict=True):
            assert os.path.commonpath([real_dest, os.path.realpath(path)]) == real_dest
            assert path.read_bytes() == data
            assert ".." not in name.replace("\\", "/").split("/")


# --------------------------------------------------------------------------------------------
# Edges found by surviving mutants


def test_temporary_files_are_written_in_the_members_own_folder(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "a.zip", [("sub/one.txt", b"1" * (3 * CHUNK_SIZE))])
    dest = tmp_path / "dest"
    seen: list[list[str] | None] = []
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        safe_extract_sync(zip_path, dest, checkpoint=lambda: seen.append(tree(dest / "sub")))
    finally:
        os.chdir(cwd)
    partials = {name for names in seen if names for name in names if name.endswith(".part")}
    assert partials, seen  # the member was written through a temporary file in sub/
    assert tree(elsewhere) == []
    assert tree(dest) == ["sub/", "sub/one.txt"]


def test_explicit_empty_directories_are_created(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "a.zip", [("empty/", b""), ("deep/er/", b""), ("f.txt", b"x")])
    safe_extract_sync(zip_path, tmp_path / "dest")
    assert tree(tmp_path / "dest") == ["deep/", "deep/er/", "empty/", "f.txt"]


def test_the_smallest_limits_are_allowed(tmp_path: Path) -> None:
    empty_files = make_zip(tmp_path / "a.zip", [("a.txt", b""), ("b.txt", b"")])
    assert len(safe_extract_sync(empty_files, tmp_path / "d1", max_total_bytes=0)) == 2
    nothing = make_zip(tmp_path / "n.zip", [])
    assert safe_extract_sync(nothing, tmp_path / "d2", max_members=0) == []
    assert len(safe_extract_sync(empty_files, tmp_path / "d3", max_ratio=0.5)) == 2
    with pytest.raises(ValueError, match="^max_ratio must be positive$"):
        safe_extract_sync(empty_files, tmp_path / "d4", max_ratio=0)
    with pytest.raises(ValueError, match="^max_total_bytes and max_members must not be negative$"):
        safe_extract_sync(empty_files, tmp_path / "d5", max_members=-1)


def test_the_refusal_message_counts_and_lists_every_problem() -> None:
    one = UnsafeArchiveError("/x/o.zip", ["'../a': '..' segment"], ["../a"])
    assert one.zip_path == "/x/o.zip"
    assert str(one) == (
        "unsafe zip archive '/x/o.zip', nothing extracted (1 problem):\n  '../a': '..' segment"
    )
    two = UnsafeArchiveError("o.zip", ["p1", "p2"], [])
    assert str(two) == "unsafe zip archive 'o.zip', nothing extracted (2 problems):\n  p1\n  p2"
    assert (two.problems, two.members) == (("p1", "p2"), ())
    exactly = UnsafeArchiveError("o.zip", [f"p{i}" for i in range(1000)], [])
    assert str(exactly).endswith("\n  p998\n  p999")
    assert "more (see .problems)" not in str(exactly)
    over = UnsafeArchiveError("o.zip", [f"p{i}" for i in range(1001)], [])
    assert str(over).endswith("\n  p999\n  ... and 1 more (see .problems)")


def test_extracted_files_are_created_with_mode_0666_before_the_umask(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "m.zip", [("a/f.txt", b"x"), ("g.bin", os.urandom(10))])
    old = os.umask(0)
    try:
        paths = safe_extract_sync(zip_path, tmp_path / "out")
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o666, 0o666]


def test_a_corrupt_member_is_named_with_its_archive(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "crc.zip", [("a/b.bin", b"data" * 1000)])
    patch_central(zip_path, 0, crc=zlib.crc32(b"something else"))
    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert str(excinfo.value).startswith(
        f"zip archive {str(zip_path)!r}: member 'a/b.bin' is corrupt: Bad CRC-32"
    )


def test_a_member_whose_local_header_is_broken_cannot_be_read(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "h.zip", [("ok.txt", b"ok"), ("b.txt", b"b")])
    data = bytearray(zip_path.read_bytes())
    second_local = data.index(b"PK\x03\x04", 1)
    data[second_local : second_local + 4] = b"XXXX"
    zip_path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert not isinstance(excinfo.value, UnsafeArchiveError)
    assert str(excinfo.value) == (
        f"zip archive {str(zip_path)!r}: cannot read member 'b.txt': "
        "Bad magic number for file header"
    )
    assert tree(tmp_path / "out") is None  # "ok.txt", written first, is removed again


def test_the_bytes_decompressed_are_bounded_across_members() -> None:
    """The running total of every member's actual bytes is bounded, not each member's alone
    (a defence should zipfile ever hand out more than the declared sizes add up to)."""

    class Zip:
        def open(self, info: zipfile.ZipInfo) -> io.BytesIO:
            return io.BytesIO(b"x" * info.file_size)

    limits = _Limits(1000, 10, 200.0)
    progress = _Progress()
    first, second = zipfile.ZipInfo("a.bin"), zipfile.ZipInfo("b.bin")
    first.file_size = second.file_size = 600
    _copy_member(Zip(), first, io.BytesIO(), "z.zip", limits, progress, None)  # type: ignore[arg-type]
    assert progress.total_bytes == 600
    with pytest.raises(IntegrityError, match="^zip archive 'z.zip': more than 1000 bytes"):
        _copy_member(Zip(), second, io.BytesIO(), "z.zip", limits, progress, None)  # type: ignore[arg-type]


def test_a_nested_folder_swapped_for_a_link_inside_dest_is_not_written_through(
    tmp_path: Path,
) -> None:
    """Not only the first folder of a member's path is re-checked: its deepest folder too,
    even when the link stays inside ``dest_dir`` (links are never followed)."""
    zip_path = make_zip(tmp_path / "a.zip", [("b/c/x.txt", b"x")])
    dest = tmp_path / "dest"
    (dest / "b" / "c").mkdir(parents=True)
    (dest / "elsewhere").mkdir()
    calls = 0

    def swap() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            (dest / "b" / "c").rmdir()
            (dest / "b" / "c").symlink_to(dest / "elsewhere", target_is_directory=True)

    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(zip_path, dest, checkpoint=swap)
    assert str(excinfo.value) == (
        f"zip archive {str(zip_path)!r}: 'b/c/x.txt' would be written through the symbolic "
        "link 'b/c'"
    )
    assert tree(dest / "elsewhere") == []


def test_a_folder_swapped_after_more_than_64_were_opened_is_refused_at_the_move(
    tmp_path: Path,
) -> None:
    """Only `_MAX_OPEN_FOLDERS` folders are held: the first of 70 is opened again for the
    move into place, through the same no-link walk, and its refusal names the file."""
    count = _extract._MAX_OPEN_FOLDERS + 6
    zip_path = make_zip(tmp_path / "a.zip", [(f"d{i:02}/x.txt", b"x") for i in range(count)])
    dest = tmp_path / "dest"
    (dest / "elsewhere").mkdir(parents=True)
    swapped = False

    def swap() -> None:  # once the last member's temporary file is being written
        nonlocal swapped
        last = dest / f"d{count - 1:02}"
        if not swapped and last.is_dir() and any(last.iterdir()):
            swapped = True
            (dest / "d00").rename(dest / "moved")
            (dest / "d00").symlink_to(dest / "elsewhere", target_is_directory=True)

    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(zip_path, dest, checkpoint=swap)
    assert swapped
    assert str(excinfo.value) == (
        f"zip archive {str(zip_path)!r}: 'x.txt' would be written through the symbolic link 'd00'"
    )
    assert tree(dest / "elsewhere") == []
    assert not any((dest / f"d{i:02}" / "x.txt").exists() for i in range(1, count))


def test_dest_itself_swapped_for_a_link_after_validation_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "a.zip", [("a/one.txt", b"1"), ("two.txt", b"2")])
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    calls = 0

    def swap() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            dest.rename(tmp_path / "was-dest")
            dest.symlink_to(outside, target_is_directory=True)

    with pytest.raises(IntegrityError) as excinfo:
        safe_extract_sync(zip_path, dest, checkpoint=swap)
    assert str(excinfo.value) == (
        f"zip archive {str(zip_path)!r}: 'a/one.txt' would land outside the destination"
    )
    assert tree(outside) == []  # the folder made for "a/one.txt" is removed again


def test_a_temporary_file_gone_before_the_cleanup_does_not_hide_the_error(
    tmp_path: Path,
) -> None:
    zip_path = big_zip(tmp_path / "big.zip", members=1)
    dest = tmp_path / "out"

    def vanish_and_stop() -> None:
        partials = [p for p in dest.rglob("*") if p.name.endswith(".part")]
        if partials:
            for partial in partials:
                partial.unlink()  # someone tidied up meanwhile
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_extract_sync(zip_path, dest, checkpoint=vanish_and_stop)
    assert tree(dest) is None


@pytest.mark.anyio
async def test_the_async_form_applies_every_limit(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "t.zip", [("a.bin", b"a" * 600), ("b.bin", b"b" * 600)])
    with pytest.raises(UnsafeArchiveError, match="declared total of 1200 bytes"):
        await safe_extract(zip_path, tmp_path / "d1", max_total_bytes=1000)
    with pytest.raises(UnsafeArchiveError, match="2 members, more than the limit of 1"):
        await safe_extract(zip_path, tmp_path / "d2", max_members=1)
    bomb = make_zip(tmp_path / "bomb.zip", [("zeros.bin", bytes(2 * RATIO_CHECK_MIN_BYTES))])
    with pytest.raises(UnsafeArchiveError, match="compression ratio"):
        await safe_extract(bomb, tmp_path / "d3")
    assert len(await safe_extract(bomb, tmp_path / "d4", max_ratio=100_000)) == 1
    assert tree(tmp_path / "d1") is None and tree(tmp_path / "d2") is None


def test_a_folder_another_process_creates_meanwhile_is_used_and_not_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mkdir`` losing a race to another process (the folder appears between the look and
    the ``mkdir``) is no error; and the folder is not this call's to remove on failure."""
    zip_path = make_zip(tmp_path / "a.zip", [("shared/x.txt", b"x"), ("shared/y.txt", b"y")])
    dest = tmp_path / "dest"
    dest.mkdir()
    real_mkdir = os.mkdir

    def racing_mkdir(path: str, *args: Any, **kwargs: Any) -> None:
        if os.path.basename(path) == "shared":
            real_mkdir(path, dir_fd=kwargs.get("dir_fd"))  # the other process wins
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    assert safe_extract_sync(zip_path, dest) == [dest / "shared/x.txt", dest / "shared/y.txt"]
    (dest / "shared" / "x.txt").unlink()
    (dest / "shared" / "y.txt").unlink()

    (dest / "shared").rmdir()
    calls = 0

    def stop_on_second() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_extract_sync(zip_path, dest, checkpoint=stop_on_second)
    assert tree(dest) == ["shared/"]  # the other process's folder stays


def test_a_destination_below_a_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "a.zip", [("x.txt", b"x")])
    (tmp_path / "file").write_bytes(b"keep")
    with pytest.raises(FileExistsError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "file" / "sub")
    assert excinfo.value.filename == str(tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == b"keep"


def test_is_inside_says_no_to_what_it_cannot_compare() -> None:
    assert _extract._is_inside("/dest", "/dest/a") is True
    assert _extract._is_inside("/dest", "/destination") is False
    assert _extract._is_inside("/dest", "relative/path") is False  # commonpath's ValueError


def test_a_directory_member_that_is_a_link_to_outside_resolves_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)
    zip_path = make_zip(tmp_path / "l.zip", [("sub/", b"")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, dest)
    assert excinfo.value.problems == ("'sub/': resolves outside the destination",)


def test_links_inside_dest_are_named_exactly(tmp_path: Path) -> None:
    """A member's folder, at any depth, or a directory member itself, that is a link (even to
    a folder inside dest) is refused, naming the link."""
    dest = tmp_path / "out"
    (dest / "real").mkdir(parents=True)
    (dest / "b").mkdir()
    (dest / "b" / "c").symlink_to(dest / "real", target_is_directory=True)
    (dest / "photos").symlink_to(dest / "real", target_is_directory=True)
    zip_path = make_zip(tmp_path / "l.zip", [("b/c/x.txt", b"x"), ("photos/", b"")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, dest)
    assert excinfo.value.problems == (
        "'b/c/x.txt': 'b/c' is a symbolic link (never followed)",
        "'photos/': 'photos' is a symbolic link (never followed)",
    )
    assert tree(dest / "real") == []


def test_a_link_under_a_members_final_name_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a.txt").symlink_to(outside)
    zip_path = make_zip(tmp_path / "a.zip", [("a.txt", b"new")])
    assert safe_extract_sync(zip_path, dest) == [dest / "a.txt"]
    assert not (dest / "a.txt").is_symlink()
    assert (dest / "a.txt").read_bytes() == b"new"
    assert outside.read_bytes() == b"outside"


def test_a_file_put_in_a_created_folder_meanwhile_stays_and_the_error_propagates(
    tmp_path: Path,
) -> None:
    zip_path = big_zip(tmp_path / "big.zip", members=1)  # "d0/f0.bin", several chunks
    dest = tmp_path / "out"
    calls = 0

    def intrude_and_stop() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            (dest / "d0" / "theirs.txt").write_bytes(b"theirs")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_extract_sync(zip_path, dest, checkpoint=intrude_and_stop)
    assert tree(dest) == ["d0/", "d0/theirs.txt"]  # not this call's to delete


def test_a_deeper_ancestor_that_is_a_file_is_named_with_its_whole_path(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "a").mkdir(parents=True)
    (dest / "a" / "f").write_bytes(b"f")
    zip_path = make_zip(tmp_path / "c.zip", [("a/f/x.txt", b"x")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, dest)
    assert excinfo.value.problems == ("'a/f/x.txt': 'a/f' exists and is not a directory",)


@pytest.mark.parametrize(
    ("name", "problems"),
    [
        ("./", ("'./': empty name",)),
        (".", ("'.': empty name",)),
        ("/", ("'/': absolute path", "'/': empty name")),
    ],
)
def test_a_member_whose_name_is_empty_once_normalised_is_refused(
    tmp_path: Path, name: str, problems: tuple[str, ...]
) -> None:
    zip_path = make_zip(tmp_path / "e.zip", [("ok.txt", b"ok"), (name, b"")])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.problems == problems
    assert excinfo.value.members == (name,)
    assert tree(tmp_path / "out") is None


def test_segments_of_dots_and_spaces_only_are_the_only_ones_refused_as_such(
    tmp_path: Path,
) -> None:
    zip_path = make_zip(tmp_path / "x.zip", [("X/X", b"1"), ("X. X/.x", b"2"), ("y" * 255, b"3")])
    paths = safe_extract_sync(zip_path, tmp_path / "out")
    assert [p.read_bytes() for p in paths] == [b"1", b"2", b"3"]  # 255 bytes is allowed


def test_a_member_of_exactly_the_ratio_check_size_is_checked(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "z.zip", [("zeros.bin", bytes(RATIO_CHECK_MIN_BYTES))])
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.members == ("zeros.bin",)


@pytest.mark.parametrize(
    ("compress_size", "reason"),
    [
        (0, f"declares {2 * RATIO_CHECK_MIN_BYTES} bytes from no compressed data"),
        (1, f"compression ratio {2 * RATIO_CHECK_MIN_BYTES}:1 over the limit of 200:1 (zip bomb?)"),
    ],
)
def test_a_large_member_from_next_to_no_compressed_data_is_refused(
    tmp_path: Path, compress_size: int, reason: str
) -> None:
    zip_path = make_zip(tmp_path / "z.zip", [("big.bin", os.urandom(2 * RATIO_CHECK_MIN_BYTES))])
    patch_central(zip_path, 0, compress_size=compress_size)
    with pytest.raises(UnsafeArchiveError) as excinfo:
        safe_extract_sync(zip_path, tmp_path / "out")
    assert excinfo.value.problems == (f"'big.bin': {reason}",)


def test_validating_a_large_archive_checks_for_cancellation_every_256_members(
    tmp_path: Path,
) -> None:
    zip_path = make_zip(
        tmp_path / "many.zip", [(f"{i}.txt", b"") for i in range(512)], method=zipfile.ZIP_STORED
    )
    dest = tmp_path / "out"
    while_validating = 0

    def checkpoint() -> None:
        nonlocal while_validating
        if not dest.exists():  # dest is created only once every member has passed
            while_validating += 1

    assert len(safe_extract_sync(zip_path, dest, checkpoint=checkpoint)) == 512
    assert while_validating == 2  # after the 256th and the 512th member


def test_a_ratio_exactly_at_the_limit_is_allowed(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "z.zip", [("zeros.bin", bytes(2 * RATIO_CHECK_MIN_BYTES))])
    info = zipfile.ZipFile(zip_path).getinfo("zeros.bin")
    ratio = info.file_size / info.compress_size
    (path,) = safe_extract_sync(zip_path, tmp_path / "out", max_ratio=ratio)
    assert path.stat().st_size == 2 * RATIO_CHECK_MIN_BYTES
    with pytest.raises(UnsafeArchiveError):
        safe_extract_sync(zip_path, tmp_path / "out2", max_ratio=ratio * 0.999)


# -- extract_into: a zip in an open folder, into it (the harvest's zips) -----------------------


def test_extract_into_sync_extracts_the_zip_in_its_open_folder_with_the_limits_given(
    tmp_path: Path,
) -> None:
    from zigziik._safedir import SafeFolder

    dest = tmp_path / "dest"
    dest.mkdir()
    make_zip(dest / "o.zip", [("a.txt", b"alpha"), ("sub/b.txt", b"beta")])
    folder = SafeFolder.open(dest)
    paths = _extract.extract_into_sync(folder, "o.zip")
    assert sorted(paths) == [dest / "a.txt", dest / "sub" / "b.txt"]
    assert (dest / "sub" / "b.txt").read_bytes() == b"beta"
    make_zip(dest / "n.zip", [(f"{i}.txt", b"") for i in range(11)])
    with pytest.raises(UnsafeArchiveError) as members:
        _extract.extract_into_sync(folder, "n.zip", max_members=10)
    assert members.value.problems == ("11 members, more than the limit of 10",)
    assert members.value.zip_path == str(dest / "n.zip")
    make_zip(dest / "t.zip", [("c.bin", os.urandom(600)), ("d.bin", b"x" * 600)])
    with pytest.raises(UnsafeArchiveError) as total:
        _extract.extract_into_sync(folder, "t.zip", max_total_bytes=1000)
    assert total.value.problems == ("declared total of 1200 bytes is over the limit of 1000",)
    make_zip(dest / "r.zip", [("zeros.bin", bytes(8 * 1024 * 1024))])
    with pytest.raises(UnsafeArchiveError, match="compression ratio"):
        _extract.extract_into_sync(folder, "r.zip")
    with pytest.raises(UnsafeArchiveError, match="over the limit of 10:1"):
        _extract.extract_into_sync(folder, "r.zip", max_ratio=10)
    (zeros,) = _extract.extract_into_sync(folder, "r.zip", max_ratio=100_000)
    assert zeros == dest / "zeros.bin" and zeros.stat().st_size == 8 * 1024 * 1024
    assert sorted(p.name for p in dest.iterdir()) == [
        "a.txt",
        "n.zip",
        "o.zip",
        "r.zip",
        "sub",
        "t.zip",
        "zeros.bin",
    ]


def test_extract_into_sync_stops_at_its_checkpoint_and_never_reads_a_linked_zip(
    tmp_path: Path,
) -> None:
    from zigziik._safedir import SafeFolder

    class Stop(Exception):
        pass

    dest = tmp_path / "dest"
    dest.mkdir()
    big_zip(dest / "big.zip")
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise Stop

    folder = SafeFolder.open(dest)
    with pytest.raises(Stop):
        _extract.extract_into_sync(folder, "big.zip", checkpoint=checkpoint)
    assert calls == 5
    assert tree(dest) == ["big.zip"]
    make_zip(tmp_path / "outside.zip", [("x.txt", b"x")])
    (dest / "linked.zip").symlink_to(tmp_path / "outside.zip")
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP: the name is a link, never followed
        _extract.extract_into_sync(folder, "linked.zip")
    assert tree(dest) == ["big.zip", "linked.zip"]


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_extract_into_extracts_in_a_thread_and_stops_when_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zigziik._safedir import SafeFolder

    dest = tmp_path / "dest"
    dest.mkdir()
    make_zip(dest / "o.zip", [("a.txt", b"alpha")])
    folder = SafeFolder.open(dest)
    assert await _extract.extract_into(folder, "o.zip") == [dest / "a.txt"]
    (dest / "a.txt").unlink()
    big_zip(dest / "big.zip")
    real_check: Callable[[], None] = anyio.from_thread.check_cancelled
    calls = 0
    with anyio.CancelScope() as scope:

        def check() -> None:
            nonlocal calls
            calls += 1
            if calls == 8:
                anyio.from_thread.run_sync(scope.cancel)
            real_check()

        monkeypatch.setattr(anyio.from_thread, "check_cancelled", check)
        await _extract.extract_into(folder, "big.zip")
    assert scope.cancelled_caught
    assert calls == 8
    assert tree(dest) == ["big.zip", "o.zip"]


def test_the_folders_of_an_extraction_are_opened_once_made_when_asked_and_refused_clearly(
    tmp_path: Path,
) -> None:
    from zigziik._safedir import SafeFolder

    root = SafeFolder.open(tmp_path)
    folders = _extract._Folders(root, "o.zip")
    assert folders.root is root and folders.get((), "m", None) is root
    created: list[tuple[str, ...]] = []
    deep = folders.get(("a", "b"), "a/b/x.txt", created)
    assert created == [("a",), ("a", "b")]
    assert deep.path == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    assert folders.get(("a", "b"), "a/b/y.txt", created) is deep  # opened once
    assert created == [("a",), ("a", "b")]
    assert folders.find(("missing",)) is None
    assert not (tmp_path / "missing").exists()  # looked for, never made
    with pytest.raises(FileNotFoundError) as gone:
        folders.get(("missing",), "missing/x.txt", None)
    assert str(gone.value) == f"{tmp_path / 'missing'} disappeared"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(IntegrityError) as not_a_folder:
        folders.get(("file",), "file/x.txt", [])
    assert str(not_a_folder.value) == (
        "zip archive 'o.zip': 'file/x.txt' needs 'file' to be a directory"
    )
    with pytest.raises(IntegrityError) as deeper:  # the member named at every level
        folders.get(("file", "deeper"), "file/deeper/x.txt", [])
    assert str(deeper.value) == (
        "zip archive 'o.zip': 'file/deeper/x.txt' needs 'file' to be a directory"
    )
    many = [folders.get((f"f{n}",), f"f{n}/x", []) for n in range(_extract._MAX_OPEN_FOLDERS + 2)]
    assert [f.path for f in many] == [tmp_path / f"f{n}" for n in range(len(many))]
    assert len(folders._open) <= _extract._MAX_OPEN_FOLDERS + 1  # a bounded number held


def test_a_cleanup_of_a_file_already_gone_is_quiet_and_a_vanished_destination_is_refused(
    tmp_path: Path,
) -> None:
    from zigziik._safedir import SafeFolder

    folders = _extract._Folders(SafeFolder.open(tmp_path), "o.zip")
    _extract._remove_quietly(folders, (), "never-there.part")  # nothing raised
    _extract._remove_quietly(folders, ("no-such-folder",), "x.part")
    (tmp_path / "there.part").write_bytes(b"")
    _extract._remove_quietly(folders, (), "there.part")
    assert list(tmp_path.iterdir()) == []
    identity = _extract._identity(os.stat(tmp_path))
    _extract._check_dest(str(tmp_path), identity, "o.zip", "m.txt")  # the same folder
    with pytest.raises(IntegrityError) as outside:
        _extract._check_dest(str(tmp_path / "gone"), identity, "o.zip", "m.txt")
    assert str(outside.value) == "zip archive 'o.zip': 'm.txt' would land outside the destination"


def test_a_folder_member_whose_place_is_taken_by_a_file_after_validation_is_named(
    tmp_path: Path,
) -> None:
    zip_path = make_zip(tmp_path / "d.zip", [("d/", b""), ("x.txt", b"x")])
    dest = tmp_path / "dest"
    dest.mkdir()

    def take_its_place() -> None:
        if not (dest / "d").exists():
            (dest / "d").write_bytes(b"a file now")

    with pytest.raises(IntegrityError) as caught:
        safe_extract_sync(zip_path, dest, checkpoint=take_its_place)
    assert str(caught.value) == f"zip archive {str(zip_path)!r}: 'd/' needs 'd' to be a directory"
    assert tree(dest) == ["d"]


def test_extract_into_sync_names_the_zip_in_its_folder_and_checks_while_validating(
    tmp_path: Path,
) -> None:
    from zigziik._safedir import SafeFolder

    dest = tmp_path / "dest"
    dest.mkdir()
    folder = SafeFolder.open(dest)
    (dest / "bad.zip").write_bytes(b"not a zip at all")
    with pytest.raises(IntegrityError) as bad:
        _extract.extract_into_sync(folder, "bad.zip")
    assert str(dest / "bad.zip") in str(bad.value)
    make_zip(dest / "d.zip", [("d/", b""), ("x.txt", b"x")])

    def take_its_place() -> None:
        if not (dest / "d").exists():
            (dest / "d").write_bytes(b"a file now")

    with pytest.raises(IntegrityError) as taken:
        _extract.extract_into_sync(folder, "d.zip", checkpoint=take_its_place)
    assert str(taken.value) == (
        f"zip archive {str(dest / 'd.zip')!r}: 'd/' needs 'd' to be a directory"
    )
    (dest / "d").unlink()
    make_zip(dest / "many.zip", [(f"{i}.txt", b"") for i in range(256)])
    counts = []
    for extract in (
        lambda check: _extract.extract_into_sync(folder, "many.zip", checkpoint=check),
        lambda check: safe_extract_sync(dest / "many.zip", tmp_path / "out", checkpoint=check),
    ):
        calls: list[int] = []
        extract(lambda calls=calls: calls.append(1))
        counts.append(len(calls))
    assert counts[0] == counts[1]  # the validation's checkpoint too (one per 256 members)
