"""Budget stores named by a URL: ``budget_store_from_url`` and ``$ZIGZIIK_BUDGET_STORE``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_plus

from ._redact import redact_url
from .errors import ConfigurationError
from .ratelimit import BudgetStore, InMemoryBudgetStore

__all__ = [
    "BUDGET_STORE_ENV",
    "DAILY_LIMIT_ENV",
    "budget_store_from_url",
]

BUDGET_STORE_ENV = "ZIGZIIK_BUDGET_STORE"
DAILY_LIMIT_ENV = "ZIGZIIK_DAILY_LIMIT"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def budget_store_from_url(url: str) -> BudgetStore:
    """The store a URL names.

    ``memory:`` (this process only), ``sqlite:///abs/path.db`` or ``sqlite:rel/path.db``
    (processes on one host), ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``
    (TLS) or ``unix:///path/redis.sock`` (processes on many hosts; the ``redis`` extra).
    The store's own options go in the query with a ``zigziik_`` prefix (the rest of a Redis
    URL's query is redis-py's): ``zigziik_lease`` and ``zigziik_timeout`` (seconds) for both,
    and for Redis ``zigziik_prefix`` and ``zigziik_replicas``, as in
    ``redis://redis:6379/0?zigziik_replicas=1``. Anything else raises `ConfigurationError`,
    naming the URL without its password.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"a budget store URL must be a non-empty string, got {url!r}")
    text = url.strip()
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme == "memory" and rest in ("", "//"):
        return InMemoryBudgetStore()
    if scheme == "sqlite":
        from ._sqlite_store import SqliteBudgetStore

        text, options = _store_options(text, _SQLITE_OPTIONS)
        path = _sqlite_path(text, text.partition(":")[2])
        return SqliteBudgetStore(path, **options)  # type: ignore[arg-type]
    if scheme in _REDIS_SCHEMES:
        from ._redis_store import RedisBudgetStore

        text, options = _store_options(text, _REDIS_OPTIONS)
        return RedisBudgetStore(text, **options)  # type: ignore[arg-type]
    raise ConfigurationError(
        f"unknown budget store URL {redact_url(text)!r}: use memory:, sqlite:///abs/path.db, "
        "sqlite:relative.db, redis://host:port/db or rediss://..."
    )


def _store_options(
    url: str, allowed: dict[str, Callable[[str], object]]
) -> tuple[str, dict[str, object]]:
    """``url`` without its ``zigziik_*`` query options, and those options parsed."""
    head, mark, query = url.partition("?")
    if not mark:
        return url, {}
    query, hash_mark, fragment = query.partition("#")
    kept: list[str] = []
    options: dict[str, object] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if not name.lower().startswith(_OPTION_PREFIX):
            kept.append(part)
            continue
        option = name[len(_OPTION_PREFIX) :].lower()
        parse = allowed.get(option)
        if parse is None:
            known = ", ".join(_OPTION_PREFIX + n for n in allowed)
            raise ConfigurationError(
                f"unknown budget store option {name!r} (a {url.partition(':')[0]} store "
                f"takes {known})"
            )
        if option in options:
            raise ConfigurationError(f"the budget store option {name!r} is given twice")
        try:
            options[option] = parse(unquote_plus(value))
        except ValueError:
            raise ConfigurationError(
                f"bad budget store option {name}={unquote_plus(value)!r}: {_OPTION_HINTS[option]}"
            ) from None
    rest = "&".join(kept)
    return head + ("?" + rest if rest else "") + hash_mark + fragment, options


def _whole_number(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError
    return int(text)


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError
    return value


_OPTION_PREFIX = "zigziik_"
_SQLITE_OPTIONS: dict[str, Callable[[str], object]] = {"lease": _seconds, "timeout": _seconds}
_REDIS_OPTIONS: dict[str, Callable[[str], object]] = {
    **_SQLITE_OPTIONS,
    "prefix": str,
    "replicas": _whole_number,
}
_OPTION_HINTS = {
    "lease": "a positive number of seconds",
    "timeout": "a positive number of seconds",
    "replicas": "a whole number of replicas, 0 or more",
}


def _sqlite_path(url: str, rest: str) -> Path:
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"a sqlite budget store URL takes no query but zigziik_lease and zigziik_timeout: "
            f"{url!r}"
        )
    if rest.startswith("///"):
        path = rest[2:]  # keep one slash: an absolute path
    elif rest.startswith("//"):
        raise ConfigurationError(
            f"{url!r} names a host; a SQLite store is a local file: sqlite:///abs/path.db "
            "or sqlite:relative.db"
        )
    else:
        path = rest
    if not path or path.endswith("/"):
        raise ConfigurationError(f"{url!r} names no file")
    return Path(path)
