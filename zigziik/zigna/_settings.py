"""Where a Zigna client's settings come from: the arguments first, then the environment
(``ZIGNA_API_KEY``, ``ZIGNA_BASE_URL``, ``ZIGZIIK_BUDGET_STORE``, ``ZIGZIIK_DAILY_LIMIT``),
then the defaults.

Pure functions of an environment mapping, shared by `ZignaClient` and the ``zigziik``
command (which passes its flags as the arguments and its own default store), so that both
read the same variables the same way. `open_budget` is the one step that makes something.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from .._stores import BUDGET_STORE_ENV, DAILY_LIMIT_ENV, budget_store_from_url
from ..errors import ConfigurationError
from ..ratelimit import BudgetStore, DailyBudget

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "BudgetSettings",
    "ZignaSettings",
    "budget_settings",
    "normalize_api_key",
    "open_budget",
    "zigna_settings",
]

API_KEY_ENV = "ZIGNA_API_KEY"
BASE_URL_ENV = "ZIGNA_BASE_URL"
DEFAULT_BASE_URL = "https://api.zigna.dk/v2"

_GUID = re.compile(
    r"(?P<open>\{)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"(?(open)\})",
    re.ASCII,
)


def normalize_api_key(api_key: object) -> str:
    """The key without braces, or `ConfigurationError` (which never shows the key)."""
    if not isinstance(api_key, str):
        raise ConfigurationError(
            f"the Zigna API key must be a GUID string, got {type(api_key).__name__}"
        )
    text = api_key.strip()
    if not _GUID.fullmatch(text):
        raise ConfigurationError(
            "the Zigna API key must be a GUID (8-4-4-4-12 hex digits, braces allowed); "
            f"the value given ({len(text)} characters) is not one"
        )
    return text.strip("{}")


@attrs.frozen
class ZignaSettings:
    """The key (checked, without braces) and the base URL a client talks to."""

    api_key: str = attrs.field(repr=False)
    base_url: str


@attrs.frozen
class BudgetSettings:
    """Where the daily budget is kept (a store URL; ``None``: in memory) and its limit
    (``None``: the default 2,000 until the server says otherwise)."""

    store_url: str | None
    daily_limit: int | None


def zigna_settings(
    environ: Mapping[str, str],
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    how_to_give_key: str = "pass api_key=",
) -> ZignaSettings:
    """``api_key`` else ``$ZIGNA_API_KEY`` (required, a GUID); ``base_url`` else
    ``$ZIGNA_BASE_URL`` else ``https://api.zigna.dk/v2``. ``how_to_give_key`` names the
    caller's own way in the message for a missing key."""
    if api_key is None:
        api_key = environ.get(API_KEY_ENV) or None
        if api_key is None:
            raise ConfigurationError(
                f"no Zigna API key: {how_to_give_key} or set the {API_KEY_ENV} environment variable"
            )
    key = normalize_api_key(api_key)
    if base_url is None:
        base_url = environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return ZignaSettings(api_key=key, base_url=base_url)


def budget_settings(
    environ: Mapping[str, str],
    *,
    store_url: str | None = None,
    daily_limit: int | None = None,
    default_store_url: str | None = None,
) -> BudgetSettings:
    """``store_url`` else ``$ZIGZIIK_BUDGET_STORE`` else ``default_store_url`` (``None``: in
    memory); ``daily_limit`` else ``$ZIGZIIK_DAILY_LIMIT`` (a whole number) else the
    default. A bad limit in the environment raises `ConfigurationError` naming it."""
    if daily_limit is None:
        raw_limit = environ.get(DAILY_LIMIT_ENV, "").strip()
        if raw_limit:
            daily_limit = _whole_number(raw_limit)
            if daily_limit is None:
                raise ConfigurationError(
                    f"${DAILY_LIMIT_ENV} must be a whole number of calls, got {raw_limit!r}"
                )
    url = store_url or environ.get(BUDGET_STORE_ENV, "").strip() or default_store_url
    return BudgetSettings(store_url=url or None, daily_limit=daily_limit)


def _whole_number(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def open_budget(settings: BudgetSettings) -> tuple[DailyBudget, BudgetStore | None]:
    """The budget the settings describe, and the store made for it (its owner closes it)."""
    url = settings.store_url
    store = budget_store_from_url(url) if url is not None else None
    return DailyBudget(settings.daily_limit, store=store), store
