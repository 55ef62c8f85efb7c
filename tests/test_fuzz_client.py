"""Fuzzing the clients against a server that answers anything at all.

A raw loopback server (`tests/_servers.py`) answers every request with whatever hypothesis drew:
any status, any content type, any headers zigziik reads (``Retry-After``, ``X-RateLimit-*``,
``Location``), and bodies that are garbage, truncated JSON, realistic documents with values of
the wrong type or the wrong nesting, huge numbers, deep nesting or invalid UTF-8, framed by a
``Content-Length`` or by closing the connection. Every public call of both clients is driven
against it.

The contract under test: a call returns a value, or raises a `ZigziikError` subclass whose
message names the method and the URL. Nothing else escapes; nothing hangs; no file is left
behind but a complete download's.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _servers as raw
import anyio
import attrs
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zigziik import (
    BudgetExhaustedError,
    ContactForm,
    NewOrder,
    NewOrderProducts,
    NewUnit,
    Picture,
    RetryPolicy,
    Seller,
    UnitPatch,
    ZignaClient,
    ZigziikError,
    ZiikClient,
)
from zigziik._urls import same_origin, with_params
from zigziik.errors import DecodeError
from zigziik.pagination import AsyncPaginator, Page
from zigziik.testing import DEMO_API_KEY, FakeZigna, FakeZiik
from zigziik.ziik._convert import parse_location, parse_token, structure, unwrap_list
from zigziik.ziik.models import Unit

RETRY = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002, max_server_wait=0.01)
TIMEOUT = 0.5
TOKEN = "fuzz-static-token"


# -- the server -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    framing: str  # "length": an honest Content-Length; "close": none, the end is the close

    def raw(self) -> bytes:
        headers = list(self.headers)
        if self.framing == "length":
            headers.append(("Content-Length", str(len(self.body))))
        else:
            headers.append(("Connection", "close"))
        return raw.head(self.status, headers) + self.body


class Switchboard:
    """The answer the server gives to every request, switched per hypothesis example."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.answer = Answer(200, (), b"{}", "length")
        self.targets: list[str] = []  # of every request, in order

    def set(self, answer: Answer) -> None:
        with self._lock:
            self.answer = answer

    async def behaviour(self, connection: raw.Connection, request: raw.RawRequest) -> None:
        with self._lock:
            answer = self.answer
            self.targets.append(request.target)
        await connection.send(answer.raw())
        if answer.framing == "close":
            connection.close()


@pytest.fixture(scope="module")
def board() -> Iterator[tuple[Switchboard, str]]:
    switchboard = Switchboard()
    with raw.RawServer(switchboard.behaviour) as server:
        yield switchboard, server.origin


# -- what the server says ----------------------------------------------------------------------------

_zigna = FakeZigna(orders=2, pictures_per_order=2, picture_size=1000)
_ziik = FakeZiik(depth=1, branching=2)
_order = _zigna.orders[0]
_unit = _ziik.unit(_ziik.unit_ids[0])
TEMPLATES: list[Any] = [
    _order,
    {"response": {"take": 50, "skip": 0, "next": "/v2/orders?take=50&skip=50"}, "orders": [_order]},
    {"order": _order, "pictures": _zigna.pictures(_zigna.order_ids[0])},
    {"status": "OK", "orderNumber": "Z-1", "created": "2026-01-02T03:04:05"},
    [{"id": "BASIS", "name": "Basis", "price": 1.5, "extraProducts": [{"id": "X", "name": "x"}]}],
    [{"id": 1, "name": "Villa"}],
    _unit,
    [_unit, _unit],
    {"data": [_unit], "links": {"next": "/api/units?page=2"}, "meta": {"page": 1}},
    {"data": _unit},
    [{"jwt": "header.payload.signature", "expires": 4102444800}],
]

