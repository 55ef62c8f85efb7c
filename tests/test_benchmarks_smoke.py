"""The benchmark runner runs end to end in quick mode and writes valid JSON (no timings
are checked: the figures of a smoke run mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# The test extra installs what the benchmarks compare against: without it this file fails to
# collect, it is never skipped.
import aiohttp  # noqa: F401
import pydantic  # noqa: F401
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(360)  # above the run's own 300 s: a loaded machine is slow, not broken
def test_quick_run_writes_results(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--no-install",
            "--env",
            "current",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["quick"] is True
    assert {"cpu", "cores", "python", "versions"} <= set(report["machine"])
    measures = report["measures"]
    assert set(measures) == {
        "calls",
        "cpu",
        "budget",
        "listing",
        "harvest",
        "small",
        "scale",
        "rss",
        "walk",
    }
    assert report["environment"]["kind"] == "current"
    for name, measure in measures.items():
        if measure["skipped"]:
            assert "nginx" in measure["skipped"] or name == "walk", measure["skipped"]
            continue
        assert measure["contenders"], name
        for series in measure["contenders"].values():
            assert series["rounds"], (name, series)
        assert measure["target"]["pass"] in (True, False)
    assert "results written" in done.stdout


def test_the_plain_environment_refuses_what_a_plain_install_lacks() -> None:
    from benchmarks import _env

    assert _env.check({"httpx": "0.28.1", "anyio": "4.4"}) == []
    assert _env.check({"httpx": "0.28.1", "sniffio": "1.3.1", "trio": "0.30"}) == [
        "sniffio",
        "trio",
    ]
    peers = {spec.split(">")[0] for spec in _env.PEERS}
    assert not peers & set(_env.FORBIDDEN)


def test_alternate_rotates_the_contenders_order_per_round_when_asked() -> None:
    from collections.abc import Callable

    from benchmarks._common import Series, alternate

    order: list[str] = []

    def contender(label: str) -> tuple[str, Callable[[], float]]:
        def once() -> float:
            order.append(label)
            return float(len(order))

        return label, once

    contenders = [contender(label) for label in "ABC"]
    series = {label: Series(label) for label, _ in contenders}
    alternate(4, contenders, series, rotate=True)
    assert "".join(order) == "ABCBCACABABC"
    assert series["B"].rounds == [2.0, 4.0, 9.0, 11.0]
    assert all(type(x) is float for x in series["B"].rounds)
    order.clear()
    alternate(2, contenders, series)
    assert "".join(order) == "ABCABC"
