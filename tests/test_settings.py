"""Where a Zigna client's settings come from (arguments, then the environment, then the
defaults): one pure function shared by `ZignaClient` and the command line."""

from __future__ import annotations

import argparse

import pytest

from zigziik import ConfigurationError, InMemoryBudgetStore, ZignaClient, cli
from zigziik.zigna._settings import (
    DEFAULT_BASE_URL,
    BudgetSettings,
    budget_settings,
    open_budget,
    zigna_settings,
)

KEY = "5a1d2c3e-7b8f-4a6d-9e0c-1f2a3b4c5d6e"
OTHER = "00000000-1111-2222-3333-444444444444"


def test_arguments_win_over_the_environment_which_wins_over_the_defaults() -> None:
    environ = {"ZIGNA_API_KEY": OTHER, "ZIGNA_BASE_URL": "https://env.example/v2"}
    given = zigna_settings(environ, api_key="{" + KEY.upper() + "}", base_url="https://a.b/v2")
    assert (given.api_key, given.base_url) == (KEY.upper(), "https://a.b/v2")
    from_env = zigna_settings(environ)
    assert (from_env.api_key, from_env.base_url) == (OTHER, "https://env.example/v2")
    default = zigna_settings({"ZIGNA_API_KEY": KEY, "ZIGNA_BASE_URL": ""})
    assert default.base_url == DEFAULT_BASE_URL
    assert KEY not in repr(given) and KEY.upper() not in repr(given)


@pytest.mark.parametrize("environ", [{}, {"ZIGNA_API_KEY": ""}])
def test_a_missing_key_names_the_callers_way_and_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="pass --api-key or set the ZIGNA_API_KEY"):
        zigna_settings(environ, how_to_give_key="pass --api-key")


def test_a_key_that_is_no_guid_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError, match="GUID") as caught:
        zigna_settings({"ZIGNA_API_KEY": "secret-not-a-guid"})
    assert "secret-not-a-guid" not in str(caught.value)


def test_budget_store_and_limit_precedence() -> None:
    environ = {"ZIGZIIK_BUDGET_STORE": " memory: ", "ZIGZIIK_DAILY_LIMIT": " 7 "}
    assert budget_settings(environ) == BudgetSettings("memory:", 7)
    assert budget_settings(
        environ, store_url="sqlite:x.db", daily_limit=3, default_store_url="sqlite:d.db"
    ) == BudgetSettings("sqlite:x.db", 3)
    assert budget_settings({}, default_store_url="sqlite:d.db") == BudgetSettings(
        "sqlite:d.db", None
    )
    assert budget_settings({}) == BudgetSettings(None, None)
    # A limit given as an argument is used even when the environment's is garbage.
    assert budget_settings({"ZIGZIIK_DAILY_LIMIT": "lots"}, daily_limit=0).daily_limit == 0


@pytest.mark.parametrize("raw", ["lots", "-1", "1.5"])
def test_a_bad_daily_limit_in_the_environment_is_named(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=r"\$ZIGZIIK_DAILY_LIMIT .*" + repr(raw)):
        budget_settings({"ZIGZIIK_DAILY_LIMIT": raw})


def test_open_budget_makes_the_named_store_and_no_store_for_memory() -> None:
    budget, store = open_budget(BudgetSettings("memory:", 5))
    assert isinstance(store, InMemoryBudgetStore) and budget.limit == 5
    budget, store = open_budget(BudgetSettings(None, None))
    assert store is None and budget.limit == 2000


@pytest.mark.asyncio
async def test_the_client_and_the_cli_read_the_environment_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZIGNA_API_KEY", KEY)
    monkeypatch.setenv("ZIGNA_BASE_URL", "http://127.0.0.1:9/v2")
    monkeypatch.setenv("ZIGZIIK_BUDGET_STORE", "memory:")
    monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", "11")
    args = argparse.Namespace(
        api_key=None, base_url=None, budget_store=None, daily_limit=None, timeout=None
    )
    async with ZignaClient() as client, cli._zigna_client(args) as from_cli:
        for made in (client, from_cli):
            assert made.base_url == "http://127.0.0.1:9/v2"
            assert made.budget is not None and made.budget.limit == 11
            assert isinstance(made.budget.store, InMemoryBudgetStore)
