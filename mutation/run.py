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
from collections.abc import Callable
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
        "tests/test_budget_deferred.py",
        "tests/test_concurrency.py::test_the_ledger_never_grants_more_than_its_cap_or_the_servers_remaining",
    ],
    "zigziik/_stores.py": [
        "tests/test_budget_store_urls.py",
        "tests/test_budget_store_url_options.py",
        "tests/test_budget_stores.py",
        "tests/test_ratelimit.py",
    ],
    "zigziik/_sqlite_store.py": [
        "tests/test_budget_stores.py",
        "tests/test_budget_properties.py",
        "tests/test_budget_deferred.py",
    ],
    # And the deployments' tests on a real TLS server and Cluster; not those that need a
    # Sentinel (5 s to start in every mutant's run: the names of its clients, and WAIT after
    # NOSCRIPT, are tested without one), nor a failover (28 s), two processes through a
    # Cluster (5 s) or a Cluster's node restart (redis-py's NOSCRIPT handling, not the store's).
    "zigziik/_redis_store.py": [
        "tests/test_budget_stores.py",
        "tests/test_budget_properties.py",
        "tests/test_budget_deferred.py",
        "tests/test_budget_store_urls.py",
        *(
            f"tests/test_budget_deployments.py::{name}"
            for name in [
                "test_a_rediss_url_with_its_ca_in_the_query_shares_a_budget_over_tls",
                "test_a_callers_tls_client_reserves_settles_and_stays_open",
                "test_a_wrong_ca_fails_closed_naming_the_store_without_its_password",
                "test_a_plain_redis_url_on_the_tls_port_fails_closed",
                "test_a_callers_client_that_breaks_unexpectedly_fails_closed",
                "test_an_unknown_or_bad_url_option_is_a_configuration_error",
                "test_a_password_in_the_url_query_is_hidden_from_the_name",
                "test_a_cluster_keeps_each_scope_on_its_node_and_counts_each_exactly",
                "test_replicas_fails_closed_on_a_server_without_replicas",
                "test_replicas_runs_the_script_once_again_after_a_script_flush",
                "test_replicas_is_checked",
            ]
        ),
    ],
    "zigziik/_pending.py": [
        "tests/test_pending.py",
        "tests/test_budget_deferred.py",
        "tests/test_budget_stores.py",
    ],
    # Lua, not Python: mutmut leaves it alone; run.py mutates the scripts itself (LUA below).
    "zigziik/_redis_lua.py": [
        "tests/test_budget_properties.py",
        "tests/test_budget_stores.py",
        "tests/test_budget_deferred.py",
    ],
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
    # Its own tests over real sockets, and the download tests of the client, fault and
    # cancellation suites on one backend and one stack (the file logic is the same on all),
    # the direct paths (FileReceiver.direct: the aiohttp extra's and, under asyncio, the
    # default transport's lean pool), and the fault tests once more under trio, where
    # downloads take httpx's streaming path (FileReceiver.__call__).
    "zigziik/download.py": [
        "tests/test_download.py",
        "tests/test_aiohttp_direct.py",
        "tests/test_lean_direct.py",
        "tests/test_faults.py::test_headers_then_stall_leaves_no_file_and_the_next_download_completes[asyncio-httpx]",
        "tests/test_faults.py::test_a_reset_mid_body_leaves_no_file_and_the_next_download_completes[asyncio-httpx]",
        "tests/test_faults.py::test_content_length_longer_than_the_body[asyncio-httpx]",
        "tests/test_faults.py::test_content_length_shorter_than_the_picture[asyncio-httpx]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[asyncio-httpx-truncate-IncompleteBodyError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[asyncio-httpx-reset-TransportError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[asyncio-httpx-stall-TransportError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[asyncio-httpx-longer-IncompleteBodyError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[asyncio-httpx-shorter-IntegrityError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[asyncio-httpx-html-IntegrityError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[asyncio-httpx-503-ServerError]",
        "tests/test_faults.py::test_headers_then_stall_leaves_no_file_and_the_next_download_completes[trio-httpx]",
        "tests/test_faults.py::test_a_reset_mid_body_leaves_no_file_and_the_next_download_completes[trio-httpx]",
        "tests/test_faults.py::test_content_length_longer_than_the_body[trio-httpx]",
        "tests/test_faults.py::test_content_length_shorter_than_the_picture[trio-httpx]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[trio-httpx-truncate-IncompleteBodyError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[trio-httpx-reset-TransportError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[trio-httpx-stall-TransportError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[trio-httpx-longer-IncompleteBodyError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[trio-httpx-shorter-IntegrityError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[trio-httpx-html-IntegrityError]",
        "tests/test_faults.py::test_download_faults_leave_nothing_and_the_next_run_completes[trio-httpx-503-ServerError]",
        "tests/test_faults.py::test_zip_download_faults_leave_nothing[httpx]",
        "tests/test_zigna_client.py::test_download_by_id_names_the_file_from_the_content_type[httpx]",
        "tests/test_zigna_client.py::test_download_extensions[httpx-application/pdf-.pdf]",
        "tests/test_zigna_client.py::test_download_picture_uses_a_safe_name_and_checks_size[httpx]",
        "tests/test_zigna_client.py::test_download_skips_a_complete_file_without_a_call[httpx]",
        "tests/test_zigna_client.py::test_download_size_mismatch_raises_and_leaves_no_file[asyncio-httpx]",
        "tests/test_zigna_client.py::test_download_errors_leave_no_file[asyncio-httpx-404-NotFoundError]",
        "tests/test_zigna_client.py::test_download_errors_leave_no_file[asyncio-httpx-truncate-IncompleteBodyError]",
        "tests/test_zigna_client.py::test_download_errors_leave_no_file[asyncio-httpx-reset-TransportError]",
        "tests/test_zigna_client.py::test_download_errors_leave_no_file[asyncio-httpx-longer-IncompleteBodyError]",
        "tests/test_zigna_client.py::test_download_errors_leave_no_file[asyncio-httpx-size-IntegrityError]",
        "tests/test_zigna_client.py::test_download_into_a_file_path_is_refused[httpx]",
        "tests/test_zigna_client.py::test_download_zip[httpx]",
        "tests/test_zigna_client.py::test_download_zip_204_returns_none_and_writes_nothing[asyncio-httpx]",
        "tests/test_zigna_client.py::test_a_picture_answered_with_204_is_an_error_and_writes_nothing[httpx]",
        "tests/test_cancellation.py::test_a_download_cancelled_at_random_points_leaves_nothing[asyncio-httpx]",
        "tests/test_cancellation.py::test_a_download_cancelled_while_the_server_stalls_mid_body[asyncio-httpx]",
    ],
    "zigziik/_diskwriter.py": ["tests/test_diskwriter.py", "tests/test_download.py"],
    "zigziik/_filenames.py": ["tests/test_filenames.py"],
    # Everything written under dest_dir goes through a SafeFolder: its own tests, the
    # downloads and extraction that use it, and the harvests that meet links in dest_dir.
    # (Not test_extract.py: under mutmut's stats run its KeyboardInterrupt-in-a-checkpoint
    # test crashes the interpreter inside mutmut's trampoline; the harvest tests below extract
    # zips through SafeFolder.)
    "zigziik/_safedir.py": [
        "tests/test_safedir.py",
        "tests/test_download.py",
        "tests/test_harvest_scale.py::test_an_order_folder_that_is_a_link_is_refused",
        "tests/test_harvest_scale.py::test_a_picture_file_that_is_a_link_is_replaced_not_written_through",
        "tests/test_harvest_scale.py::test_a_temporary_name_that_is_a_link_is_never_written_through",
        "tests/test_harvest_scale.py::test_zip_extraction_never_writes_through_a_link",
        "tests/test_harvest_scale.py::test_an_order_folder_swapped_for_a_link_mid_run_is_never_written_through",
        "tests/test_harvest_scale.py::test_a_zip_folder_swapped_at_any_step_of_extraction_never_writes_outside",
    ],
    # The default transport's lean HTTP/1.1 pool: its pure parts (head, framing, chunked) and
    # the pool over real loopback sockets (reuse, close, timeouts, errors, cancellation).
    "zigziik/_http11.py": [
        "tests/test_http11.py",
        "tests/test_net.py",
        "tests/test_http11_pool.py",
        "tests/test_lean_direct.py",
    ],
    "zigziik/zigna/harvest/_plan.py": [
        "tests/test_harvest_plan.py",
        "tests/test_harvest_scale.py::test_shard_of_is_stable_and_spreads",
        "tests/test_harvest_scale.py::test_estimate_counts_complete_orders_as_free",
    ],
    # The manifest's own unit tests, and the harvests that write and read it back, each on
    # one backend and one HTTP stack: the manifest is synchronous SQLite in a thread, the
    # same under asyncio and trio, httpx and httpx2 (the whole of test_harvest.py ran the
    # same tests four times over).
    "zigziik/zigna/harvest/_manifest.py": [
        "tests/test_harvest_plan.py",
        "tests/test_harvest.py::test_complete_harvest_is_byte_exact[asyncio-httpx]",
        "tests/test_harvest.py::test_second_run_fetches_nothing_and_spends_only_the_listing[asyncio-httpx]",
        "tests/test_harvest.py::test_a_deleted_file_is_fetched_again_alone[httpx]",
        "tests/test_harvest.py::test_hostile_and_duplicate_names_stay_inside_and_apart[asyncio-httpx]",
        "tests/test_harvest.py::test_a_picture_broken_every_time_is_reported_and_the_rest_complete[asyncio-httpx-reset]",
        "tests/test_harvest.py::test_server_errors_on_a_picture_and_an_order[httpx]",
        "tests/test_harvest.py::test_cancellation_mid_harvest_leaves_no_partial_file_and_resumes[asyncio-httpx-bytes-7]",
        "tests/test_harvest.py::test_cancellation_mid_harvest_leaves_no_partial_file_and_resumes[asyncio-httpx-file-4]",
        "tests/test_harvest.py::test_cancellation_mid_harvest_leaves_no_partial_file_and_resumes[asyncio-httpx-order-2]",
        "tests/test_harvest.py::test_a_crash_without_a_manifest_still_spends_no_call_on_finished_files[httpx]",
        "tests/test_harvest.py::test_a_corrupt_manifest_is_replaced[httpx]",
        "tests/test_harvest.py::test_zip_strategy_one_call_per_order_and_extract[asyncio-httpx]",
        "tests/test_harvest.py::test_auto_with_fewer_calls_than_orders_reports_the_rest[httpx]",
        "tests/test_harvest_scale.py::test_a_migrated_json_manifest_resumes_with_no_call_on_what_it_records",
        "tests/test_harvest_scale.py::test_recheck_fetches_pictures_added_since",
        "tests/test_harvest_scale.py::test_a_shard_harvests_only_its_orders",
        "tests/test_harvest_scale.py::test_cancelling_during_the_wait_is_clean_and_the_next_run_resumes",
        "tests/test_harvest_scale.py::test_estimate_counts_complete_orders_as_free",
        "tests/test_harvest_scale.py::test_an_order_folder_that_is_a_link_is_refused",
        "tests/test_harvest_scale.py::test_a_manifest_that_is_a_link_stops_the_harvest",
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


def prepare(path: str, tests: list[str], folder: str | None = None) -> Path:
    """A scratch copy of the project with a mutmut configuration for ``path`` alone."""
    work = WORK / (folder or module_name(path))
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


def judge_equivalents(
    result: Result,
    equivalents: dict[str, dict[str, str]],
    prefix: str,
    line_of: Callable[[str], str],
) -> None:
    """Leave out the listed equivalent mutants; an entry whose mutant is gone, killed, or
    reads otherwise than its ``line`` is a problem (stale)."""
    for short, entry in equivalents.items():
        name = prefix + short
        if name not in result.statuses:
            result.problems.append(f"stale equivalent entry (no such mutant): {short}")
        elif result.statuses[name] in KILLED:
            result.problems.append(f"stale equivalent entry (now killed): {short}")
        elif (line := line_of(name)) != entry.get("line", "").strip():
            result.problems.append(
                f"stale equivalent entry (the mutant now reads {line!r}, not "
                f"{entry.get('line')!r}): {short}"
            )
        else:
            result.equivalent[name] = entry.get("reason", "")


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
    judge_equivalents(result, equivalents, prefix, lambda name: mutated_line(work, name))
    for name in result.survivors:
        print(f"\n--- survived: {name} ({result.statuses[name]})")
        print(mutmut(work, "show", name).stdout.strip())
    return result


# -- Lua --------------------------------------------------------------------------------------
# mutmut mutates Python only, and _redis_lua.py's rules are Lua text in string constants. Its
# mutants are made here, with the same kinds of change (comparisons, and/or, min/max, + and -,
# a number one higher, a removed `not`), in Lua code only (not in its comments or strings),
# and each is run against the module's tests that use Redis (`-k LUA_TESTS`).

LUA = "zigziik/_redis_lua.py"
LUA_TESTS = "redis or agrees"
_LUA_CHANGES: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r">="), ">"),
    (re.compile(r"<="), "<"),
    (re.compile(r"(?<![<>~=])>(?!=)"), ">="),
    (re.compile(r"(?<![<>~=])<(?!=)"), "<="),
    (re.compile(r"=="), "~="),
    (re.compile(r"~="), "=="),
    (re.compile(r"\band\b"), "or"),
    (re.compile(r"\bor\b"), "and"),
    (re.compile(r"\bnot "), ""),
    (re.compile(r"\bmath\.max\b"), "math.min"),
    (re.compile(r"\bmath\.min\b"), "math.max"),
    (re.compile(r"(?<= )\+(?= )"), "-"),
    (re.compile(r"(?<= )-(?= )"), "+"),
    (re.compile(r"(?<![\w.%])\d+(?![\w.])"), None),  # None: the number plus one
]


