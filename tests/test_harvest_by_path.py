"""Harvests where the platform has no ``dir_fd`` (Windows): `SafeFolder` goes by path.

Forced here on Linux (``zigziik._safedir.DIR_FDS`` off), over real loopback sockets: every
folder the harvest opens is held by path (checked), and the harvest, its resume, zips with
extraction and every refusal of a link under ``dest_dir`` work as with descriptors.
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


async def test_an_order_folder_that_is_a_link_is_refused_by_path(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    with served(orders=3) as (fake, base):
        victim = next(o for o in fake.order_ids if fake.pictures(o))
        (dest / sanitize_component(victim)).symlink_to(outside, target_is_directory=True)
        for strategy in ("pictures", "zip"):
            async with client(base) as zigna:
                report = await zigna.harvest(dest, strategy=strategy)  # type: ignore[arg-type]
            assert [f.order_id for f in report.failures] == [victim]
            assert "symbolic link" in report.failures[0].reason
        assert list(outside.iterdir()) == []


async def test_a_picture_file_that_is_a_link_is_replaced_by_path(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=2) as (fake, base):
        expected = expected_files(fake)
        victim = sorted(expected)[0]
        outside = tmp_path / "outside.jpg"
        outside.write_bytes(b"o" * len(expected[victim]))  # even of the right size
        (dest / victim).parent.mkdir(parents=True)
        (dest / victim).symlink_to(outside)
        async with client(base) as zigna:
            report = await zigna.harvest(dest)
        assert report.ok
        assert not (dest / victim).is_symlink()
        assert (dest / victim).read_bytes() == expected[victim]
        assert outside.read_bytes() == b"o" * len(expected[victim])


async def test_a_temporary_name_that_is_a_link_is_never_written_through_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zigziik.download as download

    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    with served(orders=2) as (fake, base):
        expected = expected_files(fake)
        victim = sorted(expected)[0]
        folder, name = victim.split("/")
        (dest / folder).mkdir(parents=True)
        fixed = f".{name}.0000000000000000.part"
        (dest / folder / fixed).symlink_to(outside)
        real = download.temporary_name
        monkeypatch.setattr(
            download, "temporary_name", lambda final: fixed if final == name else real(final)
        )
        async with client(base) as zigna:
            report = await zigna.harvest(dest)
        assert [f.order_id for f in report.failures] == [folder]
        assert outside.read_bytes() == b"untouched"
        assert (dest / folder / fixed).is_symlink()


async def test_zip_extraction_never_writes_through_a_link_by_path(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"untouched")
    with served(orders=2) as (fake, base):
        order_id = next(o for o in fake.order_ids if fake.pictures(o))
        member = fake.pictures(order_id)[0]["originalFileName"]
        folder = dest / sanitize_component(order_id)
        folder.mkdir(parents=True)
        (folder / member).symlink_to(outside)
        async with client(base) as zigna:
            report = await zigna.harvest(dest, order_ids=[order_id], strategy="zip", extract=True)
        assert report.ok, report.failures
        assert outside.read_bytes() == b"untouched"
        assert not (folder / member).is_symlink()
