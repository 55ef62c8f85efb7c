"""The command line's shared budget: every run counts in one store, ``zigziik budget``.

Runs are real ``python -m zigziik`` processes where it matters (two runs in one day share the
count); ``XDG_CACHE_HOME`` is a folder of the test's own (``conftest.py``), never the real cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _redis import free_port

from zigziik import cli
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve


@pytest.fixture
def zigna(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZigna]:
    fake = FakeZigna(orders=3, pictures_per_order=1, picture_size=1_000, daily_limit=None)
    with serve(fake.app) as origin:
        monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
        monkeypatch.setenv("ZIGNA_BASE_URL", origin + "/v2")
        monkeypatch.setenv("COLUMNS", "160")
        yield fake


def zigziik(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zigziik", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )


def cache_db() -> Path:
    return Path(os.environ["XDG_CACHE_HOME"]) / "zigziik" / "budget.db"


@pytest.mark.slow
def test_two_runs_in_one_day_share_the_count_and_budget_reports_it(zigna: FakeZigna) -> None:
    order = zigna.order_ids[0]
    for _ in range(2):
        shown = zigziik("orders", "show", order, "--json")
        assert shown.returncode == 0, shown.stderr
    assert zigna.calls == 2
    report = zigziik("budget", "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert set(figures) == {"limit", "used", "remaining", "reset_at", "store"}
    assert (figures["limit"], figures["used"], figures["remaining"]) == (2000, 2, 1998)
    assert type(figures["used"]) is int
    assert figures["store"] == f"sqlite://{cache_db()}"
    assert cache_db().is_file(), "the default store is in $XDG_CACHE_HOME/zigziik/"
    assert zigna.calls == 2, "zigziik budget spends no call"
    assert DEMO_API_KEY not in report.stdout


def test_a_daily_limit_holds_across_runs(
    zigna: FakeZigna, capsys: pytest.CaptureFixture[str]
) -> None:
    order = zigna.order_ids[0]
    statuses = [
        cli.main(["orders", "show", order, "--json", "--daily-limit", "2"]) for _ in range(3)
    ]
    err = capsys.readouterr().err
    assert statuses == [0, 0, cli.EXIT_FAILED]
    assert "exhausted" in err
    assert zigna.calls == 2, "the third run sent nothing"


def test_budget_store_flag_and_environment_pick_the_store(
    zigna: FakeZigna,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order = zigna.order_ids[0]
    flag = tmp_path / "flag.db"
    assert cli.main(["orders", "show", order, "--budget-store", f"sqlite://{flag}"]) == 0
    monkeypatch.setenv("ZIGZIIK_BUDGET_STORE", f"sqlite://{tmp_path / 'env.db'}")
    assert cli.main(["orders", "show", order]) == 0
    assert cli.main(["orders", "show", order]) == 0
    capsys.readouterr()
    assert cli.main(["budget", "--json", "--budget-store", f"sqlite://{flag}"]) == 0
    assert json.loads(capsys.readouterr().out)["used"] == 1
    assert cli.main(["budget", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["used"], shown["store"]) == (2, f"sqlite://{tmp_path / 'env.db'}")
    assert not cache_db().exists(), "the default store was not used"


def test_budget_as_a_table(zigna: FakeZigna, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["orders", "show", zigna.order_ids[0]]) == 0
    capsys.readouterr()
    assert cli.main(["budget"]) == 0
    out = capsys.readouterr().out
    assert "Remaining" in out and "1999" in out and "budget.db" in out


def test_an_unreachable_store_fails_closed_in_one_line(
    zigna: FakeZigna, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://:s3cr3t-pw@127.0.0.1:{free_port()}/0"
    status = cli.main(["orders", "show", zigna.order_ids[0], "--budget-store", url])
    err = capsys.readouterr().err
    assert status == cli.EXIT_FAILED
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("zigziik: error: budget store redis://")
    assert "s3cr3t" not in err and "Traceback" not in err
    assert zigna.calls == 0


def test_a_bad_store_url_is_a_usage_error(
    zigna: FakeZigna, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["budget", "--budget-store", "ftp://x"])
    assert status == cli.EXIT_USAGE
    assert "budget store URL" in capsys.readouterr().err


def test_budget_needs_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ZIGNA_API_KEY", raising=False)
    assert cli.main(["budget"]) == cli.EXIT_USAGE
    assert "ZIGNA_API_KEY" in capsys.readouterr().err


def test_the_harvest_summary_shows_the_shared_figure(
    zigna: FakeZigna, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):  # another run spent 3 calls today
        assert cli.main(["orders", "show", zigna.order_ids[0]]) == 0
    before = zigna.calls
    assert cli.main(["harvest", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    spent = zigna.calls
    assert spent > before
    assert f"{2000 - spent} of 2000" in out
