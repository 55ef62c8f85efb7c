"""A stateful fake of the Zigna v2 API (orders and their pictures), as a Starlette app."""

from __future__ import annotations

import copy
import math
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._checks import is_int
from ._base import FakeServer
from ._files import (
    CONTENT_TYPES,
    FileKind,
    GeneratedFile,
    ZipEntry,
    crc32_of,
    image_size,
    sniff_content_type,
    zip_chunks,
    zip_length,
)

__all__ = ["DEMO_API_KEY", "EMPTY_DATE", "HOSTILE_NAMES", "ORDER_STATUSES", "FakeZigna"]

DEMO_API_KEY = "5a1d2c3e-7b8f-4a6d-9e0c-1f2a3b4c5d6e"
"""The API key `FakeZigna` accepts unless told otherwise (a GUID, as Zigna's keys are)."""

EMPTY_DATE = "0001-01-01T00:00:00"
""".NET's ``DateTime.MinValue``: what Zigna sends for a date that is not set."""

ORDER_STATUSES: dict[int, str] = {
    1: "New order",
    2: "Booked",
    4: "Photos uploaded for editing",
    5: "Order is completed and photos are ready",
    6: "Pending",
    50: "Season update",
}

HOSTILE_NAMES: tuple[str, ...] = (
    "../../etc/passwd.jpg",
    "..\\..\\windows\\win.ini.jpg",
    "C:\\evil\\x.jpg",
    "/etc/cron.d/evil.jpg",
    "con.jpg",
    "nul\x00byte.jpg",
    "line\r\nbreak\tand\x1bescape.jpg",
    "A" * 296 + ".jpg",
    "noextension",
    "..",
    "",
    "sub/dir/picture.jpg",
    "Ærø Strandvej 12 \u2014 stue.jpg",
    ".hidden.jpg",
    "trailing-dot.jpg.",
)
"""File names `FakeZigna(hostile_names=True)` hands out (plus two pictures named IMG_0001.jpg)."""

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"

_PACKAGES: list[dict[str, Any]] = [
    {
        "id": "BASIS",
        "name": "Basispakke",
        "price": 1495.0,
        "products": ["Fotografering, 12 billeder", "Plantegning 2D"],
        "extras": ["DRONE", "NIGHT", "HOMESTYLING"],
    },
    {
        "id": "STANDARD",
        "name": "Standardpakke",
        "price": 2495.5,
        "products": ["Fotografering, 20 billeder", "Plantegning 2D", "Salgstekst"],
        "extras": ["DRONE", "NIGHT", "FLOORPLAN3D", "VIDEO", "HOMESTYLING"],
    },
    {
        "id": "PREMIUM",
        "name": "Premiumpakke",
        "price": 3995.75,
        "products": [
            "Fotografering, 30 billeder",
            "Plantegning 2D og 3D",
            "Salgstekst",
            "Dronefoto, 5 billeder",
        ],
        "extras": ["NIGHT", "VIDEO", "TOUR360", "HOMESTYLING"],
    },
]

_EXTRA_PRODUCTS: list[dict[str, Any]] = [
    {
        "id": "DRONE",
        "name": "Dronefoto",
        "description": "Luftfoto med drone, 5 billeder",
        "price": 895.0,
    },
    {"id": "NIGHT", "name": "Aftenfoto", "description": "Facadefoto i skumringen", "price": 695.5},
    {
        "id": "FLOORPLAN3D",
        "name": "3D-plantegning",
        "description": "Plantegning i 3D",
        "price": 795.25,
    },
    {
        "id": "VIDEO",
        "name": "Videorundvisning",
        "description": "Video på 60-90 sekunder",
        "price": 1995.0,
    },
    {
        "id": "TOUR360",
        "name": "360° rundvisning",
        "description": "Virtuel rundvisning",
        "price": 1495.5,
    },
    {
        "id": "HOMESTYLING",
        "name": "Virtuel homestyling",
        "description": "Møblering af op til 3 rum",
        "price": 1200.0,
    },
]

_HOUSING_TYPES: list[dict[str, Any]] = [
    {"id": 1, "name": "Villa"},
    {"id": 2, "name": "Rækkehus"},
    {"id": 3, "name": "Ejerlejlighed"},
    {"id": 4, "name": "Fritidshus"},
    {"id": 5, "name": "Andelsbolig"},
    {"id": 6, "name": "Landejendom"},
    {"id": 7, "name": "Villalejlighed"},
]

