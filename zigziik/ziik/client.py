"""The Ziik client: authentication (bearer token or username/password) and ``units``."""

from __future__ import annotations

import builtins
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx

from .._auth import StaticHeaders
from .._checks import check_int
from .._client import BaseClient
from .._request import TimeoutArg
from .._transport import Transport
from .._urls import path_segment, with_params
from ..errors import APIError, ConfigurationError
from ..pagination import AsyncPaginator, Page
from ..ratelimit import DailyBudget
from ..retry import RetryPolicy
from ._convert import (
    TOKEN_CHARS,
    Token,
    converter,
    decode_json,
    parse_location,
    parse_token,
    structure,
    unstructure,
    unwrap_list,
    unwrap_object,
)
from .hierarchy import UnitWalk, walk
from .models import NewImage, NewUnit, Unit, UnitPatch

__all__ = ["Units", "ZiikClient"]

logger = logging.getLogger("zigziik")

RENEW_MARGIN = 60.0
"""A logged-in client renews its token when fewer seconds than this remain."""

Clock = Callable[[], float]


# -- authentication -------------------------------------------------------------------------------


class _LoginAuth:
    """Username and password: log in on first use, renew before expiry, re-login after a 401.

    One `anyio.Lock` serialises logins and renewals, so many concurrent first calls log in
    once. ``clock`` returns unix seconds (tests pass a fake one).
    """

    def __init__(self, username: str, password: str, clock: Clock) -> None:
        self._username = username
        self._password = password
        self._clock = clock
        self._token: Token | None = None
        self._lock = anyio.Lock()
        self._issued: deque[str] = deque(maxlen=8)
        self.logins = 0
        self.renewals = 0

    def __repr__(self) -> str:
        return "<username/password login>"

    def secrets(self) -> Iterable[str]:
        return (self._password, *self._issued)

    def _fresh(self, token: Token | None) -> bool:
        return token is not None and token.expires - self._clock() >= RENEW_MARGIN

    async def headers(self, transport: Transport) -> Mapping[str, str]:
        token = self._token
        if token is None or not self._fresh(token):
            token = await self._refresh(transport)
        return {"Authorization": f"Bearer {token.jwt}"}

    async def unauthorized(self, transport: Transport, sent: Mapping[str, str]) -> bool:
        sent_value = sent.get("Authorization")
        async with self._lock:
            current = self._token
            if current is not None and f"Bearer {current.jwt}" != sent_value:
                return True  # another task already replaced the refused token
            self._token = None
            logger.info("Ziik answered 401; logging in again")
            await self._login(transport)
            return True

    async def _refresh(self, transport: Transport) -> Token:
        async with self._lock:
            token = self._token
            if token is not None and self._fresh(token):
                return token  # another task refreshed it while this one waited
            if token is not None and token.expires > self._clock():
                try:
                    return await self._renew(transport, token)
                except APIError as exc:
                    logger.info("renewing the Ziik token failed (HTTP %d)", exc.status_code)
            return await self._login(transport)

    async def _login(self, transport: Transport) -> Token:
        url = transport.url("authenticate")
        body = await transport.request(
            "POST",
            url,
            json_body={"username": self._username, "password": self._password},
            authenticate=False,
        )
        self.logins += 1
        return self._store(body, url)

    async def _renew(self, transport: Transport, token: Token) -> Token:
        url = transport.url("renew")
        body = await transport.request(
            "POST", url, headers={"Authorization": f"Bearer {token.jwt}"}, authenticate=False
        )
        self.renewals += 1
        return self._store(body, url)

    def _store(self, body: bytes, url: str) -> Token:
        data = decode_json(body, Any, method="POST", url=url)
        token = parse_token(data, method="POST", url=url)
        self._issued.append(token.jwt)
        self._token = token
        left = token.expires - self._clock()
        logger.debug("Ziik token obtained; valid for %.0f s", left)
        return token


def _check_token(token: object, source: str) -> str:
    if not isinstance(token, str):
        raise ConfigurationError(
            f"the Ziik token ({source}) must be a str, got {type(token).__name__}"
        )
    text = token.strip()
    if text.lower().startswith("bearer "):
        raise ConfigurationError(f"pass the Ziik token ({source}) without the 'Bearer ' prefix")
    if not TOKEN_CHARS.fullmatch(text):
        raise ConfigurationError(
            f"the Ziik token ({source}) must be non-empty printable ASCII without spaces"
        )
    return text


def _check_secret(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"the Ziik {what} must be a non-empty str")
    return value


