"""The hierarchy walk against its critical path, on a real loopback server with latency.

``python -m benchmarks.bench_walk`` serves a `FakeZiik` tree on 127.0.0.1 with a fixed
latency per request (50 ms by default) from a separate process (so that the server and the
client do not share one GIL), walks it with ``ziik.units.walk(root, concurrency=c)`` and
prints ONE number on stdout: the median walk time divided by the critical-path bound

    bound = latency x sum over the levels that are fetched of ceil(width / concurrency)

(every unit's children are fetched, the leaves' included; the root itself is fetched together
with its children, so it adds no round trip). A walk that made one call after another would
score about ``units / sum(ceil(width / c))`` (8 or more here); the target is <= 1.25.
Details go to stderr.

Options: ``--latency 0.05 --depth 4 --branching 4 --concurrency 8 --rounds 5``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from zigziik import DailyBudget, ZiikClient
from zigziik.testing import FakeZiik, serve

__all__ = ["WalkFigures", "critical_path", "main", "measure"]

TARGET = 1.25
_TOKEN = "bench-walk-token"


def critical_path(widths: list[int], concurrency: int, latency: float) -> float:
    """Seconds a level-by-level walk needs at best: ``latency * sum(ceil(w / c))``."""
    return latency * sum(math.ceil(width / concurrency) for width in widths if width)


@dataclass
class WalkFigures:
    """What one benchmark run measured."""

    units: int
    levels: list[int]
    calls: int
    max_in_flight: int
    seconds: list[float]
    bound: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.seconds) / self.bound


async def _walk_once(origin: str, root: int, concurrency: int) -> tuple[float, int]:
    async with ZiikClient(f"{origin}/api", _TOKEN, budget=DailyBudget(limit=1_000_000)) as ziik:
        await ziik.units.get(root)  # warm the connection pool outside the timing
        count = 0
        started = time.perf_counter()
        async for _node in ziik.units.walk(root, concurrency=concurrency):
            count += 1
        return time.perf_counter() - started, count


@contextmanager
def _server(
    *, latency: float, depth: int, branching: int
) -> Iterator[tuple[dict[str, Any], Callable[[str], dict[str, Any]]]]:
    """The fake in a child process: its facts, and a function sending it a command."""
    command = [
        sys.executable,
        __file__,
        "--serve",
        f"--latency={latency}",
        f"--depth={depth}",
        f"--branching={branching}",
    ]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None
    assert child.stdout is not None
    stdin, stdout = child.stdin, child.stdout

    def ask(line: str) -> dict[str, Any]:
        stdin.write(line + "\n")
        stdin.flush()
        return json.loads(stdout.readline())  # type: ignore[no-any-return]

    try:
        facts = json.loads(stdout.readline() or "null")
        if facts is None:
            raise RuntimeError("the fake Ziik server did not start")
        yield facts, ask
        ask("quit")
    finally:
        stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve_forever(latency: float, depth: int, branching: int) -> None:
    """The child: serve the fake, answer ``reset``/``stats``/``quit`` lines on stdin."""
    fake = FakeZiik(depth=depth, branching=branching, roots=1, token=_TOKEN, latency=latency)
    root = fake.top_level_ids[0]
    with serve(fake.app) as origin:
        units = 1 + len(fake.descendant_ids(root))
        print(json.dumps({"origin": origin, "root": root, "units": units}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                fake.reset_stats()
            answer = {"calls": fake.calls, "max_in_flight": fake.max_in_flight}
            print(json.dumps(answer), flush=True)
            if command == "quit":
                return


def measure(
    *,
    latency: float = 0.05,
    depth: int = 4,
    branching: int = 4,
    concurrency: int = 8,
    rounds: int = 3,
) -> WalkFigures:
    """Walk a ``branching``-ary tree ``depth`` levels deep ``rounds`` times; see the module."""
    widths = [branching**level for level in range(depth + 1)]  # children fetched per level
    seconds: list[float] = []
    calls = peak = 0
    with _server(latency=latency, depth=depth, branching=branching) as (facts, ask):
        for _ in range(rounds):
            ask("reset")
            elapsed, count = anyio.run(_walk_once, facts["origin"], facts["root"], concurrency)
            if count != facts["units"]:
                raise RuntimeError(f"the walk yielded {count} units, expected {facts['units']}")
            seconds.append(elapsed)
            stats = ask("stats")
            calls, peak = stats["calls"] - 1, max(peak, stats["max_in_flight"])  # minus warm-up
    return WalkFigures(
        units=facts["units"],
        levels=widths,
        calls=calls,
        max_in_flight=peak,
        seconds=seconds,
        bound=critical_path(widths, concurrency, latency),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--branching", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve_forever(args.latency, args.depth, args.branching)
        return 0
    figures = measure(
        latency=args.latency,
        depth=args.depth,
        branching=args.branching,
        concurrency=args.concurrency,
        rounds=args.rounds,
    )
    sequential = figures.calls * args.latency
    print(
        f"walk: {figures.units} units, levels {figures.levels}, {figures.calls} calls, "
        f"concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms; "
        f"times {[round(s, 3) for s in figures.seconds]} s; bound {figures.bound:.3f} s; "
        f"one-by-one would take ~{sequential:.1f} s; server max in flight "
        f"{figures.max_in_flight}; target <= {TARGET}",
        file=sys.stderr,
    )
    print(f"{figures.ratio:.3f}")
    return 0 if figures.ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
