"""The ``zigziik`` command line: exit codes and output, against the fake servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zigziik import __version__, cli
from zigziik.testing import DEMO_API_KEY, FakeZigna, FakeZiik, serve
from zigziik.zigna.harvest._manifest import MANIFEST_NAME

ENV_NAMES = (
    "ZIGNA_API_KEY",
    "ZIGNA_BASE_URL",
    "ZIIK_BASE_URL",
    "ZIIK_TOKEN",
    "ZIIK_USERNAME",
    "ZIIK_PASSWORD",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "160")


@pytest.fixture
def zigna(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZigna]:
    """A served fake Zigna, with the environment pointing at it."""
    fake = FakeZigna(orders=4, picture_size=(2_000, 8_000), pictures_per_order=(2, 3))
    with serve(fake.app) as origin:
        monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
        monkeypatch.setenv("ZIGNA_BASE_URL", origin + "/v2")
        yield fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert type(status) is int
    return status, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("zigziik: error: ")
    assert "Traceback" not in err
    return lines[0]


# -- basics ------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["orders"], ["units"]])
def test_a_missing_command_prints_help_and_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == cli.EXIT_USAGE == 2
    assert "usage:" in err
    assert out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["harvest"],
        ["harvest", "d", "--concurrency", "0"],
        ["harvest", "d", "--strategy", "fastest"],
        ["orders", "show"],
        ["bogus"],
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("harvest", "orders", "units", "demo"):
        assert command in out


def test_missing_key_is_one_clear_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run(capsys, "harvest", str(tmp_path / "d"))
    assert status == 2
    assert "ZIGNA_API_KEY" in one_line_error(err)
    assert out == ""
    assert not (tmp_path / "d").exists()


def test_a_bad_key_is_refused_without_showing_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIGNA_API_KEY", "not-a-guid-secret")
    status, _, err = run(capsys, "orders", "list")
    assert status == 2
    line = one_line_error(err)
    assert "GUID" in line
    assert "not-a-guid-secret" not in line


def test_missing_rich_gives_the_install_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    status, _, err = run(capsys, "orders", "list")
    assert status == 2
    assert "pip install 'zigziik[cli]'" in one_line_error(err)


def test_interrupt_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
    real_run = cli.anyio.run
    made: list[Any] = []
    make_client = cli._zigna_client

    def recording(args: object, **options: Any) -> Any:
        made.append(make_client(args, **options))
        return made[-1]

    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_zigna_client", recording)
    monkeypatch.setattr(cli.anyio, "run", interrupted)
    try:
        status, _, err = run(capsys, "harvest", str(tmp_path))
    finally:
        # The fake anyio.run never enters the client, so nothing closes it: close it here
        # (left to the garbage collector it warns, and ResourceWarning is an error).
        for client in made:
            real_run(client.aclose)
    assert len(made) == 1
    assert status == cli.EXIT_INTERRUPTED == 130
    assert "resume" in one_line_error(err)


# -- harvest -----------------------------------------------------------------------------------


def picture_files(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]


def test_harvest_prints_a_summary_and_exits_0(
    capsys: pytest.CaptureFixture[str], zigna: FakeZigna, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    status, out, err = run(capsys, "harvest", str(dest), "--concurrency", "3")
    assert status == 0, err
    assert "Harvest summary" in out
    for label in ("Orders", "Files written", "Files skipped", "Failed", "Bytes written"):
        assert label in out
    assert "Calls spent" in out and "Budget left" in out
    assert f"{zigna.picture_count}" in out
    assert len(picture_files(dest)) == zigna.picture_count
    assert "Traceback" not in err
    assert summary_value(out, "Files written") == zigna.picture_count
    assert summary_value(out, "Files skipped") == 0
    assert summary_value(out, "Failed") == 0
    written = {p: p.stat().st_mtime_ns for p in picture_files(dest)}
    # Again: everything is skipped (no file written again), still exit 0.
    status, out, _ = run(capsys, "harvest", str(dest))
    assert status == 0
    assert summary_value(out, "Files written") == 0
    assert summary_value(out, "Files skipped") == zigna.picture_count
    assert summary_value(out, "Failed") == 0
    assert {p: p.stat().st_mtime_ns for p in picture_files(dest)} == written


def summary_value(out: str, label: str) -> int:
    """The number in the summary table's row ``label``."""
    (row,) = [line for line in out.splitlines() if f" {label} " in line]
    match = re.search(rf"{label}\W+(\d[\d,]*)", row)
    assert match, row
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize("transport", ["httpx", "aiohttp", "auto"])
def test_harvest_through_either_transport(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    zigna: FakeZigna,
    tmp_path: Path,
    transport: str,
) -> None:
    from zigziik.transports import AiohttpClient

    chosen: list[object] = []
    real = cli._http_client

    def recording(name: str, timeout: float | None) -> Any:
        chosen.append(real(name, timeout))
        return chosen[-1]

    monkeypatch.setattr(cli, "_http_client", recording)
    status, _, err = run(capsys, "harvest", str(tmp_path), "--transport", transport, "--json")
    assert status == 0, err
    assert len(picture_files(tmp_path)) == zigna.picture_count
    if transport == "httpx":
        assert chosen == [None]  # zigziik's own client: httpx's transport
    else:  # auto: aiohttp is installed here
        assert len(chosen) == 1 and isinstance(chosen[0], AiohttpClient)
        assert chosen[0].is_closed


def test_auto_transport_without_aiohttp_falls_back_to_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "zigziik.transports", None)  # import fails
    assert cli._http_client("auto", None) is None
    assert cli._http_client("httpx", None) is None


