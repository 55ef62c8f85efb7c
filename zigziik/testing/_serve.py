"""Serve an ASGI app with uvicorn in a background thread, on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve"]


class _Server(uvicorn.Server):
    """A uvicorn server whose main loop wakes at once when asked to stop (not every 0.1 s)."""

    def __init__(self, config: uvicorn.Config, grace: float = 0.5) -> None:
        super().__init__(config)
        self.grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header at % 10 == 0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, minus its fixed 0.1 s sleeps, and firmer with stuck requests.

        Idle connections are closed at once; requests still running get ``grace`` seconds,
        then their connections are closed (the app sees a client disconnect, so a stalled
        fault ends quietly); whatever still runs after that is cancelled.
        """
        state = getattr(self, "server_state", None)
        servers = getattr(self, "servers", None)
        if state is None or servers is None:  # pragma: no cover - a different uvicorn
            await super().shutdown(sockets)
            return
        for server in servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        total = float(self.config.timeout_graceful_shutdown or 5)
        grace = min(self.grace, total)
        started = loop.time()
        disconnected = False
        while (state.connections or state.tasks) and not self.force_exit:
            waited = loop.time() - started
            if waited > grace and not disconnected:
                disconnected = True
                for connection in list(state.connections):
                    transport = getattr(connection, "transport", None)
                    if isinstance(transport, asyncio.BaseTransport):
                        transport.close()
            if waited > total:
                for task in list(state.tasks):
                    task.cancel()
                break
            await asyncio.sleep(0.005)
        for server in servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    def stop(self) -> None:
        """Ask the server to shut down (callable from any thread)."""
        self.should_exit = True
        loop, event = self._loop, self._stop
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)


@contextlib.contextmanager
def serve(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_certfile: str | os.PathLike[str] | None = None,
    ssl_keyfile: str | os.PathLike[str] | None = None,
    ssl_keyfile_password: str | None = None,
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
) -> Iterator[str]:
    """Run ``app`` with uvicorn (h11) in a thread; yield its origin, e.g. ``http://127.0.0.1:5678``.

    The listening socket is bound (port 0 by default: a free port) before the thread starts, so
    there is no race for the port. With ``ssl_certfile`` (and ``ssl_keyfile``) it serves TLS and
    yields an ``https://`` origin. A plain (sync) context manager: the server has its own event
    loop, so the calling code may run asyncio, trio, or nothing. On exit the server shuts down:
    idle connections close at once, requests still running get half a second before their
    connections are closed (a stalled fault does not hold the exit up), and the thread is
    joined (at most about ``shutdown_timeout`` seconds).
    """
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # is IPPROTO_TCP, and without it every response pays a ~40 ms Nagle/delayed-ACK stall.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            http="h11",
            loop="asyncio",
            lifespan="off",
            log_level="warning",
            log_config=None,
            access_log=False,
            server_header=False,
            ssl_certfile=os.fspath(ssl_certfile) if ssl_certfile is not None else None,
            ssl_keyfile=os.fspath(ssl_keyfile) if ssl_keyfile is not None else None,
            ssl_keyfile_password=ssl_keyfile_password,
            timeout_graceful_shutdown=max(1, int(shutdown_timeout / 2)),
        )
        server = _Server(config)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # SystemExit on a startup failure, too
                failure.append(exc)

        thread = threading.Thread(target=run, name=f"zigziik-fake-{bound_port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if failure or not thread.is_alive():
                raise RuntimeError("the fake server failed to start") from (
                    failure[0] if failure else None
                )
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("the fake server did not start in time")
            time.sleep(0.002)
        scheme = "https" if ssl_certfile is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        try:
            yield f"{scheme}://{shown}:{bound_port}"
        finally:
            server.stop()
            thread.join(shutdown_timeout)
            if thread.is_alive():
                server.force_exit = True
                thread.join(1.0)
    finally:
        sock.close()