_FIRST = [
    "Mette",
    "Søren",
    "Anders",
    "Line",
    "Jens",
    "Hanne",
    "Mads",
    "Camilla",
    "Rasmus",
    "Louise",
    "Niels",
    "Kirsten",
    "Frederik",
    "Ida",
    "Jørgen",
    "Birgitte",
    "Åse",
    "Bo",
]
_LAST = [
    "Jensen",
    "Nielsen",
    "Hansen",
    "Pedersen",
    "Andersen",
    "Christensen",
    "Larsen",
    "Sørensen",
    "Rasmussen",
    "Jørgensen",
    "Madsen",
    "Kristensen",
    "Østergaard",
    "Bæk",
]
_STREETS = [
    "Strandvejen",
    "Vesterbrogade",
    "Nørrebrogade",
    "Østerbrogade",
    "Jagtvej",
    "Amagerbrogade",
    "Frederiksberg Allé",
    "Algade",
    "Søndergade",
    "Bredgade",
    "Havnegade",
    "Kongevejen",
    "Skovvej",
    "Birkevej",
    "Egevej",
    "Æblehaven",
]
_CITIES = [
    ("2100", "København Ø"),
    ("2200", "København N"),
    ("1358", "København K"),
    ("8000", "Aarhus C"),
    ("5000", "Odense C"),
    ("9000", "Aalborg"),
    ("2800", "Kongens Lyngby"),
    ("4000", "Roskilde"),
    ("6000", "Kolding"),
    ("7100", "Vejle"),
    ("3000", "Helsingør"),
    ("8600", "Silkeborg"),
    ("2900", "Hellerup"),
]
_WISHES = [
    "Husk billeder af haven",
    "Sælger er hjemme efter kl. 16",
    "Fokus på køkken og bad",
    "Nøglen ligger i postkassen",
    "Ring til sælger inden besøget",
    "",
    "Solnedgang over fjorden, hvis vejret tillader det",
]
_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa"})


def _fmt(moment: datetime | None) -> str:
    return EMPTY_DATE if moment is None else moment.strftime(_TIME_FORMAT)


def _phone(rng: random.Random) -> str:
    return " ".join(f"{rng.randint(10, 99)}" for _ in range(4))


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    email = f"{first}.{last}@example.dk".translate(_ASCII).lower()
    return f"{first} {last}", email


@dataclass
class _Picture:
    id: int
    order_id: str
    name: str
    content_type: str
    width: int
    height: int
    generated: GeneratedFile | None = None
    data: bytes | None = None
    crc: int | None = None

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.generated is not None
        return self.generated.size

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, len(view), 64 * 1024):
                yield bytes(view[start : start + 64 * 1024])
            return
        assert self.generated is not None
        yield from self.generated.chunks()

    def listing(self, origin: str) -> dict[str, Any]:
        return {
            "pictureID": self.id,
            "originalFileName": self.name,
            "link": f"{origin}/v2/orders/{self.order_id}/pictures/{self.id}",
            "size": self.size,
            "width": self.width,
            "height": self.height,
        }


