"""The harvest's pure core: manifest, folders, order and picture planning, the allowance."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from zigziik._filenames import picture_file_name
from zigziik.zigna.harvest import HarvestFailure, HarvestReport, ManifestError
from zigziik.zigna.harvest._manifest import (
    LEGACY_MANIFEST_NAME,
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    ManifestStore,
    ManifestWriter,
    OrderRecord,
    OrderSummary,
    ZipRecord,
    assign_folders,
    load_manifest,
    save_json_manifest,
    save_manifest,
)
from zigziik.zigna.harvest._plan import (
    ASSUMED_PICTURES_PER_ORDER,
    Allowance,
    DoneOrder,
    HarvestPlan,
    OrderInput,
    OrderJob,
    PicturesPlan,
    classify_order,
    estimate_calls,
    in_shard,
    order_fingerprint,
    plan_harvest,
    plan_pictures,
    route_jobs,
    shard_of,
)
from zigziik.zigna.models import Order, OrderStatus, Picture


class FakeDisk:
    """A destination described by a dict: folder -> {name: size}."""

    def __init__(self, files: dict[str, dict[str, int]] | None = None) -> None:
        self.files = files or {}
        self.asked: list[tuple[str, str]] = []

    def has(self, folder: str, name: str, size: int) -> bool:
        self.asked.append((folder, name))
        return self.files.get(folder, {}).get(name) == size

    def has_all(self, folder: str, names: Sequence[str], sizes: Sequence[int]) -> bool:
        return all([self.has(folder, name, size) for name, size in zip(names, sizes, strict=True)])

    def find(self, folder: str, stem: str, size: int | None) -> str | None:
        for name, actual in self.files.get(folder, {}).items():
            if (name == stem or name.startswith(stem + ".")) and actual == size:
                return name
        return None


def pic(pid: int | None, name: str | None = "IMG.jpg", size: int | None = 100) -> Picture:
    return Picture(picture_id=pid, original_file_name=name, size=size)


def complete_record(folder: str, fingerprint: str | None = "fp", **files: int) -> OrderRecord:
    record = OrderRecord(folder, complete=True, fingerprint=fingerprint)
    for index, (name, size) in enumerate(files.items()):
        record.pictures[str(index)] = FileRecord(name, size)
    return record


# -- report ------------------------------------------------------------------------------------


def test_report_properties() -> None:
    failure = HarvestFailure("1", 7, "boom")
    report = HarvestReport(orders=2, written=3, skipped=1, bytes=10, failures=[failure], calls=5)
    assert report.ok is False
    assert report.failed == 1
    assert HarvestReport(0, 0, 0, 0, [], 0).ok is True
    assert isinstance(report.failures[0], HarvestFailure)
    assert report.failures[0].picture_id == 7


# -- manifest ----------------------------------------------------------------------------------


def sample_manifest() -> Manifest:
    manifest = Manifest()
    manifest.orders["A1"] = OrderRecord(
        "A1",
        complete=True,
        fingerprint="5|x|y",
        pictures={"11": FileRecord("11-a.jpg", 10), "12": FileRecord("12-b.pdf", 20)},
    )
    manifest.orders["B/2"] = OrderRecord("B_2", zip=ZipRecord("B_2.zip", 99, extracted=True))
    return manifest


def test_manifest_round_trips_through_json() -> None:
    manifest = sample_manifest()
    data = json.loads(json.dumps(manifest.to_json()))
    again = Manifest.from_json(data)
    assert again == manifest
    assert isinstance(again.orders["A1"].pictures["11"], FileRecord)
    assert isinstance(again.orders["B/2"].zip, ZipRecord)
    assert again.orders["B/2"].zip.extracted is True


@pytest.mark.parametrize(
    "data",
    [
        [],
        "text",
        None,
        {"format": "something-else", "version": 1, "orders": {}},
        {"format": "zigziik-harvest-manifest", "version": 99, "orders": {}},
        {"format": "zigziik-harvest-manifest", "version": 1, "orders": []},
    ],
)
def test_foreign_manifests_are_refused(data: object) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(data)


def test_unsafe_or_malformed_entries_are_dropped() -> None:
    data = sample_manifest().to_json()
    orders = data["orders"]
    orders["evil"] = {"folder": "../../etc", "complete": True}
    orders["abs"] = {"folder": "/tmp", "complete": True}
    orders["dots"] = {"folder": "..", "complete": True}
    orders["notdict"] = 5
    orders["A1"]["pictures"]["13"] = {"name": "../x.jpg", "size": 5}
    orders["A1"]["pictures"]["14"] = {"name": "ok.jpg", "size": -1}
    orders["A1"]["pictures"]["15"] = {"name": "ok.jpg", "size": True}
    manifest = Manifest.from_json(data)
    assert set(manifest.orders) == {"A1", "B/2"}
    a1 = manifest.orders["A1"]
    assert set(a1.pictures) == {"11", "12"}
    # An order whose record lost entries can no longer be trusted to be complete.
    assert a1.complete is False


def test_save_and_load_manifest(tmp_path: Path) -> None:
    manifest = sample_manifest()
    save_manifest(tmp_path, manifest)
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]
    assert load_manifest(tmp_path) == manifest


def test_missing_manifest_is_a_fresh_one(tmp_path: Path) -> None:
    manifest = load_manifest(tmp_path)
    assert isinstance(manifest, Manifest)
    assert manifest.orders == {}


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'{"format": "other"}',
        b"[" * 100_000 + b"]" * 100_000,
        b"",
    ],
)
def test_corrupt_manifest_starts_fresh_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        manifest = load_manifest(tmp_path)
    assert manifest == Manifest()
    assert any("manifest" in r.getMessage() for r in caplog.records)


def test_unreadable_manifest_starts_fresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / MANIFEST_NAME).mkdir()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert load_manifest(tmp_path) == Manifest()
    assert caplog.records


def test_save_replaces_the_whole_manifest(tmp_path: Path) -> None:
    save_manifest(tmp_path, sample_manifest())
    smaller = Manifest({"C": OrderRecord("C", complete=True)})
    save_manifest(tmp_path, smaller)
    assert load_manifest(tmp_path) == smaller
    assert sorted(os.listdir(tmp_path)) == [MANIFEST_NAME]


def test_a_manifest_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.sqlite"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / MANIFEST_NAME).symlink_to(outside)
    with pytest.raises(ManifestError, match="symbolic link"):
        save_manifest(dest, sample_manifest())
    assert not outside.exists()


def test_a_json_manifest_is_migrated_once(tmp_path: Path) -> None:
    save_json_manifest(tmp_path, sample_manifest())
    assert load_manifest(tmp_path) == sample_manifest()  # read as it is, untouched
    store = ManifestStore(tmp_path)
    store.close()
    assert sorted(os.listdir(tmp_path)) == [
        LEGACY_MANIFEST_NAME + ".migrated",
        MANIFEST_NAME,
    ]
    assert load_manifest(tmp_path) == sample_manifest()


# -- fingerprints and folders ------------------------------------------------------------------


def test_order_fingerprint() -> None:
    assert order_fingerprint(Order(id="1")) is None
    taken = datetime(2024, 5, 1, 10, 0)
    first = order_fingerprint(Order(id="1", status_id=OrderStatus.COMPLETED, finished_date=taken))
    assert isinstance(first, str)
    assert first == "5||2024-05-01T10:00:00"
    assert order_fingerprint(Order(id="1", status_id=OrderStatus.PHOTOS_UPLOADED)) != first
    assert order_fingerprint(Order(id="1", status_id=77)) == "77||"


def test_folders_are_the_sanitised_ids() -> None:
    folders = assign_folders(["240001", "../../etc", "con", "a/b"], Manifest())
    assert folders["240001"] == "240001"
    assert folders["../../etc"] == "etc"
    assert folders["con"] == "_con"
    assert folders["a/b"] == "b"


def test_colliding_folders_are_told_apart() -> None:
    ids = ["x/abc", "abc", "ABC", "y\\abc"]
    folders = assign_folders(ids, Manifest())
    assert folders["x/abc"] == "abc"
    assert len({f.casefold() for f in folders.values()}) == 4
    for folder in folders.values():
        assert "/" not in folder and "\\" not in folder
        assert folder.casefold().startswith("abc")
    # Deterministic: the same run gives the same folders.
    assert assign_folders(ids, Manifest()) == folders


def test_a_colliding_folder_gets_the_first_ten_digits_of_its_ids_hash() -> None:
    def digest(order_id: str) -> str:
        return hashlib.sha256(order_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]

    folders = assign_folders(["x/abc", "abc", "ABC"], Manifest())
    assert folders == {"x/abc": "abc", "abc": f"abc-{digest('abc')}", "ABC": f"ABC-{digest('ABC')}"}
    # The hash's own name taken too: a counter after it.
    taken = Manifest()
    taken.orders["other"] = OrderRecord(f"abc-{digest('abc')}")
    taken.orders["first"] = OrderRecord("abc")
    assert assign_folders(["abc"], taken) == {"abc": f"abc-{digest('abc')}-2"}


def test_ids_with_lone_surrogates_get_folders_and_hashes() -> None:
    """An id is whatever text the API sends: a lone surrogate must not break the hash."""
    first, second = "a" + chr(0xD800), "a" + chr(0xD801)
    folders = assign_folders([first, second], Manifest())
    digest = hashlib.sha256(second.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    assert folders == {first: "a_", second: f"a_-{digest}"}


def test_manifest_folders_are_kept_and_respected() -> None:
    manifest = Manifest()
    manifest.orders["abc"] = OrderRecord("abc-kept")
    manifest.orders["other"] = OrderRecord("zzz")
    folders = assign_folders(["abc", "zzz"], manifest)
    assert folders["abc"] == "abc-kept"
    # "zzz" would collide with the folder the manifest holds for "other": it gets its own.
    assert folders["zzz"] != "zzz"
    assert folders["zzz"].startswith("zzz-")


def test_long_colliding_ids_stay_bounded() -> None:
    long_a = "a" * 400
    long_b = "b/" + "a" * 400
    folders = assign_folders([long_a, long_b], Manifest())
    assert folders[long_a] != folders[long_b]
    for folder in folders.values():
        assert len(folder.encode()) <= 200
    # The second is told apart by its first 150 bytes and its hash: 161 bytes.
    digest = hashlib.sha256(long_b.encode()).hexdigest()[:10]
    assert folders[long_b] == "a" * 150 + "-" + digest


# -- planning the orders -----------------------------------------------------------------------


def inputs(*ids: str, fingerprint: str | None = "fp") -> list[OrderInput]:
    return [OrderInput(i, fingerprint, listed=True) for i in ids]


def test_complete_orders_are_done_without_calls() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", **{"a.jpg": 5, "b.jpg": 6})
    disk = FakeDisk({"1": {"a.jpg": 5, "b.jpg": 6}})
    plan = plan_harvest(inputs("1", "2"), manifest, strategy="pictures", remaining=100, disk=disk)
    assert isinstance(plan, HarvestPlan)
    assert plan.done == [DoneOrder("1", "1", files=2, bytes=11)]
    assert plan.jobs == [OrderJob("2", "2", "pictures", "fp")]
    assert plan.unaffordable == []


def test_a_changed_order_is_fetched_again() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", fingerprint="old", **{"a.jpg": 5})
    disk = FakeDisk({"1": {"a.jpg": 5}})
    plan = plan_harvest(inputs("1"), manifest, strategy="zip", remaining=None, disk=disk)
    assert plan.done == []
    assert [j.route for j in plan.jobs] == ["zip"]


def test_a_missing_or_resized_file_makes_the_order_incomplete() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", **{"a.jpg": 5, "b.jpg": 6})
    for files in ({"a.jpg": 5}, {"a.jpg": 5, "b.jpg": 7}, {}):
        plan = plan_harvest(
            inputs("1"), manifest, strategy="pictures", remaining=None, disk=FakeDisk({"1": files})
        )
        assert plan.done == []
        assert len(plan.jobs) == 1


def test_unlisted_orders_trust_the_manifest_unless_empty() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", fingerprint="anything", **{"a.jpg": 5})
    manifest.orders["2"] = complete_record("2", fingerprint="anything")  # no files: empty order
    disk = FakeDisk({"1": {"a.jpg": 5}})
    given = [OrderInput("1"), OrderInput("2")]
    plan = plan_harvest(given, manifest, strategy="pictures", remaining=None, disk=disk)
    assert [d.order_id for d in plan.done] == ["1"]
    assert [j.order_id for j in plan.jobs] == ["2"]


def test_an_empty_listed_order_is_done_while_unchanged() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", fingerprint="1||")
    plan = plan_harvest(
        inputs("1", fingerprint="1||"), manifest, strategy="auto", remaining=5, disk=FakeDisk()
    )
    assert plan.done == [DoneOrder("1", "1", 0, 0)]
    assert plan.jobs == []


def test_done_zip_orders_still_unpack_when_asked() -> None:
    manifest = Manifest()
    record = OrderRecord("1", complete=True, fingerprint="fp", zip=ZipRecord("1.zip", 50))
    manifest.orders["1"] = record
    disk = FakeDisk({"1": {"1.zip": 50}})
    plan = plan_harvest(
        inputs("1"), manifest, strategy="auto", remaining=0, extract=True, disk=disk
    )
    assert plan.done == [DoneOrder("1", "1", 1, 50, unpack="1.zip")]
    record.zip = ZipRecord("1.zip", 50, extracted=True)
    plan = plan_harvest(
        inputs("1"), manifest, strategy="auto", remaining=0, extract=True, disk=disk
    )
    assert plan.done[0].unpack is None


def test_pictures_strategy_ignores_the_budget() -> None:
    plan = plan_harvest(
        inputs("1", "2", "3"), Manifest(), strategy="pictures", remaining=1, disk=FakeDisk()
    )
    assert [j.route for j in plan.jobs] == ["pictures"] * 3
    assert plan.unaffordable == []
    assert plan.spare is None


def test_zip_strategy_plans_one_call_per_order() -> None:
    plan = plan_harvest(
        inputs("1", "2", "3"), Manifest(), strategy="zip", remaining=10, disk=FakeDisk()
    )
    assert [j.route for j in plan.jobs] == ["zip"] * 3
    assert plan.spare == 7
    short = plan_harvest(
        inputs("1", "2", "3"), Manifest(), strategy="zip", remaining=1, disk=FakeDisk()
    )
    assert [j.order_id for j in short.jobs] == ["1"]
    assert [j.order_id for j in short.unaffordable] == ["2", "3"]
    assert short.spare == 0
    unknown = plan_harvest(inputs("1"), Manifest(), strategy="zip", remaining=None, disk=FakeDisk())
    assert (unknown.jobs[0].route, unknown.spare) == ("zip", None)


def test_auto_without_a_budget_goes_per_picture() -> None:
    plan = plan_harvest(
        inputs("1", "2"), Manifest(), strategy="auto", remaining=None, disk=FakeDisk()
    )
    assert [j.route for j in plan.jobs] == ["pictures", "pictures"]


def test_auto_with_room_decides_per_order() -> None:
    plan = plan_harvest(
        inputs("1", "2"), Manifest(), strategy="auto", remaining=50, disk=FakeDisk()
    )
    assert [j.route for j in plan.jobs] == ["auto", "auto"]
    assert plan.spare == 48


@pytest.mark.parametrize("remaining", [3, 2])
def test_auto_with_one_call_per_order_zips_everything(remaining: int) -> None:
    plan = plan_harvest(
        inputs("1", "2", "3"), Manifest(), strategy="auto", remaining=remaining, disk=FakeDisk()
    )
    assert [j.route for j in plan.jobs] == ["zip"] * remaining
    assert [j.order_id for j in plan.unaffordable] == ["1", "2", "3"][remaining:]
    assert plan.spare == 0


def test_auto_with_no_budget_at_all() -> None:
    plan = plan_harvest(inputs("1", "2"), Manifest(), strategy="auto", remaining=0, disk=FakeDisk())
    assert plan.jobs == []
    assert [j.order_id for j in plan.unaffordable] == ["1", "2"]


def test_done_orders_do_not_use_the_budget() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", **{"a.jpg": 5})
    disk = FakeDisk({"1": {"a.jpg": 5}})
    plan = plan_harvest(inputs("1", "2"), manifest, strategy="auto", remaining=1, disk=disk)
    assert [d.order_id for d in plan.done] == ["1"]
    assert [(j.order_id, j.route) for j in plan.jobs] == [("2", "zip")]


# -- planning the pictures ---------------------------------------------------------------------


def test_everything_missing_is_fetched() -> None:
    pictures = [pic(1), pic(2, "IMG.jpg"), pic(3, None, None)]
    plan = plan_pictures(pictures, None, "o", FakeDisk())
    assert isinstance(plan, PicturesPlan)
    assert plan.fetch == pictures
    assert plan.missing == 3
    assert plan.present == []


def test_pictures_to_fetch_are_named_when_the_name_needs_no_response() -> None:
    """A name with an extension is final before the answer (no ``Content-Type`` can change
    it): the plan hands it to the receiver; the others are named from the response."""
    pictures = [pic(1), pic(2, "noext"), pic(3, None, None), pic(4, "../x/IMG 2.JPG")]
    plan = plan_pictures(pictures, None, "o", FakeDisk())
    assert plan.names == {1: "1-IMG.jpg", 4: picture_file_name(4, "../x/IMG 2.JPG")}
    assert plan.fetch == pictures


def test_recorded_files_of_the_right_size_are_present() -> None:
    record = OrderRecord("o", pictures={"1": FileRecord("1-IMG.jpg", 100)})
    disk = FakeDisk({"o": {"1-IMG.jpg": 100}})
    plan = plan_pictures([pic(1), pic(2)], record, "o", disk)
    assert [p.picture_id for p in plan.fetch] == [2]
    assert plan.present == [(pic(1), FileRecord("1-IMG.jpg", 100))]


def test_a_resized_picture_is_fetched_again() -> None:
    record = OrderRecord("o", pictures={"1": FileRecord("1-IMG.jpg", 100)})
    disk = FakeDisk({"o": {"1-IMG.jpg": 100}})
    plan = plan_pictures([pic(1, size=120)], record, "o", disk)
    assert plan.missing == 1


def test_files_on_disk_without_a_record_are_found() -> None:
    disk = FakeDisk({"o": {"1-IMG.jpg": 100, "2-noext.jpg": 50, "3-short.jpg": 10}})
    pictures = [pic(1), pic(2, "noext", 50), pic(3, "short.jpg", 11)]
    plan = plan_pictures(pictures, None, "o", disk)
    assert [(p.picture_id, f.name) for p, f in plan.present] == [
        (1, "1-IMG.jpg"),
        (2, "2-noext.jpg"),
    ]
    assert [p.picture_id for p in plan.fetch] == [3]


def test_a_record_for_another_folder_is_not_trusted() -> None:
    record = OrderRecord("old", pictures={"1": FileRecord("1-IMG.jpg", 100)})
    disk = FakeDisk({"old": {"1-IMG.jpg": 100}})
    plan = plan_pictures([pic(1)], record, "new", disk)
    assert plan.missing == 1


def test_duplicates_and_invalid_ids() -> None:
    plan = plan_pictures([pic(1), pic(1), pic(None), pic(-4)], None, "o", FakeDisk())
    assert [p.picture_id for p in plan.fetch] == [1]
    assert len(plan.invalid) == 2
    assert all(pid is None and isinstance(reason, str) for pid, reason in plan.invalid)


def test_hostile_names_are_looked_up_by_their_safe_names() -> None:
    disk = FakeDisk({"o": {"5-passwd.jpg": 100}})
    plan = plan_pictures([pic(5, "../../etc/passwd.jpg")], None, "o", disk)
    assert plan.present == [(pic(5, "../../etc/passwd.jpg"), FileRecord("5-passwd.jpg", 100))]


# -- the allowance -----------------------------------------------------------------------------


def test_unlimited_allowance_always_agrees() -> None:
    allowance = Allowance(None)
    assert allowance.begin_listing() is True
    allowance.end_listing(1000)
    assert allowance.afford(1000) is True


def test_allowance_does_not_list_when_pictures_would_not_be_affordable() -> None:
    allowance = Allowance(5, assumed=8)
    assert allowance.begin_listing() is False
    assert allowance.spare == 5


def test_allowance_books_listing_and_pictures() -> None:
    allowance = Allowance(20, assumed=4)
    assert allowance.begin_listing() is True
    assert allowance.spare == 19
    allowance.end_listing(6)
    assert allowance.estimate() == 6
    assert allowance.afford(6) is True  # five from the spare, one held back
    assert allowance.spare == 14
    assert allowance.afford(16) is False
    assert allowance.spare == 14


def test_allowance_counts_listings_in_flight() -> None:
    allowance = Allowance(10, assumed=4)
    assert allowance.begin_listing() is True  # needs 4
    assert allowance.begin_listing() is True  # needs 8 with one in flight (9 left)
    assert allowance.begin_listing() is False  # needs 12 with two in flight (8 left)
    allowance.end_listing(1)
    allowance.end_listing(1)
    assert allowance.estimate() == 1


def test_allowance_gives_back_unused_held_calls() -> None:
    allowance = Allowance(3)
    assert allowance.afford(0) is True
    assert allowance.spare == 4
    allowance.release()
    assert allowance.spare == 5
    allowance.end_listing(None)  # a failed listing teaches nothing
    assert allowance.listed == 0
    assert "Allowance(" in repr(allowance)


def test_small_budget_plan_costs_orders_plus_listing() -> None:
    """Simulate auto over many orders with a small budget: about one call per order."""
    orders = [str(n) for n in range(40)]
    remaining = 45  # after the listing call
    plan = plan_harvest(
        inputs(*orders), Manifest(), strategy="auto", remaining=remaining, disk=FakeDisk()
    )
    allowance = Allowance(plan.spare)
    calls = 0
    for _job in plan.jobs:
        if allowance.begin_listing():
            calls += 1
            allowance.end_listing(10)
            calls += 10 if allowance.afford(10) else 1
        else:
            calls += 1
    assert calls <= remaining
    assert calls <= len(orders) + 1


# -- shards and estimates (pure; from surviving _plan mutants) ---------------------------------


def test_every_order_is_in_exactly_one_shard_and_none_means_all() -> None:
    ids = [str(n) for n in range(240_000, 240_200)]
    for n in (1, 3, 4):
        for order_id in ids:
            members = [k for k in range(n) if in_shard(order_id, (k, n))]
            assert members == [shard_of(order_id, n)]
    assert all(in_shard(order_id, None) is True for order_id in ids)
    # The shard is taken modulo N: (k, n) and (n, k) are different shards.
    assert [in_shard(i, (1, 4)) for i in ids[:8]] == [shard_of(i, 4) == 1 for i in ids[:8]]
    assert in_shard("240000", (1, 4)) is True and in_shard("240000", (4, 1)) is False


def test_shard_of_takes_any_id_text() -> None:
    assert shard_of("\ud800", 5) in range(5)  # a lone surrogate (surrogatepass), not an error
    assert shard_of("ø", 1 << 64) == int.from_bytes(
        hashlib.sha256("ø".encode()).digest()[:8], "big"
    )


def job(order_id: str, route: str) -> OrderJob:
    return OrderJob(order_id, order_id, route)  # type: ignore[arg-type]


def test_estimate_calls_counts_a_zip_as_one_and_an_order_by_pictures_as_listing_plus_assumed() -> (
    None
):
    assert estimate_calls([]) == (0, 0)
    assert estimate_calls([job("1", "zip")]) == (1, 1)
    assert estimate_calls([job("1", "pictures")]) == (1 + ASSUMED_PICTURES_PER_ORDER, 1)
    assert estimate_calls([job("1", "auto")], assumed=3) == (4, 1)
    jobs = [job("1", "zip"), job("2", "pictures"), job("3", "auto"), job("4", "zip")]
    assert estimate_calls(jobs, assumed=5) == (1 + 6 + 6 + 1, 4)
    expected, minimum = estimate_calls(jobs)
    assert (type(expected), type(minimum)) == (int, int)


def test_allowance_assumes_at_least_one_picture_and_rounds_the_mean_up() -> None:
    assert Allowance(10, assumed=0).estimate() == 1
    assert Allowance(10, assumed=-3).assumed == 1
    allowance = Allowance(100, assumed=4)
    assert allowance.estimate() == 4
    allowance.end_listing(3)
    allowance.end_listing(4)
    assert (allowance.listed, allowance.listed_missing) == (2, 7)
    assert allowance.estimate() == 4  # 3.5 rounded up
    allowance.end_listing(0)
    allowance.end_listing(0)
    allowance.end_listing(0)
    assert allowance.estimate() == 2  # 7 / 5 rounded up
    none_missing = Allowance(100, assumed=4)
    none_missing.end_listing(0)
    assert none_missing.estimate() == 1  # never 0: a listed order costs at least its listing


def test_allowance_lists_when_the_spare_exactly_covers_the_estimate() -> None:
    allowance = Allowance(4, assumed=4)
    assert allowance.begin_listing() is True
    assert (allowance.spare, allowance.listing) == (3, 1)
    assert allowance.begin_listing() is False  # 3 < 4 * 2
    assert (allowance.spare, allowance.listing) == (3, 1)
    unlimited = Allowance(None)
    assert unlimited.begin_listing() is True and unlimited.begin_listing() is True
    assert unlimited.listing == 2
    unlimited.end_listing(None)
    assert unlimited.listing == 1


def test_allowance_ending_more_listings_than_began_never_goes_negative() -> None:
    allowance = Allowance(50, assumed=2)
    allowance.end_listing(None)
    assert allowance.listing == 0
    assert allowance.begin_listing() is True
    assert allowance.listing == 1
    allowance.end_listing(5)
    assert (allowance.listing, allowance.listed, allowance.listed_missing) == (0, 1, 5)


def test_allowance_affords_exactly_its_spare_and_one_picture_costs_only_the_held_call() -> None:
    allowance = Allowance(5)
    assert allowance.afford(6) is True  # five extra, one held back
    assert allowance.spare == 0
    assert allowance.afford(1) is True  # the held-back call pays for it
    assert allowance.spare == 0
    assert allowance.afford(2) is False
    assert allowance.spare == 0
    allowance.release()
    assert allowance.spare == 1
    unlimited = Allowance(None)
    unlimited.release()
    assert unlimited.spare is None
    assert unlimited.afford(0) is True and unlimited.spare is None


def test_a_recorded_file_counts_under_its_recorded_name() -> None:
    """The manifest's name is looked up as recorded (the picture may since have been renamed,
    so the name made from the listing would not find it)."""
    record = OrderRecord("o", pictures={"1": FileRecord("1-old-name.jpg", 100)})
    disk = FakeDisk({"o": {"1-old-name.jpg": 100}})
    plan = plan_pictures([pic(1, "New name.jpg")], record, "o", disk)
    assert plan.present == [(pic(1, "New name.jpg"), FileRecord("1-old-name.jpg", 100))]
    assert plan.fetch == []
    assert disk.asked == [("o", "1-old-name.jpg")]
    resized = FakeDisk({"o": {"1-old-name.jpg": 99}})  # the recorded size is what is checked
    assert plan_pictures([pic(1, "New name.jpg", None)], record, "o", resized).missing == 1


def test_a_recorded_file_counts_when_the_listing_gives_no_size() -> None:
    record = OrderRecord("o", pictures={"1": FileRecord("1-old-name.jpg", 100)})
    disk = FakeDisk({"o": {"1-old-name.jpg": 100}})
    plan = plan_pictures([pic(1, "IMG.jpg", None)], record, "o", disk)
    assert plan.present == [(pic(1, "IMG.jpg", None), FileRecord("1-old-name.jpg", 100))]


def test_picture_id_zero_is_usable_and_a_boolean_is_not() -> None:
    plan = plan_pictures(
        [pic(0), pic(True), pic(None), pic(-1)],  # type: ignore[arg-type]
        None,
        "o",
        FakeDisk(),
    )
    assert [p.picture_id for p in plan.fetch] == [0]
    assert plan.invalid == [
        (None, "the listing gives a picture without a usable id (True)"),
        (None, "the listing gives a picture without a usable id (None)"),
        (None, "the listing gives a picture without a usable id (-1)"),
    ]


def test_an_incomplete_record_is_a_job_even_with_every_file_on_disk() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", **{"a.jpg": 5})
    manifest.orders["1"].complete = False
    disk = FakeDisk({"1": {"a.jpg": 5}})
    plan = plan_harvest(inputs("1"), manifest, strategy="pictures", remaining=None, disk=disk)
    assert plan.done == []
    assert [j.order_id for j in plan.jobs] == ["1"]


def test_a_fingerprint_counts_only_when_the_order_was_listed() -> None:
    manifest = Manifest()
    manifest.orders["1"] = complete_record("1", fingerprint="recorded", **{"a.jpg": 5})
    disk = FakeDisk({"1": {"a.jpg": 5}})
    unlisted = [OrderInput("1", "something else", listed=False)]
    plan = plan_harvest(unlisted, manifest, strategy="pictures", remaining=None, disk=disk)
    assert plan.done == [DoneOrder("1", "1", 1, 5)]


def test_a_done_zip_is_unpacked_only_when_asked_and_recheck_makes_a_job() -> None:
    manifest = Manifest()
    manifest.orders["1"] = OrderRecord(
        "1", complete=True, fingerprint="fp", zip=ZipRecord("1.zip", 50)
    )
    disk = FakeDisk({"1": {"1.zip": 50}})
    plan = plan_harvest(inputs("1"), manifest, strategy="auto", remaining=9, disk=disk)
    assert plan.done == [DoneOrder("1", "1", 1, 50, unpack=None)]
    again = plan_harvest(
        inputs("1"), manifest, strategy="pictures", remaining=9, recheck=True, disk=disk
    )
    assert again.done == []
    assert again.jobs == [OrderJob("1", "1", "pictures", "fp")]


def test_classify_order_makes_a_job_of_the_strategy_asked_for() -> None:
    decision = classify_order(
        OrderInput("9", "fp", listed=True),
        "9",
        None,
        strategy="zip",
        extract=False,
        recheck=False,
        disk=FakeDisk(),
    )
    assert decision == OrderJob("9", "9", "zip", "fp")


def test_route_jobs_sets_every_route_and_auto_keeps_a_single_spare_call() -> None:
    todo = [OrderJob("1", "1", "pictures"), OrderJob("2", "2", "zip")]
    jobs, unaffordable, spare = route_jobs(todo, "auto", 3)
    assert [j.route for j in jobs] == ["auto", "auto"]
    assert (unaffordable, spare) == ([], 1)
    jobs, unaffordable, spare = route_jobs(todo, "auto", 2)
    assert [j.route for j in jobs] == ["zip", "zip"]
    assert (unaffordable, spare) == ([], 0)
    jobs, unaffordable, spare = route_jobs(todo, "auto", -5)  # overspent: nothing affordable
    assert (jobs, unaffordable, spare) == ([], todo, 0)


# -- the manifest database, directly (from surviving _manifest mutants) ------------------------


def rows(dest: Path, query: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(dest / MANIFEST_NAME)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


class _NoWal(sqlite3.Connection):
    """A connection on a file system without WAL: the journal mode stays what it was."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.replace(" ", "").upper().startswith("PRAGMAJOURNAL_MODE="):
            return super().execute("PRAGMA journal_mode")
        return super().execute(sql, *args)