def _resolve_auth(
    token: str | None, username: str | None, password: str | None, clock: Clock
) -> StaticHeaders | _LoginAuth:
    """Arguments first, then ``$ZIIK_TOKEN``, then ``$ZIIK_USERNAME``/``$ZIIK_PASSWORD``."""
    if token is not None and (username is not None or password is not None):
        raise ConfigurationError("pass either token= or username=/password=, not both")
    if token is not None:
        return StaticHeaders.bearer(_check_token(token, "token="))
    if username is None and password is None:
        env_token = os.environ.get("ZIIK_TOKEN")
        if env_token:
            return StaticHeaders.bearer(_check_token(env_token, "$ZIIK_TOKEN"))
        username = os.environ.get("ZIIK_USERNAME") or None
        password = os.environ.get("ZIIK_PASSWORD") or None
        if username is None and password is None:
            raise ConfigurationError(
                "no Ziik credentials: pass token= or username= and password=, or set "
                "ZIIK_TOKEN or ZIIK_USERNAME and ZIIK_PASSWORD"
            )
    if username is None:
        raise ConfigurationError(
            "a Ziik password was given without a username: pass username= or set ZIIK_USERNAME"
        )
    if password is None:
        raise ConfigurationError(
            "a Ziik username was given without a password: pass password= or set ZIIK_PASSWORD"
        )
    return _LoginAuth(
        _check_secret(username, "username"), _check_secret(password, "password"), clock
    )


# -- units ----------------------------------------------------------------------------------------


