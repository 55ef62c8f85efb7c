"""The scrubbing core on its own: every holder's secrets in every spelling, holders forgotten
when they are gone, and passwords out of store URLs."""

from __future__ import annotations

import gc
import json
from urllib.parse import quote

import pytest

from zigziik import _redact
from zigziik._redact import MASK, redact_url, register, scrub, scrub_with


class Holder:
    def __init__(self, *secrets: str) -> None:
        self._secrets = secrets

    def secrets(self) -> tuple[str, ...]:
        return self._secrets


def test_every_registered_holder_is_scrubbed_and_a_gone_one_is_forgotten() -> None:
    gc.collect()
    before = len(_redact._holders)
    one, two = Holder("first-secret-1"), Holder("second-secret-2")
    register(one)
    register(two)
    assert len(_redact._holders) == before + 2
    assert scrub("a first-secret-1 b second-secret-2 c") == f"a {MASK} b {MASK} c"
    del one
    gc.collect()
    assert len(_redact._holders) == before + 1  # its entry went with it
    assert scrub("first-secret-1 second-secret-2") == f"first-secret-1 {MASK}"
    del two
    gc.collect()
    assert len(_redact._holders) == before


class CyclicHolder(Holder):
    """A holder only the garbage collector frees (it refers to itself), as a client does."""

    def __init__(self, *secrets: str) -> None:
        super().__init__(*secrets)
        self.me = self


def test_a_holder_collected_while_the_registry_is_read_is_no_error() -> None:
    """From Python 3.12 the collector runs at the interpreter's next check after the
    allocation that crosses its threshold, which can fall between two steps of the loop over
    the registry; the weakref callback of a collected client then deleted its entry under
    that loop, and a `ZigziikError`'s message raised a bare ``RuntimeError`` ("dictionary
    changed size during iteration"; seen once among 3,000 tasks in test_concurrency). Each
    threshold offset from 0 to 11 allocations is tried: one lands on the loop's iterator."""
    kept = Holder("kept-secret-1")
    register(kept)
    threshold = gc.get_threshold()
    try:
        for offset in range(12):
            for round_ in range(3):
                gc.collect()
                gc.disable()
                for index in range(50):
                    register(CyclicHolder(f"gone-secret-{offset}-{round_}-{index:02d}"))
                gc.set_threshold(gc.get_count()[0] + offset, threshold[1], threshold[2])
                gc.enable()
                assert "kept-secret-1" in _redact._registered()
    finally:
        gc.set_threshold(*threshold)
        gc.enable()
    gc.collect()
    assert _redact._registered().count("kept-secret-1") == 1
    assert not [s for s in _redact._registered() if s.startswith("gone-secret-")]


@pytest.mark.parametrize(
    "echo",
    [
        # upper-cased, then escaped: the escapes of Ä and Ä differ from those of ä
        lambda s: json.dumps(s.upper())[1:-1],
        lambda s: quote(s.upper(), safe=""),
        # lower-cased (ß stays ß, unlike casefold's ss), then escaped
        lambda s: json.dumps(s.lower())[1:-1],
        lambda s: quote(s.lower(), safe=""),
        lambda s: json.dumps(s.casefold())[1:-1],
    ],
    ids=["upper-json", "upper-percent", "lower-json", "lower-percent", "casefold-json"],
)
def test_a_secret_changed_in_case_then_escaped_is_scrubbed(echo: object) -> None:
    secret = "Geheimnis-ßÄ-pässwort"
    echoed = echo(secret)  # type: ignore[operator]
    assert echoed not in (secret,)
    assert scrub_with(f"<{echoed}>", [secret]) == f"<{MASK}>", echoed


@pytest.mark.parametrize(
    "echo",
    [lambda s: json.dumps(s.lower())[1:-1], lambda s: quote(s.lower(), safe="")],
    ids=["json", "percent"],
)
def test_a_capital_sharp_s_lowered_then_escaped_is_scrubbed(echo: object) -> None:
    # "ẞ" lowers to "ß" but casefolds to "ss" and upper-cases to itself: only the lower-cased
    # spelling escapes to "\u00df" or "%C3%9F" (which no case-insensitive match of the
    # others finds)
    secret = "GEHEIMNIS-ẞ-PASSWORT"
    echoed = echo(secret)  # type: ignore[operator]
    assert "ß" not in echoed and "ẞ" not in echoed
    assert scrub_with(f"<{echoed}>", [secret]) == f"<{MASK}>", echoed


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:pw@cache/0", "redis://user:***@cache/0"),
        ("redis://u:p@ss@cache/0", "redis://u:***@cache/0"),  # the host is after the last @
        ("redis://user@cache/0", "redis://user@cache/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("sqlite:///var/cache/budget.db", "sqlite:///var/cache/budget.db"),
        ("http://[::1", "<unparsable URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