HUGE_NUMBERS = [
    10**400,
    -(10**400),
    2**63,
    2**64 + 1,
    -(2**63) - 1,
    1e308,
    -1e308,
    5e-324,
]
HUGE_LITERALS = [b"1e400", b"-1e400", b"1" * 5000, b"NaN", b"Infinity", b"-Infinity", b"1e-400"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "0", "-1", "0001-01-01T00:00:00", "2026-13-45T99:99:99", "900", "1"]),
    st.sampled_from(["\ud800", "http://[::1", "//elsewhere.example/x", "\x00", "a" * 70_000]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with some nodes replaced, removed, wrapped or re-typed."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(json_values)  # the wrong type, or the wrong nesting
    if choice == 1 and depth > 0:
        return [value] if draw(st.booleans()) else {"data": value}
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            action = draw(st.integers(0, 7))
            if action == 0:
                continue  # a missing key
            result[key] = draw(mutated(item, depth + 1)) if action <= 2 else item
        return result
    if isinstance(value, list):
        return [draw(mutated(item, depth + 1)) for item in value[:3]]
    return value if choice > 3 else draw(json_scalars)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    template = draw(st.sampled_from(TEMPLATES))
    if kind <= 3:
        return encode(draw(mutated(template)))
    if kind == 4:  # truncated JSON
        text = encode(template)
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == 5:  # a huge number literal somewhere a value goes
        literal = draw(st.sampled_from(HUGE_LITERALS))
        text = encode(draw(mutated(template)))
        return text.replace(b"1", literal, 1) if b"1" in text else literal
    if kind == 6:  # invalid UTF-8
        text = encode(template)
        at = draw(st.integers(0, len(text)))
        return (
            text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + text[at:]
        )
    if kind == 7:  # deep nesting
        depth = draw(st.sampled_from([50, 2000, 100_000]))
        return b"[" * depth + b"]" * depth
    if kind == 8:
        return encode(draw(json_values))
    return draw(st.binary(max_size=200))


statuses = st.one_of(
    st.sampled_from(
        [200, 200, 200, 201, 202, 204, 206, 299, 301, 302, 304, 400, 401, 403, 404, 405, 410]
        + [418, 422, 429, 451, 500, 501, 502, 503, 504, 599]
    ),
    st.integers(200, 599),
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/html; charset=utf-8",
            "text/plain",
            "image/jpeg",
            "application/pdf",
            "application/x-shockwave-flash",
            "application/zip",
            "application/octet-stream",
            "",
            "image/",
            "../../etc",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
header_values = st.one_of(
    st.sampled_from(["0", "1", "2", "0.001", "-5", "1e999", "NaN", "", "99999999999999999999"]),
    st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=25),
)
locations = st.one_of(
    st.sampled_from(
        ["/api/units/17", "https://elsewhere.example/api/units/18", "17", "/api/units/", "x"]
    ),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    headers: list[tuple[str, str]] = []
    content_type = draw(content_types)
    if content_type:
        headers.append(("Content-Type", content_type))
    for name in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        if draw(st.integers(0, 3)) == 0:
            headers.append((name, draw(header_values)))
    if draw(st.booleans()):
        headers.append(("Location", draw(locations)))
    framing = draw(st.sampled_from(["length", "length", "length", "close"]))
    return Answer(draw(statuses), tuple(headers), draw(bodies()), framing)


# -- the calls ---------------------------------------------------------------------------------------


def new_order() -> NewOrder:
    return NewOrder(
        floors=1,
        products=NewOrderProducts("BASIS"),
        case_number="C",
        contact_form=ContactForm.NO_CONTACT,
        m2=1,
        seller=Seller(name="S"),
        home_type=1,
    )


Call = Callable[[Any, Path], Any]

ZIGNA_CALLS: dict[str, tuple[str, Call]] = {
    "orders.get": ("GET", lambda c, d: c.orders.get("77")),
    "orders.list": ("GET", lambda c, d: c.orders.list(take=2).collect(limit=10)),
    "orders.create": ("POST", lambda c, d: c.orders.create(new_order())),
    "orders.packages": ("GET", lambda c, d: c.orders.packages()),
    "orders.housing_types": ("GET", lambda c, d: c.orders.housing_types()),
    "orders.extra_products": ("GET", lambda c, d: c.orders.extra_products()),
    "pictures.list": ("GET", lambda c, d: c.pictures.list("77")),
    "pictures.download(id)": ("GET", lambda c, d: c.pictures.download("77", 5, d)),
    "pictures.download(picture)": (
        "GET",
        lambda c, d: c.pictures.download(
            "77", Picture(picture_id=5, original_file_name="a.jpg", size=64), d
        ),
    ),
    "pictures.download_zip": ("GET", lambda c, d: c.pictures.download_zip("77", d)),
}


async def _walk(client: ZiikClient) -> list[Any]:
    return [node async for node in client.units.walk(3, max_depth=2, concurrency=2)]


async def _walk_top(client: ZiikClient) -> list[Any]:
    return [node async for node in client.units.walk(max_depth=1)]


ZIIK_CALLS: dict[str, tuple[str, Call]] = {
    "units.get": ("GET", lambda c, d: c.units.get(3)),
    "units.list": ("GET", lambda c, d: c.units.list().collect(limit=10)),
    "units.children": ("GET", lambda c, d: c.units.children(3)),
    "units.create": ("POST", lambda c, d: c.units.create(NewUnit("N", 1))),
    "units.update": ("PATCH", lambda c, d: c.units.update(3, UnitPatch(name="M"))),
    "units.delete": ("DELETE", lambda c, d: c.units.delete(3)),
    "units.walk(root)": ("GET", lambda c, d: _walk(c)),
    "units.walk()": ("GET", lambda c, d: _walk_top(c)),
}


def check_error(exc: BaseException, method: str, origin: str) -> None:
    assert isinstance(exc, ZigziikError), f"{type(exc).__name__} escaped: {exc!r}"
    text = str(exc)
    # The method is that of the call, or of the login it needed (a POST).
    assert method in text or "POST" in text, f"no method in {text!r}"
    assert origin in text, f"no URL in {text!r}"


# Building an httpx client loads the CA bundle (tens of milliseconds); the fuzz cases share one
# SSL context instead, through caller-supplied clients (test_faults.py covers the default one).
SSL_CONTEXT = ssl.create_default_context()
Make = Callable[[httpx.AsyncClient], Any]


async def drive(
    make: Make, call: Call, method: str, origin: str, dest: Path
) -> BaseException | None:
    with anyio.fail_after(45):
        async with httpx.AsyncClient(verify=SSL_CONTEXT) as http, make(http) as client:
            try:
                await call(client, dest)
            except BaseException as exc:
                check_error(exc, method, origin)
                return exc
    return None


def check_folder(dest: Path) -> None:
    names = [p.name for p in dest.iterdir()]
    assert not [n for n in names if n.endswith(".part") or n.startswith(".")], names
    assert len(names) <= 1, names


def fresh(dest: Path) -> Path:
    for path in dest.iterdir():
        path.unlink()
    return dest


FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@FUZZ
@given(answer=answers(), name=st.sampled_from(sorted(ZIGNA_CALLS)))
def test_zigna_client_against_any_answer(
    board: tuple[Switchboard, str], tmp_path: Path, answer: Answer, name: str
) -> None:
    switchboard, origin = board
    switchboard.set(answer)
    method, call = ZIGNA_CALLS[name]
    dest = fresh(tmp_path)

    def make(http: httpx.AsyncClient) -> ZignaClient:
        return ZignaClient(
            DEMO_API_KEY, base_url=origin + "/v2", timeout=TIMEOUT, retry=RETRY, http_client=http
        )

    anyio.run(drive, make, call, method, origin, dest)
    check_folder(dest)


@FUZZ
@given(
    answer=answers(),
    name=st.sampled_from(sorted(ZIIK_CALLS)),
    login=st.booleans(),
)
def test_ziik_client_against_any_answer(
    board: tuple[Switchboard, str], tmp_path: Path, answer: Answer, name: str, login: bool
) -> None:
    switchboard, origin = board
    switchboard.set(answer)
    method, call = ZIIK_CALLS[name]

    def make(http: httpx.AsyncClient) -> ZiikClient:
        if login:
            return ZiikClient(
                origin + "/api",
                username="u",
                password="fuzz-password",
                timeout=TIMEOUT,
                retry=RETRY,
                http_client=http,
            )
        return ZiikClient(origin + "/api", TOKEN, timeout=TIMEOUT, retry=RETRY, http_client=http)

    anyio.run(drive, make, call, method, origin, tmp_path)


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b'[{"jwt": "a.b.c", "expires": 1' + b"0" * 400 + b"}]", True),
        (b'[{"jwt": "a.b.c", "expires": 1e400}]', True),
        (b'[{"jwt": "a.b.c", "expires": NaN}]', True),
        (b'[{"jwt": "a.b.c", "expires": -Infinity}]', True),
        # finite, if far away: a token that never needs renewing, like one without expiry
        (b'[{"jwt": "a.b.c", "expires": "99999999999999999999999999999999"}]', False),
    ],
)
def test_a_login_answer_with_an_absurd_expiry(
    board: tuple[Switchboard, str], tmp_path: Path, body: bytes, refused: bool
) -> None:
    """An expiry that is no finite unix time is refused by the login (a `DecodeError` of the
    POST, naming ``expires``); a finite one is accepted and the call goes on (here to the
    next answer, the same login body, which is no unit)."""
    switchboard, origin = board
    switchboard.set(Answer(200, (("Content-Type", "application/json"),), body, "length"))

    def make(http: httpx.AsyncClient) -> ZiikClient:
        return ZiikClient(
            origin + "/api", username="u", password="pw", timeout=1, retry=RETRY, http_client=http
        )

    exc = anyio.run(drive, make, ZIIK_CALLS["units.get"][1], "GET", origin, tmp_path)
    assert type(exc) is DecodeError
    if refused:
        assert str(exc).startswith(f"POST {origin}/api/authenticate: ")
        assert "expires is not finite" in str(exc)
    else:
        assert str(exc).startswith(f"GET {origin}/api/units/3: "), str(exc)
        assert "expected a JSON object for Unit" in str(exc)


