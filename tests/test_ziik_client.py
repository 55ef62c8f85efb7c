"""The Ziik client's endpoints against respx mocks built from the reference's payloads."""

from __future__ import annotations

import base64
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from zigziik import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    DailyBudget,
    DecodeError,
    NewImage,
    NewUnit,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
    Unit,
    UnitAddress,
    UnitPatch,
    UnprocessableEntityError,
    ZiikClient,
)
from zigziik.ziik._convert import parse_location, parse_token, unwrap_list, unwrap_object

BASE = "https://acme.ziik.io/api"
TOKEN = "aaaaaaaaa.bbbbbbbbb.cccccccccc"
DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.anyio


def load(name: str) -> Any:
    return json.loads((DATA / f"ziik_{name}.json").read_text(encoding="utf-8"))


# Building an SSL context per client costs ~0.1 s; the tests share one (respx still intercepts).
_SSL = ssl.create_default_context()
_SHARED = httpx.AsyncClient(verify=_SSL)


async def _no_sleep(_: float) -> None:
    await anyio.lowlevel.checkpoint()


def client(**kwargs: Any) -> ZiikClient:
    kwargs.setdefault("retry", RetryPolicy(jitter=False))
    if "username" not in kwargs:
        kwargs.setdefault("token", TOKEN)
    owned = "http_client" not in kwargs
    kwargs.setdefault("http_client", httpx.AsyncClient(verify=_SSL))
    ziik = ZiikClient(kwargs.pop("base_url", BASE), **kwargs)
    ziik._transport._owns_client = owned  # closed with the client, as its own would be
    ziik._transport.sleep = _no_sleep
    return ziik


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZIIK_BASE_URL", "ZIIK_TOKEN", "ZIIK_USERNAME", "ZIIK_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


# -- configuration --------------------------------------------------------------------------------


def test_missing_base_url_and_credentials_are_named() -> None:
    with pytest.raises(ConfigurationError, match="ZIIK_BASE_URL"):
        ZiikClient(token=TOKEN)
    with pytest.raises(ConfigurationError, match="no Ziik credentials"):
        ZiikClient(BASE)
    with pytest.raises(ConfigurationError, match="without a password"):
        ZiikClient(BASE, username="ann")
    with pytest.raises(ConfigurationError, match="without a username"):
        ZiikClient(BASE, password="secret-pw")
    with pytest.raises(ConfigurationError, match="not both"):
        ZiikClient(BASE, TOKEN, username="ann", password="secret-pw")


@pytest.mark.parametrize(
    "url", ["http://acme.ziik.io/api", "ftp://acme.ziik.io", "https://user:pw@acme.ziik.io/api"]
)
def test_https_is_enforced(url: str) -> None:
    with pytest.raises(ConfigurationError):
        ZiikClient(url, TOKEN)


def test_loopback_http_is_allowed() -> None:
    assert (
        ZiikClient("http://127.0.0.1:8000/api", TOKEN, http_client=_SHARED).base_url
        == "http://127.0.0.1:8000/api"
    )


@pytest.mark.parametrize("bad", ["", "Bearer abc", "has space", "new\nline", 5])
def test_bad_tokens_are_refused_without_being_shown(bad: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ZiikClient(BASE, bad)
    if isinstance(bad, str) and len(bad) > 3:
        assert bad not in str(caught.value)


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIIK_BASE_URL", BASE)
    monkeypatch.setenv("ZIIK_USERNAME", "ann")
    monkeypatch.setenv("ZIIK_PASSWORD", "pw-from-env")
    ziik = ZiikClient(http_client=_SHARED)
    assert ziik.base_url == BASE and "login" in repr(ziik)
    monkeypatch.setenv("ZIIK_TOKEN", TOKEN)
    ziik = ZiikClient(http_client=_SHARED)
    assert "'token'" in repr(ziik)
    assert TOKEN not in repr(ziik) and "pw-from-env" not in repr(ziik)


def test_repr_hides_secrets() -> None:
    ziik = ZiikClient(BASE, username="ann", password="hunter2-secret", http_client=_SHARED)
    assert "hunter2" not in repr(ziik) and "hunter2" not in repr(ziik._auth)
    assert TOKEN not in repr(ZiikClient(BASE, TOKEN, http_client=_SHARED))


# -- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://example.ziik.io/api/units/1234", 1234),
        ("/api/units/77", 77),
        ("units/5/", 5),
        ("1234", 1234),
    ],
)
def test_parse_location(location: str, expected: int) -> None:
    result = parse_location(location, method="POST", url=BASE)
    assert result == expected and type(result) is int


