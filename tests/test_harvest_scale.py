"""Harvests at scale, over real loopback sockets: shards in several processes, runs that wait
for the budget's reset, select, recheck, dry runs, links under ``dest_dir``, the migration
of a JSON manifest, and flat memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_harvest import client, expected_files, files_on_disk
from test_harvest import served as harvest_served

from zigziik import DailyBudget, SqliteBudgetStore, ZignaClient, _safedir
from zigziik._filenames import sanitize_component
from zigziik.ratelimit import RateLimit
from zigziik.testing import DEMO_API_KEY, FakeZigna
from zigziik.zigna.harvest import HarvestEvent, ManifestError, estimate_harvest
from zigziik.zigna.harvest._manifest import (
    LEGACY_MANIFEST_NAME,
    MANIFEST_NAME,
    load_manifest,
    save_json_manifest,
)
from zigziik.zigna.harvest._plan import shard_of
from zigziik.zigna.models import Order, OrderStatus

ROOT = Path(__file__).resolve().parent.parent
SMALL = (2_000, 8_000)
MANIFEST_PREFIX = ".zigziik-manifest"


@contextmanager
def served(**options: Any) -> Iterator[tuple[FakeZigna, str]]:
    options.setdefault("orders", 8)
    options.setdefault("picture_size", SMALL)
    options.setdefault("pictures_per_order", (2, 4))
    with harvest_served(**options) as served_fake:
        yield served_fake


def temporaries(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.name.endswith(".part")]


def picture_downloads(fake: FakeZigna) -> Counter[str]:
    return Counter(
        path for method, path in fake.requests if "/pictures/" in path and not path.endswith("/zip")
    )


def picture_listings(fake: FakeZigna) -> Counter[str]:
    return Counter(path for _, path in fake.requests if path.endswith("/pictures"))


def order_listings(fake: FakeZigna) -> int:
    return sum(1 for _, path in fake.requests if path.startswith("/v2/orders?"))


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZIGNA_", "ZIGZIIK_"))}
    env["ZIGNA_API_KEY"] = DEMO_API_KEY
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # a budget store of its own, if any
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(base: str, dest: Path, *flags: str, as_json: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "zigziik",
        "harvest",
        str(dest),
        "--base-url",
        base,
        "--no-progress",
        *(["--json"] if as_json else []),
        *flags,
    ]


def run_all(commands: list[list[str]], env: dict[str, str], timeout: float) -> list[Any]:
    """Run the commands at once; their JSON reports (each must exit 0). Nothing outlives it."""
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    outputs: list[tuple[int, str, str]] = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            outputs.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
    for returncode, out, err in outputs:
        assert returncode == 0, (out[-3000:], err[-3000:])
    return [json.loads(out) for _, out, _ in outputs]


def run_cli(
    base: str, dest: Path, tmp_path: Path, *flags: str, as_json: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(base, dest, *flags, as_json=as_json),
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- shards --------------------------------------------------------------------------------


def test_shard_of_is_stable_and_spreads() -> None:
    # Fixed values: the same in every process, every Python and every version.
    assert [shard_of(str(i), 4) for i in range(240_000, 240_008)] == [1, 2, 1, 3, 2, 2, 0, 3]
    assert shard_of("240017", 1) == 0
    counts = Counter(shard_of(str(i), 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800
    script = "from zigziik.zigna.harvest._plan import shard_of; print([shard_of(str(i), 7) for i in range(50)])"
    other = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert other.stdout.strip() == str([shard_of(str(i), 7) for i in range(50)])


@pytest.mark.slow
def test_two_processes_on_two_shards_share_one_folder(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=16) as (fake, base):
        env = cli_env(tmp_path)
        commands = [
            cli(base, dest, "--shard", f"{k}/2", "--strategy", "pictures") for k in range(2)
        ]
        reports = run_all(commands, env, timeout=60)
        # Every picture written exactly once, every order's pictures listed exactly once.
        downloads = picture_downloads(fake)
        assert set(downloads.values()) == {1}
        assert len(downloads) == fake.picture_count
        listings = picture_listings(fake)
        assert set(listings.values()) == {1}
        assert len(listings) == len(fake.order_ids)
        assert files_on_disk(dest) == expected_files(fake)
        assert temporaries(dest) == []
        assert sum(r["orders"] for r in reports) == len(fake.order_ids)
        assert all(r["orders"] > 0 for r in reports)
        assert sum(r["written"] for r in reports) == fake.picture_count
        # A later run without a shard sees all their work: only the listing is spent.
        fake.reset_stats()
        third = run_cli(base, dest, tmp_path)
        assert third.returncode == 0, third.stderr
        report = json.loads(third.stdout)
        assert (report["calls"], report["written"]) == (1, 0)
        assert report["skipped"] == fake.picture_count
        assert fake.requests == [("GET", "/v2/orders?take=50&skip=0")]


@pytest.mark.slow
def test_two_shards_share_one_budget_across_its_resets(tmp_path: Path) -> None:
    """Two processes, one budget store ($ZIGZIIK_BUDGET_STORE), a server day of 1.5 s and 8
    calls (32 calls in all, so four days or more): both finish, and the server refuses nothing.
    (A day of 20 calls was not spent within 1.5 s on a loaded machine, and nobody waited.)"""
    dest = tmp_path / "dest"
    with served(orders=6, pictures_per_order=4, daily_limit=8, reset_period=1.5) as (fake, base):
        env = cli_env(tmp_path)
        env["ZIGZIIK_BUDGET_STORE"] = f"sqlite:///{tmp_path / 'budget.db'}"
        commands = [
            cli(base, dest, "--shard", f"{k}/2", "--strategy", "pictures", "--until-complete")
            for k in range(2)
        ]
        reports = run_all(commands, env, timeout=90)
        assert fake.rejected == 0
        assert files_on_disk(dest) == expected_files(fake)
        assert set(picture_listings(fake).values()) == {1}
        assert set(picture_downloads(fake).values()) == {1}
        assert order_listings(fake) == 2  # once per process, for all its days
        assert sum(r["waits"] for r in reports) >= 1


@pytest.mark.anyio
async def test_a_shard_harvests_only_its_orders(tmp_path: Path) -> None:
    with served(orders=12) as (fake, base):
        mine = [o for o in fake.order_ids if shard_of(o, 3) == 1]
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, shard=(1, 3))
        assert report.ok and report.orders == len(mine)
        assert files_on_disk(tmp_path) == expected_files(fake, mine)
        assert set(picture_listings(fake)) == {f"/v2/orders/{o}/pictures" for o in mine}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("shard", "error"),
    [((2, 2), ValueError), ((0, 0), ValueError), ((-1, 2), ValueError), ("0/2", TypeError)],
)
async def test_bad_shards_are_refused_before_any_call(
    tmp_path: Path, shard: Any, error: type[Exception]
) -> None:
    async with ZignaClient(DEMO_API_KEY, base_url="http://127.0.0.1:9/v2") as zigna:
        with pytest.raises(error):
            await zigna.harvest(tmp_path, shard=shard)
        assert zigna.budget is not None and zigna.budget.used == 0


# -- until_complete ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["pictures", "auto"])
async def test_until_complete_waits_for_resets_and_finishes(tmp_path: Path, strategy: str) -> None:
    limit = 20 if strategy == "pictures" else 5
    events: list[HarvestEvent] = []
    with served(orders=8, daily_limit=limit, reset_period=1.5) as (fake, base):
        async with client(base) as zigna:
            with anyio.fail_after(40):
                report = await zigna.harvest(
                    tmp_path,
                    strategy=strategy,  # type: ignore[arg-type]
                    until_complete=True,
                    progress=events.append,
                )
        assert report.ok, report.failures
        assert report.waits >= 1
        assert fake.rejected == 0  # no call refused by the server
        assert order_listings(fake) == 1  # the orders were listed once, for every day
        if strategy == "pictures":
            assert files_on_disk(tmp_path) == expected_files(fake)
            assert set(picture_listings(fake).values()) == {1}
            assert set(picture_downloads(fake).values()) == {1}
        else:
            with_pictures = [o for o in fake.order_ids if fake.pictures(o)]
            assert report.written == len(with_pictures)
        assert report.calls == fake.calls
    waits = [e for e in events if e.kind == "wait"]
    assert waits and all(e.reset_at is not None and e.seconds is not None for e in waits)
    assert all(e.orders > 0 for e in waits)
    assert any(e.kind == "resume" for e in events)
    # The countdown goes down within a wait.
    first = waits[0]
    assert first.seconds is not None and first.seconds <= 2.5


@pytest.mark.anyio
async def test_the_wait_looks_again_when_calls_in_flight_elsewhere_bring_the_servers_reset(
    tmp_path: Path,
) -> None:
    """Another process holds the day's last calls in flight: the shared ledger can only guess
    that the day ends at the next local midnight (12 hours away here). The wait looks at the
    store again every second, and once those answers bring the server's reset (a second
    away), the harvest goes on then. (It used to sleep until the guessed midnight.)"""
    hour = datetime.now(timezone.utc).hour
    zone = timezone(timedelta(hours=((12 - hour + 12) % 24) - 12))  # local noon, about
    path = tmp_path / "budget.db"
    async with SqliteBudgetStore(path) as elsewhere, SqliteBudgetStore(path) as here:
        await _harvest_while_another_holds_the_last_calls(tmp_path, zone, elsewhere, here)


async def _harvest_while_another_holds_the_last_calls(
    tmp_path: Path, zone: tzinfo, elsewhere: SqliteBudgetStore, here: SqliteBudgetStore
) -> None:
    other = DailyBudget(8, timezone=zone, store=elsewhere, scope="shared")
    leases = [(await other.reserve()).lease for _ in range(8)]
    assert other.remaining == 0
    waits: list[HarvestEvent] = []
    answered = anyio.Event()

    def progress(event: HarvestEvent) -> None:
        if event.kind == "wait":
            waits.append(event)

    async def answer_elsewhere() -> None:
        while not waits:  # noqa: ASYNC110 - the progress callback cannot await
            await anyio.sleep(0.01)
        for lease in leases:
            await other.settle(RateLimit(limit=8, remaining=0, reset_after=1.0), lease=lease)
        await other.flush()
        answered.set()

    budget = DailyBudget(8, timezone=zone, store=here, scope="shared")
    with served(orders=2, pictures_per_order=2, daily_limit=None) as (fake, base):
        async with client(base, budget=budget) as zigna, anyio.create_task_group() as group:
            group.start_soon(answer_elsewhere)
            with anyio.fail_after(60):  # a hang guard: the broken wait ends hours later
                report = await zigna.harvest(
                    tmp_path / "dest", strategy="pictures", until_complete=True, progress=progress
                )
    assert answered.is_set()
    assert report.ok, report.failures
    assert report.waits == 1 and fake.calls == report.calls <= 8
    assert files_on_disk(tmp_path / "dest") == expected_files(fake)
    # The wait began on the guess (midnight, hours away) and still ended within the guard:
    # the answers' reset (or, on a slow machine, the reset itself having passed) ended it.
    first = waits[0].reset_at
    assert first is not None and first - datetime.now(timezone.utc) > timedelta(hours=1)


@pytest.mark.anyio
async def test_until_complete_waits_when_the_listing_itself_finds_no_budget(
    tmp_path: Path,
) -> None:
    with served(orders=4, daily_limit=6, reset_period=1.5) as (fake, base):
        async with client(base) as zigna:
            for _ in range(6):  # another task spent the day's calls
                await zigna.orders.get(fake.order_ids[0])
            assert zigna.budget is not None and zigna.budget.remaining == 0
            fake.reset_stats()
            with anyio.fail_after(30):
                report = await zigna.harvest(tmp_path, strategy="zip", until_complete=True)
        assert report.ok, report.failures
        assert report.waits >= 1
        assert fake.rejected == 0
        assert order_listings(fake) == 1
        assert report.written == len([o for o in fake.order_ids if fake.pictures(o)])


@pytest.mark.anyio
async def test_without_until_complete_a_spent_budget_is_reported(tmp_path: Path) -> None:
    with served(orders=8, daily_limit=12, reset_period=1.5) as (fake, base):
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, strategy="pictures")
        assert report.failures and report.waits == 0
        assert any("budget" in f.reason for f in report.failures)
        assert fake.rejected == 0


@pytest.mark.anyio
async def test_cancelling_during_the_wait_is_clean_and_the_next_run_resumes(
    tmp_path: Path,
) -> None:
    with served(orders=8, daily_limit=12, reset_period=3600) as (fake, base):
        expected = expected_files(fake)
        async with client(base) as zigna:
            with anyio.CancelScope() as scope:

                def progress(event: HarvestEvent) -> None:
                    if event.kind == "wait":
                        scope.cancel()

                with anyio.fail_after(45):
                    await zigna.harvest(
                        tmp_path, strategy="pictures", until_complete=True, progress=progress
                    )
            assert scope.cancelled_caught
        assert temporaries(tmp_path) == []
        before = files_on_disk(tmp_path)
        assert 0 < len(before) < len(expected)
        assert all(expected[name] == data for name, data in before.items())
        fetched = set(picture_downloads(fake))
        fake.daily_limit = None  # the next day, in effect
        fake.reset_stats()
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, strategy="pictures", until_complete=True)
        assert report.ok
        assert files_on_disk(tmp_path) == expected
        assert not fetched & set(picture_downloads(fake))  # nothing fetched twice
        assert report.written == len(expected) - len(before)


def test_ctrl_c_during_the_wait_exits_130_and_the_next_run_resumes(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=8, daily_limit=12, reset_period=3600) as (fake, base):
        process = subprocess.Popen(
            cli(base, dest, "--until-complete", "--strategy", "pictures"),
            env=cli_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        try:
            deadline = time.monotonic() + 30
            seen = ""
            while "waiting for its reset" not in seen:
                line = process.stderr.readline()
                assert line or process.poll() is None, seen
                seen += line
                assert time.monotonic() < deadline, seen
            assert "orders left" in seen
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 130, err
        assert "interrupted" in err
        assert temporaries(dest) == []
        before = files_on_disk(dest)
        fake.daily_limit = None
        fake.reset_stats()
        # A new day for the server is a new day for the runs' shared budget store too.
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        again = run_cli(base, dest, tmp_path, "--until-complete")
        assert again.returncode == 0, again.stderr
        assert files_on_disk(dest) == expected_files(fake)
        assert json.loads(again.stdout)["written"] == len(expected_files(fake)) - len(before)


# -- select and recheck --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_select_costs_nothing_for_the_orders_it_rejects(tmp_path: Path) -> None:
    with served(orders=12) as (fake, base):

        def completed(order: Order) -> bool:
            return order.status_id == OrderStatus.COMPLETED

        kept = [o for o in fake.order_ids if fake.order(o)["statusID"] == 5]
        assert 0 < len(kept) < len(fake.order_ids)
        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, select=completed)
        assert report.ok and report.orders == len(kept)
        assert set(picture_listings(fake)) == {f"/v2/orders/{o}/pictures" for o in kept}
        assert files_on_disk(tmp_path) == expected_files(fake, kept)
        pictures = sum(len(fake.pictures(o)) for o in kept)
        assert report.calls == fake.calls == 1 + len(kept) + pictures


@pytest.mark.anyio
async def test_a_raising_select_skips_that_order_with_a_failure(tmp_path: Path) -> None:
    with served(orders=4) as (fake, base):
        victim = fake.order_ids[1]

        def select(order: Order) -> bool:
            if order.id == victim:
                raise RuntimeError("bad predicate")
            return True

        async with client(base) as zigna:
            report = await zigna.harvest(tmp_path, select=select)
        assert [(f.order_id, f.picture_id) for f in report.failures] == [(victim, None)]
        assert "bad predicate" in report.failures[0].reason
        assert report.orders == 3


@pytest.mark.anyio
async def test_recheck_fetches_pictures_added_since(tmp_path: Path) -> None:
    with served(orders=5) as (fake, base):
        target = next(o for o in fake.order_ids if fake.pictures(o))
        async with client(base) as zigna:
            await zigna.harvest(tmp_path)
            new_picture = tmp_path.parent / "new.jpg"
            new_picture.write_bytes(b"\xff\xd8\xff\xe0" + b"x" * 500 + b"\xff\xd9")
            await zigna.pictures.upload(target, new_picture)
            fake.reset_stats()
            plain = await zigna.harvest(tmp_path)
            assert (plain.calls, plain.written) == (1, 0)  # nothing says the order changed
            fake.reset_stats()
            rechecked = await zigna.harvest(tmp_path, recheck=True)
        assert rechecked.ok and rechecked.written == 1
        # the listing, every order's picture list again, the one new picture
        assert rechecked.calls == fake.calls == 1 + len(fake.order_ids) + 1
        assert files_on_disk(tmp_path) == expected_files(fake)


# -- dry run -----------------------------------------------------------------------------------


def test_dry_run_spends_only_the_listing_and_prints_the_plan(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=60, daily_limit=40) as (fake, base):
        done = run_cli(base, dest, tmp_path, "--dry-run")
        assert done.returncode == 0, done.stderr
        plan = json.loads(done.stdout)
        # Only the listing: two pages of 50.
        assert fake.requests == [
            ("GET", "/v2/orders?take=50&skip=0"),
            ("GET", "/v2/orders?take=50&skip=50"),
        ]
        assert plan["listing_calls"] == 2
        assert plan["orders"] == 60 and plan["done"] == 0
        assert plan["remaining"] == 38 and plan["limit"] == 40
        # 38 calls left: 38 orders by zip today, 22 later; 60 calls; 2 days.
        assert plan["routes"] == {"zip": 38, "later": 22}
        assert plan["calls"] == 60
        assert plan["days"] == 2
        assert files_on_disk(dest) == {}
        text = run_cli(base, dest, tmp_path, "--dry-run", as_json=False)  # the table
        assert text.returncode == 0, text.stderr
        assert "Days at this budget" in text.stdout and "one zip each" in text.stdout


@pytest.mark.anyio
async def test_estimate_counts_complete_orders_as_free(tmp_path: Path) -> None:
    with served(orders=6) as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(tmp_path)
            fake.reset_stats()
            estimate = await estimate_harvest(zigna, tmp_path)
        assert estimate.done == 6 and estimate.calls == 0 and estimate.days == 0
        assert fake.calls == estimate.listing_calls == 1


@pytest.mark.timeout(240)  # four CLI processes: 55 s were seen at load 13
def test_cli_refuses_bad_scale_flags(tmp_path: Path) -> None:
    for flags, text in [
        (["--shard", "2/2"], "0 <= K < N"),
        (["--shard", "x"], "shard"),
        (["--status", "nonsense"], "not an order status"),
        (["--since", "yesterday"], "YYYY-MM-DD"),
    ]:
        done = run_cli("http://127.0.0.1:9/v2", tmp_path / "d", tmp_path, *flags)
        assert done.returncode == 2, (flags, done.stderr)
        assert text in done.stderr, (flags, done.stderr)


def test_cli_status_and_since_select_orders(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with served(orders=12) as (fake, base):
        created = sorted(fake.order(o)["created"] for o in fake.order_ids)
        since = created[6][:10]
        kept = [
            o
            for o in fake.order_ids
            if fake.order(o)["statusID"] in (4, 5) and fake.order(o)["created"][:10] >= since
        ]
        done = run_cli(
            base, dest, tmp_path, "--status", "5", "--status", "photos_uploaded", "--since", since
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["orders"] == len(kept)
        assert set(picture_listings(fake)) == {f"/v2/orders/{o}/pictures" for o in kept}


# -- never through a link ------------------------------------------------------------------------


@pytest.fixture(params=["descriptors", "paths"])
def folders(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Folders held as descriptors (this platform's way) or by path (Windows' way, forced)."""
    if request.param == "paths":
        monkeypatch.setattr(_safedir, "DIR_FDS", False)
    return str(request.param)


