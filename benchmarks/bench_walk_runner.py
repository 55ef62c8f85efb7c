"""Measure 5 for the runner: the Ziik hierarchy walk ÷ its critical-path bound.

The measuring itself is ``benchmarks/bench_walk.py`` (owned with the Ziik client): a `FakeZiik`
tree served from a child process with 50 ms of latency per request. This module only turns its
`WalkFigures` into a runner `Result`.
"""

from __future__ import annotations

from ._common import Result, Series, Target, log, skipped

NAME = "walk"
TITLE = "Ziik hierarchy walk, 50 ms latency"
UNIT = "s"


def run(rounds: int, *, quick: bool) -> Result:
    try:
        from . import bench_walk
    except ImportError as exc:
        return skipped(NAME, TITLE, UNIT, f"benchmarks/bench_walk.py is not there: {exc}")
    depth, branching, concurrency, latency = (2, 4, 8, 0.05) if quick else (4, 4, 8, 0.05)
    log(f"{NAME}: depth {depth}, branching {branching}, concurrency {concurrency}, {rounds} rounds")
    figures = bench_walk.measure(
        latency=latency,
        depth=depth,
        branching=branching,
        concurrency=concurrency,
        rounds=rounds,
    )
    result = Result(NAME, TITLE, UNIT, False)
    result.server = (
        "FakeZiik (zigziik.testing) under uvicorn in a child process, "
        f"{latency * 1000:.0f} ms added per request"
    )
    result.parameters = {
        "units": figures.units,
        "levels": figures.levels,
        "calls": figures.calls,
        "concurrency": concurrency,
        "latency_s": latency,
        "server_max_in_flight": figures.max_in_flight,
        "rounds": rounds,
    }
    walk = Series("zigziik walk", list(figures.seconds), "ziik.units.walk(root, concurrency=8)")
    bound = Series(
        "critical path",
        [figures.bound] * len(figures.seconds),
        "latency x sum over levels of ceil(width / concurrency)",
    )
    result.series = {walk.label: walk, bound.label: bound}
    sequential = Series(
        "one call at a time", [figures.calls * latency], "calls x latency (for scale)"
    )
    result.baselines = {sequential.label: sequential}
    result.target = Target(
        "zigziik walk", "critical path", "<=", 1.25, description="walk time ÷ critical path"
    )
    result.judge()
    return result
