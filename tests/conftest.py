"""Shared test configuration.

Async tests use anyio's pytest plugin: mark them ``@pytest.mark.anyio``. By default they run
under asyncio; tests marked ``@pytest.mark.both_backends`` run under asyncio and trio.

The suites in `BOTH_STACKS` run every test twice, once per HTTP stack (the ``http_stack``
fixture): httpx, and httpx2 where it is installed (Python 3.11 and later). Under httpx2 every
client zigziik makes itself uses httpx2 (``$ZIGZIIK_HTTP_STACK``) and respx mocks httpcore2's
pool (pytest-httpx2's ``using="httpcore2"`` mocker) besides httpcore's, for the tests' own
``httpx.AsyncClient`` (a caller's client stays what the test made).

No silent skips: a skipped test (or a file that skips itself at import) is reported as a
failure, and a run over a folder of tests fails when one of its ``test_*.py`` files collects
no test. What a test needs is installed by the test command (``nox -s tests`` installs
``.[test]``). ``--allow-skips`` turns both checks off for a local run without the extras.
A test of a feature that needs a newer Python than the one running (httpx2 needs 3.11) is
marked ``@pytest.mark.needs_python((3, 11))``: on an older Python it is deselected, and the
run says how many (CI runs the suite on 3.13 too, where they run).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import respx.mocks

BOTH_STACKS = {
    "test_cancellation",
    "test_faults",
    "test_harvest",
    "test_secrets",
    "test_zigna_client",
    "test_ziik_client",
}
"""The endpoint, fault, cancellation, secrets and harvest suites."""

STACKS = ["httpx"]
if sys.version_info >= (3, 11) and importlib.util.find_spec("httpx2") is not None:
    STACKS.append("httpx2")
    from pytest_httpx2._plugin import HTTPCore2Mocker

# Defined once per process: a second import of this conftest (mutmut runs pytest twice in one
# process) must not register the mocker's name again.
if "httpx2" in STACKS and "httpcore+httpcore2" not in respx.mocks.Mocker.registry:

    class _BothCoresMocker(respx.mocks.HTTPCoreMocker):
        """respx's httpcore mocker over both pools: under the httpx2 stack a test's own
        ``httpx.AsyncClient`` (a caller's client) is still mocked."""

        name = "httpcore+httpcore2"
        targets: ClassVar[list[str]] = [
            *respx.mocks.HTTPCoreMocker.targets,
            *HTTPCore2Mocker.targets,
        ]


_SKIP_POLICY = "this suite allows no skipped test (pass --allow-skips to allow them locally)"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--allow-skips",
        action="store_true",
        help="report skipped tests as skipped, and allow test files that collect nothing",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run this anyio test under asyncio and trio")
    config.addinivalue_line(
        "markers", "needs_python(version): deselected (not skipped) on an older Python"
    )
    config.stash[_COLLECTED] = set()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    too_new = [
        item
        for item in items
        if (mark := item.get_closest_marker("needs_python")) and sys.version_info < mark.args[0]
    ]
    if too_new:
        config.hook.pytest_deselected(items=too_new)
        items[:] = [item for item in items if item not in too_new]
        config.stash[_TOO_NEW] = len(too_new)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("anyio_backend", ["asyncio", "trio"], scope="function")
    module = metafunc.module.__name__.rpartition(".")[2]
    if module in BOTH_STACKS and "http_stack" in metafunc.fixturenames:
        metafunc.parametrize("http_stack", STACKS, indirect=True, scope="function")


@pytest.fixture(autouse=True)
def http_stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The HTTP stack of the clients this test makes (``"httpx"`` unless parametrised)."""
    name: str = getattr(request, "param", "httpx")
    if name == "httpx2":
        monkeypatch.setenv("ZIGZIIK_HTTP_STACK", "httpx2")
        monkeypatch.setattr(respx.mocks, "DEFAULT_MOCKER", "httpcore+httpcore2")
    else:
        monkeypatch.delenv("ZIGZIIK_HTTP_STACK", raising=False)
    return name


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _private_budget_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test touches the real user cache (the CLI's budget store) or a store of the
    environment: each test gets an empty cache folder of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("ZIGZIIK_BUDGET_STORE", raising=False)
    monkeypatch.delenv("ZIGZIIK_DAILY_LIMIT", raising=False)


@pytest.fixture
def http(http_stack: str) -> Any:
    """The module of the stack under test, ``httpx`` or ``httpx2`` (for its error classes)."""
    return importlib.import_module(http_stack)


# -- no silent skips ---------------------------------------------------------------------------

_COLLECTED = pytest.StashKey[set[Path]]()
_MISSING = pytest.StashKey[list[str]]()
_TOO_NEW = pytest.StashKey[int]()


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = f"{_skip_reason(report.longrepr)}\n-> skipped, but {_SKIP_POLICY}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    skipped = report.skipped and not hasattr(report, "wasxfail")
    if skipped and not item.config.getoption("--allow-skips"):
        _as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and not collector.config.getoption("--allow-skips"):
        _as_failure(report)


def pytest_itemcollected(item: pytest.Item) -> None:
    item.config.stash[_COLLECTED].add(item.path.resolve())


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller
        config.workeroutput["collected"] = sorted(str(path) for path in config.stash[_COLLECTED])
        config.workeroutput["too_new"] = config.stash.get(_TOO_NEW, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Under pytest-xdist the workers collect: the controller learns from each what it
    collected (before ``-k`` or ``needs_python`` deselected anything)."""
    output: dict[str, Any] = getattr(node, "workeroutput", {})
    config: pytest.Config = node.config
    config.stash[_COLLECTED].update(Path(path) for path in output.get("collected", ()))
    config.stash[_TOO_NEW] = max(output.get("too_new", 0), config.stash.get(_TOO_NEW, 0))


def _uncollected(config: pytest.Config) -> list[str]:
    """The ``test_*.py`` files under the folders this run was given that collected nothing."""
    collected = config.stash[_COLLECTED]
    missing: set[Path] = set()
    for arg in config.args:
        folder = Path(config.invocation_params.dir, arg.split("::")[0])
        if folder.is_dir():
            missing.update(p for p in folder.rglob("test_*.py") if p.resolve() not in collected)
    return sorted(str(p.relative_to(config.rootpath)) for p in missing)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("--allow-skips") or hasattr(session.config, "workerinput"):
        return
    missing = _uncollected(session.config)
    if missing and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.stash[_MISSING] = missing


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    too_new = terminalreporter.config.stash.get(_TOO_NEW, 0)
    if too_new:
        version = ".".join(map(str, sys.version_info[:2]))
        terminalreporter.line(
            f"{too_new} tests need a newer Python than {version} (needs_python): deselected"
        )
    missing = terminalreporter.config.stash.get(_MISSING, [])
    if missing:
        terminalreporter.section("test files that collected no test", red=True)
        for name in missing:
            terminalreporter.line(f"{name}: no test collected; {_SKIP_POLICY}")
