"""Secrets (the Zigna API key, a Ziik bearer token, a Ziik password and the JWTs a login
obtains) never appear in a log record at any level (zigziik's, httpx's, httpcore's, anyone's),
in ``repr()`` of a client, its transport or budget, or in ``str()``, ``repr()``, ``args``,
``__cause__``/``__context__`` chains or formatted tracebacks of any exception.

The servers are hostile on purpose: they echo every secret they receive back in their error
bodies and in 2xx bodies of the wrong shape, verbatim, upper-cased, JSON-escaped and
percent-encoded.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import _servers as raw
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zigziik import (
    ConfigurationError,
    DailyBudget,
    NewUnit,
    RetryPolicy,
    ZignaClient,
    ZigziikError,
    ZiikClient,
)
from zigziik._redact import scrub_with
from zigziik.testing import FakeZigna, FakeZiik, serve

API_KEY = "0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"
WRONG_KEY = "{9A8B7C6D-5E4F-4A3B-8C2D-1E0F9A8B7C6D}"
TOKEN = "zz-static-Bearer.Token_7Hq2xZ9kLmN4pR8s"
PASSWORD = 'pa"ss\\wörd\tand  two spaces-9'
USERNAME = "someone@example.dk"  # not a secret: it may appear
RETRY = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)
TIMEOUT = 0.5

LOGGERS = ("", "zigziik", "httpx", "httpcore", "hpack", "h11", "h2", "anyio", "asyncio", "trio")


ESCAPES: list[Callable[[str], str]] = [
    lambda text: text,
    lambda text: json.dumps(text)[1:-1],
    lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
    lambda text: quote(text, safe=""),
]


def forms(secret: str) -> set[str]:
    """The ways a secret can be spelt in a message: as is, JSON-escaped, percent-encoded, each
    up to twice (a request body echoed inside a JSON string), in another case (GUIDs are
    compared case-insensitively), and without braces."""
    bare = {secret, secret.strip("{}")}
    spelt = {outer(inner(text)) for text in bare for inner in ESCAPES for outer in ESCAPES}
    spelt |= {s.upper() for s in spelt} | {s.lower() for s in spelt}
    return {s for s in spelt if len(s) >= 8}


class Everything(logging.Handler):
    """Keeps every record of every logger, formatted with its traceback, args and extras."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.args))
        self.texts.append(repr(record.__dict__))


@pytest.fixture
def captured() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    disabled = {name: logging.getLogger(name).disabled for name in LOGGERS}
    root.addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).disabled = False
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name in LOGGERS:
            logging.getLogger(name).setLevel(saved[name])
            logging.getLogger(name).disabled = disabled[name]


def exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception shows, down its cause and context chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        if isinstance(current, ZigziikError):  # its attributes are part of what it shows
            texts += [repr(v) for v in vars(current).values()]
        current = current.__cause__ or current.__context__
    return texts


def assert_hidden(texts: list[str], *secrets: str) -> None:
    joined = "\n".join(texts)
    folded = joined.casefold()
    for secret in secrets:
        for spelt in forms(secret):
            assert spelt not in joined, f"{spelt!r} appears in:\n{_around(joined, spelt)}"
        # Nor a good part of it (a message that shortens a value could cut it).
        for start in range(len(secret) - 11):
            part = secret[start : start + 12].casefold()
            assert part not in folded, f"{part!r} appears in:\n{_around(folded, part)}"


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 300) : at + len(needle) + 100]


async def outcome(call: Any) -> list[str]:
    """Run ``call``; the texts of what it raised (a ZigziikError), or of what it returned."""
    try:
        result = await call
    except ZigziikError as exc:
        return exception_texts(exc)
    return [repr(result)]


# -- a server that echoes what it receives --------------------------------------------------------


def echo(status: int, shape: str) -> raw.Behaviour:
    """Answer with ``status`` and a body that repeats the request's headers and body."""

    async def behaviour(connection: raw.Connection, request: raw.RawRequest) -> None:
        received = [v for k, v in request.headers.items() if k in ("x-apikey", "authorization")]
        received.append(request.body.decode("utf-8", "replace"))
        spellings = [s for r in received for s in (r, r.upper(), json.dumps(r), quote(r))]
        if shape == "json-wrong-type":  # a 2xx whose fields have the wrong type
            document: Any = {"id": spellings, "caseNumber": {"echo": spellings}}
            body = json.dumps(document).encode()
        elif shape == "json-string-for-int":
            body = json.dumps({"id": "1", "m2": received[0]}).encode()
        elif shape == "json-secret-late-in-a-string":  # where a shortened value cuts it
            late = {k: "x" * 44 + received[0] for k in ("m2", "floors", "id", "unit_type")}
            body = json.dumps(late).encode()
        else:
            body = ("Denied. You sent: " + " | ".join(spellings)).encode()
        content_type = "text/plain" if shape == "text" else "application/json"
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        await connection.send(raw.head(status, headers) + body)

    return behaviour