@dataclass
class _Order:
    data: dict[str, Any]
    pictures: list[_Picture] = field(default_factory=list)


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _int_range(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    low, high = value
    if low > high:
        raise ValueError(f"bad range {value!r}")
    return low, high


class FakeZigna(FakeServer):
    """A fake Zigna v2 server: deterministic orders and real picture files, from ``seed``.

    Serve ``fake.app`` with `serve` (or use it through ``httpx.ASGITransport``); point a client
    at ``origin + "/v2"``. Orders in status 1, 2 and 6 have no pictures (their zip answers 204);
    the others have ``pictures_per_order`` pictures: JPEGs, a PDF floor plan in every third order
    and one SWF tour. ``picture_size`` is bytes per picture (an int or a (min, max) range).

    With ``daily_limit`` set every request counts against it and answers carry
    ``X-RateLimit-*`` headers (``Reset`` in seconds until the window of ``reset_period`` seconds
    ends, measured by ``clock``); when it is spent the answer is 429 with ``Retry-After``.
    ``daily_limit=None`` behaves like today's beta API: no limit, no headers.
    """

    def __init__(
        self,
        *,
        api_key: str = DEMO_API_KEY,
        orders: int = 12,
        pictures_per_order: int | tuple[int, int] = (3, 8),
        picture_size: int | tuple[int, int] = (40_000, 250_000),
        seed: int = 0,
        daily_limit: int | None = 2000,
        clock: Callable[[], float] = time.monotonic,
        reset_period: float = 86_400.0,
        page_size_max: int = 100,
        hostile_names: bool = False,
        latency: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.seed = seed
        self.daily_limit = daily_limit
        self.clock = clock
        self.reset_period = reset_period
        self.page_size_max = page_size_max
        self.hostile_names = hostile_names
        self._pictures_per_order = _int_range(pictures_per_order)
        self._picture_size = _int_range(picture_size)
        self._lock = threading.RLock()
        self._orders: dict[str, _Order] = {}
        self._next_picture_id = 0
        self._next_order_number = 0
        self._used = 0
        self._rejected = 0
        self._reset_at = clock() + reset_period
        self._generate(orders)
        super().__init__(latency=latency)

    # -- data ------------------------------------------------------------------------------

    def _generate(self, count: int) -> None:
        rng = random.Random(f"zigna-{self.seed}")
        self._next_order_number = 240_000 + rng.randrange(0, 9_000) * 10
        self._next_picture_id = 7_000_000 + rng.randrange(0, 90_000) * 10
        base = datetime(2024, 1, 8, 9, 0, 0) + timedelta(days=rng.randrange(0, 200))
        recent = math.floor(count * 0.15)
        swf_given = False
        for index in range(count):
            created = base + timedelta(
                days=3 * index + rng.randint(0, 2), minutes=rng.randrange(0, 600)
            )
            if index >= count - recent:
                status = rng.choice([1, 2])
            else:
                status = rng.choice([5, 5, 5, 5, 5, 5, 4, 4, 50, 6])
            package = rng.choice(_PACKAGES)
            extras = rng.sample(package["extras"], rng.randint(0, 2))
            order = self._new_order_data(
                rng,
                created=created,
                status=status,
                package=package,
                extras=extras,
                home_type=rng.choice(_HOUSING_TYPES)["name"],
            )
            pictures: list[_Picture] = []
            if status in (4, 5, 50):
                wanted = rng.randint(*self._pictures_per_order)
                for position in range(wanted):
                    kind: FileKind = "jpeg"
                    name = f"IMG_{4000 + index * 40 + position:04d}.jpg"
                    if not swf_given and position == 1:
                        kind, name, swf_given = "swf", "Rundvisning.swf", True
                    elif index % 3 == 1 and position == wanted - 1 and wanted > 1:
                        kind, name = "pdf", "Plantegning.pdf"
                    pictures.append(self._generated_picture(rng, order["id"], name, kind))
            self._orders[order["id"]] = _Order(order, pictures)
        if self.hostile_names:
            self._apply_hostile_names()

    def _generated_picture(
        self, rng: random.Random, order_id: str, name: str, kind: FileKind
    ) -> _Picture:
        low, high = self._picture_size
        file = GeneratedFile(
            kind,
            rng.randint(low, high),
            seed=rng.randrange(2**32),
            portrait=rng.random() < 0.2,
            title=f"Plantegning, ordre {order_id}",
        )
        width, height = file.dimensions
        if kind == "pdf":
            width, height = 0, 0
        return _Picture(
            self._new_picture_id(), order_id, name, CONTENT_TYPES[kind], width, height, file
        )

    def _apply_hostile_names(self) -> None:
        pictures = [p for o in self._orders.values() for p in o.pictures if p.generated]
        jpegs = [p for p in pictures if p.content_type == "image/jpeg"]
        by_order: dict[str, list[_Picture]] = {}
        for picture in jpegs:
            by_order.setdefault(picture.order_id, []).append(picture)
        twins = next((ps[:2] for ps in by_order.values() if len(ps) >= 2), [])
        for picture in twins:
            picture.name = "IMG_0001.jpg"
        rest = [p for p in jpegs if p not in twins]
        # Spread the hostile names over the orders: one per order first, then round again.
        rest.sort(key=lambda p: (by_order[p.order_id].index(p), p.id))
        for picture, name in zip(rest, HOSTILE_NAMES, strict=False):
            picture.name = name

    def _new_picture_id(self) -> int:
        self._next_picture_id += 1 + (self._next_picture_id % 3)
        return self._next_picture_id

    def _new_order_id(self) -> str:
        self._next_order_number += 7
        return str(self._next_order_number)

    def _new_order_data(
        self,
        rng: random.Random,
        *,
        created: datetime,
        status: int,
        package: dict[str, Any],
        extras: list[str],
        home_type: str,
    ) -> dict[str, Any]:
        booked = taken = finished = None
        if status != 1:
            booked = (created + timedelta(days=rng.randint(1, 4))).replace(
                hour=rng.randint(8, 15), minute=rng.choice([0, 15, 30, 45]), second=0
            )
        if status in (4, 5, 50) and booked is not None:
            taken = booked + timedelta(minutes=rng.randint(30, 120))
        if status in (5, 50) and taken is not None:
            finished = taken + timedelta(days=rng.randint(1, 2), hours=rng.randint(0, 6))
        extra_products = [p for p in _EXTRA_PRODUCTS if p["id"] in extras]
        price = package["price"] + sum(p["price"] for p in extra_products)
        seller_name, seller_email = _person(rng)
        photographer = _person(rng)[0] if status != 1 else ""
        postal_code, city = rng.choice(_CITIES)
        order_id = self._new_order_id()
        return {
            "floors": rng.randint(1, 3),
            "created": _fmt(created),
            "picturesTakenDate": _fmt(taken),
            "status": ORDER_STATUSES[status],
            "statusID": status,
            "totalPrice": float(price),
            "products": {
                "packageName": package["name"],
                "packageProducts": list(package["products"]),
                "extraProducts": [p["name"] for p in extra_products],
            },
            "photographer": {
                "name": photographer,
                "phone": _phone(rng) if photographer else "",
            },
            "finishedDate": _fmt(finished),
            "realtorWishes": rng.choice(_WISHES),
            "id": order_id,
            "caseNumber": f"{created.year}-{rng.randint(100, 9999):05d}",
            "m2": rng.randint(45, 260),
            "seller": {
                "name": seller_name,
                "address1": f"{rng.choice(_STREETS)} {rng.randint(1, 180)}",
                "address2": rng.choice(["", "", "st. tv.", "2. th.", "1. sal"]),
                "postalCode": postal_code,
                "city": city,
                "phone1": _phone(rng),
                "phone2": rng.choice(["", _phone(rng)]),
                "email": seller_email,
            },
            "homeType": home_type,
            "bookedDate": _fmt(booked),
            "isUrgent": rng.random() < 0.15,
        }

    # -- inspection (thread-safe) ------------------------------------------------------------

    @property
    def order_ids(self) -> list[str]:
        """Every order's id, in listing order."""
        with self._lock:
            return list(self._orders)

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order as the API renders it (deep copies), in listing order."""
        with self._lock:
            return [copy.deepcopy(o.data) for o in self._orders.values()]

    def order(self, order_id: str) -> dict[str, Any]:
        """One order as the API renders it; `KeyError` if unknown."""
        with self._lock:
            return copy.deepcopy(self._orders[order_id].data)

    def pictures(self, order_id: str, origin: str = "") -> list[dict[str, Any]]:
        """An order's pictures as the listing renders them (``link`` relative to ``origin``)."""
        with self._lock:
            return [p.listing(origin) for p in self._orders[order_id].pictures]

    def picture_bytes(self, order_id: str, picture_id: int) -> bytes:
        """The exact bytes a download of this picture returns (whole file in memory)."""
        return b"".join(self._picture(order_id, picture_id).chunks())

    def picture_content_type(self, order_id: str, picture_id: int) -> str:
        """The Content-Type a download of this picture carries."""
        return self._picture(order_id, picture_id).content_type

    @property
    def picture_count(self) -> int:
        """How many pictures all orders have together."""
        with self._lock:
            return sum(len(o.pictures) for o in self._orders.values())

    @property
    def picture_bytes_total(self) -> int:
        """The sum of every picture's size."""
        with self._lock:
            return sum(p.size for o in self._orders.values() for p in o.pictures)

    def _picture(self, order_id: str, picture_id: int) -> _Picture:
        with self._lock:
            for picture in self._orders[order_id].pictures:
                if picture.id == picture_id:
                    return picture
        raise KeyError(picture_id)

    # -- rate limit ------------------------------------------------------------------------

    @property
    def remaining(self) -> int | None:
        """Calls left in the current window (``None`` when there is no limit)."""
        if self.daily_limit is None:
            return None
        with self._lock:
            self._roll(self.clock())
            return max(0, self.daily_limit - self._used)

    @property
    def rejected(self) -> int:
        """How many requests were refused with 429 because the budget was spent."""
        with self._lock:
            return self._rejected

    def reset_budget(self) -> None:
        """Give back the whole daily limit now (the reset time stays)."""
        with self._lock:
            self._used = 0

    def set_budget(self, *, remaining: int | None = None, reset_in: float | None = None) -> None:
        """Set the calls left and/or the seconds until the next reset."""
        with self._lock:
            if remaining is not None:
                if self.daily_limit is None:
                    raise ValueError("this fake has no daily limit")
                self._used = max(0, self.daily_limit - remaining)
            if reset_in is not None:
                self._reset_at = self.clock() + reset_in

    def _roll(self, now: float) -> None:
        while now >= self._reset_at:
            self._reset_at += self.reset_period
            self._used = 0

    def _spend(self) -> tuple[bool, list[tuple[bytes, bytes]]]:
        """Count one request; return (allowed, X-RateLimit-* headers)."""
        assert self.daily_limit is not None
        with self._lock:
            now = self.clock()
            self._roll(now)
            allowed = self._used < self.daily_limit
            if allowed:
                self._used += 1
            else:
                self._rejected += 1
            remaining = max(0, self.daily_limit - self._used)
            reset = max(0, math.ceil(self._reset_at - now))
        headers = [
            (b"x-ratelimit-limit", str(self.daily_limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
        if not allowed:
            headers.append((b"retry-after", str(reset).encode()))
        return allowed, headers

    # -- the app -----------------------------------------------------------------------------

    def _build_app(self) -> ASGIApp:
        routes = [
            _route("/v2/orders", GET=self._list_orders, POST=self._create_order),
            _route("/v2/orders/packages", GET=self._packages),
            _route("/v2/orders/housingtypes", GET=self._housing_types),
            _route("/v2/orders/extraproducts", GET=self._extra_products),
            _route("/v2/orders/{order_id}", GET=self._get_order),
            _route("/v2/orders/{order_id}/pictures/zip", GET=self._zip),
            _route("/v2/orders/{order_id}/pictures", GET=self._list_pictures, POST=self._upload),
            _route(
                "/v2/orders/{order_id}/pictures/{picture_id:int}",
                GET=self._download,
                POST=self._replace,
            ),
        ]
        router = Starlette(routes=routes)
        return self._chain(_ApiKeyAuth(router, self), lambda app: _RateLimit(app, self))

    def _order_or_none(self, request: Request) -> _Order | None:
        return self._orders.get(request.path_params["order_id"])

    async def _list_orders(self, request: Request) -> Response:
        try:
            take = int(request.query_params.get("take", "50"))
            skip = int(request.query_params.get("skip", "0"))
        except ValueError:
            return Response(status_code=400)
        if take < 1 or skip < 0:
            return Response(status_code=400)
        take = min(take, self.page_size_max)
        with self._lock:
            orders = list(self._orders.values())
            page = [copy.deepcopy(o.data) for o in orders[skip : skip + take]]
        more = skip + take < len(orders)
        next_link = f"/v2/orders?take={take}&skip={skip + take}" if more else None
        return JSONResponse(
            {"response": {"take": take, "skip": skip, "next": next_link}, "orders": page}
        )

    async def _get_order(self, request: Request) -> Response:
        with self._lock:
            order = self._order_or_none(request)
            if order is None:
                return Response(status_code=404)
            return JSONResponse(copy.deepcopy(order.data))

    async def _packages(self, request: Request) -> Response:
        extras = {p["id"]: p for p in _EXTRA_PRODUCTS}
        return JSONResponse(
            [
                {
                    "id": p["id"],
                    "name": p["name"],
                    "extraProducts": [_public_extra(extras[e]) for e in p["extras"]],
                }
                for p in _PACKAGES
            ]
        )

    async def _housing_types(self, request: Request) -> Response:
        return JSONResponse(copy.deepcopy(_HOUSING_TYPES))

    async def _extra_products(self, request: Request) -> Response:
        return JSONResponse([_public_extra(p) for p in _EXTRA_PRODUCTS])

    async def _create_order(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return Response(status_code=400)
        problems = _validate_new_order(body)
        if problems:
            return Response("; ".join(problems), status_code=400, media_type="text/plain")
        package = next(p for p in _PACKAGES if p["id"] == body["products"]["packageName"])
        extras = [str(e) for e in body["products"].get("extraProducts") or []]
        home_type = next(h["name"] for h in _HOUSING_TYPES if h["id"] == body["homeType"])
        created = (
            datetime.strptime(body["created"], _TIME_FORMAT)
            if body.get("created")
            else datetime.now().replace(microsecond=0)
        )
        with self._lock:
            order = self._new_order_data(
                random.Random(f"new-{self._next_order_number}"),
                created=created,
                status=1,
                package=package,
                extras=extras,
                home_type=home_type,
            )
            seller = body["seller"]
            order.update(
                floors=body.get("floors") or 0,
                realtorWishes=body.get("realtorWishes") or "",
                caseNumber=body.get("caseNumber") or "",
                m2=body.get("m2") or 0,
                isUrgent=bool(body.get("isUrgent")),
                seller={
                    key: seller.get(key) or ""
                    for key in (
                        "name",
                        "address1",
                        "address2",
                        "postalCode",
                        "city",
                        "phone1",
                        "phone2",
                        "email",
                    )
                },
            )
            self._orders[order["id"]] = _Order(order)
        return JSONResponse(
            {"status": "OK", "orderNumber": order["id"], "created": order["created"]}
        )

    async def _list_pictures(self, request: Request) -> Response:
        origin = str(request.base_url).rstrip("/")
        with self._lock:
            order = self._order_or_none(request)
            if order is None:
                return Response(status_code=404)
            return JSONResponse(
                {
                    "order": copy.deepcopy(order.data),
                    "pictures": [p.listing(origin) for p in order.pictures],
                }
            )

    def _find_picture(self, request: Request) -> _Picture | None:
        with self._lock:
            order = self._order_or_none(request)
            if order is None:
                return None
            wanted = request.path_params["picture_id"]
            return next((p for p in order.pictures if p.id == wanted), None)

    async def _download(self, request: Request) -> Response:
        picture = self._find_picture(request)
        if picture is None:
            return Response(status_code=404)
        return StreamingResponse(
            _aiter(picture.chunks()),
            media_type=picture.content_type,
            headers={"content-length": str(picture.size)},
        )

    async def _zip(self, request: Request) -> Response:
        with self._lock:
            order = self._order_or_none(request)
            if order is None:
                return Response(status_code=404)
            pictures = list(order.pictures)
            created = order.data["created"]
        if not pictures:
            return Response(status_code=204)
        for picture in pictures:
            if picture.crc is None:
                if picture.size > 1_000_000:
                    picture.crc = await anyio.to_thread.run_sync(crc32_of, picture.chunks())
                else:
                    picture.crc = crc32_of(picture.chunks())
        moment = datetime.strptime(created, _TIME_FORMAT)
        stamp = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
        entries = [ZipEntry(p.name, p.size, p.crc or 0, p.chunks(), stamp) for p in pictures]
        length = zip_length((e.name, e.size) for e in entries)
        order_id = request.path_params["order_id"]
        return StreamingResponse(
            _aiter(zip_chunks(entries)),
            media_type="application/zip",
            headers={
                "content-length": str(length),
                "content-disposition": f'attachment; filename="{order_id}.zip"',
            },
        )

    async def _read_upload(self, request: Request) -> tuple[str, bytes, str] | None:
        body = await request.body()
        part = _first_file_part(request.headers.get("content-type", ""), body)
        if part is None:
            return None
        name, data, content_type = part
        if not content_type or content_type == "application/octet-stream":
            content_type = sniff_content_type(data)
        return name, data, content_type

    async def _upload(self, request: Request) -> Response:
        if self._order_or_none(request) is None:
            return Response(status_code=404)
        upload = await self._read_upload(request)
        if upload is None:
            return Response(status_code=400)
        name, data, content_type = upload
        width, height = image_size(data)
        with self._lock:
            order = self._order_or_none(request)
            if order is None:
                return Response(status_code=404)
            picture = _Picture(
                self._new_picture_id(),
                order.data["id"],
                name,
                content_type,
                width,
                height,
                data=data,
            )
            order.pictures.append(picture)
        return Response(status_code=200)

    async def _replace(self, request: Request) -> Response:
        if self._find_picture(request) is None:
            return Response(status_code=404)
        upload = await self._read_upload(request)
        if upload is None:
            return Response(status_code=400)
        _, data, content_type = upload
        with self._lock:
            picture = self._find_picture(request)
            if picture is None:
                return Response(status_code=404)
            picture.data, picture.generated, picture.crc = data, None, None
            picture.content_type = content_type
            picture.width, picture.height = image_size(data)
        return Response(status_code=200)


def _route(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route for several methods, so that a 405 lists all of them in ``Allow``."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint, methods=list(handlers))


def _public_extra(product: dict[str, Any]) -> dict[str, Any]:
    return {"id": product["id"], "name": product["name"], "description": product["description"]}


def _validate_new_order(body: Any) -> list[str]:
    """Problems with a create-order body (empty when it is acceptable)."""
    if not isinstance(body, dict):
        return ["the body must be a JSON object"]
    problems: list[str] = []
    products = body.get("products")
    if not isinstance(products, dict):
        problems.append("products is required")
    else:
        package = products.get("packageName")
        if package not in {p["id"] for p in _PACKAGES}:
            problems.append("products.packageName must be a package id")
        extras = products.get("extraProducts")
        if extras is not None and (
            not isinstance(extras, list)
            or any(e not in {p["id"] for p in _EXTRA_PRODUCTS} for e in extras)
        ):
            problems.append("products.extraProducts must be a list of extra product ids")
    if not is_int(body.get("homeType")) or body["homeType"] not in {
        h["id"] for h in _HOUSING_TYPES
    }:
        problems.append("homeType must be a housing type id (integer)")
    if not is_int(body.get("contactForm")) or body["contactForm"] not in (0, 1, 2):
        problems.append("contactForm must be 0, 1 or 2")
    for key in ("floors", "m2"):
        if body.get(key) is not None and not is_int(body[key]):
            problems.append(f"{key} must be an integer")
    for key in ("realtorWishes", "caseNumber"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problems.append(f"{key} must be a string")
    if body.get("isUrgent") is not None and not isinstance(body["isUrgent"], bool):
        problems.append("isUrgent must be a boolean")
    created = body.get("created")
    if created is not None:
        try:
            datetime.strptime(created, _TIME_FORMAT)
        except (TypeError, ValueError):
            problems.append("created must look like yyyy-MM-ddTHH:mm:ss")
    seller = body.get("seller")
    if not isinstance(seller, dict):
        problems.append("seller is required")
    else:
        for key, value in seller.items():
            if value is not None and not isinstance(value, str):
                problems.append(f"seller.{key} must be a string")
    return problems


_PARAM = re.compile(r';\s*([\w*]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _params(header: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in _PARAM.findall(header):
        value = value.strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        result[key.lower()] = value
    return result


def _first_file_part(content_type: str, body: bytes) -> tuple[str, bytes, str] | None:
    """(filename, data, content type) of the first part of a multipart body that has a file."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    boundary = _params(content_type).get("boundary")
    if not boundary:
        return None
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    pieces = (b"\r\n" + body).split(delimiter)
    fallback: tuple[str, bytes, str] | None = None
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        head, _, data = piece.partition(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        disposition = _params(headers.get("content-disposition", ""))
        name = disposition.get("filename")
        if name is None and "filename*" in disposition:
            name = disposition["filename*"].split("''", 1)[-1]
        part = (name or "", data, headers.get("content-type", ""))
        if name is not None:
            return part
        fallback = fallback or part
    return fallback


class _ApiKeyAuth:
    """401 unless ``X-ApiKey`` equals the fake's key (GUIDs compared case-insensitively)."""

    def __init__(self, app: ASGIApp, fake: FakeZigna) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope["headers"] if k.lower() == b"x-apikey"), None)
            if given is None or _norm_key(given.decode("latin-1")) != _norm_key(self.fake.api_key):
                await Response(status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _norm_key(key: str) -> str:
    return key.strip().strip("{}").lower()


class _RateLimit:
    """Counts every request against the daily limit and adds the ``X-RateLimit-*`` headers."""

    def __init__(self, app: ASGIApp, fake: FakeZigna) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.fake.daily_limit is None:
            await self.app(scope, receive, send)
            return
        allowed, extra = self.fake._spend()
        if not allowed:
            await Response(status_code=429, headers={k.decode(): v.decode() for k, v in extra})(
                scope, receive, send
            )
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