@pytest.mark.parametrize(
    ("next_link", "refused"),
    [
        ("http://[::1", True),
        ("/v2/orders?skip=\x00", True),
        ("/v2/orders\r\nX-Injected: 1", True),  # urllib would quietly drop the CR LF
        ("/v2/orders?skip=\t2", True),
        ("http://127.0.0.1:notaport/v2/orders", True),
        ("//[bad/v2/orders", True),
        ("\ud800", True),
        ("/v2/" + "a" * 70_000, True),
        ("/v2/ord ers?x=1", False),  # followed as /v2/ord%20ers?x=1, then seen again: the end
    ],
)
def test_a_next_link_that_is_no_url(
    board: tuple[Switchboard, str], tmp_path: Path, next_link: str, refused: bool
) -> None:
    """A next link that is no URL is refused with a `DecodeError` naming the page and the
    link; one that is only unusual is followed as it is written, percent-encoded."""
    switchboard, origin = board
    page = {"response": {"next": next_link}, "orders": [_order]}
    body = json.dumps(page).encode()
    switchboard.set(Answer(200, (("Content-Type", "application/json"),), body, "length"))
    pages: list[int] = []

    async def list_orders(client: ZignaClient, dest: Path) -> None:
        async for page in client.orders.list(take=2).pages():
            pages.append(len(page))

    def make(http: httpx.AsyncClient) -> ZignaClient:
        return ZignaClient(
            DEMO_API_KEY, base_url=origin + "/v2", timeout=TIMEOUT, retry=RETRY, http_client=http
        )

    exc = anyio.run(drive, make, list_orders, "GET", origin, tmp_path)
    if refused:
        assert type(exc) is DecodeError
        assert str(exc).startswith(f"GET {origin}/v2/orders?take=2&skip=0: "), str(exc)
        assert "the next link is not a usable URL: " + repr(next_link[:200]) in str(exc)
        assert pages == [1]
    else:
        assert exc is None
        assert pages == [1, 1]
        assert switchboard.targets[-1] == "/v2/ord%20ers?x=1"