@pytest.mark.parametrize(
    "location", [None, "", "https://x/api/units/", "/api/units/abc", "/x?id=5"]
)
def test_parse_location_refuses(location: str | None) -> None:
    with pytest.raises(DecodeError, match="Location"):
        parse_location(location, method="POST", url=BASE)


def test_unwrap_helpers() -> None:
    assert unwrap_list([1], method="GET", url=BASE) == ([1], None)
    envelope = {"data": [1], "links": {"next": "https://x/api/units?page=2"}, "meta": {}}
    assert unwrap_list(envelope, method="GET", url=BASE) == ([1], "https://x/api/units?page=2")
    assert unwrap_list({"data": [], "links": []}, method="GET", url=BASE) == ([], None)
    assert unwrap_list({"data": [], "links": {"next": ""}}, method="GET", url=BASE) == ([], None)
    with pytest.raises(DecodeError):
        unwrap_list({"id": 1}, method="GET", url=BASE)
    with pytest.raises(DecodeError):
        unwrap_list({"data": [], "links": {"next": 3}}, method="GET", url=BASE)
    assert unwrap_object({"data": {"id": 1}}) == {"id": 1}
    assert unwrap_object({"id": 1, "data": "x"}) == {"id": 1, "data": "x"}


def test_parse_token_shapes_and_errors_hide_the_token() -> None:
    for shape in (
        [{"jwt": "a.b.c", "expires": 100}],
        {"jwt": "a.b.c", "expires": 100},
        {"data": [{"jwt": "a.b.c", "expires": "100"}]},
    ):
        token = parse_token(shape, method="POST", url=BASE)
        assert token.jwt == "a.b.c" and token.expires == 100.0
        assert "a.b.c" not in repr(token)
    assert parse_token([{"jwt": "a.b.c"}], method="POST", url=BASE).expires == float("inf")
    for bad in ([], [{"jwt": 5}], [{"jwt": "has space"}], [{"jwt": "secret.jwt", "expires": "x"}]):
        with pytest.raises(DecodeError) as caught:
            parse_token(bad, method="POST", url=BASE)
        assert "secret.jwt" not in str(caught.value)


# -- endpoints --------------------------------------------------------------------------------------


@respx.mock
async def test_list_bare_reference_payload_is_one_page() -> None:
    route = respx.get(f"{BASE}/units").respond(json=load("units_list"))
    async with client() as ziik:
        found = [unit async for unit in ziik.units.list()]
    assert [u.id for u in found] == [12, 127]
    assert all(type(u) is Unit for u in found)
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.url.params.get("user") is None


@respx.mock
async def test_list_user_filter() -> None:
    route = respx.get(f"{BASE}/units", params={"user": "true"}).respond(json=[])
    async with client() as ziik:
        assert await ziik.units.list(user=True).collect() == []
    assert route.called


@pytest.mark.both_backends
@respx.mock
async def test_list_envelope_follows_links_next() -> None:
    first, second = load("units_list")
    respx.get(f"{BASE}/units", params={"page": "2", "limit": "1"}).respond(
        json={
            "data": [second],
            "links": {"first": "...", "last": "...", "prev": "...", "next": None},
            "meta": {"current_page": 2},
        }
    )
    respx.get(f"{BASE}/units").respond(
        json={
            "data": [first],
            "links": {"next": f"{BASE}/units?page=2&limit=1", "prev": None},
            "meta": {"current_page": 1},
        }
    )
    async with client() as ziik:
        pages = [page async for page in ziik.units.list().pages()]
    assert [[u.id for u in page] for page in pages] == [[12], [127]]


@respx.mock
async def test_list_refuses_a_next_link_to_another_origin() -> None:
    respx.get(f"{BASE}/units").respond(
        json={"data": [{"id": 1}], "links": {"next": "https://evil.example/api/units?page=2"}}
    )
    async with client() as ziik:
        with pytest.raises(DecodeError, match="another origin"):
            await ziik.units.list().collect()