def test_a_file_system_without_wal_still_keeps_the_manifest_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, factory=_NoWal, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        store = ManifestStore(tmp_path)
    try:
        store.claim_folders(["A"])
        store.apply([("file", "A", "1", "a.jpg", 3), ("done", "A", "fp")])
        assert store.record("A") == OrderRecord(
            "A", complete=True, fingerprint="fp", pictures={"1": FileRecord("a.jpg", 3)}
        )
    finally:
        store.close()
    path = tmp_path / MANIFEST_NAME
    assert [r.getMessage() for r in caplog.records] == [
        f"the harvest manifest {path} cannot use WAL (('delete',))"
    ]


def test_a_new_store_records_its_format_and_version(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    store.close()
    assert sorted(rows(tmp_path, "SELECT key, value FROM meta")) == [
        ("format", "zigziik-harvest-manifest"),
        ("version", "2"),
    ]
    assert rows(tmp_path, "PRAGMA journal_mode") == [("wal",)]
    again = ManifestStore(tmp_path)  # opening an existing one keeps it
    again.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []


@pytest.mark.parametrize(
    "meta",
    [
        [("format", "something-else"), ("version", "2")],
        [("format", "zigziik-harvest-manifest"), ("version", "1")],
        [("format", "zigziik-harvest-manifest")],
    ],
)
def test_a_database_of_another_format_or_version_is_moved_aside(
    tmp_path: Path, meta: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta)
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        store = ManifestStore(tmp_path)
    store.close()
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].startswith(MANIFEST_NAME + ".corrupt-")
    assert aside[0].removeprefix(MANIFEST_NAME + ".corrupt-").isdigit()
    (record,) = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert "not a zigziik harvest manifest of version 2" in record.getMessage()
    assert aside[0] in record.getMessage()
    assert sorted(rows(tmp_path, "SELECT key, value FROM meta")) == [
        ("format", "zigziik-harvest-manifest"),
        ("version", "2"),
    ]


