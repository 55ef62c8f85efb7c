"""A store's own options in its URL (``?zigziik_lease=30``), the only way
``$ZIGZIIK_BUDGET_STORE`` can give them; no store is opened here (the real Redis behind
``zigziik_replicas`` is in test_budget_deployments.py)."""

from __future__ import annotations

import pytest

from zigziik import (
    ConfigurationError,
    RedisBudgetStore,
    SqliteBudgetStore,
    budget_store_from_url,
)


def test_sqlite_options_reach_the_store() -> None:
    store = budget_store_from_url("sqlite:///var/tmp/b.db?zigziik_lease=30&zigziik_timeout=2.5")
    assert isinstance(store, SqliteBudgetStore)
    assert str(store.path) == "/var/tmp/b.db"
    assert type(store.lease) is float and store.lease == 30.0
    assert type(store.timeout) is float and store.timeout == 2.5


def test_sqlite_defaults_without_options() -> None:
    plain = SqliteBudgetStore("/var/tmp/b.db")
    store = budget_store_from_url("sqlite:///var/tmp/b.db")
    assert isinstance(store, SqliteBudgetStore)
    assert (store.lease, store.timeout) == (plain.lease, plain.timeout)


def test_redis_options_reach_the_store_and_leave_redis_pys_query() -> None:
    store = budget_store_from_url(
        "redis://:pw@127.0.0.1:6390/2?socket_timeout=1&zigziik_replicas=2"
        "&ZIGZIIK_PREFIX=app%3Abudget&zigziik_lease=12&health_check_interval=5"
        "&zigziik_timeout=3"
    )
    assert isinstance(store, RedisBudgetStore)
    assert type(store.replicas) is int and store.replicas == 2
    assert store.prefix == "app:budget"
    assert (store.lease, store.timeout) == (12.0, 3.0)
    # redis-py gets its own options, in their order, and nothing of zigziik's
    assert store._url == "redis://:pw@127.0.0.1:6390/2?socket_timeout=1&health_check_interval=5"
    assert store.name == "redis://:***@127.0.0.1:6390/2?socket_timeout=1&health_check_interval=5"


def test_a_redis_url_of_only_zigziik_options_loses_its_question_mark() -> None:
    store = budget_store_from_url("rediss://127.0.0.1:6390/0?zigziik_replicas=0")
    assert isinstance(store, RedisBudgetStore)
    assert store._url == "rediss://127.0.0.1:6390/0"
    assert store.replicas == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:///b.db?zigziik_lease=-1",
            "bad budget store option zigziik_lease='-1': a positive number of seconds",
        ),
        (
            "sqlite:///b.db?zigziik_timeout=nan",
            "bad budget store option zigziik_timeout='nan': a positive number of seconds",
        ),
        (
            "sqlite:///b.db?zigziik_timeout=0",
            "bad budget store option zigziik_timeout='0': a positive number of seconds",
        ),
        (
            "sqlite:///b.db?zigziik_replicas=1",
            "unknown budget store option 'zigziik_replicas' (a sqlite store takes "
            "zigziik_lease, zigziik_timeout)",
        ),
        (
            "redis://127.0.0.1/0?zigziik_replicas=-1",
            "bad budget store option zigziik_replicas='-1': a whole number of replicas, 0 or more",
        ),
        (
            "redis://127.0.0.1/0?zigziik_replicas=1.0",
            "bad budget store option zigziik_replicas='1.0': a whole number of replicas, 0 or more",
        ),
        (
            "redis://127.0.0.1/0?zigziik_replicas=%D9%A1",  # an Arabic-Indic one
            "bad budget store option zigziik_replicas='\u0661': a whole number of replicas, "
            "0 or more",
        ),
        (
            "redis://127.0.0.1/0?zigziik_lease=inf",
            "bad budget store option zigziik_lease='inf': a positive number of seconds",
        ),
        (
            "redis://127.0.0.1/0?zigziik_replicas=1&zigziik_replicas=1",
            "the budget store option 'zigziik_replicas' is given twice",
        ),
        (
            "redis://:topsecret@127.0.0.1/0?password=alsosecret&zigziik_leese=1",
            "unknown budget store option 'zigziik_leese' (a redis store takes zigziik_lease, "
            "zigziik_timeout, zigziik_prefix, zigziik_replicas)",
        ),
    ],
)
def test_bad_options_are_named_exactly(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        budget_store_from_url(url)
    assert str(info.value) == message


def test_option_values_keep_what_only_ends_a_name_or_a_query_elsewhere() -> None:
    """The first ``=`` ends an option's name, the first ``?`` the URL's path, and the first
    ``#`` its query; a path may hold a colon; half a second is a timeout."""
    store = budget_store_from_url(
        "rediss://127.0.0.1:6390/0?zigziik_prefix=a=b?c:&zigziik_timeout=0.5#frag"
    )
    assert isinstance(store, RedisBudgetStore)
    assert store.prefix == "a=b?c:"
    assert store.timeout == 0.5
    assert store._url == "rediss://127.0.0.1:6390/0#frag"
    sqlite = budget_store_from_url("sqlite:///var/tmp/a:b.db?zigziik_lease=0.5")
    assert isinstance(sqlite, SqliteBudgetStore)
    assert str(sqlite.path) == "/var/tmp/a:b.db"
    assert sqlite.lease == 0.5
