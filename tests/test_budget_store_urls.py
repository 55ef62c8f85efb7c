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
from zigziik._stores import budget_from_environment

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
            "a sqlite budget store URL takes no query: 'sqlite:///x.db?mode=ro'",
        ),
        ("sqlite:x.db#top", "a sqlite budget store URL takes no query: 'sqlite:x.db#top'"),
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


def test_the_environment_names_store_and_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZIGZIIK_BUDGET_STORE", f"  sqlite://{tmp_path}/env.db ")
    monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", " 7 ")
    budget, store = budget_from_environment()
    assert type(store) is SqliteBudgetStore and store.path == tmp_path / "env.db"
    assert budget.store is store
    assert budget.limit == 7


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [None, "", "  "], ids=["unset", "empty", "blank"])
async def test_without_the_environment_the_budget_is_in_memory_and_follows_the_server(
    monkeypatch: pytest.MonkeyPatch, limit: str | None
) -> None:
    monkeypatch.delenv("ZIGZIIK_BUDGET_STORE", raising=False)
    if limit is None:
        monkeypatch.delenv("ZIGZIIK_DAILY_LIMIT", raising=False)
    else:
        monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", limit)
    budget, store = budget_from_environment()
    assert store is None
    assert type(budget.store) is InMemoryBudgetStore
    assert budget.limit == 2000
    await budget.reserve()
    await budget.settle(RateLimit(limit=3000, remaining=2999))
    assert budget.limit == 3000, "no cap: the server's limit is followed"


@pytest.mark.anyio
async def test_a_zero_daily_limit_is_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZIGZIIK_BUDGET_STORE", raising=False)
    monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", "0")
    budget, _ = budget_from_environment()
    assert budget.limit == 0
    await budget.settle(RateLimit(limit=3000, remaining=3000))
    assert budget.limit == 0, "a cap the server does not raise"
    with pytest.raises(BudgetExhaustedError):
        await budget.reserve()


@pytest.mark.parametrize("raw", ["-1", "lots", "1.5", "7 calls"])
def test_a_bad_daily_limit_is_named_exactly(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", raw)
    with pytest.raises(ConfigurationError) as info:
        budget_from_environment()
    assert str(info.value) == f"$ZIGZIIK_DAILY_LIMIT must be a whole number of calls, got {raw!r}"