def _lua_code_spans(line: str) -> list[tuple[int, int]]:
    """The parts of a Lua line that are code: not in a quoted string, not a comment."""
    spans, start, index, quote = [], 0, 0, ""
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote, start = "", index + 1
        elif char in "'\"":
            spans.append((start, index))
            quote = char
        elif line.startswith("--", index):
            spans.append((start, index))
            return spans
        index += 1
    spans.append((start, len(line)))
    return spans


def lua_mutants(source: str) -> list[tuple[str, int, str]]:
    """``(name, line number, mutated source)`` for every change in the module's Lua."""
    import ast

    lua_lines: set[int] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            for constant in ast.walk(node):
                if (
                    isinstance(constant, ast.Constant)
                    and isinstance(constant.value, str)
                    and (constant.end_lineno or 0) > constant.lineno
                ):
                    lua_lines.update(range(constant.lineno + 1, constant.end_lineno or 0))
    lines = source.splitlines(keepends=True)
    found = []
    for number in sorted(lua_lines):
        line = lines[number - 1]
        spans = _lua_code_spans(line.rstrip("\n"))
        for pattern, replacement in _LUA_CHANGES:
            for match in pattern.finditer(line):
                if not any(a <= match.start() and match.end() <= b for a, b in spans):
                    continue
                new = str(int(match.group()) + 1) if replacement is None else replacement
                mutated = line[: match.start()] + new + line[match.end() :]
                found.append((number, "".join([*lines[: number - 1], mutated, *lines[number:]])))
    return [(f"lua_{index}", number, text) for index, (number, text) in enumerate(found, 1)]


