"""The servers the measures run against, and the data they serve.

* nginx (preferred): static files on loopback, ``sendfile on``, one worker, no access log.
  The Zigna JSON answers are pre-rendered files under the exact paths the client asks for
  (``/v2/orders?take=50&skip=N`` -> ``v2/orders/pages/N.json`` through ``$arg_skip``), the
  pictures plain files. Every answer carries ``X-RateLimit-*`` headers, as the real API's do,
  so the client's header and budget bookkeeping is part of what is measured.
* The fake Zigna (``zigziik.testing``) under uvicorn in a *separate process*: the fallback for
  the API-call measures when nginx is not installed (its Python request handling is slower
  than nginx's, so ratios come out closer to 1; the report says which server was used).

`ensure_nginx` is the benchmarks' setup step: it finds nginx or, running as root with apt-get,
installs the ``nginx-light`` package; when that is impossible the measures that need nginx are
skipped with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import free_port, log, wait_for_port

API_KEY = "5a1d2c3e-7b8f-4a6d-9e0c-1f2a3b4c5d6e"
PAGE_SIZE = 50
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "10000000",
    "X-RateLimit-Remaining": "9999999",
    "X-RateLimit-Reset": "3600",
}

# -- nginx: finding or installing it --------------------------------------------------------


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    text = (out.stderr or out.stdout).strip()
    return text.split(":", 1)[-1].strip() or "nginx"


def ensure_nginx(*, install: bool) -> tuple[str | None, str]:
    """(path to nginx or None, what happened). Installs it with apt-get when allowed and root."""
    binary = find_nginx()
    if binary is not None:
        return binary, f"found {binary}"
    if not install:
        return None, "nginx is not installed (and --no-install was given)"
    apt = shutil.which("apt-get")
    if apt is None:
        return None, "nginx is not installed and there is no apt-get to install it with"
    if os.geteuid() != 0:
        return (
            None,
            "nginx is not installed; installing it needs root (try: sudo apt-get install nginx-light)",
        )
    log("setup: installing nginx-light with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for package in ("nginx-light", "nginx"):
        step = [apt, "install", "-y", "-qq", "--no-install-recommends", package]
        done = subprocess.run(step, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            subprocess.run([apt, "update", "-qq"], capture_output=True, env=env, check=False)
            done = subprocess.run(step, capture_output=True, text=True, env=env, check=False)
        if done.returncode == 0 and find_nginx():
            # The package may start a system service on port 80; ours runs on its own port.
            return find_nginx(), f"installed {package} with apt-get"
    return None, "installing nginx with apt-get failed"


# -- the data -------------------------------------------------------------------------------


@dataclass
class HarvestSet:
    orders: int
    pictures_per_order: int
    picture_size: int

    @property
    def total_bytes(self) -> int:
        return self.orders * self.pictures_per_order * self.picture_size


@dataclass
class Site:
    """A folder of pre-rendered answers (one nginx ``server`` block serves each)."""

    name: str
    root: Path
    order_ids: list[str] = field(default_factory=list)
    picture_urls: list[str] = field(default_factory=list)  # paths, from the root


def _fake_orders(count: int, seed: int) -> list[dict[str, Any]]:
    from zigziik.testing import FakeZigna

    fake = FakeZigna(orders=count, pictures_per_order=0, daily_limit=None, seed=seed)
    return fake.orders


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def build_api_site(root: Path, pages: int) -> Site:
    """``pages`` listing pages of 50 orders (with ``next`` links) and one file per order."""
    orders = _fake_orders(pages * PAGE_SIZE, seed=5)
    site = Site("api", root)
    for page in range(pages):
        skip = page * PAGE_SIZE
        chunk = orders[skip : skip + PAGE_SIZE]
        more = page + 1 < pages
        nxt = f"/v2/orders?take={PAGE_SIZE}&skip={skip + PAGE_SIZE}" if more else None
        body = {"response": {"take": PAGE_SIZE, "skip": skip, "next": nxt}, "orders": chunk}
        _write_json(root / "v2" / "orders" / "pages" / f"{skip}.json", body)
    for order in orders:
        _write_json(root / "v2" / "order" / f"{order['id']}.json", order)
        site.order_ids.append(order["id"])
    return site


def build_files_site(root: Path, spec: HarvestSet, name: str = "files") -> Site:
    """Orders whose pictures are ``spec.picture_size``-byte files, listed on one page."""
    orders = _fake_orders(spec.orders, seed=7)
    blob = os.urandom(spec.picture_size)
    site = Site(name, root)
    picture_id = 9_000_000
    for order in orders:
        order_id = order["id"]
        site.order_ids.append(order_id)
        pictures = []
        folder = root / "v2" / "orders" / order_id / "pictures"
        folder.mkdir(parents=True, exist_ok=True)
        for position in range(spec.pictures_per_order):
            picture_id += 1
            (folder / str(picture_id)).write_bytes(blob)
            path = f"/v2/orders/{order_id}/pictures/{picture_id}"
            site.picture_urls.append(path)
            pictures.append(
                {
                    "pictureID": picture_id,
                    "originalFileName": f"IMG_{position:04d}.jpg",
                    "link": path,
                    "size": spec.picture_size,
                    "width": 4000,
                    "height": 3000,
                }
            )
        _write_json(folder.parent / "pictures.json", {"order": order, "pictures": pictures})
    listing = {"response": {"take": PAGE_SIZE, "skip": 0, "next": None}, "orders": orders}
    _write_json(root / "v2" / "orders" / "pages" / "0.json", listing)
    return site


def write_big_file(root: Path, size: int) -> str:
    """One ``size``-byte picture (order ``big``, picture 1); its path from the root."""
    folder = root / "v2" / "orders" / "big" / "pictures"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "1"
    if not target.exists() or target.stat().st_size != size:
        block = os.urandom(1 << 20)
        with target.open("wb") as handle:
            left = size
            while left > 0:
                handle.write(block[: min(left, len(block))])
                left -= len(block)
    return "/v2/orders/big/pictures/1"


# -- nginx -----------------------------------------------------------------------------------

_SERVER_BLOCK = """
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {root};
{headers}
        location = /v2/orders {{
            default_type application/json;
            try_files /v2/orders/pages/$arg_skip.json =404;
        }}
        location ~ "^/v2/orders/([^/]+)$" {{
            default_type application/json;
            try_files /v2/order/$1.json =404;
        }}
        location ~ "^/v2/orders/([^/]+)/pictures$" {{
            default_type application/json;
            try_files /v2/orders/$1/pictures.json =404;
        }}
        location ~ "^/v2/orders/([^/]+)/pictures/([0-9]+)$" {{
            default_type image/jpeg;
            try_files $uri =404;
        }}
    }}
