"""Budget stores named by URL and by the environment, edge by edge (no store is opened)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zigziik import (
    BudgetExhaustedError,
    ConfigurationError,
    InMemoryBudgetStore,
    RateLimit,
    RedisBudgetStore,
    SqliteBudgetStore,
    budget_store_from_url,
)
from zigziik.zigna._settings import budget_settings, open_budget

NO_QUERY = "a sqlite budget store URL takes no query but zigziik_lease and zigziik_timeout"
SHAPES = (
    "use memory:, sqlite:///abs/path.db, sqlite:relative.db, redis://host:port/db or rediss://..."
)


@pytest.mark.parametrize("url", ["memory:", "memory://", " MEMORY: ", "Memory:"])
def test_memory_urls(url: str) -> None:
    assert type(budget_store_from_url(url)) is InMemoryBudgetStore


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/app/b.db", "/var/lib/app/b.db"),
        ("SQLite:///var/lib/app/b.db", "/var/lib/app/b.db"),
        (" sqlite:///var/lib/app/b.db\n", "/var/lib/app/b.db"),
        ("sqlite:b.db", "b.db"),
        ("sqlite:rel/b.db", "rel/b.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    store = budget_store_from_url(url)
    assert type(store) is SqliteBudgetStore
    assert store.path == Path(path).absolute()


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("REDIS://cache:6379/0", "REDIS://cache:6379/0"),
        ("rediss://u:pw@cache:6380/1", "rediss://u:***@cache:6380/1"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redis_urls(url: str, name: str) -> None:
    store = budget_store_from_url(url)
    assert type(store) is RedisBudgetStore
    assert store.name == name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "a budget store URL must be a non-empty string, got ''"),
        ("  ", "a budget store URL must be a non-empty string, got '  '"),
        (None, "a budget store URL must be a non-empty string, got None"),
        (b"memory:", "a budget store URL must be a non-empty string, got b'memory:'"),
        ("memory:x", f"unknown budget store URL 'memory:x': {SHAPES}"),
        ("memory:///", f"unknown budget store URL 'memory:///': {SHAPES}"),
        (
            "postgres://admin:topsecret@db/x",
            f"unknown budget store URL 'postgres://admin:***@db/x': {SHAPES}",
        ),
        (
            "sqlite:///x.db?mode=ro",
            f"{NO_QUERY}: 'sqlite:///x.db?mode=ro'",
        ),
        ("sqlite:x.db#top", f"{NO_QUERY}: 'sqlite:x.db#top'"),
        (
            "sqlite://host/x.db",
            "'sqlite://host/x.db' names a host; a SQLite store is a local file: "
            "sqlite:///abs/path.db or sqlite:relative.db",
        ),
        ("sqlite:", "'sqlite:' names no file"),
        ("sqlite:///", "'sqlite:///' names no file"),
        ("sqlite:///var/lib/", "'sqlite:///var/lib/' names no file"),
    ],
)
def test_bad_urls_are_named_exactly(url: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        budget_store_from_url(url)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [" 0 ", "0"])
async def test_a_zero_daily_limit_in_the_environment_is_a_cap(limit: str) -> None:
    budget, store = open_budget(budget_settings({"ZIGZIIK_DAILY_LIMIT": limit}))
    assert store is None
    assert budget.limit == 0
    await budget.settle(RateLimit(limit=3000, remaining=3000))
    assert budget.limit == 0, "a cap the server does not raise"
    with pytest.raises(BudgetExhaustedError):
        await budget.reserve()


@pytest.mark.anyio
@pytest.mark.parametrize("environ", [{}, {"ZIGZIIK_DAILY_LIMIT": ""}, {"ZIGZIIK_DAILY_LIMIT": " "}])
async def test_without_a_daily_limit_the_budget_follows_the_server(environ: dict[str, str]) -> None:
    budget, store = open_budget(budget_settings(environ))
    assert store is None and type(budget.store) is InMemoryBudgetStore
    assert budget.limit == 2000
    await budget.reserve()
    await budget.settle(RateLimit(limit=3000, remaining=2999))
    assert budget.limit == 3000, "no cap: the server's limit is followed"