@pytest.mark.anyio
async def test_an_order_folder_that_is_a_link_is_refused(tmp_path: Path, folders: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    with served(orders=4) as (fake, base):
        victim = next(o for o in fake.order_ids if fake.pictures(o))
        (dest / sanitize_component(victim)).symlink_to(outside, target_is_directory=True)
        for strategy in ("pictures", "zip"):
            async with client(base) as zigna:
                report = await zigna.harvest(dest, strategy=strategy)  # type: ignore[arg-type]
            assert [f.order_id for f in report.failures] == [victim]
            assert "symbolic link" in report.failures[0].reason
            assert list(outside.iterdir()) == []
        others = [o for o in fake.order_ids if o != victim]
        assert not any(path.endswith(f"/{victim}/pictures") for _, path in fake.requests)
        on_disk = files_on_disk(dest)
        assert {k: v for k, v in on_disk.items() if not k.endswith(".zip")} == expected_files(
            fake, others
        )


@pytest.mark.anyio
async def test_a_picture_file_that_is_a_link_is_replaced_not_written_through(
    tmp_path: Path, folders: str
) -> None:
    dest = tmp_path / "dest"
    with served(orders=3) as (fake, base):
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


@pytest.mark.anyio
async def test_a_temporary_name_that_is_a_link_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders: str
) -> None:
    import zigziik.download as download

    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    with served(orders=3) as (fake, base):
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
        assert (dest / folder / fixed).is_symlink()  # left as it was
        assert not (dest / victim).exists()