@respx.mock
async def test_get_bare_and_enveloped() -> None:
    single = load("unit_single")
    respx.get(f"{BASE}/units/12").respond(json=single)
    respx.get(f"{BASE}/units/13").respond(json={"data": dict(single, id=13)})
    async with client() as ziik:
        assert (await ziik.units.get(12)).id == 12
        assert (await ziik.units.get(13)).id == 13
        with pytest.raises(TypeError):
            await ziik.units.get("12")  # type: ignore[arg-type]


@respx.mock
async def test_children_bare_and_enveloped_pages() -> None:
    children = load("unit_children")
    respx.get(f"{BASE}/units/123/children").respond(json=children)
    respx.get(f"{BASE}/units/5/children", params={"page": "2"}).respond(
        json={"data": [children[1]], "links": {"next": None}}
    )
    respx.get(f"{BASE}/units/5/children").respond(
        json={"data": [children[0]], "links": {"next": "/api/units/5/children?page=2"}}
    )
    async with client() as ziik:
        bare = await ziik.units.children(123)
        paged = await ziik.units.children(5)
    assert [u.id for u in bare] == [12, 127]
    assert [u.id for u in paged] == [12, 127]
    assert type(bare) is list


@respx.mock
async def test_create_returns_the_id_from_location() -> None:
    route = respx.post(f"{BASE}/units").respond(
        201,
        headers={"Location": "https://acme.ziik.io/api/units/1234"},
        json={"message": "Unit created"},
    )
    async with client() as ziik:
        new_id = await ziik.units.create(
            NewUnit("Aarhus", 12, unit=UnitAddress(city="Aarhus C"), features=[175])
        )
    assert new_id == 1234 and type(new_id) is int
    assert json.loads(route.calls.last.request.content) == {
        "name": "Aarhus",
        "parent": 12,
        "unit": {"city": "Aarhus C"},
        "features": [175],
    }


@respx.mock
async def test_create_relative_location_and_missing_location() -> None:
    respx.post(f"{BASE}/units").mock(
        side_effect=[
            httpx.Response(201, headers={"Location": "/api/units/99"}),
            httpx.Response(201, json={"message": "Unit created"}),
            httpx.Response(201, headers={"Location": "/api/units/new"}),
        ]
    )
    async with client() as ziik:
        assert await ziik.units.create(NewUnit("A", 1)) == 99
        with pytest.raises(DecodeError, match="no Location"):
            await ziik.units.create(NewUnit("B", 1))
        with pytest.raises(DecodeError, match="does not end with a unit id"):
            await ziik.units.create(NewUnit("C", 1))
        with pytest.raises(TypeError):
            await ziik.units.create({"name": "x"})  # type: ignore[arg-type]


@respx.mock
async def test_create_is_not_retried_after_a_server_error() -> None:
    route = respx.post(f"{BASE}/units").respond(500)
    async with client() as ziik:
        with pytest.raises(ServerError):
            await ziik.units.create(NewUnit("A", 1))
    assert route.call_count == 1


@respx.mock
async def test_update_sends_only_the_fields_set() -> None:
    route = respx.patch(f"{BASE}/units/123").mock(
        side_effect=[httpx.Response(204), httpx.Response(200, json={"message": "ok"})]
    )
    async with client() as ziik:
        await ziik.units.update(123, UnitPatch(name="Renamed"))
        await ziik.units.update(123, UnitPatch(description=None, unit=UnitAddress(phone="+45")))
        with pytest.raises(ValueError, match="nothing to update"):
            await ziik.units.update(123, UnitPatch())
    bodies = [json.loads(call.request.content) for call in route.calls]
    assert bodies == [{"name": "Renamed"}, {"description": None, "unit": {"phone": "+45"}}]
    assert route.calls[0].request.headers["content-type"] == "application/json"


@pytest.mark.both_backends
@respx.mock
async def test_update_is_retried_as_idempotent() -> None:
    route = respx.patch(f"{BASE}/units/1").mock(
        side_effect=[httpx.Response(503), httpx.Response(204)]
    )
    async with client() as ziik:
        await ziik.units.update(1, UnitPatch(name="x"))
    assert route.call_count == 2


@respx.mock
async def test_delete_and_delete_image() -> None:
    unit = respx.delete(f"{BASE}/units/123").respond(204)
    image = respx.delete(f"{BASE}/units/123/files/12345").respond(200, json={"message": "ok"})
    async with client() as ziik:
        await ziik.units.delete(123)
        await ziik.units.delete_image(123, 12345)
    assert unit.called and image.called


