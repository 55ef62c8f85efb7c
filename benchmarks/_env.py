"""The environment the benchmarks run in: what a plain ``pip install zigziik`` gives, plus
only what the peers and the servers need, never the test extras.

A test environment hides costs a user pays: trio brings sniffio, without which httpcore 1.0
tried a failed ``import sniffio`` for every lock it made (40 % of a call's CPU time, found late
for that reason). So by default ``python -m benchmarks`` builds (once) and refreshes a virtual
environment of its own under ``benchmarks/.work/`` with ``pip install <this checkout>`` and
`PEERS`, re-runs itself there, and refuses to measure in an environment that has any of
`FORBIDDEN`. ``--env current`` measures in the running interpreter instead (its figures are
then labelled so in results.json).

Standard library only: it runs before anything else is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / "benchmarks" / ".work" / "plain-env"
MARKER = "ZIGZIIK_BENCH_ENV"

PEERS = {
    "aiohttp>=3.10": "the raw aiohttp peers (and zigziik's optional aiohttp transport)",
    "pydantic>=2.6": "the listing peer (httpx + pydantic v2)",
    "httpx2>=2.16; python_version >= '3.11'": "zigziik over httpx2, side by side (the extra)",
    "starlette>=0.37": "the fake Zigna and Ziik servers (child processes), not the clients",
    "uvicorn>=0.30": "the fake servers",
    "redis[hiredis]>=5": "the Redis budget store (the [redis] extra a user installs to share a budget)",
}
"""What the environment adds to ``pip install .``, and why."""

FORBIDDEN = ("sniffio", "trio", "msgspec", "pytest", "hypothesis", "respx")
"""Distributions a plain install does not have and that change what is measured."""


def _python(env: Path) -> Path:
    return env / ("Scripts" if sys.platform == "win32" else "bin") / "python"


def _pip(python: Path, *args: str) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    subprocess.run(command, check=True)


def build(env: Path = ENV_DIR) -> Path:
    """Create (or refresh) the environment; return its interpreter."""
    python = _python(env)
    if not python.exists():
        print(f"benchmarks: making the plain environment {env}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
        _pip(python, str(ROOT), *PEERS)
    else:  # this checkout's zigziik, its declared dependencies as pip resolves them
        _pip(python, "--force-reinstall", "--no-deps", str(ROOT))
        _pip(python, str(ROOT), *PEERS)
    return python


def present() -> dict[str, str]:
    """The distributions importable here, by normalised name."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found[name.lower().replace("_", "-")] = dist.version
    return found


def check(found: dict[str, str]) -> list[str]:
    """The forbidden distributions that are present."""
    return [name for name in FORBIDDEN if name in found]


def reexec_in_plain_env(argv: list[str]) -> None:
    """Run ``python -m benchmarks argv`` again in the plain environment (does not return)."""
    python = build()
    environ = dict(os.environ, **{MARKER: "plain"})
    # The measures import zigziik from the environment's site-packages, not from the
    # checkout: the checkout's root must not be on sys.path (so: -P, and the benchmarks
    # package reached through a folder that holds nothing else).
    shim = ENV_DIR.parent / "path"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "benchmarks"
    if not link.exists():
        link.symlink_to(ROOT / "benchmarks", target_is_directory=True)
    environ["PYTHONPATH"] = str(shim)
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    os.chdir(shim)
    os.execve(str(python), [str(python), *flags, "-m", "benchmarks", *argv], environ)


def describe() -> dict[str, object]:
    """For results.json: which environment this is and what it holds."""
    found = present()
    return {
        "kind": os.environ.get(MARKER, "current"),
        "python": sys.executable,
        "peers": PEERS,
        "forbidden_present": check(found),
        "distributions": json.loads(json.dumps(dict(sorted(found.items())))),
    }