"""

_CONFIG = """
{user}worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    etag off;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{servers}
}}
"""


class Nginx:
    """nginx serving several `Site` folders, one port each, as a child process."""

    def __init__(self, binary: str, sites: list[Site], tmp: Path) -> None:
        self.binary = binary
        self.sites = sites
        self.tmp = tmp
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.version = nginx_version(binary)

    def origin(self, site: str) -> str:
        return f"http://127.0.0.1:{self.ports[site]}"

    def describe(self) -> str:
        return f"{self.version} on loopback: static files, sendfile on, 1 worker, no access log"

    def start(self) -> None:
        for attempt in range(3):
            self.ports = {site.name: free_port() for site in self.sites}
            headers = "\n".join(
                f"        add_header {name} {value} always;"
                for name, value in RATE_LIMIT_HEADERS.items()
            )
            servers = "".join(
                _SERVER_BLOCK.format(port=self.ports[s.name], root=s.root, headers=headers)
                for s in self.sites
            )
            user = "user root;\n" if os.geteuid() == 0 else ""
            conf = self.tmp / "nginx.conf"
            conf.write_text(_CONFIG.format(user=user, tmp=self.tmp, servers=servers))
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "-p",
                    str(self.tmp),
                    "-c",
                    str(conf),
                    "-e",
                    str(self.tmp / "error.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            started = all(wait_for_port(port, 5.0) for port in self.ports.values())
            if started and self.process.poll() is None:
                return
            self.stop()
            log(f"nginx did not start (attempt {attempt + 1}): {self.error_log()}")
        raise RuntimeError(f"nginx did not start: {self.error_log()}")

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-3:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- the fallback: the fake Zigna under uvicorn, in its own process -----------------------


@contextlib.contextmanager
def fake_zigna_process(orders: int) -> Iterator[str]:
    """``python -m benchmarks._fake_server``: the fake Zigna on a free port; yields its origin."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._fake_server", str(port), str(orders)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port, 30.0):
            raise RuntimeError("the fake Zigna server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- everything a run needs, started once -------------------------------------------------


class Servers:
    """Lazily built sites and servers for one run of the benchmarks."""

    def __init__(self, *, quick: bool, install: bool, use_nginx: bool = True) -> None:
        self.quick = quick
        self.install = install
        self.use_nginx = use_nginx
        self._stack = contextlib.ExitStack()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="zzbench-")))
        self.nginx_binary: str | None = None
        self.nginx_status = ""
        self.nginx: Nginx | None = None
        self.api_site: Site | None = None
        self.files_site: Site | None = None
        self.harvest_set = (
            HarvestSet(orders=2, pictures_per_order=8, picture_size=2 << 20)
            if quick
            else HarvestSet(orders=12, pictures_per_order=16, picture_size=2 << 20)
        )
        # Many small files: 2,000 pictures of 20 KB (one listing page of 40 orders).
        self.small_set = (
            HarvestSet(orders=2, pictures_per_order=50, picture_size=20_000)
            if quick
            else HarvestSet(orders=40, pictures_per_order=50, picture_size=20_000)
        )
        self.small_site: Site | None = None
        self.api_pages = 10 if quick else 100
        self._fake_origin: str | None = None

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        self._stack.close()

    def setup(self) -> None:
        """Find or install nginx, render the data, start nginx (or note why not)."""
        if self.use_nginx:
            self.nginx_binary, self.nginx_status = ensure_nginx(install=self.install)
        else:
            self.nginx_binary, self.nginx_status = None, "nginx not used (--no-nginx)"
        log(f"setup: {self.nginx_status}")
        self.api_site = build_api_site(self.tmp / "api", self.api_pages)
        if self.nginx_binary is None:
            return
        self.files_site = build_files_site(self.tmp / "files", self.harvest_set)
        self.small_site = build_files_site(self.tmp / "small", self.small_set, "small")
        nginx = Nginx(
            self.nginx_binary,
            [self.api_site, self.files_site, self.small_site],
            self.tmp / "nginx",
        )
        nginx.tmp.mkdir(exist_ok=True)
        try:
            nginx.start()
        except (OSError, RuntimeError) as exc:
            self.nginx_status = f"nginx could not start: {exc}"
            log(f"setup: {self.nginx_status}")
            self.nginx_binary = None
            return
        self.nginx = nginx
        log(f"setup: {nginx.describe()} (ports {nginx.ports})")

    def api_origin(self) -> tuple[str, str]:
        """(origin, server description) for the API-call measures."""
        if self.nginx is not None:
            return self.nginx.origin("api"), self.nginx.describe()
        if self._fake_origin is None:
            self._fake_origin = self._stack.enter_context(
                fake_zigna_process(self.api_pages * PAGE_SIZE)
            )
        return (
            self._fake_origin,
            "the fake Zigna (zigziik.testing) under uvicorn in a separate process "
            f"(nginx unavailable: {self.nginx_status})",
        )

    def api_order_ids(self) -> list[str]:
        if self.nginx is not None:
            assert self.api_site is not None
            return self.api_site.order_ids
        import urllib.request

        origin, _ = self.api_origin()
        request = urllib.request.Request(
            f"{origin}/v2/orders?take=100&skip=0", headers={"X-ApiKey": API_KEY}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return [o["id"] for o in json.load(response)["orders"]]
