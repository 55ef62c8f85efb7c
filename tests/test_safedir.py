"""`SafeFolder`: files made, moved and removed by name in an open folder, never through a link;
by descriptor where the platform has ``dir_fd`` (here), by path where it has not."""

from __future__ import annotations

import errno
import gc
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from zigziik import _safedir
from zigziik._safedir import DIR_FDS, SafeFolder, UnsafePathError


def by_path(path: Path) -> SafeFolder:
    return SafeFolder(path, None)


MAKERS = {"descriptor": SafeFolder.open, "path": by_path}


def test_this_platform_holds_folders_as_descriptors() -> None:
    assert DIR_FDS
    assert isinstance(SafeFolder.open(Path.cwd()).fd, int)


@pytest.mark.parametrize("mode", MAKERS)
def test_a_child_folder_is_made_opened_or_missing(tmp_path: Path, mode: str) -> None:
    root = MAKERS[mode](tmp_path)
    assert root.child("a", create=False) is None
    made = root.child("a", create=True)
    assert made is not None and made.path == tmp_path / "a" and (tmp_path / "a").is_dir()
    again = root.child("a", create=True)
    assert again is not None and again.path == tmp_path / "a"


@pytest.mark.parametrize("mode", MAKERS)
@pytest.mark.parametrize("create", [True, False])
def test_a_child_that_is_a_link_or_a_file_is_refused(
    tmp_path: Path, mode: str, create: bool
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "file").write_bytes(b"f")
    root = MAKERS[mode](tmp_path)
    link = re.escape(str(tmp_path / "link"))
    with pytest.raises(
        UnsafePathError,
        match=f"^{link} is a symbolic link; a harvest never writes through one \\(remove it\\)$",
    ) as caught:
        root.child("link", create=create)
    assert caught.value.link is True
    file = re.escape(str(tmp_path / "file"))
    with pytest.raises(UnsafePathError, match=f"^{file} exists and is not a folder$") as caught:
        root.child("file", create=create)
    assert caught.value.link is False
    if mode == "descriptor" and not create:  # through a file: nothing to stat, no link
        with pytest.raises(UnsafePathError, match="exists and is not a folder") as caught:
            root.child("file/sub", create=False)
        assert caught.value.link is False
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("mode", MAKERS)
def test_files_are_made_moved_read_and_removed_by_name(tmp_path: Path, mode: str) -> None:
    folder = MAKERS[mode](tmp_path)
    fd = folder.create(".x.part")
    os.write(fd, b"data")
    os.close(fd)
    with pytest.raises(FileExistsError):
        folder.create(".x.part")
    folder.replace(".x.part", "x.jpg")
    assert folder.lstat("x.jpg").st_size == 4
    fd = folder.open_read("x.jpg")
    assert os.read(fd, 10) == b"data"
    os.close(fd)
    folder.unlink("x.jpg")
    assert list(tmp_path.iterdir()) == []
    assert folder.mkdir("d") is True
    assert folder.mkdir("d") is False
    folder.rmdir("d")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", MAKERS)
def test_a_link_in_a_files_place_is_never_followed(tmp_path: Path, mode: str) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"untouched")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x").symlink_to(target)
    folder = MAKERS[mode](tmp_path / "in")
    with pytest.raises(FileExistsError):
        folder.create("x")
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP, whatever its class
        folder.open_read("x")
    assert target.read_bytes() == b"untouched"


def test_the_descriptor_is_held_after_the_path_moves(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    folder = SafeFolder.open(tmp_path / "a")
    inode = (tmp_path / "a").stat().st_ino
    (tmp_path / "a").rename(tmp_path / "b")
    (tmp_path / "a").symlink_to(tmp_path / "b", target_is_directory=True)
    os.close(folder.create("x"))
    assert (tmp_path / "b" / "x").exists()
    (tmp_path / "a").unlink()
    (tmp_path / "a").mkdir()  # another folder at the old path
    assert folder.stat().st_ino == inode != (tmp_path / "a").stat().st_ino


@pytest.mark.parametrize("mode", MAKERS)
def test_a_new_file_is_made_with_mode_0666_before_the_umask(tmp_path: Path, mode: str) -> None:
    folder = MAKERS[mode](tmp_path)
    old = os.umask(0)
    try:
        os.close(folder.create("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o666


@pytest.mark.parametrize("mode", MAKERS)
def test_stat_is_the_folders_own_and_lstat_never_follows_a_link(tmp_path: Path, mode: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link").symlink_to(tmp_path)
    folder = MAKERS[mode](tmp_path / "in")
    own = folder.stat()
    assert (own.st_dev, own.st_ino) == (
        (tmp_path / "in").stat().st_dev,
        (tmp_path / "in").stat().st_ino,
    )
    assert stat.S_ISLNK(folder.lstat("link").st_mode)


def test_the_folder_is_named_by_its_path(tmp_path: Path) -> None:
    assert repr(SafeFolder.open(tmp_path)) == f"SafeFolder({str(tmp_path)!r})"
    assert repr(by_path(tmp_path)) == f"SafeFolder({str(tmp_path)!r})"


def test_the_descriptor_is_closed_once_the_folder_is_dropped(tmp_path: Path) -> None:
    folder = SafeFolder.open(tmp_path)
    fd = folder.fd
    assert fd is not None
    os.fstat(fd)  # open
    del folder
    gc.collect()
    with pytest.raises(OSError) as caught:  # noqa: PT011 - EBADF, checked below
        os.fstat(fd)
    assert caught.value.errno == errno.EBADF


@pytest.mark.parametrize("mode", MAKERS)
def test_a_folder_removed_as_soon_as_it_is_made_is_an_error_not_missing(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process removes the new folder between its mkdir and its open (or lstat): with
    # create=True that is an error, never None ("missing"), which a caller would not expect.
    real_mkdir = SafeFolder.mkdir

    def made_then_removed(self: SafeFolder, name: str) -> bool:
        made = real_mkdir(self, name)
        os.rmdir(self.path / name)
        return made

    monkeypatch.setattr(SafeFolder, "mkdir", made_then_removed)
    with pytest.raises(FileNotFoundError):
        MAKERS[mode](tmp_path).child("a", create=True)
    assert MAKERS[mode](tmp_path).child("a", create=False) is None


def test_a_folder_whose_descriptor_was_closed_elsewhere_is_dropped_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing its descriptor again (EBADF) in __del__ must not raise there: an exception in
    # __del__ is printed to stderr ("Exception ignored in ...") at some later moment.
    raised: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)
    folder = SafeFolder.open(tmp_path)
    assert folder.fd is not None
    os.close(folder.fd)
    del folder
    gc.collect()
    assert raised == []


def test_without_descriptors_a_folder_is_checked_and_held_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_safedir, "DIR_FDS", False)
    folder = SafeFolder.open(tmp_path)
    assert folder.fd is None and folder.path == tmp_path
    (tmp_path / "file").write_bytes(b"f")
    with pytest.raises(
        NotADirectoryError, match=f"^not a folder: {re.escape(str(tmp_path / 'file'))}$"
    ):
        SafeFolder.open(tmp_path / "file")
    with pytest.raises(NotADirectoryError, match="^not a folder: "):
        SafeFolder.open(tmp_path / "missing")
