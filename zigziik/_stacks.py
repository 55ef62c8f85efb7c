"""The HTTP stacks zigziik works over: httpx (the default) and httpx2 (``zigziik[httpx2]``).

httpx2 is pydantic's maintained continuation of httpx: the same API under another name, with
its own pool in httpcore2. Everything above the stack (budget, retries, errors, downloads) is
the same; what differs is which module's classes a request, a response and an error are.
A `Stack` names them. httpx2 is imported only when it is used: a caller hands over an
``httpx2.AsyncClient`` (httpx2 is then imported already), or asks for it by name
(``http_stack="httpx2"`` or ``$ZIGZIIK_HTTP_STACK``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import attrs
import httpcore
import httpx

from .errors import ConfigurationError

__all__ = [
    "HTTPX",
    "STACK_NAMES",
    "Stack",
    "async_streams",
    "chosen_stack",
    "http_errors",
    "remote_protocol_errors",
    "stack_named",
    "stack_of",
    "timeout_types",
]

STACK_NAMES = ("httpx", "httpx2")
ENV_VAR = "ZIGZIIK_HTTP_STACK"
HINT = "pip install 'zigziik[httpx2]' (Python 3.11 or later)"


@attrs.frozen(eq=False)
class Stack:
    """One HTTP stack: its module and the classes zigziik checks for."""

    name: str
    http: Any = attrs.field(repr=False)
    core: Any = attrs.field(repr=False)
    client: Any = attrs.field(repr=False)
    transport_error: type[Exception] = attrs.field(repr=False)
    connect_errors: tuple[type[Exception], ...] = attrs.field(repr=False)
    broken_errors: tuple[type[Exception], ...] = attrs.field(repr=False)
    timeout_error: type[Exception] = attrs.field(repr=False)
    http_error: type[Exception] = attrs.field(repr=False)
    remote_protocol_error: type[Exception] = attrs.field(repr=False)
    async_stream: type = attrs.field(repr=False)
    timeout: type = attrs.field(repr=False)

    @classmethod
    def of_module(cls, name: str, http: Any, core: Any) -> Stack:
        return cls(
            name=name,
            http=http,
            core=core,
            client=http.AsyncClient,
            transport_error=http.TransportError,
            connect_errors=(http.ConnectError, http.ConnectTimeout, http.PoolTimeout),
            broken_errors=(http.TimeoutException, http.NetworkError, http.RemoteProtocolError),
            timeout_error=http.TimeoutException,
            http_error=http.HTTPError,
            remote_protocol_error=http.RemoteProtocolError,
            async_stream=http.AsyncByteStream,
            timeout=http.Timeout,
        )

    def make_timeout(self, timeout: Any) -> Any:
        """``timeout`` (either stack's ``Timeout``) as this stack's ``Timeout``."""
        if isinstance(timeout, self.timeout):
            return timeout
        return self.timeout(**timeout.as_dict())


HTTPX = Stack.of_module("httpx", httpx, httpcore)
_httpx2: Stack | None = None


def _loaded_httpx2() -> Stack | None:
    """httpx2's stack if httpx2 has been imported (by anyone), without importing it."""
    global _httpx2
    if _httpx2 is None and sys.modules.get("httpx2") is not None:
        core = importlib.import_module("httpcore2")  # httpx2 imported it already
        _httpx2 = Stack.of_module("httpx2", sys.modules["httpx2"], core)
    return _httpx2


def stack_named(name: str) -> Stack:
    """The stack called ``name`` (``"httpx"`` or ``"httpx2"``, imported now if need be)."""
    if name == "httpx":
        return HTTPX
    if name != "httpx2":
        raise ConfigurationError(
            f"the HTTP stack must be one of {', '.join(STACK_NAMES)}, got {name!r}"
        )
    loaded = _loaded_httpx2()
    if loaded is not None:
        return loaded
    try:
        importlib.import_module("httpx2")
    except ImportError as exc:
        raise ConfigurationError(f"the httpx2 stack needs httpx2: {HINT} ({exc})") from None
    stack = _loaded_httpx2()
    assert stack is not None
    return stack


def chosen_stack(name: str | None) -> Stack:
    """The stack for a client zigziik makes itself: ``name``, else ``$ZIGZIIK_HTTP_STACK``,
    else httpx."""
    if name is None:
        name = os.environ.get(ENV_VAR) or "httpx"
        if name not in STACK_NAMES:
            raise ConfigurationError(
                f"${ENV_VAR} must be one of {', '.join(STACK_NAMES)}, got {name!r}"
            )
    if not isinstance(name, str):
        raise ConfigurationError(f"http_stack must be a str, got {type(name).__name__}")
    return stack_named(name)


def stack_of(client: object) -> Stack | None:
    """The stack whose ``AsyncClient`` ``client`` is, or ``None``."""
    if isinstance(client, httpx.AsyncClient):
        return HTTPX
    httpx2 = _loaded_httpx2()
    if httpx2 is not None and isinstance(client, httpx2.client):
        return httpx2
    return None


def _loaded() -> tuple[Stack, ...]:
    httpx2 = _loaded_httpx2()
    return (HTTPX,) if httpx2 is None else (HTTPX, httpx2)


def async_streams() -> tuple[type, ...]:
    """Every loaded stack's ``AsyncByteStream``."""
    return tuple(stack.async_stream for stack in _loaded())


def http_errors() -> tuple[type[Exception], ...]:
    """Every loaded stack's ``HTTPError``."""
    return tuple(stack.http_error for stack in _loaded())


def remote_protocol_errors() -> tuple[type[Exception], ...]:
    """Every loaded stack's ``RemoteProtocolError`` (a body cut short)."""
    return tuple(stack.remote_protocol_error for stack in _loaded())


def timeout_types() -> tuple[type, ...]:
    """Every loaded stack's ``Timeout``."""
    return tuple(stack.timeout for stack in _loaded())