def run_lua(path: str, equivalents: dict[str, dict[str, str]], children: int) -> Result:
    """Each Lua mutant in a scratch copy of its own, at most ``children`` at a time."""
    result = Result(path)
    started = time.monotonic()
    source = (ROOT / path).read_text()
    mutants = lua_mutants(source)
    workers = [
        prepare(path, MODULES[path], folder=f"{module_name(path)}-{n}") for n in range(children)
    ]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q"]
    command += [*MODULES[path], "-k", LUA_TESTS]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def start(work: Path, text: str) -> subprocess.Popen[bytes]:
        (work / path).write_text(text)
        return subprocess.Popen(
            command,
            cwd=work,
            env={**env, "PYTHONPATH": str(work)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # The unmutated scripts must pass, or no verdict means anything.
    if start(workers[0], source).wait() != 0:
        result.problems.append(f"the tests fail without any mutant: {' '.join(command)}")
        return result
    lines: dict[str, str] = {}
    pending = list(mutants)
    running: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = {}
    free = list(workers)
    timeout = 600.0
    while pending or running:
        while pending and free:
            name, number, text = pending.pop(0)
            lines[name] = text.splitlines()[number - 1].strip()
            work = free.pop()
            running[name] = (start(work, text), work, time.monotonic())
            print(f"  {name}: line {number}: {lines[name]}", flush=True)
        time.sleep(0.2)
        for name, (process, work, since) in list(running.items()):
            code = process.poll()
            if code is None and time.monotonic() - since > timeout:
                process.kill()
                code = process.wait()
                result.statuses[name] = "timeout"
            elif code is None:
                continue
            else:
                result.statuses[name] = "killed" if code != 0 else "survived"
            del running[name]
            free.append(work)
    result.seconds = time.monotonic() - started
    judge_equivalents(result, equivalents, "", lines.__getitem__)
    for name in result.survivors:
        print(f"\n--- survived: {name}: {lines[name]}")
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
        run = run_lua if path == LUA else run_module
        results.append(run(path, equivalents.get(module_name(path), {}), args.children))
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
