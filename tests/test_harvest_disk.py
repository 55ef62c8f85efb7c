"""The harvest's answers about the destination (`_RealDisk`, `_FolderView`) on a real folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from zigziik.download import existing_complete_file, is_complete_file
from zigziik.zigna.harvest._run import _FolderView, _RealDisk

FILES = {"a.jpg": 3, "b.png": 4, "b.jpg": 5, "noext": 6, "c.tar.gz": 7, ".hidden": 1}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "o"
    folder.mkdir()
    for name, size in FILES.items():
        (folder / name).write_bytes(b"x" * size)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x" * 9)
    (folder / "link.jpg").symlink_to(outside)
    (folder / "d.jpg").mkdir()
    return tmp_path


QUESTIONS = [
    (stem, size)
    for stem in [
        "a.jpg",
        "a",
        "b",
        "b.png",
        "noext",
        "c",
        "c.tar",
        "link.jpg",
        "link",
        "d.jpg",
        "d",
        "missing",
        "missing.jpg",
        "",
        ".hidden",
        "a.j",
    ]
    for size in [None, 0, 1, 3, 4, 5, 6, 7, 9]
]


@pytest.mark.parametrize(("stem", "size"), QUESTIONS)
def test_a_folder_view_answers_as_the_disk_does(dest: Path, stem: str, size: int | None) -> None:
    view, disk = _FolderView(dest, "o"), _RealDisk(dest)
    found = existing_complete_file(dest / "o", stem, size)
    answer = view.find("o", stem, size)
    if found is None:
        assert answer is None
    else:
        assert answer is not None
        assert size is not None and is_complete_file(dest / "o" / answer, size)
        assert answer == stem or answer.startswith(stem + ".")
    if size is not None and stem:
        assert view.has("o", stem, size) is disk.has("o", stem, size)


def test_a_missing_folder_has_nothing_and_costs_one_look(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = _FolderView(dest, "new")
    looked: list[str] = []
    monkeypatch.setattr("os.lstat", lambda path: looked.append(path))
    assert view.find("new", "a.jpg", 3) is None
    assert view.find("new", "a", 3) is None
    assert not view.has("new", "a.jpg", 3)
    assert looked == []