class Units:
    """``ziik.units``: list, read, create, update, delete, children, images, and `walk`."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _url(self, *segments: str) -> str:
        return self._transport.url("units", *segments)

    def _id_url(self, unit_id: int, *segments: str) -> str:
        return self._url(
            path_segment(check_int("unit_id", unit_id, minimum=0), what="unit_id"), *segments
        )

    def _paginator(self, url: str, params: Mapping[str, Any] | None) -> AsyncPaginator[Unit]:
        transport = self._transport

        async def fetch(url: str, params: Mapping[str, Any] | None) -> Page[Unit]:
            shown = with_params(url, params)
            body = await transport.request("GET", url, params=params)
            data = decode_json(body, Any, method="GET", url=shown)
            items, next_link = unwrap_list(data, method="GET", url=shown)
            units = structure(items, list[Unit], method="GET", url=shown)
            return Page(items=units, next=next_link)

        return AsyncPaginator(fetch, url, params, base_url=transport.base_url)

    def list(self, *, user: bool = False) -> AsyncPaginator[Unit]:
        """Every unit (``user=True``: only the caller's unit and those below it).

        A bare JSON list is one page; a ``{"data", "links"}`` envelope is followed through
        ``links.next``.
        """
        if not isinstance(user, bool):
            raise TypeError(f"user must be a bool, got {type(user).__name__}")
        return self._paginator(self._url(), {"user": "true"} if user else None)

    async def get(self, unit_id: int) -> Unit:
        """One unit (a bare object or a ``{"data": {...}}`` envelope)."""
        url = self._id_url(unit_id)
        body = await self._transport.request("GET", url)
        data = decode_json(body, Any, method="GET", url=url)
        return structure(unwrap_object(data), Unit, method="GET", url=url)  # type: ignore[no-any-return]

    async def children(self, unit_id: int) -> builtins.list[Unit]:
        """The units below ``unit_id`` (all pages of an enveloped answer)."""
        return await self._paginator(self._id_url(unit_id, "children"), None).collect()

    async def create(self, unit: NewUnit) -> int:
        """Create a unit; returns its id, read from the ``Location`` header of the 201.

        Like every POST, it is retried only when the request provably never left.
        """
        if not isinstance(unit, NewUnit):
            raise TypeError(f"unit must be a NewUnit, got {type(unit).__name__}")
        url = self._url()

        async def read_location(response: httpx.Response) -> str | None:
            await response.aread()
            location: str | None = response.headers.get("location")
            return location

        location = await self._transport.send(
            "POST", url, json_body=unstructure(unit), consume=read_location
        )
        return parse_location(location, method="POST", url=url)

    async def update(self, unit_id: int, patch: UnitPatch) -> None:
        """PATCH the fields set in ``patch`` (and only those; ``None`` fields are sent as null)."""
        if not isinstance(patch, UnitPatch):
            raise TypeError(f"patch must be a UnitPatch, got {type(patch).__name__}")
        body = unstructure(patch)
        if not body:
            raise ValueError("the UnitPatch sets no field; there is nothing to update")
        await self._transport.request("PATCH", self._id_url(unit_id), json_body=body)

    async def delete(self, unit_id: int) -> None:
        """Delete a unit."""
        await self._transport.request("DELETE", self._id_url(unit_id))

    async def add_image(
        self,
        unit_id: int,
        path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        youtube: str | None = None,
        vimeo: str | None = None,
        image: NewImage | None = None,
    ) -> None:
        """Add an image to a unit: a local file (sent base64-encoded, named after the file or
        ``name``), a ``youtube=``/``vimeo=`` embed URL, or a prepared `NewImage`. Exactly one.
        """
        check_int("unit_id", unit_id, minimum=0)
        given = [value is not None for value in (path, youtube, vimeo, image)]
        if sum(given) != 1:
            raise TypeError("pass exactly one of path, youtube=, vimeo= or image=")
        if path is not None:
            file = Path(path)
            content = await anyio.Path(file).read_bytes()
            spec = NewImage.from_bytes(name if name is not None else file.name, content)
        elif youtube is not None:
            spec = NewImage.youtube(youtube, name=name)
        elif vimeo is not None:
            spec = NewImage.vimeo(vimeo, name=name)
        else:
            if not isinstance(image, NewImage):
                raise TypeError(f"image must be a NewImage, got {type(image).__name__}")
            spec = image
        body = {"id": unit_id, "image": [unstructure(spec)]}
        await self._transport.request("POST", self._url("image"), json_body=body)

    async def delete_image(self, unit_id: int, file_id: int) -> None:
        """Delete one of a unit's files (an image's `UnitFile.id`)."""
        file_segment = path_segment(check_int("file_id", file_id, minimum=0), what="file_id")
        await self._transport.request("DELETE", self._id_url(unit_id, "files", file_segment))

    def walk(
        self,
        root_id: int | None = None,
        *,
        concurrency: int = 8,
        max_depth: int | None = None,
    ) -> UnitWalk:
        """Every unit below ``root_id`` (or below every top-level unit) once, breadth-first.

        An async iterator of `UnitNode(unit, depth, parent_id)`, the root(s) first at depth 0,
        fetching children for up to ``concurrency`` units at once. A plain iterator, not an
        async generator: ``break`` out of it early without ``aclosing``. See
        `zigziik.ziik.hierarchy.walk`.
        """
        return walk(self, root_id, concurrency=concurrency, max_depth=max_depth)


class ZiikClient(BaseClient):
    """An async client for a Ziik tenant's API (``https://<tenant>.ziik.io/api``).

    ``base_url`` falls back to ``$ZIIK_BASE_URL``. Authenticate with a bearer ``token``
    (``$ZIIK_TOKEN``) or ``username``/``password`` (``$ZIIK_USERNAME``/``$ZIIK_PASSWORD``):
    the client then logs in on first use, renews the token when less than 60 s remain, and
    logs in again once after a 401. Ziik documents no daily call budget, so none is kept
    unless one is given: with a ``budget``, every request (logins included) counts against
    it, exactly as for Zigna. ``http_client`` and ``http_stack`` as for `ZignaClient`.
    ``clock`` (unix seconds) is for tests of token expiry.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        http_stack: str | None = None,
        timeout: TimeoutArg = None,
        retry: RetryPolicy | None = None,
        budget: DailyBudget | None = None,
        clock: Clock | None = None,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("ZIIK_BASE_URL") or None
            if base_url is None:
                raise ConfigurationError(
                    "no Ziik base URL: pass base_url= (https://<tenant>.ziik.io/api) or set "
                    "the ZIIK_BASE_URL environment variable"
                )
        auth = _resolve_auth(token, username, password, clock or time.time)
        if budget is not None and not isinstance(budget, DailyBudget):
            raise ConfigurationError(f"budget must be a DailyBudget, got {type(budget).__name__}")
        self._auth = auth
        self._transport = Transport(
            base_url=base_url,
            converter=converter,
            auth=auth,
            http_client=http_client,
            http_stack=http_stack,
            timeout=timeout,
            retry=retry,
            budget=budget,
        )
        self.units = Units(self._transport)

    def __repr__(self) -> str:
        kind = "login" if isinstance(self._auth, _LoginAuth) else "token"
        return (
            f"ZiikClient(base_url={self.base_url!r}, auth={kind!r}, budget={self.budget!r}, "
            f"http_stack={self.http_stack!r})"
        )
