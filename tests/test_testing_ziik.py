"""The fake Ziik units API over real loopback sockets."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from zigziik.testing import FakeZiik, serve

UNIT_KEYS = {
    "id", "name", "description", "image", "relationships", "parent", "selectable", "unit_type",
    "departments", "unit", "delivery", "invoicing", "opening_hours", "features", "permissions",
    "url",
}  # fmt: skip
CHILD_KEYS = UNIT_KEYS - {"parent", "selectable", "unit_type", "departments"}
TOKEN = "static-test-token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[FakeZiik, str]]:
    fake = FakeZiik(depth=3, branching=3, roots=2, token=TOKEN)
    with serve(fake.app) as origin:
        yield fake, origin


def client(origin: str, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=origin, headers=headers, timeout=5.0)


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_login_renew_and_expiry() -> None:
    clock = FakeClock()
    fake = FakeZiik(units=5, clock=clock, token_lifetime=600)
    with serve(fake.app) as origin:
        async with client(origin, token=None) as http:
            assert (await http.get("/api/units")).status_code == 401
            bad = await http.post("/api/authenticate", json={"username": "demo", "password": "x"})
            assert bad.status_code == 401
            login = await http.post(
                "/api/authenticate", json={"username": "demo", "password": "demo-password"}
            )
            assert login.status_code == 200
            [grant] = login.json()
            assert set(grant) == {"jwt", "expires"}
            assert grant["expires"] == int(clock.now) + 600 and grant["jwt"].count(".") == 2
            first = {"Authorization": f"Bearer {grant['jwt']}"}
            assert (await http.get("/api/units", headers=first)).status_code == 200

            renewed = await http.post("/api/renew", headers=first)
            assert renewed.status_code == 200
            [second_grant] = renewed.json()
            assert second_grant["jwt"] != grant["jwt"]
            second = {"Authorization": f"Bearer {second_grant['jwt']}"}
            assert (await http.get("/api/units", headers=first)).status_code == 401
            assert (await http.post("/api/renew", headers=first)).status_code == 401
            assert (await http.get("/api/units", headers=second)).status_code == 200

            clock.now += 601
            assert (await http.get("/api/units", headers=second)).status_code == 401
            assert (await http.post("/api/renew", headers=second)).status_code == 401
            assert (await http.post("/api/renew")).status_code == 401
    assert (fake.logins, fake.renewals) == (1, 1)


@pytest.mark.anyio
async def test_non_ascii_credentials_and_tokens() -> None:
    fake = FakeZiik(units=2, username="søren", password="blåbærgrød", token="æøå")
    transport = httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ziik.test") as http:
        ok = await http.post(
            "/api/authenticate", json={"username": "søren", "password": "blåbærgrød"}
        )
        wrong = await http.post(
            "/api/authenticate", json={"username": "søren", "password": "blåbær"}
        )
        odd_token = await http.get("/api/units", headers={"Authorization": b"Bearer \xe6\xf8"})
    assert ok.status_code == 200 and wrong.status_code == 401
    assert odd_token.status_code == 401
    assert fake.token_valid("æøå")


@pytest.mark.anyio
async def test_static_token(shared: tuple[FakeZiik, str]) -> None:
    _, origin = shared
    async with client(origin) as http:
        assert (await http.get("/api/units/12")).status_code == 200
    async with client(origin, token="nope") as http:
        response = await http.get("/api/units/12")
        assert response.status_code == 401
        assert response.json() == {"message": "Unauthenticated."}


# -- reading ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_units_list_shape_and_quirks(shared: tuple[FakeZiik, str]) -> None:
    fake, origin = shared
    async with client(origin) as http:
        units = (await http.get("/api/units")).json()
    assert isinstance(units, list)
    assert [u["id"] for u in units] == fake.unit_ids
    assert len(units) == 2 + 6 + 18 + 54
    for unit in units:
        assert set(unit) == UNIT_KEYS
        assert unit["url"] == f"api/units/{unit['id']}"
        if unit["id"] in fake.top_level_ids:
            assert unit["parent"] is None
        else:
            parent = unit["parent"]
            assert set(parent) == {"id", "leaf", "level", "name", "url"}
            assert parent["id"] == fake.parent_id(unit["id"])
            assert parent["level"] == fake.depth_of(unit["id"]) - 1
        for day in unit["opening_hours"]["office_hours"]:
            assert isinstance(day["day"], str) and day["starthours"].isdigit()
        for period in unit["opening_hours"]["closed"]:
            assert isinstance(period["start"], int)
    assert {type(u["unit_type"]) for u in units} == {int, str}
    assert {repr(u["relationships"]) for u in units} == {"{}", "[]", "None"}
    assert any("contact" in u["delivery"] for u in units)
    assert any("contacts" in u["delivery"] for u in units)
    assert any(u["image"] for u in units) and any(u["image"] == [] for u in units)
    assert any(u["departments"] for u in units)
    assert any(u["features"] for u in units)


@pytest.mark.anyio
async def test_get_unit_children_and_404(shared: tuple[FakeZiik, str]) -> None:
    fake, origin = shared
    top = fake.top_level_ids[0]
    async with client(origin) as http:
        unit = (await http.get(f"/api/units/{top}")).json()
        children = (await http.get(f"/api/units/{top}/children")).json()
        leaf = fake.descendant_ids(top)[-1]
        leaf_children = (await http.get(f"/api/units/{leaf}/children")).json()
        missing = await http.get("/api/units/999999")
        missing_children = await http.get("/api/units/999999/children")
        not_a_number = await http.get("/api/units/abc")
    assert unit == fake.unit(top) | {
        "image": unit["image"],  # file links are absolute in answers
    }
    assert unit["parent"] is None
    assert [c["id"] for c in children] == fake.children_ids(top)
    assert all(set(c) == CHILD_KEYS and c["relationships"] is None for c in children)
    assert leaf_children == []
    assert missing.status_code == missing_children.status_code == not_a_number.status_code == 404


@pytest.mark.anyio
async def test_user_filter(shared: tuple[FakeZiik, str]) -> None:
    fake, origin = shared
    async with client(origin) as http:
        mine = (await http.get("/api/units", params={"user": "true"})).json()
        everything = (await http.get("/api/units", params={"user": "false"})).json()
    expected = [fake.user_unit_id, *fake.descendant_ids(fake.user_unit_id)]
    assert sorted(u["id"] for u in mine) == sorted(expected)
    assert len(everything) == len(fake.unit_ids)


@pytest.mark.anyio
@pytest.mark.parametrize("links_style", ["absolute", "relative"])
async def test_envelope_paging(links_style: Any) -> None:
    fake = FakeZiik(
        units=60, branching=5, token=TOKEN, envelope=True, page_size=25, links_style=links_style
    )
    with serve(fake.app) as origin:
        async with client(origin) as http:
            seen: list[int] = []
            url: str | None = "/api/units"
            pages = 0
            while url is not None:
                body = (await http.get(url)).json()
                assert set(body) == {"data", "links", "meta"}
                assert set(body["links"]) == {"first", "last", "prev", "next"}
                assert body["meta"]["total"] == 60 and body["meta"]["per_page"] == 25
                seen += [u["id"] for u in body["data"]]
                url = body["links"]["next"]
                if url is not None:
                    assert url.startswith(
                        origin + "/api/units?" if links_style == "absolute" else "/api/units?"
                    )
                pages += 1
                assert pages < 10
            single = (await http.get(f"/api/units/{seen[0]}")).json()
            small = (
                await http.get("/api/units", params={"limit": 7, "page": 2, "user": "false"})
            ).json()
            top = fake.top_level_ids[0]
            children = (await http.get(f"/api/units/{top}/children", params={"limit": 2})).json()
    assert seen == fake.unit_ids and pages == 3
    assert set(single) == {"data"} and single["data"]["id"] == seen[0]
    assert [u["id"] for u in small["data"]] == fake.unit_ids[7:14]
    assert small["meta"]["current_page"] == 2 and small["links"]["prev"] is not None
    assert "user=false" in small["links"]["next"]
    assert [u["id"] for u in children["data"]] == fake.children_ids(top)[:2]
    assert children["meta"]["total"] == 5


# -- writing ---------------------------------------------------------------------------------


@pytest.fixture
def writable() -> Iterator[tuple[FakeZiik, str]]:
    fake = FakeZiik(depth=2, branching=2, token=TOKEN)
    with serve(fake.app) as origin:
        yield fake, origin


@pytest.mark.anyio
async def test_create_unit(writable: tuple[FakeZiik, str]) -> None:
    fake, origin = writable
    parent = fake.top_level_ids[0]
    body = {
        "name": "Butik Esbjerg",
        "parent": parent,
        "unit_type": 2,
        "unit": {"street": "Torvet 1", "city": "Esbjerg"},
        "opening_hours": {
            "office_hours": [{"day": 1, "starthours": 900, "endhours": 1730}],
            "closed": [{"start": 1_700_000_000, "end": 1_700_086_400}],
        },
        "features": [175],
    }
    async with client(origin) as http:
        response = await http.post("/api/units", json=body)
        assert response.status_code == 201
        assert response.json() == {"message": "Unit created"}
        location = response.headers["location"]
        assert location.startswith(origin + "/api/units/")
        new_id = int(location.rsplit("/", 1)[1])
        created = (await http.get(location)).json()
        children = (await http.get(f"/api/units/{parent}/children")).json()
        no_name = await http.post("/api/units", json={"parent": parent})
        no_parent = await http.post("/api/units", json={"name": "X"})
        bad_parent = await http.post("/api/units", json={"name": "X", "parent": 999_999})
        bad_hours = await http.post(
            "/api/units",
            json={"name": "X", "parent": parent, "opening_hours": {"office_hours": [{"day": "1"}]}},
        )
    assert created["name"] == "Butik Esbjerg" and created["parent"]["id"] == parent
    assert created["unit_type"] == 2 and created["unit"]["city"] == "Esbjerg"
    assert created["opening_hours"]["office_hours"] == [
        {"day": "1", "starthours": "900", "endhours": "1730"}
    ]
    assert created["features"][0]["id"] == 175
    assert new_id in [c["id"] for c in children]
    for bad in (no_name, no_parent, bad_parent, bad_hours):
        assert bad.status_code == 422
        assert set(bad.json()) == {"message", "errors"}


@pytest.mark.anyio
async def test_patch_changes_only_the_keys_sent(writable: tuple[FakeZiik, str]) -> None:
    fake, origin = writable
    unit_id = fake.descendant_ids(fake.top_level_ids[0])[0]
    before = fake.unit(unit_id)
    async with client(origin) as http:
        response = await http.patch(
            f"/api/units/{unit_id}", json={"name": "Nyt navn", "description": None}
        )
        assert response.status_code == 204 and response.content == b""
        after = fake.unit(unit_id)
        moved = await http.patch(f"/api/units/{unit_id}", json={"unit": {"city": "Odense C"}})
        merged = fake.unit(unit_id)
        to_own_child = await http.patch(
            f"/api/units/{unit_id}", json={"parent": fake.children_ids(unit_id)[0]}
        )
        bad_type = await http.patch(f"/api/units/{unit_id}", json={"unit_type": "group"})
        missing = await http.patch("/api/units/999999", json={"name": "x"})
        to_top = await http.patch(f"/api/units/{unit_id}", json={"parent": None})
    assert after["name"] == "Nyt navn" and after["description"] is None
    assert {k: v for k, v in after.items() if k not in ("name", "description")} == {
        k: v for k, v in before.items() if k not in ("name", "description")
    }
    assert moved.status_code == 204
    assert merged["unit"]["city"] == "Odense C"
    assert merged["unit"]["street"] == before["unit"]["street"]
    assert to_own_child.status_code == 422 and bad_type.status_code == 422
    assert missing.status_code == 404
    assert to_top.status_code == 204 and fake.parent_id(unit_id) is None
    assert unit_id in fake.top_level_ids


@pytest.mark.anyio
async def test_delete_and_wrong_methods(writable: tuple[FakeZiik, str]) -> None:
    fake, origin = writable
    unit_id = fake.descendant_ids(fake.top_level_ids[0])[0]
    below = fake.descendant_ids(unit_id)
    async with client(origin) as http:
        assert (await http.delete(f"/api/units/{unit_id}")).status_code == 204
        assert (await http.get(f"/api/units/{unit_id}")).status_code == 404
        assert (await http.delete(f"/api/units/{unit_id}")).status_code == 404
        put = await http.put(f"/api/units/{fake.top_level_ids[0]}", json={})
        get_image = await http.get("/api/units/image")
        delete_all = await http.delete("/api/units")
    assert not set(below) & set(fake.unit_ids)
    assert put.status_code == get_image.status_code == delete_all.status_code == 405
    assert set(put.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PATCH", "DELETE"}


@pytest.mark.anyio
async def test_images(writable: tuple[FakeZiik, str]) -> None:
    fake, origin = writable
    unit_id = fake.top_level_ids[0]
    data = base64.b64encode(b"\xff\xd8not really\xff\xd9").decode()
    async with client(origin) as http:
        added = await http.post(
            "/api/units/image",
            json={
                "id": unit_id,
                "image": [
                    {"type": "upload", "name": "facade.jpg", "data": data},
                    {
                        "type": "youtube",
                        "name": "Rundvisning",
                        "data": "https://www.youtube.com/embed/x",
                    },
                ],
            },
        )
        assert added.status_code == 204
        images = (await http.get(f"/api/units/{unit_id}")).json()["image"]
        upload = next(i for i in images if i["name"] == "facade.jpg")
        assert upload["size"] == 14 and upload["source"].startswith(origin)
        bad_base64 = await http.post(
            "/api/units/image",
            json={"id": unit_id, "image": [{"type": "upload", "name": "x", "data": "%%%"}]},
        )
        bad_type = await http.post(
            "/api/units/image",
            json={"id": unit_id, "image": [{"type": "ftp", "name": "x", "data": "x"}]},
        )
        unknown_unit = await http.post(
            "/api/units/image",
            json={"id": 999_999, "image": [{"type": "upload", "name": "x", "data": data}]},
        )
        deleted = await http.delete(f"/api/units/{unit_id}/files/{upload['id']}")
        deleted_again = await http.delete(f"/api/units/{unit_id}/files/{upload['id']}")
        remaining = (await http.get(f"/api/units/{unit_id}")).json()["image"]
    assert bad_base64.status_code == bad_type.status_code == 422
    assert unknown_unit.status_code == 404
    assert deleted.status_code == 204 and deleted_again.status_code == 404
    assert upload["id"] not in [i["id"] for i in remaining]
    assert any(i["type"] == "video" for i in remaining)


# -- cycles, latency, concurrency, faults ----------------------------------------------------


@pytest.mark.anyio
async def test_cycle_injection(writable: tuple[FakeZiik, str]) -> None:
    fake, origin = writable
    top = fake.top_level_ids[0]
    leaf = fake.descendant_ids(top)[-1]
    fake.add_cycle(leaf, top)
    async with client(origin) as http:
        children = (await http.get(f"/api/units/{leaf}/children")).json()
    assert [c["id"] for c in children] == [top]
    with pytest.raises(KeyError):
        fake.add_cycle(leaf, 999_999)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_latency_lets_requests_overlap() -> None:
    # A second of latency: all eight must arrive while the first is still held, on a loaded
    # machine too.
    fake = FakeZiik(depth=1, branching=8, token=TOKEN, latency=1.0)
    top = fake.top_level_ids[0]
    children = fake.children_ids(top)
    with serve(fake.app) as origin:
        async with client(origin) as http:
            started = time.monotonic()
            async with anyio.create_task_group() as group:
                for child in children:
                    group.start_soon(http.get, f"/api/units/{child}/children")
            elapsed = time.monotonic() - started
    assert elapsed >= 1.0  # the overlap is shown by the server's counts and timings, not the clock
    assert fake.max_in_flight == len(children)
    starts = [start for start, _ in fake.timings]
    ends = [end for _, end in fake.timings]
    assert all(end is not None for end in ends)
    assert max(starts) < min(e for e in ends if e is not None)
    assert sorted(fake.requests) == sorted(("GET", f"/api/units/{c}/children") for c in children)


@pytest.mark.anyio
async def test_faults_apply_to_ziik_too(writable: tuple[FakeZiik, str]) -> None:
    fake, origin = writable
    fake.faults.fail_next(1, 503, match="/children", retry_after=1)
    fake.faults.truncate_next(match="/api/units")
    async with client(origin) as http:
        failed = await http.get(f"/api/units/{fake.top_level_ids[0]}/children")
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/api/units")
        assert (await http.get("/api/units")).status_code == 200
    assert failed.status_code == 503 and failed.headers["retry-after"] == "1"


@pytest.mark.anyio
async def test_in_process_through_asgi_transport() -> None:
    fake = FakeZiik(units=10, token=TOKEN)
    transport = httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://ziik.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as http:
        units = (await http.get("/api/units")).json()
        created = await http.post("/api/units", json={"name": "Ny", "parent": units[0]["id"]})
    assert len(units) == 10
    assert created.headers["location"] == "http://ziik.test/api/units/" + str(max(fake.unit_ids))


def test_units_cap_and_determinism() -> None:
    assert len(FakeZiik(units=7).unit_ids) == 7
    assert len(FakeZiik(depth=2, branching=4, roots=3).unit_ids) == 3 + 12 + 48
    assert FakeZiik(seed=5).unit(12) == FakeZiik(seed=5).unit(12)
