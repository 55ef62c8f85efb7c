"""Worker processes of the shared-budget proofs (``_budget_worker.py``), started together."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["WORKER", "Workers"]

WORKER = Path(__file__).resolve().parent / "_budget_worker.py"


class Workers:
    """``count`` worker processes with the same arguments."""

    def __init__(self, count: int, *args: str) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def ready(self, timeout: float = 60.0) -> Workers:
        deadline = time.monotonic() + timeout
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.strip() != "ready":
                self.kill()
                _, err = process.communicate(timeout=10)
                raise AssertionError(f"a worker did not start: {line!r} {err[-2000:]}")
            assert time.monotonic() < deadline
        return self

    def go(self) -> Workers:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        return self

    def results(self, timeout: float = 90.0) -> list[dict[str, object]]:
        found = []
        for process in self.processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, err[-3000:]
            found.append(json.loads(out.strip().splitlines()[-1]))
        return found

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)
