"""A stateful fake of Ziik's units API (a hierarchy of offices and departments)."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._checks import is_int
from ._base import FakeServer

__all__ = ["FakeZiik"]

_Handler = Callable[[Request], Awaitable[Response]]

_REGIONS = ["Hovedstaden", "Sjælland", "Syddanmark", "Midtjylland", "Nordjylland"]
_CITIES = [
    ("1358", "København K"),
    ("8000", "Aarhus C"),
    ("5000", "Odense C"),
    ("9000", "Aalborg"),
    ("6000", "Kolding"),
    ("4000", "Roskilde"),
    ("7100", "Vejle"),
    ("2800", "Kongens Lyngby"),
    ("8600", "Silkeborg"),
    ("3000", "Helsingør"),
    ("6700", "Esbjerg"),
    ("8900", "Randers"),
]
_STREETS = [
    "Nørre Voldgade",
    "Vestergade",
    "Søndergade",
    "Algade",
    "Østergade",
    "Havnevej",
    "Industrivej",
    "Banegårdspladsen",
    "Kongensgade",
    "Torvet",
]
_DEPARTMENTS = [
    "Salg",
    "Service",
    "Lager",
    "Kundeservice",
    "Marketing",
    "Økonomi",
    "IT",
    "Kantine",
    "Værksted",
    "HR",
]
_FEATURES = {
    175: "Firstline support",
    178: "Secondline support",
    180: "Kantine",
    181: "Parkering",
    190: "Ladestander til elbil",
}
_CONTACTS = ["Teodor Trygg", "Mette Holm", "Søren Bæk", "Ida Østergaard", "Jens Kjær"]


def _office_hours(rng: random.Random) -> list[dict[str, str]]:
    start, end = rng.choice([("900", "1700"), ("800", "1600"), ("1000", "1800")])
    days = [{"day": str(d), "starthours": start, "endhours": end} for d in range(1, 6)]
    if rng.random() < 0.3:
        days.append({"day": "6", "starthours": "1000", "endhours": "1400"})
    return days


def _phone(rng: random.Random) -> str:
    return "+45 " + " ".join(f"{rng.randint(10, 99)}" for _ in range(4))


class _ValidationError(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def _methods(handlers: dict[str, _Handler]) -> _Handler:
    """One endpoint for several methods, so that a 405 lists all of them in ``Allow``."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return endpoint