SHAPES = [(401, "text"), (403, "text"), (500, "text"), (503, "text"), (422, "text")]
SHAPES += [(429, "text"), (200, "text"), (200, "json-wrong-type"), (200, "json-string-for-int")]
SHAPES += [(200, "json-secret-late-in-a-string")]


# -- Zigna ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_the_zigna_key_never_leaks(captured: Everything, tmp_path: Path) -> None:
    texts: list[str] = []
    fake = FakeZigna(api_key=API_KEY, orders=3, pictures_per_order=2, picture_size=3000)
    with serve(fake.app) as origin:
        base = origin + "/v2"
        async with ZignaClient(API_KEY, base_url=base, retry=RETRY, timeout=TIMEOUT) as zigna:
            texts += [repr(zigna), str(zigna), repr(zigna.budget), repr(vars(zigna))]
            texts += [repr(zigna._transport), repr(vars(zigna._transport))]
            orders = await zigna.orders.list().collect()
            order_id = next(o.id for o in orders if fake.pictures(o.id or ""))
            listing = await zigna.pictures.list(order_id)
            texts += [repr(listing)]
            await zigna.pictures.download(order_id, listing.pictures[0], tmp_path)
            await zigna.pictures.download_zip(order_id, tmp_path)
            fake.faults.fail_next(4, 503, body=f"upstream said key={API_KEY}".encode())
            texts += await outcome(zigna.orders.get(order_id))
            texts += await outcome(zigna.orders.get(order_id))
            fake.faults.reset_next(2)
            texts += await outcome(zigna.orders.get(order_id))
            await zigna.harvest(tmp_path / "harvest")
        async with ZignaClient(WRONG_KEY, base_url=base, retry=RETRY) as wrong:
            texts += await outcome(wrong.orders.get(order_id))  # 401
    assert_hidden(texts + captured.texts, API_KEY, WRONG_KEY)
    assert any("zigziik" in t for t in captured.texts)  # zigziik logged, at DEBUG
    # So did the connection layer: zigziik's own under asyncio, httpcore's under trio.
    assert any(t.startswith(("httpcore", "zigziik.http11")) for t in captured.texts)


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "shape"), SHAPES)
async def test_a_server_echoing_the_zigna_key_cannot_make_it_leak(
    captured: Everything, status: int, shape: str
) -> None:
    texts: list[str] = []
    with raw.RawServer(echo(status, shape)) as server:
        base = server.origin + "/v2"
        async with ZignaClient(API_KEY, base_url=base, retry=RETRY, timeout=TIMEOUT) as zigna:
            texts += await outcome(zigna.orders.get("1"))
            texts += await outcome(zigna.orders.list().collect())
    assert server.calls >= 2
    assert_hidden(texts + captured.texts, API_KEY)


@pytest.mark.anyio
async def test_network_failures_show_no_key(captured: Everything) -> None:
    texts: list[str] = []
    for origin in (f"http://127.0.0.1:{raw.closed_port()}", "https://zigziik-secret.invalid"):
        async with ZignaClient(API_KEY, base_url=origin + "/v2", retry=RETRY, timeout=1) as z:
            texts += await outcome(z.orders.get("1"))
    with raw.RawServer(raw.silent()) as server:
        async with ZignaClient(API_KEY, base_url=server.origin, retry=RETRY, timeout=0.2) as z:
            texts += await outcome(z.orders.get("1"))
    budget = DailyBudget(0)
    async with ZignaClient(API_KEY, base_url=server.origin, budget=budget) as z:
        texts += await outcome(z.orders.get("1"))
    assert len(texts) > 4
    assert_hidden(texts + captured.texts, API_KEY)


