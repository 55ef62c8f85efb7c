"""`ZignaClient.harvest` against the fake Zigna server, over real loopback sockets."""

from __future__ import annotations

import os
import sqlite3
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from zigziik import RetryPolicy, ZignaClient
from zigziik._filenames import picture_file_name, sanitize_component
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve
from zigziik.zigna.harvest import HarvestEvent, HarvestFailure, HarvestReport, _manifest
from zigziik.zigna.harvest._manifest import MANIFEST_NAME, load_manifest

MANIFEST_PREFIX = ".zigziik-manifest"  # the database, its WAL files, a migrated JSON one
FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.002, jitter=False)
SMALL = (2_000, 12_000)


@contextmanager
def served(**options: Any) -> Iterator[tuple[FakeZigna, str]]:
    options.setdefault("orders", 5)
    options.setdefault("picture_size", SMALL)
    options.setdefault("pictures_per_order", (2, 5))
    fake = FakeZigna(**options)
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


def client(base: str, **options: Any) -> ZignaClient:
    options.setdefault("retry", FAST_RETRY)
    return ZignaClient(DEMO_API_KEY, base_url=base, **options)


def expected_files(fake: FakeZigna, order_ids: list[str] | None = None) -> dict[str, bytes]:
    """Relative path -> bytes, for every picture the fake has (of ``order_ids``)."""
    files: dict[str, bytes] = {}
    for order_id in order_ids if order_ids is not None else fake.order_ids:
        for picture in fake.pictures(order_id):
            pid = picture["pictureID"]
            kind = fake.picture_content_type(order_id, pid)
            name = picture_file_name(pid, picture["originalFileName"], kind)
            files[f"{sanitize_component(order_id)}/{name}"] = fake.picture_bytes(order_id, pid)
    return files


