"""Scrubbing secrets from error messages.

Every `Transport` registers its `Authenticator` here; the message of every `ZigziikError`
created while that authenticator lives is scrubbed of its secrets (API key, bearer token,
password, tokens obtained by a login). A server may echo a secret anywhere: in an error body,
in a 2xx body whose field then has the wrong type, upper-cased, JSON-escaped or
percent-encoded. All of those spellings are replaced by ``***``, whatever their case.

The registry holds weak references: a client that is gone is forgotten.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Protocol
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

__all__ = ["MASK", "redact_url", "register", "scrub", "scrub_with"]

MASK = "***"
_MIN_LENGTH = 4  # shorter "secrets" would mask ordinary text


class SecretHolder(Protocol):
    def secrets(self) -> Iterable[str]:
        """Every secret value it holds right now."""


# Keyed by id(): holders need not be hashable (a frozen attrs class holding a dict is not).
_holders: dict[int, weakref.ReferenceType[SecretHolder]] = {}
_lock = threading.RLock()  # re-entrant: a weakref callback may run inside the locked region


def register(holder: SecretHolder) -> None:
    """Scrub ``holder``'s secrets from every `ZigziikError` message while it lives."""
    key = id(holder)

    def forget(ref: weakref.ReferenceType[SecretHolder]) -> None:
        with _lock:
            if _holders.get(key) is ref:
                del _holders[key]

    with _lock:
        _holders[key] = weakref.ref(holder, forget)


def _registered() -> list[str]:
    with _lock:
        # A copy first: from Python 3.12 the garbage collector can run between two steps of
        # a loop over the dict, and its `forget` callback (same thread: the lock re-enters)
        # would change the dict under the loop ("dictionary changed size during iteration").
        refs = list(_holders.values())
    holders = [ref() for ref in refs]
    found: list[str] = []
    for holder in holders:
        if holder is not None:
            found.extend(holder.secrets())
    return found


_ESCAPES: tuple[Callable[[str], str], ...] = (
    lambda text: text,
    lambda text: json.dumps(text)[1:-1],
    lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
    lambda text: repr(text)[1:-1],
    lambda text: quote(text, safe=""),
    lambda text: quote_plus(text, safe=""),
)


def _spellings(secret: str) -> set[str]:
    """The secret in every case, escaped up to twice (a request body echoed inside a JSON
    string is escaped twice; one inside a query string is escaped, then percent-encoded)."""
    # Case-insensitive matching misses case changes that change the length ("ß" -> "SS").
    cased = {secret, secret.upper(), secret.lower(), secret.casefold()}
    return {outer(inner(variant)) for variant in cased for inner in _ESCAPES for outer in _ESCAPES}


@functools.lru_cache(maxsize=64)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    spellings = {s for secret in secrets if len(secret) >= _MIN_LENGTH for s in _spellings(secret)}
    if not spellings:
        return None
    # Longest first, so that a secret's escaped form is not half-replaced by a shorter one.
    alternatives = "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True))
    return re.compile(alternatives, re.IGNORECASE)


def scrub_with(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every spelling of every secret in ``secrets`` replaced by ``***``."""
    pattern = _pattern(frozenset(secrets))
    return text if pattern is None else pattern.sub(MASK, text)


def scrub(text: str) -> str:
    """``text`` scrubbed of the secrets of every registered holder."""
    secrets = _registered()
    return scrub_with(text, secrets) if secrets else text


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and ``repr``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    login = f"{user}:***" if password is not None else user
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))