def test_configuration_errors_never_show_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    texts: list[str] = []
    nearly = API_KEY[:-1] + "x"  # one character off: not a GUID
    attempts: list[Any] = [
        lambda: ZignaClient(nearly),
        lambda: ZignaClient(API_KEY + API_KEY),
        lambda: ZignaClient(API_KEY, base_url="http://example.com/v2"),
        lambda: ZiikClient("https://t.ziik.io/api", "Bearer " + TOKEN),
        lambda: ZiikClient("https://t.ziik.io/api", TOKEN + " " + TOKEN),
        lambda: ZiikClient("https://t.ziik.io/api", TOKEN, password=PASSWORD),
        lambda: ZiikClient("https://t.ziik.io/api", password=PASSWORD),
        lambda: ZiikClient("http://t.ziik.io/api", username=USERNAME, password=PASSWORD),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        texts += exception_texts(caught.value)
    monkeypatch.setenv("ZIGNA_API_KEY", nearly)
    with pytest.raises(ConfigurationError) as caught:
        ZignaClient()
    texts += exception_texts(caught.value)
    assert_hidden(texts, nearly, TOKEN, PASSWORD)


# -- Ziik ------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_ziik_password_token_and_issued_jwts_never_leak(captured: Everything) -> None:
    texts: list[str] = []
    fake = FakeZiik(depth=2, branching=2, username=USERNAME, password=PASSWORD, token=TOKEN)
    with serve(fake.app) as origin:
        base = origin + "/api"
        async with ZiikClient(
            base, username=USERNAME, password=PASSWORD, retry=RETRY, timeout=TIMEOUT
        ) as ziik:
            texts += [repr(ziik), repr(vars(ziik)), repr(ziik._transport), repr(ziik._auth)]
            root = fake.top_level_ids[0]
            texts += [repr([node async for node in ziik.units.walk(root)])]
            texts += [repr(await ziik.units.list().collect())]
            issued = fake.valid_tokens
            fake.expire_tokens()  # the next call gets a 401, logs in again, and retries
            texts += [repr(await ziik.units.get(root))]
            issued += fake.valid_tokens
            fake.faults.fail_next(2, 500, body=f"token {issued[-1]} password {PASSWORD}".encode())
            texts += await outcome(ziik.units.get(root))
        async with ZiikClient(base, TOKEN, retry=RETRY, timeout=TIMEOUT) as static:
            texts += [repr(static), repr(static._auth)]
            fake.faults.fail_next(2, 503, body=f"Bearer {TOKEN}".encode())
            texts += await outcome(static.units.get(root))
            texts += [repr(await static.units.get(root))]
        async with ZiikClient(base, username=USERNAME, password=PASSWORD + "x") as wrong:
            texts += await outcome(wrong.units.get(root))  # the login is refused: 401
        async with ZiikClient(base, TOKEN + "x") as wrong_token:
            texts += await outcome(wrong_token.units.get(root))
    assert len(issued) >= 2
    assert_hidden(texts + captured.texts, PASSWORD, PASSWORD + "x", TOKEN, *issued)


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "shape"), SHAPES)
async def test_a_server_echoing_ziik_secrets_cannot_make_them_leak(
    captured: Everything, status: int, shape: str
) -> None:
    texts: list[str] = []
    with raw.RawServer(echo(status, shape)) as server:
        base = server.origin + "/api"
        async with ZiikClient(base, TOKEN, retry=RETRY, timeout=TIMEOUT) as ziik:
            texts += await outcome(ziik.units.get(1))
            texts += await outcome(ziik.units.create(NewUnit("N", 1)))
        async with ZiikClient(
            base, username=USERNAME, password=PASSWORD, retry=RETRY, timeout=TIMEOUT
        ) as ziik:
            texts += await outcome(ziik.units.get(1))  # the login itself is echoed
    assert server.calls >= 3
    assert_hidden(texts + captured.texts, TOKEN, PASSWORD)


@pytest.mark.anyio
async def test_httpx_debug_logging_of_a_caller_supplied_client_shows_no_secret(
    captured: Everything,
) -> None:
    """A caller's own httpx client (event hooks, DEBUG logging) still sees no secret logged."""
    fake = FakeZiik(depth=1, branching=2, username=USERNAME, password=PASSWORD)
    with serve(fake.app) as origin:
        async with httpx.AsyncClient() as http:
            ziik = ZiikClient(
                origin + "/api", username=USERNAME, password=PASSWORD, http_client=http
            )
            async with ziik:
                await ziik.units.list().collect()
    tokens = fake.valid_tokens
    assert tokens
    assert_hidden(captured.texts, PASSWORD, *tokens)
    assert any(t.startswith("httpx INFO") for t in captured.texts)


# -- the pure scrubber ------------------------------------------------------------------------------

secret_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="*{}"),
    min_size=8,
    max_size=40,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(secret_text, st.lists(st.text(max_size=20), min_size=1, max_size=4), st.data())
def test_every_spelling_of_a_secret_is_scrubbed(
    secret: str, fillers: list[str], data: st.DataObject
) -> None:
    spelt = sorted(forms(secret))
    pieces = []
    for filler in fillers:
        pieces += [filler, data.draw(st.sampled_from(spelt))]
    text = "".join(pieces)
    scrubbed = scrub_with(text, [secret])
    for spelling in spelt:
        assert spelling.casefold() not in scrubbed.casefold()
    assert scrub_with(text, []) == text
