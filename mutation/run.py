"""Mutation testing of the guarantee modules with mutmut: ``nox -s mutation``.

Each guarantee module is mutated on its own, in a scratch copy of the project
(``.mutation/<module>/``), and each of its mutants is run against the tests that cover the
mutated function among that module's relevant tests (`MODULES`), not the whole suite. A
mutant counts as killed when a test fails or times out (an endless loop is a detected bug).
Mutants listed in ``mutation/equivalent.toml``, each with the reason it cannot change
behaviour and the mutated line it stands for, are left out of the rate; an entry whose
mutant no longer exists, reads differently, or is now killed fails the run (it is stale).

The run fails unless every module kills at least 90 % of its non-equivalent mutants, and
prints every surviving mutant's diff.

    python mutation/run.py                      # every guarantee module
    python mutation/run.py --changed            # those that differ from main (quick mode)
    python mutation/run.py zigziik/retry.py     # the named ones
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the mutation session installs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
EQUIVALENT_FILE = ROOT / "mutation" / "equivalent.toml"
THRESHOLD = 0.90

# A guarantee module and the tests that are about it (its mutants run only the ones among
# these that cover the mutated function). Paths that are missing (a module not yet landed,
# or moved) are reported, not skipped quietly.
MODULES: dict[str, list[str]] = {
    # The store-agreement property test runs the pure rules against SQLite and Redis's Lua
    # (written apart from them): a mutant in either disagrees with the other.
    "zigziik/ratelimit.py": [
        "tests/test_ratelimit.py",
        "tests/test_budget_stores.py",
        "tests/test_budget_properties.py",
        "tests/test_concurrency.py::test_the_ledger_never_grants_more_than_its_cap_or_the_servers_remaining",
    ],
    "zigziik/_stores.py": [
        "tests/test_budget_store_urls.py",
        "tests/test_budget_stores.py",
        "tests/test_ratelimit.py",
    ],
    "zigziik/_sqlite_store.py": ["tests/test_budget_stores.py", "tests/test_budget_properties.py"],
    "zigziik/_redis_store.py": ["tests/test_budget_stores.py", "tests/test_budget_properties.py"],
    "zigziik/retry.py": ["tests/test_retry_and_urls.py"],
    "zigziik/pagination.py": [
        "tests/test_pagination.py",
        "tests/test_zigna_client.py",
        "tests/test_ziik_client.py",
        "tests/test_fuzz_client.py::test_a_paginator_follows_only_same_origin_links_whatever_the_text",
        "tests/test_fuzz_client.py::test_a_next_link_that_is_no_url",
    ],
    "zigziik/_extract.py": ["tests/test_extract.py"],
    "zigziik/_redact.py": ["tests/test_redact.py", "tests/test_secrets.py"],
    "zigziik/download.py": [
        "tests/test_download.py",
        "tests/test_zigna_client.py",
        "tests/test_faults.py",
    ],
    "zigziik/_diskwriter.py": ["tests/test_diskwriter.py", "tests/test_download.py"],
    "zigziik/_filenames.py": ["tests/test_filenames.py"],
    "zigziik/zigna/harvest/_plan.py": [
        "tests/test_harvest_plan.py",
        "tests/test_harvest_scale.py::test_shard_of_is_stable_and_spreads",
        "tests/test_harvest_scale.py::test_estimate_counts_complete_orders_as_free",
    ],
    "zigziik/zigna/harvest/_manifest.py": [
        "tests/test_harvest_plan.py",
        "tests/test_harvest.py",
        "tests/test_harvest_scale.py::test_a_migrated_json_manifest_resumes_with_no_call_on_what_it_records",
    ],
}

KILLED = {"killed", "timeout", "segfault"}
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
STATUS.update({34: "skipped", 35: "suspicious", 36: "timeout", 37: "caught by type check"})
STATUS.update({-24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"})
STATUS.update({-11: "segfault", -9: "segfault"})


@dataclass
class Result:
    module: str
    statuses: dict[str, str] = field(default_factory=dict)
    equivalent: dict[str, str] = field(default_factory=dict)  # name -> reason
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counted(self) -> dict[str, str]:
        return {k: v for k, v in self.statuses.items() if k not in self.equivalent}

    @property
    def killed(self) -> int:
        return sum(status in KILLED for status in self.counted.values())

    @property
    def survivors(self) -> list[str]:
        return sorted(k for k, v in self.counted.items() if v not in KILLED)

    @property
    def rate(self) -> float:
        return self.killed / len(self.counted) if self.counted else 1.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.rate >= THRESHOLD and bool(self.statuses)


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")


def load_equivalents() -> dict[str, dict[str, dict[str, str]]]:
    """``{module: {mutant (without the module prefix): {"reason", "line"}}}``."""
    if not EQUIVALENT_FILE.exists():
        return {}
    data = tomllib.loads(EQUIVALENT_FILE.read_text())
    return {module: dict(entries) for module, entries in data.items()}


def prepare(path: str, tests: list[str]) -> Path:
    """A scratch copy of the project with a mutmut configuration for ``path`` alone."""
    work = WORK / module_name(path)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "zigziik", work / "zigziik", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text()
    text = re.sub(r"\n\[tool\.mutmut\].*?(?=\n\[|\Z)", "\n", text, flags=re.S)
    selection = ", ".join(json.dumps(t) for t in tests)
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["zigziik"]\n'
        f"only_mutate = [{json.dumps(path)}]\n"
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
        "use_git_change_detection = false\n"
        # Each mutant's tests run in a process forked from one that has only collected them,
        # not from mutmut's own, which has run them all on the unmutated code: what that run
        # left in module caches (functools.lru_cache: _redact's compiled patterns) let a
        # mutant's tests use the unmutated code's results, and the mutant seemed to survive.
        'process_isolation = "forkserver"\n'
        'forkserver_warmup = "collect"\n'
    )
    (work / "pyproject.toml").write_text(text)
    return work


def mutmut(work: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    with log.open("w") as out:
        return subprocess.run(
            command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )


def mutated_line(work: Path, mutant: str) -> str:
    """The first added line of the mutant's diff, stripped (what an equivalent entry names)."""
    diff = mutmut(work, "show", mutant).stdout
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()
    return ""


