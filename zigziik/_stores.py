"""Budget stores named by a URL: ``budget_store_from_url`` and ``$ZIGZIIK_BUDGET_STORE``."""

from __future__ import annotations

from pathlib import Path

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
    Anything else raises `ConfigurationError`, naming the URL without its password.
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

        return SqliteBudgetStore(_sqlite_path(text, rest))
    if scheme in _REDIS_SCHEMES:
        from ._redis_store import RedisBudgetStore

        return RedisBudgetStore(text)
    raise ConfigurationError(
        f"unknown budget store URL {redact_url(text)!r}: use memory:, sqlite:///abs/path.db, "
        "sqlite:relative.db, redis://host:port/db or rediss://..."
    )


def _sqlite_path(url: str, rest: str) -> Path:
    if "?" in rest or "#" in rest:
        raise ConfigurationError(f"a sqlite budget store URL takes no query: {url!r}")
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