@pytest.mark.anyio
async def test_a_manifest_that_is_a_link_stops_the_harvest(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "elsewhere.sqlite"
    (dest / MANIFEST_NAME).symlink_to(outside)
    with served(orders=2) as (fake, base):
        async with client(base) as zigna:
            with pytest.raises(ManifestError, match="symbolic link"):
                await zigna.harvest(dest)
        assert not outside.exists()
        assert picture_downloads(fake) == Counter()


@pytest.mark.anyio
async def test_zip_extraction_never_writes_through_a_link(tmp_path: Path, folders: str) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"untouched")
    with served(orders=3) as (fake, base):
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


class _Swapping:
    """A `HarvestSource` over a client that, just before the first file of ``victim`` is
    fetched (after the harvest checked and opened its folder), moves that folder aside and
    puts a symbolic link to ``outside`` in its place."""

    def __init__(self, source: Any, folder: Path, outside: Path) -> None:
        self._source = source
        self.folder = folder
        self.outside = outside
        self.swapped = False

    @property
    def budget(self) -> Any:
        return self._source.budget

    def orders(self, page_size: int, skip: int = 0) -> Any:
        return self._source.orders(page_size, skip)

    async def pictures(self, order_id: str) -> Any:
        return await self._source.pictures(order_id)

    def swap(self, folder: Any) -> None:
        if not self.swapped and getattr(folder, "path", folder) == self.folder:
            self.swapped = True
            self.folder.rename(self.folder.with_name(self.folder.name + ".moved"))
            self.folder.symlink_to(self.outside, target_is_directory=True)

    async def receive_picture(self, order_id: str, picture_id: int, *rest: Any) -> Any:
        self.swap(rest[2])
        return await self._source.receive_picture(order_id, picture_id, *rest)

    async def download_zip(self, order_id: str, folder: Any, progress: Any) -> Any:
        self.swap(folder)
        return await self._source.download_zip(order_id, folder, progress)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("strategy", "size"),
    [("pictures", SMALL), ("pictures", (300_000, 400_000)), ("zip", SMALL)],
    ids=["small-pictures", "big-pictures", "zip"],
)
async def test_an_order_folder_swapped_for_a_link_mid_run_is_never_written_through(
    tmp_path: Path, strategy: str, size: tuple[int, int]
) -> None:
    """The check by path passes, then the folder becomes a link before the file is written:
    every file still lands in the folder that was checked (moved aside, inside dest_dir),
    none through the link. Small pictures are written by the event loop's thread, big ones
    by the disk thread, zips streamed: all three go through the folder's descriptor."""
    from zigziik.zigna.harvest import harvest

    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    with served(orders=3, picture_size=size) as (fake, base):
        victim = next(o for o in fake.order_ids if fake.pictures(o))
        folder = dest / sanitize_component(victim)
        async with client(base) as zigna:
            source = _Swapping(zigna.harvest_source(), folder, outside)
            report = await harvest(source, dest, strategy=strategy, concurrency=1)  # type: ignore[arg-type]
        assert source.swapped
        assert report.ok, report.failures
        assert list(outside.iterdir()) == []
        moved = folder.with_name(folder.name + ".moved")
        if strategy == "zip":
            assert [p.name for p in moved.iterdir()] == [f"{sanitize_component(victim)}.zip"]
        else:
            expected = expected_files(fake, [victim])
            assert {f"{folder.name}/{p.name}": p.read_bytes() for p in moved.iterdir()} == (
                expected
            )
        assert temporaries(dest) == []


