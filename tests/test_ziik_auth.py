"""Ziik authentication: login once, renewal before expiry (fake clock), re-login after a 401.

A small in-test server (an async `httpx.MockTransport` handler) stands for Ziik, so the tests
run under asyncio and trio alike.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from zigziik import AuthenticationError, RetryPolicy, ZiikClient

BASE = "https://acme.ziik.io/api"
PASSWORD = "correct-horse-battery"

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class AuthServer:
    """Issues ``jwt-N`` tokens valid ``lifetime`` seconds by ``clock``; answers /units/1."""

    def __init__(self, clock: FakeClock, *, lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.issued = 0
        self.valid: dict[str, float] = {}
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, bearer)
        self.login_bodies: list[Any] = []
        self.reject_next_units = 0
        self.fail_renew = False
        self.password = PASSWORD

    def _issue(self) -> httpx.Response:
        self.issued += 1
        jwt = f"hdr.jwt-{self.issued}.sig"
        self.valid[jwt] = self.clock() + self.lifetime
        return httpx.Response(200, json=[{"jwt": jwt, "expires": int(self.valid[jwt])}])

    def bearer(self, request: httpx.Request) -> str | None:
        header = request.headers.get("authorization")
        return header.removeprefix("Bearer ") if header else None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await anyio.lowlevel.checkpoint()  # let other tasks interleave, as a real round trip would
        path = request.url.path
        token = self.bearer(request)
        self.log.append((request.method, path, token))
        if path == "/api/authenticate":
            body = json.loads(request.content)
            self.login_bodies.append(body)
            if body != {"username": "ann", "password": self.password}:
                return httpx.Response(401, json={"message": f"Invalid credentials for {body}"})
            return self._issue()
        if path == "/api/renew":
            if self.fail_renew or token not in self.valid or self.valid[token] <= self.clock():
                return httpx.Response(401, json={"message": "Unauthenticated."})
            del self.valid[token]
            return self._issue()
        if self.reject_next_units > 0:
            self.reject_next_units -= 1
            return httpx.Response(401, json={"message": "Unauthenticated."})
        if token not in self.valid or self.valid[token] <= self.clock():
            return httpx.Response(401, json={"message": "Unauthenticated."})
        return httpx.Response(200, json={"id": 1, "name": "Main Office"})

    def calls(self, path: str) -> int:
        return sum(1 for _, p, _ in self.log if p == path)


def login_client(server: AuthServer, clock: FakeClock, **kwargs: Any) -> ZiikClient:
    return ZiikClient(
        BASE,
        username="ann",
        password=kwargs.pop("password", PASSWORD),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
        retry=RetryPolicy(jitter=False, base_delay=0.0),
        clock=clock,
        **kwargs,
    )


async def test_fifty_concurrent_first_calls_log_in_once() -> None:
    clock = FakeClock()
    server = AuthServer(clock)
    ziik = login_client(server, clock)
    results: list[int | None] = []

    async def one() -> None:
        results.append((await ziik.units.get(1)).id)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    assert results == [1] * 50
    assert server.calls("/api/authenticate") == 1
    assert server.login_bodies == [{"username": "ann", "password": PASSWORD}]
    unit_tokens = {token for method, path, token in server.log if path == "/api/units/1"}
    assert unit_tokens == {"hdr.jwt-1.sig"}
    login = next(entry for entry in server.log if entry[1] == "/api/authenticate")
    assert login[2] is None  # no bearer sent to the login itself


async def test_renews_when_less_than_60_seconds_remain() -> None:
    clock = FakeClock()
    server = AuthServer(clock, lifetime=600)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    clock.now += 539  # 61 s left: still fine
    await ziik.units.get(1)
    assert server.calls("/api/renew") == 0
    clock.now += 2  # 59 s left: renew first, with the current token
    await ziik.units.get(1)
    renew = [entry for entry in server.log if entry[1] == "/api/renew"]
    assert renew == [("POST", "/api/renew", "hdr.jwt-1.sig")]
    assert server.log[-1] == ("GET", "/api/units/1", "hdr.jwt-2.sig")
    assert server.calls("/api/authenticate") == 1


async def test_concurrent_calls_near_expiry_renew_once() -> None:
    clock = FakeClock()
    server = AuthServer(clock, lifetime=600)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    clock.now += 580
    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(ziik.units.get, 1)
    assert server.calls("/api/renew") == 1
    assert server.calls("/api/authenticate") == 1


async def test_an_expired_token_logs_in_again_instead_of_renewing() -> None:
    clock = FakeClock()
    server = AuthServer(clock, lifetime=600)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    clock.now += 10_000
    await ziik.units.get(1)
    assert server.calls("/api/renew") == 0
    assert server.calls("/api/authenticate") == 2


async def test_a_failed_renewal_falls_back_to_login() -> None:
    clock = FakeClock()
    server = AuthServer(clock, lifetime=600)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    server.fail_renew = True
    clock.now += 570
    assert (await ziik.units.get(1)).id == 1
    assert server.calls("/api/renew") == 1
    assert server.calls("/api/authenticate") == 2


async def test_a_401_logs_in_again_once_and_resends() -> None:
    clock = FakeClock()
    server = AuthServer(clock)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    server.valid.clear()  # the server forgot every token
    assert (await ziik.units.get(1)).id == 1
    assert server.calls("/api/authenticate") == 2
    assert server.calls("/api/units/1") == 3


async def test_a_second_401_after_the_relogin_is_raised() -> None:
    clock = FakeClock()
    server = AuthServer(clock)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    server.reject_next_units = 2
    with pytest.raises(AuthenticationError):
        await ziik.units.get(1)
    assert server.calls("/api/authenticate") == 2  # one re-login, not a loop


async def test_concurrent_401s_share_one_relogin() -> None:
    clock = FakeClock()
    server = AuthServer(clock)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    server.valid.clear()
    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(ziik.units.get, 1)
    assert server.calls("/api/authenticate") == 2


async def test_wrong_password_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="zigziik")
    clock = FakeClock()
    server = AuthServer(clock)
    ziik = login_client(server, clock, password="wrong-password-123")
    with pytest.raises(AuthenticationError) as caught:
        await ziik.units.get(1)
    assert caught.value.status_code == 401
    assert "/api/authenticate" in str(caught.value)
    assert "wrong-password-123" not in str(caught.value)  # the server echoed it
    assert "wrong-password-123" not in caplog.text
    assert server.calls("/api/units/1") == 0


async def test_tokens_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="zigziik")
    clock = FakeClock()
    server = AuthServer(clock)
    ziik = login_client(server, clock)
    await ziik.units.get(1)
    server.reject_next_units = 2
    with pytest.raises(AuthenticationError) as caught:
        await ziik.units.get(1)
    for secret in ("jwt-1", "jwt-2", PASSWORD):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
        assert secret not in repr(ziik)


async def test_a_bearer_token_client_does_not_log_in_after_a_401() -> None:
    clock = FakeClock()
    server = AuthServer(clock)
    ziik = ZiikClient(
        BASE,
        "static.bearer.token",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
    )
    with pytest.raises(AuthenticationError):
        await ziik.units.get(1)
    assert server.log == [("GET", "/api/units/1", "static.bearer.token")]