# -- the pure core: JSON -> Ziik models ------------------------------------------------------------


def attempt(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """(result, None), or (None, the message of the `DecodeError` it raised)."""
    try:
        return function(*args, **kwargs), None
    except DecodeError as exc:
        return None, str(exc)


@settings(max_examples=250, deadline=None, derandomize=True)
@given(st.one_of(mutated(_unit), json_values))
def test_any_json_gives_a_unit_or_a_decode_error(data: Any) -> None:
    url = "https://t.ziik.io/api/units/1"
    unit, error = attempt(structure, data, Unit, method="GET", url=url)
    if error is not None:
        assert f"GET {url}" in error
    else:
        assert isinstance(unit, Unit)
        attrs.asdict(unit)  # a complete, well-formed model


@pytest.mark.parametrize("name", ["orders.list", "orders.get"])
def test_an_exhausted_budget_names_the_request(
    board: tuple[Switchboard, str], tmp_path: Path, name: str
) -> None:
    """The server says no call is left: the next request is refused before it leaves, and
    the `BudgetExhaustedError` still says which request it was."""
    switchboard, origin = board
    page = {"response": {"next": "/v2/orders?skip=1"}, "orders": [_order]}
    headers = (("Content-Type", "application/json"), ("X-RateLimit-Remaining", "0"))
    switchboard.set(Answer(200, headers, json.dumps(page).encode(), "length"))

    async def twice(client: ZignaClient, dest: Path) -> None:
        await client.orders.get("1")
        await ZIGNA_CALLS[name][1](client, dest)

    def make(http: httpx.AsyncClient) -> ZignaClient:
        return ZignaClient(DEMO_API_KEY, base_url=origin + "/v2", retry=RETRY, http_client=http)

    error = anyio.run(drive, make, twice, "GET", origin, tmp_path)
    assert isinstance(error, BudgetExhaustedError)


@settings(max_examples=250, deadline=None, derandomize=True)
@given(st.one_of(mutated(TEMPLATES[-1]), json_values))
def test_any_login_answer_gives_a_token_or_a_decode_error(data: Any) -> None:
    url = "https://t.ziik.io/api/authenticate"
    token, error = attempt(parse_token, data, method="POST", url=url)
    if error is not None:
        assert f"POST {url}" in error
    else:
        assert isinstance(token.jwt, str) and token.jwt
        assert isinstance(token.expires, float)


@settings(max_examples=250, deadline=None, derandomize=True)
@given(st.one_of(mutated(TEMPLATES[8]), json_values), st.one_of(st.none(), locations, st.text()))
def test_envelopes_and_locations_give_values_or_decode_errors(data: Any, location: Any) -> None:
    url = "https://t.ziik.io/api/units"
    unwrapped, error = attempt(unwrap_list, data, method="GET", url=url)
    if error is not None:
        assert f"GET {url}" in error
    else:
        assert unwrapped[1] is None or isinstance(unwrapped[1], str)
    new_id, error = attempt(parse_location, location, method="POST", url=url)
    if error is not None:
        assert f"POST {url}" in error
    else:
        assert isinstance(new_id, int) and new_id >= 0


# -- the pure core: next links ------------------------------------------------------------------------

BASE = "https://api.zigna.dk/v2"
link_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "/v2/orders?skip=50",
            "/v2/orders?skip=2&take=1",
            "/v2/orders?take=1&skip=2",
            "/v2/orders?take=1&skip=0",
            "orders?skip=50",
            "https://api.zigna.dk/v2/orders?skip=50",
            "https://API.zigna.dk:443/v2/orders?skip=1",
            "http://api.zigna.dk/v2/orders",
            "https://api.zigna.dk.evil.example/v2/orders",
            "//evil.example/v2/orders",
            "https://user:pw@api.zigna.dk/v2/orders",
            "https://api.zigna.dk:8443/v2/orders",
            "javascript:alert(1)",
            "\\\\evil.example\\share",
            "/\\evil.example",
            "https://[::1/v2",
            "\ud800",
        ]
    ),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(link_text, min_size=1, max_size=4))