def _message(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class FakeZiik(FakeServer):
    """A fake Ziik units API: a deterministic hierarchy from ``seed``, bearer-token auth.

    The hierarchy has ``roots`` top-level units (``parent: null``), each unit ``branching``
    children, ``depth`` levels below the top; ``units`` caps the total (filled breadth-first).
    Answers are bare JSON (the reference's shapes, PHP quirks included) or, with
    ``envelope=True``, ``{"data", "links", "meta"}`` pages of ``page_size`` (``page``/``limit``
    query parameters; ``links_style`` ``"absolute"`` or ``"relative"``). Children are rendered in
    the reduced shape of the reference's children example (no ``parent``, ``unit_type``,
    ``departments``, ``selectable``; ``relationships: null``) unless ``full_children=True``.

    Log in with ``POST /api/authenticate`` (``username``/``password``) for a JWT valid
    ``token_lifetime`` seconds by ``clock`` (unix time); ``token``, if given, is a static bearer
    token that is always accepted.
    """

    def __init__(
        self,
        *,
        units: int | None = None,
        depth: int = 3,
        branching: int = 3,
        roots: int = 1,
        seed: int = 0,
        token: str | None = None,
        username: str = "demo",
        password: str = "demo-password",
        token_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        envelope: bool = False,
        page_size: int = 25,
        links_style: Literal["absolute", "relative"] = "absolute",
        full_children: bool = False,
        latency: float = 0.0,
    ) -> None:
        self.seed = seed
        self.static_token = token
        self.username = username
        self.password = password
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.envelope = envelope
        self.page_size = page_size
        self.links_style = links_style
        self.full_children = full_children
        self._lock = threading.RLock()
        self._units: dict[int, dict[str, Any]] = {}
        self._parent: dict[int, int | None] = {}
        self._extra_children: dict[int, list[int]] = {}
        self._tokens: dict[str, float] = {}
        self._secret = hashlib.sha256(f"ziik-{seed}".encode()).digest()
        self._jti = 0
        self._next_file_id = 400
        self.logins = 0
        self.renewals = 0
        self._generate(units, depth, branching, roots)
        super().__init__(latency=latency)

    def _build_app(self) -> ASGIApp:
        return self._chain(_BearerAuth(Starlette(routes=_routes(self)), self))

    # -- data --------------------------------------------------------------------------------

    def _generate(self, limit: int | None, depth: int, branching: int, roots: int) -> None:
        rng = random.Random(f"ziik-{self.seed}")
        next_id = 12
        level: list[int | None] = [None]
        for level_number in range(depth + 1):
            following: list[int | None] = []
            per_parent = roots if level_number == 0 else branching
            for parent in level:
                for position in range(per_parent):
                    if limit is not None and len(self._units) >= limit:
                        return
                    unit_id = next_id
                    next_id += rng.randint(1, 9)
                    self._units[unit_id] = self._random_unit(
                        rng, unit_id, level_number, position, parent
                    )
                    self._parent[unit_id] = parent
                    following.append(unit_id)
            level = following

    def _new_file(
        self, name: str, size: int, kind: str = "upload", source: str = ""
    ) -> dict[str, Any]:
        self._next_file_id += 1
        if kind == "upload":
            path = f"/api/file/example/{name}"
            return {
                "id": self._next_file_id,
                "name": name,
                "mime": "image/png" if name.lower().endswith(".png") else "image/jpeg",
                "size": size,
                "type": "image",
                "source": path,
                "versions": {
                    "listing": f"/sites/default/files/example/styles/article_listing/public/{name}",
                    "detail": f"/sites/default/files/example/styles/article_desktop/public/{name}",
                    "thumbnail": f"/api/file/styles/media_thumbnail/private/units/{name}",
                },
            }
        return {
            "id": self._next_file_id,
            "name": name,
            "mime": f"video/{kind}",
            "size": 0,
            "type": "video",
            "source": source,
            "versions": [],  # PHP's empty array for an empty object
        }

    def _random_unit(
        self, rng: random.Random, unit_id: int, level: int, position: int, parent: int | None
    ) -> dict[str, Any]:
        postal_code, city = rng.choice(_CITIES)
        if level == 0:
            name = "Hovedkontor" if position == 0 else f"Datterselskab {city}"
            kind = 1
        elif level == 1:
            name = f"Region {_REGIONS[position % len(_REGIONS)]}"
            kind = 1
        elif level == 2:
            name = f"Butik {city}"
            kind = 0
        else:
            name = f"Afdeling {rng.choice(_DEPARTMENTS)}"
            kind = 2
        street = f"{rng.choice(_STREETS)} {rng.randint(1, 120)}"
        cvr = f"{rng.randint(10_000_000, 99_999_999)}"
        has_cvr = rng.random() < 0.6
        email = f"info{unit_id}@example.dk"
        delivery: dict[str, Any] = {
            "use_unit_address": rng.random() < 0.7,
            "company": None,
            "street": street,
            "street_additional": None,
            "postal_code": postal_code,
            "city": city,
            "phone": _phone(rng),
        }
        if rng.random() < 0.5:
            delivery["contact"] = {"name": None, "phone": None}
        else:
            delivery["contacts"] = [
                {"name": rng.choice(_CONTACTS), "phone": _phone(rng)}
                for _ in range(rng.randint(1, 2))
            ]
        delivery["comments"] = rng.choice([None, None, "Levering via bagindgangen"])
        closed = []
        if rng.random() < 0.5:
            start = 1_473_042_600 + rng.randrange(0, 300) * 86_400
            closed.append({"start": start, "end": start + 91_800})
        return {
            "id": unit_id,
            "name": name,
            "description": rng.choice(["", "", f"{name} i {city}"]),
            "image": (
                [self._new_file(f"unit{unit_id}.jpg", rng.randint(8_000, 90_000))]
                if rng.random() < 0.3
                else []
            ),
            "relationships": rng.choice([{}, [], None]),
            "selectable": True,
            "unit_type": kind if rng.random() < 0.5 else ("department" if kind == 2 else "unit"),
            "unit": {
                "registration_number": cvr if has_cvr else None,
                "vat_number": f"DK{cvr}-01" if has_cvr else None,
                "street": street,
                "street_additional": rng.choice([None, None, "1. sal"]),
                "postal_code": postal_code,
                "city": city,
                "phone": _phone(rng),
                "email": email,
            },
            "delivery": delivery,
            "invoicing": {
                "use_unit_address": has_cvr,
                "registration_number": cvr if has_cvr else None,
                "vat_number": f"DK{cvr}-01" if has_cvr else None,
                "company": None,
                "street": street,
                "street_additional": None,
                "postal_code": postal_code,
                "city": city,
                "comments": None,
            },
            "opening_hours": {"office_hours": _office_hours(rng), "closed": closed},
            "features": [
                {"id": f, "name": _FEATURES[f], "url": f"api/units/features/{f}"}
                for f in sorted(rng.sample(sorted(_FEATURES), rng.randint(0, 2)))
            ],
            "permissions": {"edit": True, "delete": True},
        }

    # -- inspection (thread-safe) -----------------------------------------------------------

    @property
    def unit_ids(self) -> list[int]:
        """Every unit's id, in listing order."""
        with self._lock:
            return list(self._units)

    @property
    def top_level_ids(self) -> list[int]:
        """The ids of the units whose parent is ``null``."""
        with self._lock:
            return [u for u, p in self._parent.items() if p is None]

    @property
    def user_unit_id(self) -> int:
        """The demo user's unit: what ``?user=true`` lists, with everything below it."""
        with self._lock:
            first = next(iter(self._units))
            return next((u for u, p in self._parent.items() if p == first), first)

    def unit(self, unit_id: int) -> dict[str, Any]:
        """One unit as ``GET /api/units/ID`` renders it (links relative); `KeyError` if unknown."""
        with self._lock:
            return self._render(unit_id, "", "full")

    def parent_id(self, unit_id: int) -> int | None:
        """The unit's parent id (``None`` at the top)."""
        with self._lock:
            return self._parent[unit_id]

    def children_ids(self, unit_id: int) -> list[int]:
        """The ids ``/api/units/ID/children`` lists (injected cycles included)."""
        with self._lock:
            return self._children(unit_id)

    def descendant_ids(self, unit_id: int) -> list[int]:
        """Every unit below ``unit_id`` (real hierarchy only), breadth-first."""
        with self._lock:
            return self._descendants(unit_id)

    def depth_of(self, unit_id: int) -> int:
        """0 for a top-level unit, 1 for its children, and so on."""
        with self._lock:
            depth = 0
            parent = self._parent[unit_id]
            while parent is not None:
                depth += 1
                parent = self._parent[parent]
            return depth

    def add_cycle(self, child_id: int, ancestor_id: int) -> None:
        """Make ``ancestor_id`` also appear among ``child_id``'s children (a cycle)."""
        with self._lock:
            if child_id not in self._units or ancestor_id not in self._units:
                raise KeyError("unknown unit")
            self._extra_children.setdefault(child_id, []).append(ancestor_id)

    def expire_tokens(self) -> None:
        """Make every issued JWT invalid (the static ``token`` stays valid)."""
        with self._lock:
            self._tokens.clear()

    @property
    def valid_tokens(self) -> list[str]:
        """The issued JWTs that are still valid now."""
        with self._lock:
            now = self.clock()
            return [t for t, expires in self._tokens.items() if now < expires]

    def _children(self, unit_id: int) -> list[int]:
        real = [u for u, p in self._parent.items() if p == unit_id]
        extra = [u for u in self._extra_children.get(unit_id, []) if u in self._units]
        return real + extra

    def _descendants(self, unit_id: int) -> list[int]:
        found: list[int] = []
        frontier = [unit_id]
        while frontier:
            frontier = [u for p in frontier for u, q in self._parent.items() if q == p]
            found.extend(frontier)
        return found

    # -- rendering ---------------------------------------------------------------------------

    def _render_file(self, file: dict[str, Any], origin: str) -> dict[str, Any]:
        out = copy.deepcopy(file)
        if out["type"] == "image":
            out["source"] = origin + out["source"]
            out["versions"] = {k: origin + v for k, v in out["versions"].items()}
        return out

    def _render(
        self, unit_id: int, origin: str, shape: Literal["full", "child", "department"]
    ) -> dict[str, Any]:
        stored = self._units[unit_id]
        parent = self._parent[unit_id]
        out: dict[str, Any] = {
            "id": unit_id,
            "name": stored["name"],
            "description": stored["description"],
            "image": [self._render_file(f, origin) for f in stored["image"] or []]
            if stored["image"] is not None
            else None,
            "relationships": copy.deepcopy(stored["relationships"]),
        }
        if shape == "child":
            out["relationships"] = None
        else:
            ref = None
            if parent is not None:
                ref = {
                    "id": parent,
                    "leaf": False,
                    "level": self._level(parent),
                    "name": self._units[parent]["name"],
                    "url": f"api/units/{parent}",
                }
            out["parent"] = ref
            out["selectable"] = stored["selectable"]
            out["unit_type"] = stored["unit_type"]
            out["departments"] = (
                [
                    self._render(c, origin, "department")
                    for c, p in self._parent.items()
                    if p == unit_id and self._units[c]["unit_type"] in (2, "department")
                ]
                if shape == "full"
                else []
            )
        for key in ("unit", "delivery", "invoicing", "opening_hours", "features", "permissions"):
            out[key] = copy.deepcopy(stored[key])
        out["url"] = f"api/units/{unit_id}"
        return out

    def _level(self, unit_id: int) -> int:
        level = 0
        parent = self._parent[unit_id]
        while parent is not None:
            level += 1
            parent = self._parent[parent]
        return level

    def _page(self, request: Request, items: list[Any]) -> Response:
        if not self.envelope:
            return JSONResponse(items)
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            limit = max(1, min(int(request.query_params.get("limit", str(self.page_size))), 1000))
        except ValueError:
            return _message(422, "The given data was invalid.")
        total = len(items)
        last = max(1, -(-total // limit))
        chunk = items[(page - 1) * limit : page * limit]
        base = str(request.base_url).rstrip("/") if self.links_style == "absolute" else ""
        path = base + request.url.path
        keep = {k: v for k, v in request.query_params.items() if k not in ("page", "limit")}

        def link(number: int) -> str:
            query = "&".join(
                [f"{k}={v}" for k, v in keep.items()] + [f"page={number}", f"limit={limit}"]
            )
            return f"{path}?{query}"

        first_index = (page - 1) * limit + 1 if chunk else None
        return JSONResponse(
            {
                "data": chunk,
                "links": {
                    "first": link(1),
                    "last": link(last),
                    "prev": link(page - 1) if 1 < page <= last + 1 else None,
                    "next": link(page + 1) if page < last else None,
                },
                "meta": {
                    "current_page": page,
                    "from": first_index,
                    "last_page": last,
                    "path": path,
                    "per_page": limit,
                    "to": first_index + len(chunk) - 1 if first_index is not None else None,
                    "total": total,
                },
            }
        )

    # -- auth --------------------------------------------------------------------------------

    def _issue(self) -> list[dict[str, Any]]:
        now = self.clock()
        expires = now + self.token_lifetime
        self._jti += 1
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(
            json.dumps(
                {"sub": self.username, "iat": int(now), "exp": int(expires), "jti": self._jti}
            ).encode()
        )
        signing_input = f"{header}.{payload}".encode()
        signature = _b64url(hmac.new(self._secret, signing_input, hashlib.sha256).digest())
        jwt = f"{header}.{payload}.{signature}"
        self._tokens[jwt] = expires
        return [{"jwt": jwt, "expires": int(expires)}]

    def token_valid(self, token: str) -> bool:
        """Whether a bearer token is accepted right now."""
        if self.static_token is not None and _same(token, self.static_token):
            return True
        with self._lock:
            expires = self._tokens.get(token)
            return expires is not None and self.clock() < expires

    @staticmethod
    def _bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    async def _authenticate(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _message(400, "Malformed JSON.")
        if not isinstance(body, dict):
            return _message(400, "Malformed JSON.")
        username, password = body.get("username"), body.get("password")
        if not (isinstance(username, str) and isinstance(password, str)) or not (
            _same(username, self.username) and _same(password, self.password)
        ):
            return _message(401, "Invalid credentials.")
        with self._lock:
            self.logins += 1
            return JSONResponse(self._issue())

    async def _renew(self, request: Request) -> Response:
        token = self._bearer(request)
        if token is None or not self.token_valid(token):
            return _message(401, "Unauthenticated.")
        with self._lock:
            self._tokens.pop(token, None)
            self.renewals += 1
            return JSONResponse(self._issue())

    # -- units -------------------------------------------------------------------------------

    def _origin(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def _list(self, request: Request) -> Response:
        user = request.query_params.get("user", "false").lower() in ("1", "true", "yes")
        origin = self._origin(request)
        with self._lock:
            ids = list(self._units)
            if user:
                top = self.user_unit_id
                allowed = {top, *self._descendants(top)}
                ids = [u for u in ids if u in allowed]
            items = [self._render(u, origin, "full") for u in ids]
        return self._page(request, items)

    async def _get(self, request: Request) -> Response:
        unit_id = request.path_params["unit_id"]
        with self._lock:
            if unit_id not in self._units:
                return _message(404, "Unit not found.")
            unit = self._render(unit_id, self._origin(request), "full")
        return JSONResponse({"data": unit} if self.envelope else unit)

    async def _children_endpoint(self, request: Request) -> Response:
        unit_id = request.path_params["unit_id"]
        shape: Literal["full", "child"] = "full" if self.full_children else "child"
        with self._lock:
            if unit_id not in self._units:
                return _message(404, "Unit not found.")
            origin = self._origin(request)
            items = [self._render(c, origin, shape) for c in self._children(unit_id)]
        return self._page(request, items)

    async def _json_object(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = await request.json()
        except ValueError:
            return _message(400, "Malformed JSON.")
        if not isinstance(body, dict):
            return _message(422, "The given data was invalid.", errors={"body": ["object"]})
        return body

    async def _create(self, request: Request) -> Response:
        body = await self._json_object(request)
        if isinstance(body, Response):
            return body
        with self._lock:
            unit_id = max(self._units, default=0) + 1
            unit = self._blank_unit(unit_id)
            try:
                self._check_create(body)
                self._apply(unit_id, unit, body)
            except _ValidationError as exc:
                return _invalid(exc)
            self._units[unit_id] = unit
            self._parent[unit_id] = body["parent"]
        return JSONResponse(
            {"message": "Unit created"},
            status_code=201,
            headers={"location": f"{self._origin(request)}/api/units/{unit_id}"},
        )

    async def _patch(self, request: Request) -> Response:
        unit_id = request.path_params["unit_id"]
        body = await self._json_object(request)
        if isinstance(body, Response):
            return body
        with self._lock:
            if unit_id not in self._units:
                return _message(404, "Unit not found.")
            unit = copy.deepcopy(self._units[unit_id])
            try:
                self._check_patch(unit_id, body)
                self._apply(unit_id, unit, body)
            except _ValidationError as exc:
                return _invalid(exc)
            self._units[unit_id] = unit
            if "parent" in body:
                self._parent[unit_id] = body["parent"]
        return Response(status_code=204)

    async def _delete(self, request: Request) -> Response:
        unit_id = request.path_params["unit_id"]
        with self._lock:
            if unit_id not in self._units:
                return _message(404, "Unit not found.")
            for gone in [unit_id, *self._descendants(unit_id)]:
                del self._units[gone]
                del self._parent[gone]
                self._extra_children.pop(gone, None)
        return Response(status_code=204)

    async def _add_image(self, request: Request) -> Response:
        body = await self._json_object(request)
        if isinstance(body, Response):
            return body
        with self._lock:
            if is_int(body.get("id")) and body["id"] not in self._units:
                return _message(404, "Unit not found.")
            try:
                if not is_int(body.get("id")):
                    raise _ValidationError({"id": "The id field is required."})  # noqa: TRY301
                if not isinstance(body.get("image"), list) or not body["image"]:
                    raise _ValidationError({"image": "The image field is required."})  # noqa: TRY301
                files = self._files(body["image"])
            except _ValidationError as exc:
                return _invalid(exc)
            unit = self._units[body["id"]]
            unit["image"] = [*(unit["image"] or []), *files]
        return Response(status_code=204)

    async def _delete_file(self, request: Request) -> Response:
        unit_id, file_id = request.path_params["unit_id"], request.path_params["file_id"]
        with self._lock:
            unit = self._units.get(unit_id)
            if unit is None:
                return _message(404, "Unit not found.")
            files = unit["image"] or []
            if not any(f["id"] == file_id for f in files):
                return _message(404, "File not found.")
            unit["image"] = [f for f in files if f["id"] != file_id]
        return Response(status_code=204)

    # -- request bodies ------------------------------------------------------------------------

    def _check_create(self, body: dict[str, Any]) -> None:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise _ValidationError({"name": "The name field is required."})
        if not is_int(body.get("parent")):
            raise _ValidationError({"parent": "The parent field is required."})
        if body["parent"] not in self._units:
            raise _ValidationError({"parent": "The selected parent is invalid."})

    def _check_patch(self, unit_id: int, body: dict[str, Any]) -> None:
        if "name" in body and (not isinstance(body["name"], str) or not body["name"]):
            raise _ValidationError({"name": "The name must be a non-empty string."})
        if "parent" in body:
            parent = body["parent"]
            if parent is not None and (
                not is_int(parent)
                or parent not in self._units
                or parent == unit_id
                or parent in self._descendants(unit_id)
            ):
                raise _ValidationError({"parent": "The selected parent is invalid."})

    def _blank_unit(self, unit_id: int) -> dict[str, Any]:
        address = {"street": None, "street_additional": None, "postal_code": None, "city": None}
        return {
            "id": unit_id,
            "name": "",
            "description": "",
            "image": [],
            "relationships": [],
            "selectable": True,
            "unit_type": 0,
            "unit": {
                "registration_number": None,
                "vat_number": None,
                **address,
                "phone": None,
                "email": None,
            },
            "delivery": {
                "use_unit_address": True,
                "company": None,
                **address,
                "phone": None,
                "contact": {"name": None, "phone": None},
                "comments": None,
            },
            "invoicing": {
                "use_unit_address": True,
                "registration_number": None,
                "vat_number": None,
                "company": None,
                **address,
                "comments": None,
            },
            "opening_hours": {"office_hours": [], "closed": []},
            "features": [],
            "permissions": {"edit": True, "delete": True},
        }

    def _files(self, specs: Any) -> list[dict[str, Any]]:
        files = []
        if not isinstance(specs, list):
            raise _ValidationError({"image": "The image must be an array."})
        for index, spec in enumerate(specs):
            key = f"image.{index}"
            if not isinstance(spec, dict):
                raise _ValidationError({key: "Each image must be an object."})
            kind, name, data = spec.get("type"), spec.get("name"), spec.get("data")
            if kind not in ("upload", "youtube", "vimeo"):
                raise _ValidationError(
                    {f"{key}.type": "The type must be upload, youtube or vimeo."}
                )
            if not isinstance(name, str) or not name:
                raise _ValidationError({f"{key}.name": "The name field is required."})
            if not isinstance(data, str) or not data:
                raise _ValidationError({f"{key}.data": "The data field is required."})
            if kind == "upload":
                try:
                    raw = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    raise _ValidationError({f"{key}.data": "The data must be base64."}) from None
                files.append(self._new_file(name, len(raw)))
            else:
                if not data.startswith(("https://", "http://")):
                    raise _ValidationError({f"{key}.data": "The data must be an embed URL."})
                files.append(self._new_file(name, 0, kind, data))
        return files

    def _apply(self, unit_id: int, unit: dict[str, Any], body: dict[str, Any]) -> None:
        """Apply the keys present in a create/patch body to ``unit`` (validating each)."""
        if "name" in body:
            unit["name"] = body["name"]
        if "description" in body:
            if body["description"] is not None and not isinstance(body["description"], str):
                raise _ValidationError({"description": "The description must be a string."})
            unit["description"] = body["description"]
        if "unit_type" in body:
            value = body["unit_type"]
            if value is not None and (not is_int(value) or value not in (0, 1, 2)):
                raise _ValidationError({"unit_type": "The unit type must be 0, 1 or 2."})
            unit["unit_type"] = value
        for block in ("unit", "delivery", "invoicing"):
            if block in body:
                value = body[block]
                if value is None:
                    unit[block] = None
                elif not isinstance(value, dict):
                    raise _ValidationError({block: f"The {block} must be an object."})
                else:
                    merged = dict(unit[block] or {})
                    merged.update(copy.deepcopy(value))
                    if block == "delivery" and "contacts" in value and "contact" not in value:
                        merged.pop("contact", None)
                    if block == "delivery" and "contact" in value and "contacts" not in value:
                        merged.pop("contacts", None)
                    unit[block] = merged
        if "features" in body:
            value = body["features"]
            if value is None:
                unit["features"] = []
            elif not isinstance(value, list) or not all(is_int(f) for f in value):
                raise _ValidationError({"features": "The features must be a list of ids."})
            else:
                unit["features"] = [
                    {
                        "id": f,
                        "name": _FEATURES.get(f, f"Feature {f}"),
                        "url": f"api/units/features/{f}",
                    }
                    for f in value
                ]
        if "image" in body:
            unit["image"] = [] if body["image"] is None else self._files(body["image"])
        if "opening_hours" in body:
            unit["opening_hours"] = _opening_hours(body["opening_hours"])


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two strings of any characters."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _opening_hours(value: Any) -> dict[str, Any] | None:
    """Validate request opening hours (ints) and store them as the API renders them (strings)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _ValidationError({"opening_hours": "The opening hours must be an object."})
    office_hours = []
    for index, day in enumerate(value.get("office_hours") or []):
        if not isinstance(day, dict) or not all(
            is_int(day.get(k)) for k in ("day", "starthours", "endhours")
        ):
            raise _ValidationError(
                {f"opening_hours.office_hours.{index}": "day/starthours/endhours"}
            )
        if not 1 <= day["day"] <= 7 or not all(
            0 <= day[k] <= 2400 and day[k] % 100 < 60 for k in ("starthours", "endhours")
        ):
            raise _ValidationError({f"opening_hours.office_hours.{index}": "out of range"})
        office_hours.append({k: str(day[k]) for k in ("day", "starthours", "endhours")})
    closed = []
    for index, period in enumerate(value.get("closed") or []):
        if not isinstance(period, dict) or not all(is_int(period.get(k)) for k in ("start", "end")):
            raise _ValidationError({f"opening_hours.closed.{index}": "start/end unix times"})
        closed.append({"start": period["start"], "end": period["end"]})
    return {"office_hours": office_hours, "closed": closed}


def _invalid(exc: _ValidationError) -> Response:
    return _message(
        422,
        "The given data was invalid.",
        errors={key: [text] for key, text in exc.errors.items()},
    )


class _BearerAuth:
    """401 unless a valid bearer token is sent (except to authenticate and renew)."""

    _OPEN = ("/api/authenticate", "/api/renew")

    def __init__(self, app: ASGIApp, fake: FakeZiik) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") not in self._OPEN:
            header = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not self.fake.token_valid(token.strip()):
                response = _message(401, "Unauthenticated.")
                response.headers["www-authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _routes(fake: FakeZiik) -> list[Route]:
    return [
        Route("/api/authenticate", fake._authenticate, methods=["POST"]),
        Route("/api/renew", fake._renew, methods=["POST"]),
        Route(
            "/api/units",
            _methods({"GET": fake._list, "POST": fake._create}),
            methods=["GET", "POST"],
        ),
        Route("/api/units/image", fake._add_image, methods=["POST"]),
        Route(
            "/api/units/{unit_id:int}",
            _methods({"GET": fake._get, "PATCH": fake._patch, "DELETE": fake._delete}),
            methods=["GET", "PATCH", "DELETE"],
        ),
        Route("/api/units/{unit_id:int}/children", fake._children_endpoint, methods=["GET"]),
        Route(
            "/api/units/{unit_id:int}/files/{file_id:int}", fake._delete_file, methods=["DELETE"]
        ),
    ]