def test_aiohttp_transport_without_aiohttp_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
    monkeypatch.setitem(sys.modules, "zigziik.transports", None)
    status, _, err = run(capsys, "harvest", str(tmp_path), "--transport", "aiohttp")
    assert status == 2
    assert "pip install 'zigziik[cli,aiohttp]'" in one_line_error(err)
    assert list(tmp_path.iterdir()) == []


def test_harvest_json_report(
    capsys: pytest.CaptureFixture[str], zigna: FakeZigna, tmp_path: Path
) -> None:
    status, out, _ = run(capsys, "harvest", str(tmp_path), "--json", "--strategy", "zip")
    assert status == 0
    report = json.loads(out)
    assert report["orders"] == 4
    assert report["calls"] == 1 + 4
    assert report["failures"] == []
    for key in ("written", "skipped", "failed", "bytes", "calls"):
        assert type(report[key]) is int


def test_harvest_with_failures_exits_1_and_lists_them(
    capsys: pytest.CaptureFixture[str], zigna: FakeZigna, tmp_path: Path
) -> None:
    wanted = zigna.order_ids[0]
    status, out, err = run(
        capsys, "harvest", str(tmp_path), "--order", wanted, "--order", "no-such-order"
    )
    assert status == cli.EXIT_FAILED == 1
    assert "Failures" in out
    assert "no-such-order" in out
    assert "404" in out
    assert "Traceback" not in err


def test_harvest_with_a_refused_budget(
    capsys: pytest.CaptureFixture[str], zigna: FakeZigna, tmp_path: Path
) -> None:
    status, out, err = run(capsys, "harvest", str(tmp_path), "--daily-limit", "0")
    assert status == 1
    assert "budget" in out and "exhausted" in out
    assert zigna.calls == 0
    assert "Traceback" not in err


def test_harvest_under_a_small_server_budget(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeZigna(orders=6, picture_size=(2_000, 4_000), daily_limit=8)
    with serve(fake.app) as origin:
        monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
        status, out, _ = run(
            capsys, "harvest", str(tmp_path), "--base-url", origin + "/v2", "--json"
        )
    report = json.loads(out)
    assert status == 0
    assert report["calls"] == 7
    assert fake.rejected == 0


# -- orders ------------------------------------------------------------------------------------


def test_orders_list(capsys: pytest.CaptureFixture[str], zigna: FakeZigna) -> None:
    status, out, _ = run(capsys, "orders", "list")
    assert status == 0
    for order_id in zigna.order_ids:
        assert order_id in out


def test_orders_list_json_with_limit(capsys: pytest.CaptureFixture[str], zigna: FakeZigna) -> None:
    status, out, _ = run(capsys, "orders", "list", "--json", "--limit", "2")
    assert status == 0
    orders = json.loads(out)
    assert [o["id"] for o in orders] == zigna.order_ids[:2]
    assert isinstance(orders[0]["statusID"], int)
    assert zigna.calls == 1


def test_orders_show(capsys: pytest.CaptureFixture[str], zigna: FakeZigna) -> None:
    order_id = zigna.order_ids[1]
    expected = zigna.order(order_id)
    status, out, _ = run(capsys, "orders", "show", order_id)
    assert status == 0
    assert order_id in out
    assert expected["seller"]["city"] in out
    status, out, _ = run(capsys, "orders", "show", order_id, "--json")
    assert status == 0
    data = json.loads(out)
    assert data["id"] == order_id
    assert data["caseNumber"] == expected["caseNumber"]


def test_orders_show_unknown_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], zigna: FakeZigna
) -> None:
    status, out, err = run(capsys, "orders", "show", "nope")
    assert status == 1
    assert "404" in one_line_error(err)
    assert out == ""


def test_a_refused_budget_is_one_line(capsys: pytest.CaptureFixture[str], zigna: FakeZigna) -> None:
    status, _, err = run(capsys, "orders", "list", "--daily-limit", "0")
    assert status == 1
    line = one_line_error(err)
    assert "budget" in line and "resets at" in line
    assert zigna.calls == 0


def test_an_unreachable_server_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
    with serve(FakeZigna(orders=1).app) as origin:
        pass  # the port is free again: nothing listens there now
    status, _, err = run(capsys, "orders", "list", "--base-url", origin + "/v2", "--timeout", "2")
    assert status == 1
    one_line_error(err)


# -- units -------------------------------------------------------------------------------------


def test_units_tree(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeZiik(token="demo-token", depth=2, branching=2)
    with serve(fake.app) as origin:
        monkeypatch.setenv("ZIIK_BASE_URL", origin + "/api")
        monkeypatch.setenv("ZIIK_TOKEN", "demo-token")
        status, out, err = run(capsys, "units", "tree")
    assert status == 0, err
    assert "7 units" in out
    assert "#" in out


def test_units_tree_without_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "units", "tree")
    assert status == 2
    assert "ZIIK_BASE_URL" in one_line_error(err)


# -- demo --------------------------------------------------------------------------------------


def test_demo_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    status, out, err = run(capsys, "demo", "--dest", str(dest), "--orders", "3", "--latency", "0")
    assert status == 0, err
    assert "Harvest summary" in out
    assert "zigziik demo" in err
    assert (dest / MANIFEST_NAME).is_file()
    assert picture_files(dest)
    status, out, _ = run(capsys, "demo", "--dest", str(dest), "--orders", "3", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["written"] == 0 and report["skipped"] > 0 and report["calls"] == 1


def test_demo_as_a_fresh_process(tmp_path: Path) -> None:
    """``python -m zigziik demo`` in an empty folder: no key, no configuration, exit 0."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    result = subprocess.run(
        [sys.executable, "-m", "zigziik", "demo", "--orders", "3", "--latency", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Harvest summary" in result.stdout
    assert "Traceback" not in result.stderr
    assert (tmp_path / cli.DEFAULT_DEMO_DEST / MANIFEST_NAME).is_file()
