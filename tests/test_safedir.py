"""`SafeFolder`: files made, moved and removed by name in an open folder, never through a link;
by descriptor where the platform has ``dir_fd`` (here), by path where it has not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    with pytest.raises(UnsafePathError, match="is a symbolic link") as caught:
        root.child("link", create=create)
    assert caught.value.link is True
    with pytest.raises(UnsafePathError, match="exists and is not a folder") as caught:
        root.child("file", create=create)
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
    (tmp_path / "a").rename(tmp_path / "b")
    (tmp_path / "a").symlink_to(tmp_path / "b", target_is_directory=True)
    os.close(folder.create("x"))
    assert (tmp_path / "b" / "x").exists()
