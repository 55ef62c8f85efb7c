"""Shared test configuration.

Async tests use anyio's pytest plugin: mark them ``@pytest.mark.anyio``. By default they run
under asyncio; tests marked ``@pytest.mark.both_backends`` run under asyncio and trio.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run this anyio test under asyncio and trio")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("anyio_backend", ["asyncio", "trio"], scope="function")


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