def files_on_disk(dest: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``dest`` except the manifest."""
    found: dict[str, bytes] = {}
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink() and not path.name.startswith(MANIFEST_PREFIX):
            found[path.relative_to(dest).as_posix()] = path.read_bytes()
    return found


def leftovers(dest: Path) -> list[str]:
    return [p.name for p in dest.rglob("*") if p.name.endswith(".part")]


def downloads(fake: FakeZigna) -> set[str]:
    """Paths of every picture download the fake served."""
    return {path for method, path in fake.requests if "/pictures/" in path and "zip" not in path}


def check_report(report: HarvestReport) -> None:
    assert isinstance(report, HarvestReport)
    for name in ("orders", "written", "skipped", "bytes", "calls"):
        assert type(getattr(report, name)) is int, name
    assert isinstance(report.failures, list)
    for failure in report.failures:
        assert isinstance(failure, HarvestFailure)
        assert isinstance(failure.reason, str) and failure.reason
        assert "\n" not in failure.reason


# -- complete harvests -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_complete_harvest_is_byte_exact(tmp_path: Path) -> None:
    with served() as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
        check_report(report)
        expected = expected_files(fake)
        assert files_on_disk(tmp_path) == expected
        assert report.orders == len(fake.order_ids)
        assert report.written == fake.picture_count == len(expected)
        assert report.skipped == 0
        assert report.bytes == fake.picture_bytes_total
        assert report.failures == []
        assert report.ok
        # one listing page, one picture list per order, one call per picture
        assert report.calls == fake.calls == 1 + len(fake.order_ids) + fake.picture_count
        assert leftovers(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_second_run_fetches_nothing_and_spends_only_the_listing(tmp_path: Path) -> None:
    with served() as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(tmp_path)
            fake.reset_stats()
            report = await zigna.harvest(tmp_path)
            check_report(report)
            assert (report.written, report.bytes, report.failures) == (0, 0, [])
            assert report.skipped == fake.picture_count
            assert report.calls == 1
            assert fake.requests == [("GET", "/v2/orders?take=50&skip=0")]
            # Given the order ids, nothing is sent but a look at the orders that had no
            # pictures (without the listing, nothing tells whether they have some now).
            fake.reset_stats()
            again = await zigna.harvest(tmp_path, order_ids=fake.order_ids)
        empty = [o for o in fake.order_ids if not fake.pictures(o)]
        assert again.calls == len(empty) == fake.calls
        assert sorted(fake.requests) == sorted(("GET", f"/v2/orders/{o}/pictures") for o in empty)
        assert again.skipped == fake.picture_count


@pytest.mark.anyio
async def test_a_deleted_file_is_fetched_again_alone(tmp_path: Path) -> None:
    with served() as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(tmp_path)
            victim = sorted(expected_files(fake))[3]
            (tmp_path / victim).unlink()
            fake.reset_stats()
            report = await zigna.harvest(tmp_path)
        assert report.written == 1
        assert report.skipped == fake.picture_count - 1
        assert report.calls == 3  # orders, that order's pictures, the picture
        assert files_on_disk(tmp_path) == expected_files(fake)


@pytest.mark.anyio
@pytest.mark.parametrize("change", ["shorter", "longer", "emptied", "a link of the right size"])
async def test_a_recorded_file_changed_on_disk_is_fetched_again_alone(
    tmp_path: Path, change: str
) -> None:
    dest = tmp_path / "dest"
    with served(picture_size=(2_000, 3_000)) as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(dest)
            victim = sorted(expected_files(fake))[3]
            path = dest / victim
            content = path.read_bytes()
            outside = tmp_path / "outside.jpg"
            if change == "a link of the right size":
                outside.write_bytes(content)
                path.unlink()
                # The link itself of the file's size too: its target padded with slashes.
                target = str(outside)
                path.symlink_to("/" * (len(content) - len(target)) + target)
                assert path.lstat().st_size == len(content) == path.stat().st_size
            else:
                path.write_bytes(
                    {"shorter": content[:-1], "longer": content + b"x", "emptied": b""}[change]
                )
            fake.reset_stats()
            report = await zigna.harvest(dest)
        assert report.written == 1
        assert report.skipped == fake.picture_count - 1
        assert report.calls == 3  # orders, that order's pictures, the picture
        assert files_on_disk(dest) == expected_files(fake)
        assert not path.is_symlink()
        if outside.exists():
            assert outside.read_bytes() == content  # not written through


@pytest.mark.anyio
async def test_an_order_folder_swapped_for_a_link_to_its_copy_is_not_complete(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "dest"
    with served() as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(dest)
            victim = fake.order_ids[1]
            folder = dest / sanitize_component(victim)
            copy = tmp_path / "copy"
            folder.rename(copy)
            folder.symlink_to(copy, target_is_directory=True)
            before = files_on_disk(copy)
            report = await zigna.harvest(dest)
        assert [f.order_id for f in report.failures] == [victim]
        assert "symbolic link" in report.failures[0].reason
        assert report.skipped == fake.picture_count - len(fake.pictures(victim))
        assert files_on_disk(copy) == before


@pytest.mark.anyio
@pytest.mark.parametrize("given", [False, True], ids=["listed", "given"])
async def test_a_resume_in_chunks_looks_at_every_order_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: bool
) -> None:
    from zigziik.zigna.harvest import _run

    # Chunks of 2 orders (looked at on disk while the listing goes on), 4 per listing page.
    monkeypatch.setattr(_run, "_CLASSIFY_CHUNK", 2)
    monkeypatch.setattr(_run, "ORDER_PAGE_SIZE", 4)
    monkeypatch.setattr(_manifest, "_QUERY_CHUNK", 3)
    with served(orders=9, pictures_per_order=(1, 3)) as (fake, base):
        async with client(base) as zigna:
            first = await zigna.harvest(tmp_path)
            victim = sorted(expected_files(fake))[-1]  # of the last order, the last chunk
            (tmp_path / victim).unlink()
            fake.reset_stats()
            events: list[HarvestEvent] = []
            again = await zigna.harvest(
                tmp_path, order_ids=fake.order_ids if given else None, progress=events.append
            )
        assert first.ok and again.ok
        assert again.written == 1 and again.skipped == fake.picture_count - 1
        skipped = Counter(e.order_id for e in events if e.kind == "skip" and e.picture_id is None)
        last = victim.split("/")[0]
        # Given, not listed: an empty order is looked at again (nothing says it is unchanged).
        expected = [o for o in fake.order_ids if o != last and (fake.pictures(o) or not given)]
        assert skipped == Counter(expected)
        assert files_on_disk(tmp_path) == expected_files(fake)


@pytest.mark.anyio
async def test_an_order_complete_only_in_a_folder_it_no_longer_has_is_looked_at_again(
    tmp_path: Path,
) -> None:
    with served(orders=4, pictures_per_order=(2, 3)) as (fake, base):
        first, second = [o for o in fake.order_ids if fake.pictures(o)][:2]
        async with client(base) as zigna:
            await zigna.harvest(tmp_path)
            # A damaged manifest gives the second order the first one's folder, where copies
            # of its files are: the first keeps its folder, the second gets its own again.
            for name, data in expected_files(fake, [second]).items():
                (tmp_path / first / name.split("/")[1]).write_bytes(data)
            with closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as db:
                db.execute("UPDATE orders SET folder = ? WHERE order_id = ?", (first, second))
                db.commit()
            fake.reset_stats()
            report = await zigna.harvest(tmp_path)
        assert report.ok and report.written == 0
        assert fake.requests == [
            ("GET", "/v2/orders?take=50&skip=0"),
            ("GET", f"/v2/orders/{second}/pictures"),
        ]


@pytest.mark.anyio
async def test_concurrency_bounds_requests_in_flight(tmp_path: Path) -> None:
    # Enough latency that a second request arrives while the first is held, under load too.
    with served(orders=6, pictures_per_order=6, latency=0.1) as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, concurrency=3)
        assert report.ok
        assert 1 < fake.max_in_flight <= 3


@pytest.mark.anyio
async def test_only_the_given_orders_are_fetched(tmp_path: Path) -> None:
    with served() as (fake, base):
        wanted = [fake.order_ids[0], fake.order_ids[2]]
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, order_ids=[*wanted, wanted[0]])
        assert report.orders == 2
        assert files_on_disk(tmp_path) == expected_files(fake, wanted)
        assert not any(path == "/v2/orders?take=50&skip=0" for _, path in fake.requests)


@pytest.mark.anyio
async def test_an_unknown_order_is_reported_and_the_rest_fetched(tmp_path: Path) -> None:
    with served() as (fake, base):
        wanted = ["no-such-order", fake.order_ids[0]]
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, order_ids=wanted)
        check_report(report)
        assert [(f.order_id, f.picture_id) for f in report.failures] == [("no-such-order", None)]
        assert "404" in report.failures[0].reason
        assert files_on_disk(tmp_path) == expected_files(fake, wanted[1:])


@pytest.mark.anyio
async def test_progress_sees_every_byte_and_file(tmp_path: Path) -> None:
    events: list[HarvestEvent] = []
    with served() as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, progress=events.append)
    assert all(isinstance(e, HarvestEvent) for e in events)
    kinds = Counter(e.kind for e in events)
    assert kinds["file"] == report.written
    assert kinds["order"] == len(fake.order_ids)
    assert sum(e.bytes for e in events if e.kind == "file") == report.bytes
    assert sum(e.bytes for e in events if e.kind == "bytes") == report.bytes
    assert sum(e.files for e in events if e.kind == "order") == report.written
    for event in events:
        if event.kind == "file":
            assert isinstance(event.path, Path) and event.path.is_file()


@pytest.mark.anyio
async def test_a_raising_progress_callback_does_not_break_the_harvest(tmp_path: Path) -> None:
    def broken(event: HarvestEvent) -> None:
        raise RuntimeError("display crashed")

    with served() as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, progress=broken)
        assert report.ok
        assert files_on_disk(tmp_path) == expected_files(fake)


# -- hostile and duplicate names ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_hostile_and_duplicate_names_stay_inside_and_apart(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=8, hostile_names=True, pictures_per_order=(3, 6)) as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(dest)
        check_report(report)
        assert report.ok
        expected = expected_files(fake)
        assert files_on_disk(dest) == expected
    assert report.written == len(expected)
    # Nothing escaped: the only thing beside dest is dest.
    assert [p.name for p in tmp_path.iterdir()] == ["dest"]
    names = [Path(rel).name for rel in expected]
    assert sum(name.endswith("-IMG_0001.jpg") for name in names) == 2
    for rel in expected:
        _, name = rel.split("/")
        assert name == sanitize_component(name)
        assert not name.startswith(".")


# -- broken transfers --------------------------------------------------------------------------


def first_picture(fake: FakeZigna) -> tuple[str, int]:
    for order_id in fake.order_ids:
        pictures = fake.pictures(order_id)
        if pictures:
            return order_id, pictures[0]["pictureID"]
    raise AssertionError("the fake has no pictures")


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize("fault", ["truncate", "reset", "wrong_length_longer"])
async def test_a_picture_broken_every_time_is_reported_and_the_rest_complete(
    tmp_path: Path, fault: str
) -> None:
    with served() as (fake, base):
        order_id, pid = first_picture(fake)
        match = f"/pictures/{pid}"
        if fault == "truncate":
            fake.faults.truncate_next(FAST_RETRY.max_attempts, match=match)
        elif fault == "reset":
            fake.faults.reset_next(FAST_RETRY.max_attempts, match=match)
        else:
            fake.faults.wrong_length_next(FAST_RETRY.max_attempts, match=match, delta=5)
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
            check_report(report)
            assert [(f.order_id, f.picture_id) for f in report.failures] == [(order_id, pid)]
            expected = expected_files(fake)
            broken = next(rel for rel in expected if f"/{pid}-" in rel)
            assert files_on_disk(tmp_path) == {k: v for k, v in expected.items() if k != broken}
            assert leftovers(tmp_path) == []
            assert report.calls == fake.calls  # retries included
            # The next run fetches the missing picture, and only it.
            fake.reset_stats()
            again = await zigna.harvest(tmp_path)
        assert again.ok
        assert again.written == 1
        assert again.calls == 3
        assert files_on_disk(tmp_path) == expected


@pytest.mark.anyio
async def test_a_transfer_broken_once_is_retried(tmp_path: Path) -> None:
    with served() as (fake, base):
        _, pid = first_picture(fake)
        fake.faults.reset_next(1, match=f"/pictures/{pid}")
        fake.faults.truncate_next(1, match="/pictures/")
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
        assert report.ok
        assert files_on_disk(tmp_path) == expected_files(fake)
        assert report.calls == fake.calls == 1 + len(fake.order_ids) + fake.picture_count + 2


@pytest.mark.anyio
async def test_a_short_body_of_the_wrong_size_is_an_integrity_failure(tmp_path: Path) -> None:
    with served() as (fake, base):
        order_id, pid = first_picture(fake)
        fake.faults.wrong_length_next(1, match=f"/pictures/{pid}", delta=-10)
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
        assert [(f.order_id, f.picture_id) for f in report.failures] == [(order_id, pid)]
        assert "size" in report.failures[0].reason
        assert len(files_on_disk(tmp_path)) == fake.picture_count - 1
        assert leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_server_errors_on_a_picture_and_an_order(tmp_path: Path) -> None:
    with served() as (fake, base):
        order_id, pid = first_picture(fake)
        other = next(o for o in fake.order_ids if o != order_id and fake.pictures(o))
        fake.faults.fail_next(FAST_RETRY.max_attempts, status=500, match=f"/pictures/{pid}")
        fake.faults.fail_next(1, status=403, match=f"/orders/{other}/pictures")
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
        check_report(report)
        assert sorted((f.order_id, f.picture_id) for f in report.failures) == sorted(
            [(order_id, pid), (other, None)]
        )
        got = files_on_disk(tmp_path)
        assert len(got) == fake.picture_count - 1 - len(fake.pictures(other))


# -- cancellation and crashes ------------------------------------------------------------------


def cancel_on(scope: anyio.CancelScope, kind: str, count: int) -> Callable[[HarvestEvent], None]:
    seen = 0

    def progress(event: HarvestEvent) -> None:
        nonlocal seen
        if event.kind == kind:
            seen += 1
            if seen == count:
                scope.cancel()

    return progress


def check_partial(dest: Path, expected: dict[str, bytes]) -> dict[str, bytes]:
    """Every file present is complete and exact; no temporary file is left; manifest valid."""
    got = files_on_disk(dest)
    assert leftovers(dest) == []
    for rel, data in got.items():
        assert expected[rel] == data, rel
    manifest = load_manifest(dest)
    with closing(sqlite3.connect(dest / MANIFEST_NAME)) as db:  # not torn
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for record in manifest.orders.values():
        for file in record.pictures.values():
            assert (dest / record.folder / file.name).stat().st_size == file.size
    return got


@pytest.mark.anyio
@pytest.mark.both_backends
@pytest.mark.parametrize(("kind", "count"), [("bytes", 7), ("file", 4), ("order", 2)])
async def test_cancellation_mid_harvest_leaves_no_partial_file_and_resumes(
    tmp_path: Path, kind: str, count: int
) -> None:
    with served(orders=6, pictures_per_order=(4, 6), picture_size=(300_000, 600_000)) as (
        fake,
        base,
    ):
        expected = expected_files(fake)
        async with client(base) as zigna:
            with anyio.CancelScope() as scope:
                await zigna.harvest(tmp_path, concurrency=4, progress=cancel_on(scope, kind, count))
            assert scope.cancelled_caught
            before = check_partial(tmp_path, expected)
            assert len(before) < len(expected)
            fetched = downloads(fake)
            fake.reset_stats()
            report = await zigna.harvest(tmp_path, concurrency=4)
        assert report.ok
        assert files_on_disk(tmp_path) == expected
        assert report.written == len(expected) - len(before)
        assert report.skipped == len(before)
        # No call is spent on a picture that was complete before.
        completed = {p for p in fetched if any(f"/{p.rsplit('/', 1)[1]}-" in r for r in before)}
        assert not completed & downloads(fake)


@pytest.mark.anyio
async def test_a_crash_without_a_manifest_still_spends_no_call_on_finished_files(
    tmp_path: Path,
) -> None:
    with served() as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(tmp_path)
            for path in tmp_path.glob(MANIFEST_PREFIX + "*"):
                path.unlink()
            fake.reset_stats()
            report = await zigna.harvest(tmp_path)
        assert report.written == 0
        assert report.skipped == fake.picture_count
        assert downloads(fake) == set()
        assert report.calls == 1 + len(fake.order_ids)


@pytest.mark.anyio
async def test_a_corrupt_manifest_is_replaced(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("{ this is not json")
    with served() as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
    assert report.ok
    assert len(load_manifest(tmp_path).orders) == len(fake.order_ids)


# -- strategies and the budget -----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_zip_strategy_one_call_per_order_and_extract(tmp_path: Path) -> None:
    with served() as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, strategy="zip", extract=True)
        check_report(report)
        assert report.ok
        with_pictures = [o for o in fake.order_ids if fake.pictures(o)]
        assert report.calls == fake.calls == 1 + len(fake.order_ids)
        assert report.written == len(with_pictures)
        for order_id in with_pictures:
            folder = tmp_path / sanitize_component(order_id)
            archive = folder / sanitize_component(f"{order_id}.zip")
            assert zipfile.is_zipfile(archive)
            for picture in fake.pictures(order_id):
                unpacked = folder / picture["originalFileName"]
                assert unpacked.read_bytes() == fake.picture_bytes(order_id, picture["pictureID"])
        assert report.bytes == sum(
            (tmp_path / o / f"{o}.zip").stat().st_size for o in with_pictures
        )
        # Already complete: a second run sends only the listing.
        fake.reset_stats()
        async with client(base) as zigna:
            again = await zigna.harvest(tmp_path, strategy="zip", extract=True)
        assert (again.calls, again.written, again.skipped) == (1, 0, len(with_pictures))


@pytest.mark.anyio
async def test_an_unsafe_zip_is_reported_not_unpacked(tmp_path: Path) -> None:
    with served(orders=8, hostile_names=True) as (_, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path / "d", strategy="zip", extract=True)
    assert report.failures
    assert all("unpacking" in f.reason for f in report.failures)
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_auto_under_a_small_budget_zips_with_about_one_call_per_order(
    tmp_path: Path,
) -> None:
    orders = 10
    with served(orders=orders, daily_limit=orders + 3) as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
        check_report(report)
        assert report.ok
        assert report.calls == fake.calls <= orders + 2
        assert fake.rejected == 0
        with_pictures = [o for o in fake.order_ids if fake.pictures(o)]
        assert report.written == len(with_pictures)


@pytest.mark.anyio
async def test_auto_with_a_large_budget_fetches_per_picture(tmp_path: Path) -> None:
    with served() as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, strategy="auto")
        assert report.written == fake.picture_count
        assert files_on_disk(tmp_path) == expected_files(fake)


@pytest.mark.anyio
async def test_auto_with_fewer_calls_than_orders_reports_the_rest(tmp_path: Path) -> None:
    with served(orders=8, daily_limit=5) as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
            check_report(report)
            assert fake.rejected == 0
            assert report.calls == 5
            assert len(report.failures) == 8 - 4
            assert all("budget" in f.reason for f in report.failures)
            assert all(f.picture_id is None for f in report.failures)
        # Next day (a new budget): the rest.
        fake.reset_budget()
        fake.reset_stats()
        async with client(base) as zigna:
            again = await zigna.harvest(tmp_path)
        assert again.ok
        done = {f.order_id for f in report.failures}
        assert again.calls == 1 + len(done)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_pictures_strategy_out_of_budget_never_raises(tmp_path: Path) -> None:
    with served(orders=5, daily_limit=7) as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, strategy="pictures")
        check_report(report)
        assert report.calls <= 7
        assert report.failures
        assert any("budget" in f.reason for f in report.failures)
        assert fake.rejected == 0


@pytest.mark.anyio
async def test_no_budget_left_at_all(tmp_path: Path) -> None:
    with served(daily_limit=3) as (fake, base):
        fake.set_budget(remaining=0)
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path)
        check_report(report)
        assert report.orders == 0
        assert [f.order_id for f in report.failures] == [None]
        assert "listing the orders failed" in report.failures[0].reason


@pytest.mark.anyio
async def test_calls_are_counted_exactly_on_a_shared_client(tmp_path: Path) -> None:
    with served() as (fake, base):
        async with client(base) as zigna:
            reports: list[HarvestReport] = []

            async def harvest() -> None:
                reports.append(await zigna.harvest(tmp_path, concurrency=2))

            async def other_work() -> None:
                for _ in range(6):
                    await zigna.orders.get(fake.order_ids[0])

            async with anyio.create_task_group() as tg:
                tg.start_soon(harvest)
                tg.start_soon(other_work)
        assert reports[0].calls == fake.calls - 6


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"strategy": "fastest"}, ValueError),
        ({"concurrency": 0}, ValueError),
        ({"concurrency": 2.5}, TypeError),
        ({"concurrency": True}, TypeError),
        ({"order_ids": "240001"}, TypeError),
        ({"order_ids": [None]}, TypeError),
        ({"order_ids": ["  "]}, ValueError),
        ({"order_ids": [".."]}, ValueError),
        ({"progress": 5}, TypeError),
    ],
)
async def test_bad_arguments_are_refused_before_any_call(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    async with ZignaClient(DEMO_API_KEY, base_url="http://127.0.0.1:9/v2") as zigna:
        with pytest.raises(error):
            await zigna.harvest(tmp_path, **kwargs)
        assert zigna.budget is not None and zigna.budget.used == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.anyio
async def test_dest_dir_must_be_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    async with ZignaClient(DEMO_API_KEY, base_url="http://127.0.0.1:9/v2") as zigna:
        with pytest.raises(NotADirectoryError):
            await zigna.harvest(file)