def test_a_folder_where_the_database_belongs_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / MANIFEST_NAME).mkdir()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        store = ManifestStore(tmp_path)
    store.close()
    (aside,) = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    path = tmp_path / MANIFEST_NAME
    assert [r.getMessage() for r in caplog.records] == [
        f"the harvest manifest {path} is unreadable ({path} is a folder); moved aside to "
        f"{aside}, starting afresh (files already on disk are still recognised)"
    ]
    assert (tmp_path / MANIFEST_NAME).is_file()
    assert [p.is_dir() for p in tmp_path.iterdir() if ".corrupt-" in p.name] == [True]


def test_a_corrupt_database_another_process_moved_aside_first_is_started_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shards open a corrupt manifest at once: the other one's move comes first, ours
    finds nothing left to move, and both go on with a fresh database."""
    (tmp_path / MANIFEST_NAME).write_bytes(b"not a database" * 100)
    real_replace = os.replace
    moved: list[str] = []

    def the_other_was_first(source: Any, target: Any) -> None:
        if Path(source) == tmp_path / MANIFEST_NAME and not moved:
            moved.append(str(target))
            real_replace(source, tmp_path / "moved-by-the-other-shard")
            raise FileNotFoundError(source)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", the_other_was_first)
    store = ManifestStore(tmp_path)
    try:
        store.claim_folders(["A"])
        assert store.record("A") == OrderRecord("A")
    finally:
        store.close()
    assert moved and (tmp_path / "moved-by-the-other-shard").read_bytes().startswith(b"not a")


def test_the_store_records_each_operation(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    try:
        assert store.claim_folders(["A", "B/1"]) == {"A": "A", "B/1": "1"}
        store.apply(
            [
                ("file", "A", "11", "11-a.jpg", 10),
                ("file", "A", "12", "12-b.jpg", 20),
                ("done", "A", "fp-A"),
                ("zip", "B/1", "1.zip", 99),
            ]
        )
        assert store.record("A") == OrderRecord(
            "A",
            complete=True,
            fingerprint="fp-A",
            pictures={"11": FileRecord("11-a.jpg", 10), "12": FileRecord("12-b.jpg", 20)},
        )
        assert store.record("B/1") == OrderRecord("1", zip=ZipRecord("1.zip", 99))
        store.apply([("extracted", "B/1"), ("begin", "A"), ("drop_except", "A", ["12"])])
        assert store.record("B/1") == OrderRecord("1", zip=ZipRecord("1.zip", 99, True))
        assert store.record("A") == OrderRecord(
            "A", fingerprint="fp-A", pictures={"12": FileRecord("12-b.jpg", 20)}
        )
        store.apply([("zip", "B/1", "1.zip", 100)])  # a new zip is not unpacked yet
        assert store.record("B/1") == OrderRecord("1", zip=ZipRecord("1.zip", 100, False))
        assert store.record("missing") is None
        assert store.manifest() == Manifest(
            {"A": store.records(["A"])["A"], "B/1": store.records(["B/1"])["B/1"]}
        )
    finally:
        store.close()
    store.close()  # closing twice is harmless


def test_records_are_read_in_chunks_for_any_number_of_orders(tmp_path: Path) -> None:
    ids = [f"o{i}" for i in range(1234)]
    store = ManifestStore(tmp_path)
    try:
        store.claim_folders(ids)
        store.apply([("file", order_id, "1", "1.jpg", 5) for order_id in ids])
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        found = store.records(ids)
        store._db.set_trace_callback(None)
        assert sorted(found) == sorted(ids)
        assert all(r.pictures == {"1": FileRecord("1.jpg", 5)} for r in found.values())
        # 500 ids a query, two queries a chunk (orders, pictures): 1,234 ids in 3 chunks,
        # not one query per id (hundreds of thousands of orders at scale).
        assert sum(s.lstrip().upper().startswith("SELECT") for s in statements) == 6
        assert store.records([]) == {}
    finally:
        store.close()


def test_claimed_folders_are_seen_by_another_store_and_a_moved_order_starts_over(
    tmp_path: Path,
) -> None:
    first = ManifestStore(tmp_path)
    try:
        first.claim_folders(["abc"])
        first.apply([("file", "abc", "1", "1.jpg", 5), ("done", "abc", None)])
    finally:
        first.close()
    second = ManifestStore(tmp_path)
    try:
        # Another order whose folder would collide gets its own; "abc" keeps its folder.
        folders = second.claim_folders(["ABC", "abc"])
        assert folders["abc"] == "abc"
        assert folders["ABC"] != "abc" and folders["ABC"].startswith("ABC-")
        assert second.record("abc") == OrderRecord(
            "abc", complete=True, pictures={"1": FileRecord("1.jpg", 5)}
        )
    finally:
        second.close()
    # The database says "abc" lives in a folder that is no safe name: it is given a new one,
    # and is no longer complete.
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.execute("UPDATE orders SET folder = '../x', folder_key = '../x' WHERE order_id = 'abc'")
    db.commit()
    db.close()
    third = ManifestStore(tmp_path)
    try:
        assert third.claim_folders(["abc"]) == {"abc": "abc"}
        record = third.record("abc")
        assert record is not None
        assert (record.folder, record.complete) == ("abc", False)
    finally:
        third.close()


def test_unsafe_rows_are_dropped_or_make_the_order_incomplete(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    try:
        store.claim_folders(["A", "B", "C"])
        store.apply(
            [
                ("file", "A", "1", "../evil.jpg", 5),
                ("done", "A", "fp"),
                ("zip", "B", "../b.zip", 5),
                ("done", "B", "fp"),
                ("file", "C", "1", "ok.jpg", -1),
                ("done", "C", "fp"),
            ]
        )
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.execute("INSERT INTO orders (order_id, folder, folder_key) VALUES ('D', '..', '..')")
    db.execute("UPDATE orders SET complete = 2 WHERE order_id = 'C'")
    db.execute(
        "INSERT INTO orders (order_id, folder, folder_key, fingerprint) VALUES ('E', 'E', 'e', X'6670')"
    )
    db.commit()
    db.close()
    store = ManifestStore(tmp_path)
    try:
        found = store.records(["A", "B", "C", "D", "E"])
    finally:
        store.close()
    assert found == {
        "A": OrderRecord("A", fingerprint="fp"),
        "B": OrderRecord("B", fingerprint="fp"),
        "C": OrderRecord("C", fingerprint="fp"),
        "E": OrderRecord("E"),  # a fingerprint that is no text (a blob) is none
    }
    # load_manifest (for tools) drops the same files, and a picture of a dropped order too.
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.execute("INSERT INTO pictures VALUES ('D', '1', 'd.jpg', 1)")
    db.commit()
    db.close()
    assert load_manifest(tmp_path) == Manifest(found)  # "A" lost a file: not complete


@pytest.mark.parametrize(
    ("name", "size"),
    [("a\\b.jpg", 5), ("a\x00b.jpg", 5), ("a/b.jpg", 5), ("..", 5), (".", 5), ("", 5)]
    + [("b.jpg", -1), ("b.jpg", "five"), ("b.jpg", 5.5), (b"b.jpg", 5)],
)
def test_a_picture_row_that_is_not_one_safe_file_is_dropped_and_the_order_not_complete(
    tmp_path: Path, name: object, size: object
) -> None:
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "A", {"a.jpg": 5})
        _tamper(tmp_path, "INSERT INTO pictures VALUES ('A', '9', ?, ?)", name, size)
        record = store.record("A")
        assert record == OrderRecord("A", fingerprint="fp", pictures={"0": FileRecord("a.jpg", 5)})
        assert record is not None and record.complete is False
        assert store.summaries(["A"]) == {"A": OrderSummary("A", False, "fp")}
    finally:
        store.close()


def test_replace_all_keeps_one_folder_per_order(tmp_path: Path) -> None:
    manifest = Manifest(
        {
            "1": OrderRecord("same", complete=True),
            "2": OrderRecord("SAME", complete=True),  # the same folder on a case-blind disk
            "3": OrderRecord("other", zip=ZipRecord("3.zip", 7, extracted=True)),
        }
    )
    save_manifest(tmp_path, manifest)
    assert load_manifest(tmp_path) == Manifest(
        {
            "1": OrderRecord("same", complete=True),
            "3": OrderRecord("other", zip=ZipRecord("3.zip", 7, extracted=True)),
        }
    )


def test_the_writer_writes_everything_put_before_close_in_order(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    try:
        store.claim_folders(["A"])
        writer = ManifestWriter(store)
        for n in range(2500):  # more than one batch
            writer.put(("file", "A", str(n), f"{n}.jpg", n))
        writer.put(("drop_except", "A", ["2499"]))
        writer.put(("done", "A", "fp"))
        writer.close()
        assert store.record("A") == OrderRecord(
            "A", complete=True, fingerprint="fp", pictures={"2499": FileRecord("2499.jpg", 2499)}
        )
    finally:
        store.close()


def test_a_long_queue_wakes_the_writer_at_once(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    writer = ManifestWriter(store)
    try:
        store.claim_folders(["A"])
        assert not writer._wake.is_set()
        for n in range(1999):
            writer.put(("file", "A", str(n), f"{n}.jpg", n))
        assert not writer._wake.is_set() or len(writer._pending) < 1999
        writer.put(("file", "A", "x", "x.jpg", 1))
        assert writer._wake.is_set() or len(writer._pending) < 2000
    finally:
        writer.close()
        store.close()


def test_a_failing_write_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ManifestStore(tmp_path)
    writer = ManifestWriter(store)

    def locked(ops: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    try:
        monkeypatch.setattr(store, "apply", locked)
        with caplog.at_level(logging.WARNING, logger="zigziik"):
            writer._write([("begin", "A")])
            writer._write([("begin", "A")])
    finally:
        writer.close()
        store.close()
    warnings = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0] == f"cannot write the harvest manifest {store.path}: database is locked"


def test_a_json_manifest_is_migrated_once_and_a_broken_one_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_json_manifest(tmp_path, sample_manifest())
    ManifestStore(tmp_path).close()
    assert load_manifest(tmp_path) == sample_manifest()
    # A legacy file that shows up again is not imported a second time.
    save_json_manifest(tmp_path, Manifest({"Z": OrderRecord("Z", complete=True)}))
    ManifestStore(tmp_path).close()
    assert load_manifest(tmp_path) == sample_manifest()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / LEGACY_MANIFEST_NAME).write_bytes(b"{not json")
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        ManifestStore(broken).close()
    assert (broken / LEGACY_MANIFEST_NAME).exists()  # left as it was
    assert any(
        r.getMessage().startswith(
            f"ignoring the old harvest manifest {broken / LEGACY_MANIFEST_NAME}:"
        )
        for r in caplog.records
    )
    assert load_manifest(broken) == Manifest()


def test_a_json_manifest_migrated_says_so_and_records_when(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_json_manifest(tmp_path, sample_manifest())
    before = int(time.time())
    with caplog.at_level(logging.INFO, logger="zigziik"):
        ManifestStore(tmp_path).close()
    after = int(time.time())
    legacy = tmp_path / LEGACY_MANIFEST_NAME
    assert [r.getMessage() for r in caplog.records] == [
        f"migrated the harvest manifest {legacy} into {MANIFEST_NAME}"
    ]
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    try:
        (when,) = db.execute("SELECT value FROM meta WHERE key = 'migrated_json'").fetchone()
    finally:
        db.close()
    assert before <= int(when) <= after


def test_a_json_manifest_that_cannot_be_renamed_is_still_migrated_once(tmp_path: Path) -> None:
    """Another process migrating the same folder at once may rename it first."""
    save_json_manifest(tmp_path, sample_manifest())
    (tmp_path / (LEGACY_MANIFEST_NAME + ".migrated")).mkdir()
    (tmp_path / (LEGACY_MANIFEST_NAME + ".migrated") / "x").write_bytes(b"")  # not replaceable
    ManifestStore(tmp_path).close()
    assert (tmp_path / LEGACY_MANIFEST_NAME).is_file()
    ManifestStore(tmp_path).close()
    assert load_manifest(tmp_path) == sample_manifest()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b"{not json",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            json.dumps({"format": "zigziik-harvest-manifest", "version": "v" * 400}).encode(),
            ("unsupported manifest version '" + "v" * 400 + "'")[:297] + "...",
        ),
    ],
)
def test_an_old_manifest_that_cannot_be_read_is_ignored_saying_why_in_one_short_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes, reason: str
) -> None:
    (tmp_path / LEGACY_MANIFEST_NAME).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        ManifestStore(tmp_path).close()
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring the old harvest manifest {tmp_path / LEGACY_MANIFEST_NAME}: {reason}"
    ]


@pytest.mark.parametrize(
    "name",
    [
        MANIFEST_NAME + "-wal",
        MANIFEST_NAME + "-shm",
        MANIFEST_NAME + "-journal",
        LEGACY_MANIFEST_NAME,
    ],
)
def test_no_file_of_the_manifest_may_be_a_link(tmp_path: Path, name: str) -> None:
    (tmp_path / name).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ManifestError) as excinfo:
        ManifestStore(tmp_path)
    assert str(excinfo.value) == (
        f"{tmp_path / name} is a symbolic link; a harvest never writes through one (remove it)"
    )


def test_load_manifest_refuses_a_linked_database_and_reads_no_json_beside_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_manifest(tmp_path, sample_manifest())
    (tmp_path / LEGACY_MANIFEST_NAME).symlink_to(tmp_path / "x")
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert load_manifest(tmp_path) == Manifest()
    link = tmp_path / LEGACY_MANIFEST_NAME
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot read the harvest manifest {tmp_path / MANIFEST_NAME} ({link} is a symbolic "
        "link; a harvest never writes through one (remove it))"
    ]


def test_load_manifest_of_a_database_without_tables_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sqlite3.connect(tmp_path / MANIFEST_NAME).close()
    (tmp_path / MANIFEST_NAME).write_bytes(b"")
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.execute("CREATE TABLE x (a)")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert load_manifest(tmp_path) == Manifest()
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring the harvest manifest {tmp_path / MANIFEST_NAME}: no such table: orders{AFRESH}"
    ]


def test_manifest_values_and_names() -> None:
    from zigziik.zigna.harvest import _manifest as m

    assert [m._is_one_component(v) for v in ("a", "", ".", "..", "a/b", "a\\b", "a\x00", 5)] == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    assert [m._is_size(v) for v in (0, 7, -1, True, 1.0, "1")] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert m._one_line("a \n\t b") == "a b"
    assert m._one_line("x" * 300) == "x" * 300
    assert m._one_line("x" * 301) == "x" * 297 + "..."
    assert m.fold("E\u0301A") == "\u00e9a"


def test_to_json_leaves_out_what_is_not_there() -> None:
    manifest = Manifest({"1": OrderRecord("1"), "2": sample_manifest().orders["A1"]})
    assert manifest.to_json() == {
        "format": "zigziik-harvest-manifest",
        "version": 1,
        "orders": {
            "1": {"folder": "1", "complete": False},
            "2": {
                "folder": "A1",
                "complete": True,
                "fingerprint": "5|x|y",
                "pictures": {
                    "11": {"name": "11-a.jpg", "size": 10},
                    "12": {"name": "12-b.pdf", "size": 20},
                },
            },
        },
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object, got list"),
        ({"version": 1, "orders": {}}, "not a zigziik harvest manifest"),
        ({"format": "zigziik-harvest-manifest", "version": 2}, "unsupported manifest version 2"),
        ({"format": "zigziik-harvest-manifest", "version": 1}, "'orders' is not an object"),
    ],
)
def test_from_json_says_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(ManifestError) as excinfo:
        Manifest.from_json(data)
    assert str(excinfo.value) == message


def test_from_json_trusts_only_exact_values() -> None:
    data = {
        "format": "zigziik-harvest-manifest",
        "version": 1,
        "orders": {
            "": {"folder": "empty-id", "complete": True},
            "a": {"folder": "a", "complete": 1, "fingerprint": 5},
            "b": {"folder": "b", "complete": True, "pictures": []},
            "c": {"folder": "c", "complete": True, "zip": {"name": "c.zip", "size": "9"}},
            "d": {
                "folder": "d",
                "complete": True,
                "zip": {"name": "d.zip", "size": 9, "extracted": 1},
            },
            "e": {"folder": "e", "complete": True, "pictures": {"1": {"name": "1.jpg", "size": 1}}},
        },
    }
    assert Manifest.from_json(data).orders == {
        "a": OrderRecord("a"),
        "b": OrderRecord("b"),
        "c": OrderRecord("c"),
        "d": OrderRecord("d", complete=True, zip=ZipRecord("d.zip", 9, extracted=False)),
        "e": OrderRecord("e", complete=True, pictures={"1": FileRecord("1.jpg", 1)}),
    }


def test_a_json_manifest_that_cannot_be_read_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / LEGACY_MANIFEST_NAME).mkdir()
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert load_manifest(tmp_path) == Manifest()
    path = tmp_path / LEGACY_MANIFEST_NAME
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot read the harvest manifest {path} ([Errno 21] Is a directory: '{path}'); "
        "starting afresh"
    ]


def test_saving_a_json_manifest_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_json_manifest(tmp_path, sample_manifest())
    assert sorted(os.listdir(tmp_path)) == [LEGACY_MANIFEST_NAME]
    assert json.loads((tmp_path / LEGACY_MANIFEST_NAME).read_bytes()) == sample_manifest().to_json()

    def broken(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk on fire"):
        save_json_manifest(tmp_path, Manifest())
    assert sorted(os.listdir(tmp_path)) == [LEGACY_MANIFEST_NAME]


AFRESH = "; starting afresh (files already on disk are still recognised)"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"{not json",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (b"", "Expecting value: line 1 column 1 (char 0)"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
        (b'{"format": "other"}', "not a zigziik harvest manifest"),
    ],
)
def test_a_broken_json_manifest_is_ignored_saying_why(
    tmp_path: Path, content: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / LEGACY_MANIFEST_NAME
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert load_manifest(tmp_path) == Manifest()
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring the harvest manifest {path}: {reason}{AFRESH}"
    ]


def test_a_reasonless_json_error_is_named_by_its_type(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zigziik.zigna.harvest import _manifest

    def no_reason(raw: bytes) -> object:
        raise ValueError

    monkeypatch.setattr(_manifest.json, "loads", no_reason)
    path = tmp_path / LEGACY_MANIFEST_NAME
    path.write_bytes(b"{}")
    with caplog.at_level(logging.WARNING, logger="zigziik"):
        assert load_manifest(tmp_path) == Manifest()
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring the harvest manifest {path}: ValueError{AFRESH}"
    ]


def test_a_json_manifest_is_written_compact_in_utf_8_with_mode_0644(tmp_path: Path) -> None:
    manifest = Manifest({"Villa på ø": OrderRecord("Villa på ø", complete=True)})
    old = os.umask(0)
    try:
        save_json_manifest(tmp_path, manifest)
    finally:
        os.umask(old)
    path = tmp_path / LEGACY_MANIFEST_NAME
    assert (
        path.read_bytes()
        == (
            '{"format":"zigziik-harvest-manifest","version":1,"orders":{"Villa på ø":'
            '{"folder":"Villa på ø","complete":true}}}\n'
        ).encode()
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_json_manifest_is_never_written_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zigziik.zigna.harvest import _manifest

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "fixed.part").symlink_to(outside)
    monkeypatch.setattr(_manifest, "temporary_name", lambda name: "fixed.part")
    with pytest.raises(FileExistsError):
        save_json_manifest(dest, sample_manifest())
    assert outside.read_bytes() == b"outside"


def test_a_failed_json_save_whose_temporary_file_vanished_raises_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vanish_then_fail(src: str, dst: str) -> None:
        os.unlink(src)
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", vanish_then_fail)
    with pytest.raises(OSError, match="disk on fire"):
        save_json_manifest(tmp_path, sample_manifest())
    assert os.listdir(tmp_path) == []


def test_a_bad_picture_entry_drops_only_itself() -> None:
    data = {
        "format": "zigziik-harvest-manifest",
        "version": 1,
        "orders": {
            "a": {
                "folder": "a",
                "complete": True,
                "pictures": {"1": {"name": "../x", "size": 1}, "2": {"name": "2.jpg", "size": 2}},
            }
        },
    }
    assert Manifest.from_json(data).orders == {
        "a": OrderRecord("a", pictures={"2": FileRecord("2.jpg", 2)})
    }


def test_a_json_manifest_found_beside_a_database_joins_it_without_taking_a_folder(
    tmp_path: Path,
) -> None:
    store = ManifestStore(tmp_path)
    try:
        store.claim_folders(["A"])
    finally:
        store.close()
    legacy = Manifest(
        {
            "B": OrderRecord("b", complete=True, pictures={"1": FileRecord("1.jpg", 3)}),
            "C": OrderRecord("a", complete=True),  # the folder the database gives "A"
        }
    )
    save_json_manifest(tmp_path, legacy)
    ManifestStore(tmp_path).close()
    assert load_manifest(tmp_path) == Manifest({"A": OrderRecord("A"), "B": legacy.orders["B"]})


def test_the_writer_is_a_named_daemon_that_keeps_writing_until_closed(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    writer = ManifestWriter(store)
    try:
        assert writer._thread.name == "zigziik-manifest-writer"
        assert writer._thread.daemon is True  # never holds up the interpreter's exit
        store.claim_folders(["A"])
        for n in range(3):  # each batch is written without close, one after the other
            writer.put(("file", "A", str(n), f"{n}.jpg", n))
            deadline = time.monotonic() + 10
            while str(n) not in store.record("A").pictures:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, f"batch {n} was never written"
                time.sleep(0.02)
        assert writer._thread.is_alive()
    finally:
        writer.close()
        store.close()


def test_an_order_given_a_new_folder_forgets_the_files_of_its_old_one(tmp_path: Path) -> None:
    ManifestStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    # Two orders whose folders a case-blind disk would confuse (a damaged database).
    db.execute("INSERT INTO orders VALUES ('A', 'abc', 'abc', 1, 'fp', NULL, NULL, 0)")
    db.execute("INSERT INTO orders VALUES ('B', 'ABC', 'other', 1, 'fp', NULL, NULL, 0)")
    db.execute("INSERT INTO pictures VALUES ('A', '1', 'a.jpg', 1), ('B', '1', 'b.jpg', 1)")
    db.commit()
    db.close()
    store = ManifestStore(tmp_path)
    try:
        folders = store.claim_folders(["A", "B"])
        assert folders == {"A": "abc", "B": "B"}
        assert store.record("A") == OrderRecord(
            "abc", complete=True, fingerprint="fp", pictures={"1": FileRecord("a.jpg", 1)}
        )
        assert store.record("B") == OrderRecord(folders["B"], fingerprint="fp")
    finally:
        store.close()


def test_an_unknown_operation_is_refused_by_name(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    try:
        with pytest.raises(ValueError, match="^unknown manifest operation 'bogus'$"):
            store.apply([("bogus", "A")])
    finally:
        store.close()


def test_a_picture_of_a_dropped_order_does_not_hide_the_next_orders_files(
    tmp_path: Path,
) -> None:
    store = ManifestStore(tmp_path)
    try:
        store.claim_folders(["0bad", "A"])
        store.apply([("file", "0bad", "1", "x.jpg", 1), ("file", "A", "1", "a.jpg", 2)])
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    db.execute("UPDATE orders SET folder = '..' WHERE order_id = '0bad'")
    db.commit()
    db.close()
    expected = {"A": OrderRecord("A", pictures={"1": FileRecord("a.jpg", 2)})}
    store = ManifestStore(tmp_path)
    try:
        assert store.records(["0bad", "A"]) == expected
    finally:
        store.close()
    # load_manifest reads the pictures table in one pass: the dropped order's row comes first.
    assert load_manifest(tmp_path).orders == expected


# -- the resume's summaries (one row per complete order) ----------------------------------------


def _complete_order(store: ManifestStore, order_id: str, files: dict[str, int]) -> None:
    store.claim_folders([order_id])
    store.apply(
        [
            ("begin", order_id),
            *(
                ("file", order_id, str(n), name, size)
                for n, (name, size) in enumerate(files.items())
            ),
            ("done", order_id, "fp"),
        ]
    )


def _summarised(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path / MANIFEST_NAME)) as db:
        return {order_id for (order_id,) in db.execute("SELECT order_id FROM order_files")}


def test_a_complete_orders_summary_is_its_files_the_zip_last(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "A", {"a.jpg": 5, "b b.jpg": 60})
        _complete_order(store, "E", {})  # an empty order: a summary of no files
        store.claim_folders(["Z", "N"])
        store.apply([("zip", "Z", "Z.zip", 7), ("done", "Z", None), ("file", "N", "1", "n.jpg", 1)])
        assert _summarised(tmp_path) == {"A", "E", "Z"}  # N is not complete
        summaries = store.summaries(["A", "E", "Z", "N", "unknown"])
        assert summaries == {
            "A": OrderSummary("A", True, "fp", ("a.jpg", "b b.jpg"), (5, 60)),
            "E": OrderSummary("E", True, "fp", (), ()),
            "Z": OrderSummary("Z", True, None, ("Z.zip",), (7,), ZipRecord("Z.zip", 7)),
            "N": OrderSummary("N", False),
        }
        assert all(type(size) is int for size in summaries["A"].sizes)
        for order_id in ("A", "E", "Z", "N"):  # the same as the per-picture record says
            record = store.record(order_id)
            assert record is not None
            assert summaries[order_id] == record.summary()
    finally:
        store.close()


def test_a_complete_orders_summary_is_read_from_its_one_row_not_its_picture_rows(
    tmp_path: Path,
) -> None:
    # The point of the summaries: a resume of complete orders reads one row per order, not
    # one per file (a summary never used gives the same answer, one query per file slower).
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "A", {"a.jpg": 5, "b b.jpg": 60})
        _complete_order(store, "E", {})
        _complete_order(store, "B/1", {"b.jpg": 6})  # its folder is not its id
        folder = store.claim_folders(["B/1"])["B/1"]
        assert folder != "B/1"
        store.claim_folders(["Z"])
        store.apply([("zip", "Z", "Z.zip", 7), ("done", "Z", None)])
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        summaries = store.summaries(["A", "E", "B/1", "Z"])
        store._db.set_trace_callback(None)
        assert summaries == {
            "A": OrderSummary("A", True, "fp", ("a.jpg", "b b.jpg"), (5, 60)),
            "B/1": OrderSummary(folder, True, "fp", ("b.jpg",), (6,)),
            "E": OrderSummary("E", True, "fp", (), ()),
            "Z": OrderSummary("Z", True, None, ("Z.zip",), (7,), ZipRecord("Z.zip", 7)),
        }
        assert len(statements) == 1, statements
        assert "order_files" in statements[0].lower() and "pictures" not in statements[0].lower()
    finally:
        store.close()


def _tamper(path: Path, statement: str, *args: object) -> None:
    with contextlib.closing(sqlite3.connect(path / MANIFEST_NAME)) as db:
        db.execute(statement, args)  # another tool, or a damaged disk
        db.commit()


def test_a_damaged_order_row_is_left_out_and_the_orders_after_it_are_still_read(
    tmp_path: Path,
) -> None:
    store = ManifestStore(tmp_path)
    try:
        for order_id in ("A", "B", "C"):
            _complete_order(store, order_id, {f"{order_id}.jpg": 5})
        _tamper(tmp_path, "UPDATE orders SET folder = '..' WHERE order_id = 'A'")
        assert store.summaries(["A", "B", "C"]) == {
            "B": OrderSummary("B", True, "fp", ("B.jpg",), (5,)),
            "C": OrderSummary("C", True, "fp", ("C.jpg",), (5,)),
        }
    finally:
        store.close()


def test_orders_with_malformed_summaries_are_read_from_their_rows_by_order_id(
    tmp_path: Path,
) -> None:
    # "B/1"'s folder is not its id: the rows read again are the order's, not its folder's.
    store = ManifestStore(tmp_path)
    try:
        for order_id in ("A", "B/1", "C"):
            _complete_order(store, order_id, {"a.jpg": 5, "b.jpg": 6})
        folder = store.claim_folders(["B/1"])["B/1"]
        assert folder != "B/1"
        _tamper(tmp_path, "UPDATE order_files SET files = 'a.jpg/5/' WHERE order_id != 'C'")
        assert store.summaries(["A", "B/1", "C"]) == {
            "A": OrderSummary("A", True, "fp", ("a.jpg", "b.jpg"), (5, 6)),
            "B/1": OrderSummary(folder, True, "fp", ("a.jpg", "b.jpg"), (5, 6)),
            "C": OrderSummary("C", True, "fp", ("a.jpg", "b.jpg"), (5, 6)),
        }
    finally:
        store.close()


def test_an_order_with_files_and_a_zip_is_summarised_with_the_zip_after_its_files(
    tmp_path: Path,
) -> None:
    store = ManifestStore(tmp_path)
    try:
        store.claim_folders(["A"])
        store.apply([("file", "A", "1", "a.jpg", 5), ("zip", "A", "A.zip", 7), ("done", "A", "fp")])
        expected = OrderSummary("A", True, "fp", ("a.jpg", "A.zip"), (5, 7), ZipRecord("A.zip", 7))
        assert store.summaries(["A"]) == {"A": expected}
        record = store.record("A")
        assert record is not None and record.summary() == expected
    finally:
        store.close()


@pytest.mark.parametrize(
    ("change", "touched"),
    [
        ("INSERT INTO pictures VALUES ('A', '9', 'new.jpg', 9)", {"A"}),
        ("UPDATE pictures SET size = 6 WHERE order_id = 'A' AND picture_id = '0'", {"A"}),
        ("UPDATE pictures SET order_id = 'A', picture_id = '7' WHERE order_id = 'B'", {"A", "B"}),
        ("UPDATE pictures SET name = 'd.jpg' WHERE order_id = 'B'", {"B"}),
        ("DELETE FROM pictures WHERE order_id = 'A' AND picture_id = '1'", {"A"}),
    ],
)
def test_any_change_to_an_orders_picture_rows_forgets_its_summary(
    tmp_path: Path, change: str, touched: set[str]
) -> None:
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "A", {"a.jpg": 5, "b.jpg": 6})
        _complete_order(store, "B", {"c.jpg": 7})
        with contextlib.closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as other:
            other.execute(change)  # another process, of any version
            other.commit()
        assert _summarised(tmp_path) == {"A", "B"} - touched
        for order_id in ("A", "B"):  # read from the rows where the summary is gone
            record = store.record(order_id)
            assert record is not None
            assert store.summaries([order_id])[order_id] == record.summary()
    finally:
        store.close()


def test_a_database_with_its_triggers_is_not_summarised_again_when_opened(
    tmp_path: Path,
) -> None:
    # Only a database of an earlier version (no triggers) gets its summaries at open: one
    # statement over every complete order, which must not run for every harvest.
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "A", {"a.jpg": 5})
    finally:
        store.close()
    _tamper(tmp_path, "DELETE FROM order_files")
    ManifestStore(tmp_path).close()
    assert _summarised(tmp_path) == set()


def test_a_database_without_summaries_gets_them_when_opened(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "A", {"a.jpg": 5})
        store.claim_folders(["N"])
        store.apply([("file", "N", "1", "n.jpg", 1)])
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as db:
        for event in ("insert", "update", "delete"):
            db.execute(f"DROP TRIGGER pictures_{event}_forgets_files")
        db.execute("DELETE FROM order_files")
        db.commit()
    store = ManifestStore(tmp_path)
    try:
        assert _summarised(tmp_path) == {"A"}
        assert store.summaries(["A"])["A"] == OrderSummary("A", True, "fp", ("a.jpg",), (5,))
        store.apply([("file", "A", "2", "b.jpg", 2)])  # the triggers are back
        assert _summarised(tmp_path) == set()
    finally:
        store.close()


@pytest.mark.parametrize(
    "summary",
    [
        "a.jpg/5/b.jpg",  # a name without a size
        "a.jpg/5/",
        "../5",
        "a.jpg/5/./1",
        "a.jpg/-5",
        "a.jpg/05",  # not as SQLite writes a number
        "a.jpg/5.0",
        "a.jpg/\u0665",  # a digit, but not an ASCII one
        "a\\b/5",
        "a\x00b/5",
        "/5",
        "a.jpg/ 5",
    ],
)
def test_a_malformed_summary_is_read_from_the_picture_rows(tmp_path: Path, summary: str) -> None:
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "A", {"a.jpg": 5, "b.jpg": 6})
        with contextlib.closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as db:
            db.execute("UPDATE order_files SET files = ?", (summary,))
            db.commit()
        expected = OrderSummary("A", True, "fp", ("a.jpg", "b.jpg"), (5, 6))
        assert store.summaries(["A"]) == {"A": expected}
    finally:
        store.close()


def test_a_replaced_manifest_keeps_only_its_own_summaries(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    try:
        _complete_order(store, "old", {})
        _complete_order(store, "A", {"a.jpg": 5})
    finally:
        store.close()
    manifest = Manifest()
    manifest.orders["A"] = complete_record("A", **{"b.jpg": 6})
    manifest.orders["N"] = OrderRecord("N", pictures={"1": FileRecord("n.jpg", 1)})
    save_manifest(tmp_path, manifest)
    assert _summarised(tmp_path) == {"A"}
    store = ManifestStore(tmp_path)
    try:
        assert store.summaries(["A"])["A"] == OrderSummary("A", True, "fp", ("b.jpg",), (6,))
    finally:
        store.close()
