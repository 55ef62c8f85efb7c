"""The library works with its core dependencies only (httpx, anyio, attrs, cattrs).

The test environment has many more packages installed (trio brings sniffio, the extras bring
rich, starlette, msgspec, ...). A subprocess blocks them all, so an import that only works
because a test dependency happens to be present fails here and not on a user's machine.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli on 3.10
    import tomli as tomllib

OPTIONAL = [
    "sniffio",
    "trio",
    "rich",
    "starlette",
    "uvicorn",
    "aiohttp",
    "orjson",
    "msgspec",
    "pydantic",
    "fastapi",
    "respx",
    "hypothesis",
    "trustme",
]

SCRIPT = textwrap.dedent(
    """
    import sys

    for name in {blocked!r}:
        sys.modules[name] = None  # any import of it raises ImportError

    import anyio
    import httpx

    import zigziik
    from zigziik import DailyBudget, Order, ZignaClient, ZiikClient
    from zigziik.zigna._convert import decode_json

    KEY = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={{"id": "7", "statusID": 5, "totalPrice": 12.5}})


    async def main() -> None:
        async with ZignaClient(KEY) as own:  # our own httpx client and network layer
            assert own.budget is not None
        mock = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        async with ZignaClient(KEY, http_client=mock, budget=DailyBudget(5)) as zigna:
            order = await zigna.orders.get("7")
            assert type(order) is Order, order
            assert str(order.total_price) == "12.5"
        await mock.aclose()
        async with ZiikClient("https://acme.ziik.io/api", "token") as ziik:
            assert ziik.budget is None


    anyio.run(main)
    body = decode_json(b'{{"id": "1", "totalPrice": 1.25}}', Order, method="GET", url="u")
    assert str(body.total_price) == "1.25"
    print("ok", zigziik.__version__)
    """
)


def test_the_library_needs_only_its_core_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=OPTIONAL)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")


ROOT = Path(__file__).resolve().parents[1]
EXTRA_OF_MODULE = {"zigziik.transports": "aiohttp", "zigziik.testing": "testing"}
"""Modules that belong to an extra: their module-level imports may come from it."""


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _requirement(spec: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", spec)
    assert match is not None, spec
    return match.group(1).lower().replace("_", "-"), match.group(3)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(required, optional) top-level third-party names a module imports: optional ones sit
    inside a function or a ``try`` that catches ImportError."""
    required: set[str] = set()
    optional: set[str] = set()

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            guarded = True
        if isinstance(node, ast.Try) and any(
            "ImportError" in ast.unparse(handler.type or ast.Name("BaseException"))
            for handler in node.handlers
        ):
            for child in node.body:
                visit(child, True)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "zigziik":
                (optional if guarded else required).add(top)
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return required, optional


def test_every_import_is_a_declared_distribution_with_bounds() -> None:
    project = _project()
    core = dict(_requirement(spec) for spec in project["dependencies"])
    extras = {
        name: {_requirement(spec)[0] for spec in specs}
        for name, specs in project["optional-dependencies"].items()
    }
    anywhere = set(core).union(*extras.values())
    for name, bounds in core.items():
        assert ">=" in bounds and "<" in bounds.replace("<=", ""), (
            f"{name} needs bounds: {bounds!r}"
        )
    distributions = importlib.metadata.packages_distributions()
    package = ROOT / "zigziik"
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        extra = next((e for m, e in EXTRA_OF_MODULE.items() if module.startswith(m)), None)
        allowed = set(core) | (extras[extra] if extra else set())
        required, optional = _imports(path)
        for names, scope in ((required, allowed), (optional, anywhere)):
            for top in sorted(names):
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not dists & scope:
                    problems.append(f"{module} imports {top} ({', '.join(sorted(dists))})")
    assert problems == []
    assert {"httpx", "httpcore", "anyio", "attrs", "cattrs"} <= set(core)


INSTALLED_ALONE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import zigziik

    skipped = ("zigziik.testing", "zigziik.transports", "zigziik.__main__")
    names = [m.name for m in pkgutil.walk_packages(zigziik.__path__, "zigziik.")]
    for name in names:
        if not name.startswith(skipped):
            importlib.import_module(name)
    third = sorted({n.split(".")[0] for n in sys.modules} - set(sys.stdlib_module_names))
    print(json.dumps({"modules": len(names), "imported": third}))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a venv and a pip install: minutes on a loaded machine
def test_the_project_installed_alone_imports_everything_its_core_imports(tmp_path: Path) -> None:
    """A fresh virtual environment, ``pip install <this checkout>`` and nothing else: every
    module outside the extras imports, and all it pulls in is a declared dependency's."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    python = env / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    result = subprocess.run(
        [str(python), "-I", "-c", INSTALLED_ALONE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["modules"] > 30
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    present = {d["name"].lower() for d in json.loads(listed.stdout)}
    assert "sniffio" not in present  # the plain install the benchmarks measure
    core = {_requirement(spec)[0] for spec in _project()["dependencies"]}
    assert core <= present
    assert {"httpx", "httpcore", "anyio", "attrs", "cattrs"} <= set(report["imported"])
    checked = subprocess.run(
        [str(python), "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout


QUIET = textwrap.dedent(
    """
    import asyncio, sys

    class Counter:
        tries = 0

        def find_spec(self, name, path=None, target=None):
            if name == "sniffio":
                Counter.tries += 1
                raise ModuleNotFoundError("No module named 'sniffio'", name=name)
            return None

    sys.meta_path.insert(0, Counter())
    sys.modules.pop("sniffio", None)

    import httpcore._synchronization as sync
    from zigziik import ZignaClient

    async def handle(reader, writer):
        while (await reader.readuntil(b"\\r\\n\\r\\n")):
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Content-Length: 11\\r\\n\\r\\n{\\"id\\": \\"7\\"}")
            await writer.drain()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with ZignaClient("3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                               base_url=f"http://127.0.0.1:{port}/v2") as zigna:
            before = Counter.tries
            for _ in range(20):
                assert (await zigna.orders.get("7")).id == "7"
            print(Counter.tries - before, sync.current_async_library())
        server.close()

    asyncio.run(main())
    """
)


def test_without_sniffio_httpcore_does_not_try_to_import_it_per_request() -> None:
    """httpcore 1.0 tries ``import sniffio`` for each lock and event; without sniffio each
    try searches sys.path (about 34 µs, several per request). zigziik's client spares it."""
    result = subprocess.run(
        [sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["0", "asyncio"]