@pytest.mark.both_backends
@respx.mock
async def test_add_image_variants(tmp_path: Path) -> None:
    route = respx.post(f"{BASE}/units/image").respond(204)
    photo = tmp_path / "office.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    async with client() as ziik:
        await ziik.units.add_image(123, photo)
        await ziik.units.add_image(123, str(photo), name="front.jpg")
        await ziik.units.add_image(123, youtube="https://www.youtube.com/embed/abc")
        await ziik.units.add_image(123, vimeo="https://player.vimeo.com/video/42", name="Tour")
        await ziik.units.add_image(123, image=NewImage.from_bytes("x.png", b"png"))
        with pytest.raises(TypeError, match="exactly one"):
            await ziik.units.add_image(123)
        with pytest.raises(TypeError, match="exactly one"):
            await ziik.units.add_image(123, photo, youtube="https://youtu.be/x")
        with pytest.raises(FileNotFoundError):
            await ziik.units.add_image(123, tmp_path / "missing.jpg")
    bodies = [json.loads(call.request.content) for call in route.calls]
    encoded = base64.b64encode(photo.read_bytes()).decode()
    assert bodies == [
        {"id": 123, "image": [{"type": "upload", "name": "office.jpg", "data": encoded}]},
        {"id": 123, "image": [{"type": "upload", "name": "front.jpg", "data": encoded}]},
        {
            "id": 123,
            "image": [
                {"type": "youtube", "name": "abc", "data": "https://www.youtube.com/embed/abc"}
            ],
        },
        {
            "id": 123,
            "image": [
                {"type": "vimeo", "name": "Tour", "data": "https://player.vimeo.com/video/42"}
            ],
        },
        {"id": 123, "image": [{"type": "upload", "name": "x.png", "data": "cG5n"}]},
    ]


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, APIError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (410, APIError),
        (422, UnprocessableEntityError),
    ],
)
@respx.mock
async def test_status_mapping(status: int, error: type[APIError]) -> None:
    respx.get(f"{BASE}/units/9").respond(status, json={"message": "nope"})
    async with client() as ziik:
        with pytest.raises(error) as caught:
            await ziik.units.get(9)
    assert caught.value.status_code == status
    assert "nope" in str(caught.value)


@respx.mock
async def test_422_on_create_carries_the_server_message() -> None:
    respx.post(f"{BASE}/units").respond(
        422, json={"message": "The given data was invalid.", "errors": {"name": ["required"]}}
    )
    async with client() as ziik:
        with pytest.raises(UnprocessableEntityError, match="required"):
            await ziik.units.create(NewUnit("x", 1))


@respx.mock
async def test_wrong_types_and_non_json_are_decode_errors() -> None:
    respx.get(f"{BASE}/units/1").respond(json={"id": "1"})
    respx.get(f"{BASE}/units/2").respond(text="<html>oops</html>")
    respx.get(f"{BASE}/units/3").respond(204)
    respx.get(f"{BASE}/units").respond(json={"units": []})
    async with client() as ziik:
        with pytest.raises(DecodeError, match="Unit.id"):
            await ziik.units.get(1)
        with pytest.raises(DecodeError, match="not JSON"):
            await ziik.units.get(2)
        with pytest.raises(DecodeError, match="empty"):
            await ziik.units.get(3)
        with pytest.raises(DecodeError, match="envelope"):
            await ziik.units.list().collect()


@respx.mock
async def test_the_token_never_reaches_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    respx.get(f"{BASE}/units/1").respond(401, text=f"bad token {TOKEN}")
    caplog.set_level(logging.DEBUG, logger="zigziik")
    async with client() as ziik:
        with pytest.raises(AuthenticationError) as caught:
            await ziik.units.get(1)
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)
    assert TOKEN not in caplog.text


@pytest.mark.both_backends
@respx.mock
async def test_every_request_counts_against_the_budget() -> None:
    respx.get(f"{BASE}/units/1").respond(json={"id": 1})
    budget = DailyBudget(limit=10)
    async with client(budget=budget) as ziik:
        await ziik.units.get(1)
        await ziik.units.get(1)
    assert budget.used == 2 and budget.remaining == 8


async def test_no_budget_is_kept_unless_one_is_given() -> None:
    async with client() as ziik:
        assert ziik.budget is None
