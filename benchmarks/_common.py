"""What every measure shares: alternating rounds, medians, results, machine facts."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

Op = Literal[">=", "<="]


@dataclass
class Series:
    """One contender's per-round figures (already in the measure's unit)."""

    label: str
    rounds: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.rounds) if self.rounds else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "rounds": [round(x, 4) for x in self.rounds],
            "median": round(self.median, 4),
            "note": self.note,
        }


@dataclass
class Target:
    """``numerator ÷ denominator op value`` (medians), with an aspiration ``aim``."""

    numerator: str
    denominator: str | None
    op: Op
    value: float
    aim: float | None = None
    description: str = ""

    def check(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio <= self.value

    def reached_aim(self, ratio: float) -> bool | None:
        if self.aim is None:
            return None
        return ratio >= self.aim if self.op == ">=" else ratio <= self.aim


@dataclass
class Result:
    """The outcome of one measure."""

    name: str
    title: str
    unit: str
    higher_is_better: bool
    server: str = ""
    series: dict[str, Series] = field(default_factory=dict)
    baselines: dict[str, Series] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    target: Target | None = None
    target_ratio: float | None = None
    passed: bool | None = None
    aim_reached: bool | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add_ratio(self, numerator: str, denominator: str) -> float:
        ratio = self.series[numerator].median / self.series[denominator].median
        self.ratios[f"{numerator} / {denominator}"] = ratio
        return ratio

    def judge(self) -> None:
        """Compute the target's ratio and pass/fail from the medians."""
        target = self.target
        if target is None or self.skipped:
            return
        if target.denominator is None:
            ratio = self.series[target.numerator].median
        else:
            ratio = self.add_ratio(target.numerator, target.denominator)
        self.target_ratio = ratio
        self.passed = target.check(ratio)
        self.aim_reached = target.reached_aim(ratio)

    def as_json(self) -> dict[str, Any]:
        target = None
        if self.target is not None:
            target = {
                "numerator": self.target.numerator,
                "denominator": self.target.denominator,
                "op": self.target.op,
                "value": self.target.value,
                "aim": self.target.aim,
                "description": self.target.description,
                "ratio": None if self.target_ratio is None else round(self.target_ratio, 4),
                "pass": self.passed,
                "aim_reached": self.aim_reached,
            }
        return {
            "name": self.name,
            "title": self.title,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "server": self.server,
            "skipped": self.skipped,
            "parameters": self.parameters,
            "contenders": {k: s.as_json() for k, s in self.series.items()},
            "baselines": {k: s.as_json() for k, s in self.baselines.items()},
            "ratios": {k: round(v, 4) for k, v in self.ratios.items()},
            "target": target,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def skipped(name: str, title: str, unit: str, reason: str, *, higher: bool = True) -> Result:
    return Result(name, title, unit, higher, skipped=reason)


def alternate(
    rounds: int,
    contenders: Sequence[tuple[str, Callable[[], float]]],
    series: dict[str, Series],
    *,
    between: Callable[[], None] | None = None,
    rotate: bool = False,
) -> None:
    """Run each contender once per round, in the same order (A B C A B C ...).

    Each callable returns its figure for the round; ``between`` runs (untimed) after each.
    A full garbage collection before each run keeps one contender's garbage off the next.
    ``rotate``: round ``r`` starts at contender ``r mod n`` (A B C, B C A, C A B, ...), so no
    contender always follows the same one (whatever one leaves behind, such as the file
    system's pending work, is not always paid by the same next one).
    """
    for number in range(rounds):
        start = number % len(contenders) if rotate and contenders else 0
        for label, run in [*contenders[start:], *contenders[:start]]:
            gc.collect()
            value = run()
            series[label].rounds.append(value)
            if between is not None:
                between()


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...``; ``elapsed()`` is the seconds so far (or in all)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.02)
    return False


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _memory_mb() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare figures: CPU, cores, memory, Python, library versions."""
    packages = [
        "zigziik",
        "httpx",
        "httpcore",
        "httpx2",
        "httpcore2",
        "h11",
        "anyio",
        "attrs",
        "cattrs",
        "aiohttp",
        "pydantic",
        "pydantic-core",
        "msgspec",
        "sniffio",
        "uvicorn",
        "starlette",
    ]
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {name: _version(name) for name in packages},
        "git": _git_commit(),
    }


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def httpx2_available() -> bool:
    """Whether httpx2 is installed (``zigziik[httpx2]``: Python 3.11 or later)."""
    import importlib.util

    return importlib.util.find_spec("httpx2") is not None
