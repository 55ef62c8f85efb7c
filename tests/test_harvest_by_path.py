"""Harvests where the platform has no ``dir_fd`` (Windows): `SafeFolder` goes by path.

Forced here on Linux (``zigziik._safedir.DIR_FDS`` off), over real loopback sockets: every
folder the harvest opens is held by path (checked), and the harvest, its resume and zips
with extraction work as with descriptors. The refusals of links under ``dest_dir`` run both
ways in `test_harvest_scale` (its ``folders`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_harvest import client, expected_files, files_on_disk, served

from zigziik import _safedir
from zigziik._filenames import sanitize_component
from zigziik._safedir import SafeFolder

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def by_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SafeFolder]]:
    """No descriptors; every folder made is kept, to check that none holds one."""
    monkeypatch.setattr(_safedir, "DIR_FDS", False)
    made: list[SafeFolder] = []
    original = SafeFolder.__init__

    def init(self: SafeFolder, path: Path, fd: int | None) -> None:
        original(self, path, fd)
        made.append(self)

    monkeypatch.setattr(SafeFolder, "__init__", init)
    yield made
    assert made, "the harvest opened no folder"
    assert all(folder.fd is None for folder in made)


def fetched(fake: object) -> list[str]:
    return [p for _, p in fake.requests if "/pictures/" in p]  # type: ignore[attr-defined]


async def test_a_harvest_and_its_resume_by_path(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=4) as (fake, base):
        async with client(base) as zigna:
            first = await zigna.harvest(dest, strategy="pictures")
            assert first.ok and first.written == fake.picture_count
            downloads = len(fetched(fake))
            again = await zigna.harvest(dest, strategy="pictures")
        assert again.ok and again.written == 0 and again.skipped == fake.picture_count
        assert len(fetched(fake)) == downloads  # the resume fetched nothing
        assert files_on_disk(dest) == expected_files(fake)


async def test_a_resumed_file_of_the_wrong_size_is_fetched_again_by_path(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=3) as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(dest, strategy="pictures")
            victim = dest / sorted(expected_files(fake))[1]
            victim.write_bytes(victim.read_bytes()[:-1])
            downloads = len(fetched(fake))
            again = await zigna.harvest(dest, strategy="pictures")
        assert again.ok and again.written == 1 and again.skipped == fake.picture_count - 1
        assert len(fetched(fake)) == downloads + 1
        assert files_on_disk(dest) == expected_files(fake)


async def test_zips_are_unpacked_by_path(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=3) as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(dest, strategy="zip", extract=True)
        assert report.ok, report.failures
        on_disk = files_on_disk(dest)
        pictures = {k: v for k, v in on_disk.items() if not k.endswith(".zip")}
        # The unpacked members are the pictures under their original names.
        for order_id in fake.order_ids:
            folder = sanitize_component(order_id)
            for picture in fake.pictures(order_id):
                member = f"{folder}/{picture['originalFileName']}"
                assert pictures[member] == fake.picture_bytes(order_id, picture["pictureID"])