@example(["/v2/orders?skip=1", "/v2/orders?skip=2", "/v2/orders?skip=3"])  # A B C D B C D ...
@example(["/v2/orders?skip=2&take=1", "/v2/orders?take=1&skip=2"])  # one link, spelt twice
@example(["/v2/orders?take=1&skip=50", "orders?skip=50"])
def test_a_paginator_follows_only_same_origin_links_whatever_the_text(links: list[str]) -> None:
    """Any links, served over and over (page n's next link is ``links[n % len(links)]``, so
    every walk that is not refused comes back to a page it has seen, and not only to the
    first): every page fetched is on the API's origin, each page is fetched once, and the end
    is a clean stop or a `DecodeError` naming the page; nothing else escapes, no loop."""
    fetched: list[str] = []

    async def fetch(url: str, params: Any) -> Page[int]:
        fetched.append(with_params(url, params))
        index = len(fetched) - 1
        assert index <= len(links), f"a loop: {fetched}"
        return Page(items=[index], next=links[index % len(links)])

    async def run() -> tuple[list[int], str | None]:
        paginator = AsyncPaginator(fetch, BASE + "/orders", {"take": 1}, base_url=BASE)
        try:
            return await paginator.collect(), None
        except DecodeError as exc:
            return [], str(exc)

    items, error = anyio.run(run)
    for url in fetched:
        assert same_origin(url, BASE), url
    keys = [page_key(url) for url in fetched]
    assert len(set(keys)) == len(keys), f"a page fetched twice: {fetched}"
    if error is not None:  # it names the page whose next link it refused
        assert error.startswith("GET ") and "api.zigna.dk" in error.lower(), error
    else:
        assert items == list(range(len(fetched)))


def page_key(url: str) -> tuple[str, str, tuple[str, ...]]:
    """A page's identity: its host and path and its query parameters, in any order."""
    parsed = httpx.URL(url)
    return (parsed.host.lower(), parsed.path, tuple(sorted(parsed.query.decode().split("&"))))
