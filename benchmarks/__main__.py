"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--rounds N] [--no-install] [--env E]``.

By default it runs in an environment of its own made from ``pip install .`` plus only what the
peers and the servers need (``benchmarks/_env.py``), never the test extras: what a user gets.
``--env current`` measures in the running interpreter instead.

Runs the measures (``calls``, ``cpu``, ``instructions``, ``budget``, ``listing``, ``harvest``,
``rss``, ``walk``; ``--quick`` leaves out ``instructions`` unless ``--only`` names it: valgrind
is slow), prints a table and
writes ``benchmarks/results.json`` (machine, servers, per-round figures, medians, ratios,
targets and pass/fail). Every measure alternates its contenders (A B A B ...) in one process
run. ``--quick`` is a smoke run: fewer rounds, smaller sizes, figures not meant to be quoted.

The setup step finds nginx or installs it (``apt-get install nginx-light``, as root); without
it, the measures that need it are skipped with the reason and the API-call measures use the
fake Zigna server in a separate process. Exit status: 0, or 1 when a measure crashed
(``--strict``: also when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _env

if TYPE_CHECKING:
    from ._common import Result
    from ._servers import Servers

MEASURES = (
    "calls",
    "cpu",
    "instructions",
    "budget",
    "listing",
    "harvest",
    "small",
    "scale",
    "rss",
    "walk",
)
NOT_QUICK = ("instructions",)
"""Measures a ``--quick`` run leaves out unless ``--only`` names them."""
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"


def _load() -> dict[str, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    return {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2)}


def _plan(args: argparse.Namespace, servers: Servers) -> dict[str, Callable[[], Result]]:
    from . import (
        bench_budget,
        bench_calls,
        bench_harvest,
        bench_listing,
        bench_rss,
        bench_scale,
        bench_small,
        bench_walk_runner,
    )

    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    return {
        "calls": lambda: bench_calls.run(servers, rounds, 50 if quick else 400),
        "cpu": lambda: bench_calls.run_cpu(servers, rounds, 30 if quick else 1000),
        "instructions": lambda: bench_calls.run_instructions(servers, 1, 25 if quick else 500),
        "budget": lambda: bench_budget.run(servers, rounds, 50 if quick else 400),
        "listing": lambda: bench_listing.run(servers, rounds),
        "harvest": lambda: bench_harvest.run(servers, rounds),
        "small": lambda: bench_small.run(servers, rounds),
        "scale": lambda: bench_scale.run(servers, quick=quick),
        "rss": lambda: bench_rss.run(
            servers, 1 if quick else rounds, 30_000_000 if quick else 300_000_000
        ),
        "walk": lambda: bench_walk_runner.run(1 if quick else rounds, quick=quick),
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _rows(results: list[Result]) -> tuple[list[list[str]], list[list[str]]]:
    """(figures rows, targets rows) for the tables."""
    figures: list[list[str]] = []
    targets: list[list[str]] = []
    for result in results:
        if result.skipped:
            figures.append([result.name, "skipped", "", "", result.skipped])
            targets.append([result.name, "-", "-", "-", "skipped"])
            continue
        for label, series in result.series.items():
            rounds = " ".join(_fmt(x) for x in series.rounds)
            figures.append([result.name, label, _fmt(series.median), result.unit, rounds])
        for label, series in result.baselines.items():
            rounds = " ".join(_fmt(x) for x in series.rounds)
            figures.append([result.name, f"({label})", _fmt(series.median), "", rounds])
        target = result.target
        if target is not None and result.target_ratio is not None:
            goal = f"{target.op} {target.value:g}" + (
                f" (aim {target.aim:g})" if target.aim is not None else ""
            )
            verdict = "PASS" if result.passed else "FAIL"
            if result.aim_reached:
                verdict += ", aim reached"
            targets.append(
                [result.name, target.description, f"{result.target_ratio:.3f}", goal, verdict]
            )
        for label, ratio in result.ratios.items():
            if target is not None and label == f"{target.numerator} / {target.denominator}":
                continue
            targets.append([result.name, label, f"{ratio:.3f}", "", "(info)"])
    return figures, targets


def _print_tables(results: list[Result]) -> None:
    figures, targets = _rows(results)
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        for row in figures:
            print(" | ".join(row))
        print()
        for row in targets:
            print(" | ".join(row))
        return
    console = Console()
    table = Table(title="zigziik benchmarks: medians (per-round figures on the right)")
    for column in ("measure", "contender", "median", "unit", "rounds"):
        table.add_column(column, justify="right" if column == "median" else "left")
    for row in figures:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    summary = Table(title="ratios of medians and targets")
    for column in ("measure", "ratio", "value", "target", "verdict"):
        summary.add_column(column)
    for row in targets:
        summary.add_row(*(escape(cell) for cell in row))
    console.print(summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer rounds, small sizes")
    parser.add_argument(
        "--only", action="append", default=[], help=f"run only these: {', '.join(MEASURES)}"
    )
    parser.add_argument(
        "--rounds", type=int, default=0, help="rounds per measure (default 5; quick 2)"
    )
    parser.add_argument("--no-install", action="store_true", help="never try to install nginx")
    parser.add_argument(
        "--no-nginx", action="store_true", help="act as if nginx were missing (the fallback path)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--env",
        choices=("plain", "current"),
        default="plain",
        help="plain (default): pip install . plus the peers' needs, in benchmarks/.work/; "
        "current: this interpreter",
    )
    args = parser.parse_args(argv)
    if args.env == "plain" and os.environ.get(_env.MARKER) != "plain":
        _env.reexec_in_plain_env(sys.argv[1:] if argv is None else list(argv))
    environment = _env.describe()
    if environment["kind"] == "plain" and environment["forbidden_present"]:
        parser.error(
            "the plain environment has what a plain install lacks: "
            + ", ".join(environment["forbidden_present"])  # type: ignore[arg-type]
        )

    from ._common import log, machine_info, skipped
    from ._servers import Servers

    chosen = [name for item in args.only for name in item.split(",") if name] or [
        name for name in MEASURES if not (args.quick and name in NOT_QUICK)
    ]
    unknown = sorted(set(chosen) - set(MEASURES))
    if unknown:
        parser.error(f"unknown measure(s): {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
    if args.rounds and not args.quick and args.rounds < 5:
        log("note: fewer than 5 rounds; the figures are indicative only")

    # A terminated run still stops nginx and removes its files (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = time.perf_counter()
    report: dict[str, Any] = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "machine": machine_info(),
        "environment": environment,
        "load_average": {"start": _load()},
    }
    servers = Servers(quick=args.quick, install=not args.no_install, use_nginx=not args.no_nginx)
    results: list[Result] = []
    crashed = False
    try:
        needs_servers = any(name != "walk" for name in chosen)
        if needs_servers:
            servers.setup()
        report["servers"] = {
            "nginx": servers.nginx.describe() if servers.nginx is not None else None,
            "nginx_setup": servers.nginx_status,
        }
        plan = _plan(args, servers)
        for name in chosen:
            log(f"== {name}")
            begun = time.perf_counter()
            try:
                result = plan[name]()
            except Exception as exc:
                crashed = True
                traceback.print_exc()
                result = skipped(name, name, "", f"crashed: {type(exc).__name__}: {exc}")
            result.seconds = time.perf_counter() - begun
            results.append(result)
    finally:
        servers.close()
    report["load_average"]["end"] = _load()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["measures"] = {r.name: r.as_json() for r in results}
    report["summary"] = {
        r.name: {
            "ratio": None if r.target_ratio is None else round(r.target_ratio, 4),
            "target": None if r.target is None else f"{r.target.op} {r.target.value:g}",
            "aim": None if r.target is None else r.target.aim,
            "pass": r.passed,
            "skipped": r.skipped,
        }
        for r in results
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    _print_tables(results)
    print(f"results written to {args.output} ({report['seconds']} s)")
    if crashed:
        return 1
    if args.strict and any(r.passed is False for r in results):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