def run_module(path: str, equivalents: dict[str, dict[str, str]], children: int) -> Result:
    result = Result(path)
    missing = [t.split("::")[0] for t in MODULES[path] if not (ROOT / t.split("::")[0]).exists()]
    if not (ROOT / path).exists() or missing:
        result.problems.append(f"missing: {', '.join([path, *missing])}")
        return result
    started = time.monotonic()
    work = prepare(path, MODULES[path])
    log = WORK / f"{module_name(path)}.log"
    done = mutmut(work, "run", "--max-children", str(children), log=log)
    result.seconds = time.monotonic() - started
    meta = work / "mutants" / f"{path}.meta"
    if done.returncode != 0 or not meta.exists():
        tail = log.read_text(errors="replace")[-2000:]
        result.problems.append(f"mutmut run failed ({done.returncode}); see {log}:\n{tail}")
        return result
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    result.statuses = {name: STATUS.get(code, "suspicious") for name, code in codes.items()}
    prefix = module_name(path) + "."
    for short, entry in equivalents.items():
        name = prefix + short
        if name not in result.statuses:
            result.problems.append(f"stale equivalent entry (no such mutant): {short}")
        elif result.statuses[name] in KILLED:
            result.problems.append(f"stale equivalent entry (now killed): {short}")
        elif (line := mutated_line(work, name)) != entry.get("line", "").strip():
            result.problems.append(
                f"stale equivalent entry (the mutant now reads {line!r}, not "
                f"{entry.get('line')!r}): {short}"
            )
        else:
            result.equivalent[name] = entry.get("reason", "")
    for name in result.survivors:
        print(f"\n--- survived: {name} ({result.statuses[name]})")
        print(mutmut(work, "show", name).stdout.strip())
    return result


def changed_modules() -> list[str]:
    """Guarantee modules that differ from ``main`` (committed or not)."""
    base = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    names = subprocess.run(
        ["git", "diff", "--name-only", base or "main"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    return [path for path in MODULES if path in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: every one)")
    parser.add_argument("--changed", action="store_true", help="only modules changed vs main")
    parser.add_argument("--children", type=int, default=2, help="mutants run in parallel")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not a guarantee module: {', '.join(unknown)} (see MODULES)")
    if hasattr(os, "nice"):
        os.nice(10)  # a long CPU job on machines others share
    modules = args.modules or (changed_modules() if args.changed else list(MODULES))
    if not modules:
        print("no guarantee module changed; nothing to mutate")
        return 0
    equivalents = load_equivalents()
    results = []
    for path in modules:
        print(f"=== {path}", flush=True)
        results.append(run_module(path, equivalents.get(module_name(path), {}), args.children))
    print("\nmodule                                killed  survived  equivalent  kill rate")
    for r in results:
        print(
            f"{r.module:<38}{r.killed:>6}{len(r.survivors):>10}{len(r.equivalent):>12}"
            f"{r.rate:>10.1%}  {'ok' if r.ok else 'FAIL'}  ({r.seconds:.0f} s)"
        )
        for problem in r.problems:
            print(f"    {problem}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