def test_a_zip_folder_swapped_at_any_step_of_extraction_never_writes_outside(
    tmp_path: Path,
) -> None:
    """A swap of a member's folder for a link at every step the extractor passes (before
    each member, each chunk, the final moves): nothing ever lands outside dest_dir, and the
    extraction either completes inside it or fails leaving nothing of its own."""
    import zipfile

    from zigziik._extract import safe_extract_sync
    from zigziik.errors import IntegrityError

    members = [("a/one.jpg", b"1" * 300_000), ("a/two.jpg", b"2"), ("b/three.jpg", b"3")]
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    step = 0
    while True:
        step += 1
        dest = tmp_path / f"dest{step}"
        (dest / "a").mkdir(parents=True)
        outside = tmp_path / f"outside{step}"
        outside.mkdir()
        calls = 0

        def swap(step: int = step, dest: Path = dest, outside: Path = outside) -> None:
            nonlocal calls
            calls += 1
            if calls == step:
                (dest / "a").rename(dest / "a.moved")
                (dest / "a").symlink_to(outside, target_is_directory=True)

        refusal = ""
        try:
            safe_extract_sync(archive, dest, checkpoint=swap)
        except IntegrityError as exc:
            refusal = str(exc)
        assert not refusal or "symbolic link 'a'" in refusal, refusal
        assert list(outside.iterdir()) == [], step
        if calls < step:  # the swap never happened: every step was covered
            break
        written = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
        assert all(not name.startswith("a/") for name in written), written
        assert not any(".part" in name for name in written), written
    assert step > 4


# -- the JSON manifest of earlier versions ---------------------------------------------------


@pytest.mark.anyio
async def test_a_migrated_json_manifest_resumes_with_no_call_on_what_it_records(
    tmp_path: Path,
) -> None:
    with served(orders=6) as (fake, base):
        async with client(base) as zigna:
            await zigna.harvest(tmp_path)
            manifest = load_manifest(tmp_path)
            for path in tmp_path.glob(MANIFEST_PREFIX + "*"):
                path.unlink()
            save_json_manifest(tmp_path, manifest)  # a folder harvested by an earlier version
            # One order was never finished back then: its record says so.
            unfinished = next(o for o in fake.order_ids if fake.pictures(o))
            partial = manifest.orders[unfinished]
            partial.complete = False
            victim_id, victim = next(iter(partial.pictures.items()))
            del partial.pictures[victim_id]
            (tmp_path / partial.folder / victim.name).unlink()
            save_json_manifest(tmp_path, manifest)
            fake.reset_stats()
            report = await zigna.harvest(tmp_path)
        assert report.ok
        assert report.written == 1
        # The listing, the unfinished order's picture list, its missing picture: no call on
        # anything the JSON manifest records as complete.
        assert fake.requests == [
            ("GET", "/v2/orders?take=50&skip=0"),
            ("GET", f"/v2/orders/{unfinished}/pictures"),
            ("GET", f"/v2/orders/{unfinished}/pictures/{victim_id}"),
        ]
        assert (tmp_path / (LEGACY_MANIFEST_NAME + ".migrated")).is_file()
        assert not (tmp_path / LEGACY_MANIFEST_NAME).exists()
        assert files_on_disk(tmp_path) == expected_files(fake)


# -- flat memory ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)  # 18,000 pictures through real sockets: a loaded machine is slow
def test_peak_memory_does_not_grow_with_the_harvest(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.bench_scale import measure
    finally:
        sys.path.remove(str(ROOT))
    small = measure(3_000, tmp_path / "small")
    large = measure(15_000, tmp_path / "large")
    assert small["written"] == 3_000 and large["written"] == 15_000
    growth_mb = (large["over_kb"] - small["over_kb"]) / 1024
    assert growth_mb <= 25, (small, large)
