"""Developer and CI tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``mutation``, ``bench``,
``demo``.

``nox -s tests`` runs the suite on the lowest and the highest Python we support (3.10 and
3.13). With ``CI`` set (as CI sets it) both must be there, or the run fails. Elsewhere a
missing one is left out with a warning, and a machine with neither runs the suite on the
Python that runs nox.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import nox

CLAIMED_PYTHONS = ("3.10", "3.13")
"""The lowest and the highest Python we claim (``requires-python``, the classifiers)."""

ON_CI = "CI" in os.environ

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = ON_CI
nox.options.download_python = "never"  # only what is installed; this network has no Pythons

SOURCES = ["zigziik", "tests", "benchmarks", "examples", "mutation", "noxfile.py"]


def _runs(python: str) -> bool:
    if shutil.which(python) is None:
        return False
    try:
        done = subprocess.run([python, "-c", ""], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _pyenv_folder(version: str) -> str | None:
    """The ``bin`` folder of pyenv's newest install of ``version`` (e.g. 3.10.13 for 3.10)."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
    if not found:
        return None

    def patch(path: str) -> tuple[int, ...]:
        name = path.split(os.sep)[-3]
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    return os.path.dirname(max(found, key=patch))


def _find_pythons() -> list[str]:
    """The claimed versions that can run here. pyenv's shim for a version that is installed
    but not selected (``pyenv global``) fails: then that install's own folder goes on PATH."""
    found = []
    for version in CLAIMED_PYTHONS:
        if not _runs(f"python{version}"):
            folder = _pyenv_folder(version)
            if folder is not None:
                os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")
        if _runs(f"python{version}"):
            found.append(version)
    return found


_FOUND = _find_pythons()
if ON_CI:
    TEST_PYTHONS: list[str] | None = list(CLAIMED_PYTHONS)
elif _FOUND:
    TEST_PYTHONS = _FOUND
    for _missing in sorted(set(CLAIMED_PYTHONS) - set(_FOUND)):
        print(f"nox: Python {_missing} not found; its tests are left out here (CI needs it)")
else:
    TEST_PYTHONS = None
    print(
        f"nox: neither Python {' nor '.join(CLAIMED_PYTHONS)} found; the tests run on "
        f"{sys.version.split()[0]} (CI runs both)"
    )


@nox.session(python=TEST_PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite (unit, respx, loopback servers, asyncio and trio).

    A skipped test or a test file that collects nothing fails the run (see tests/conftest.py).
    The tests run in parallel processes (pytest-xdist): most of the suite waits on sockets,
    servers and subprocesses, so more workers than cores pay. ``$ZIGZIIK_TEST_WORKERS`` sets
    how many (``0``: one process, no xdist).
    """
    session.install("-e", ".[test]")
    workers = os.environ.get("ZIGZIIK_TEST_WORKERS", "4")
    parallel = [] if workers == "0" else ["-n", workers, "--dist", "worksteal"]
    session.run("pytest", "-p", "no:cacheprovider", *parallel, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the examples."""
    session.install("-e", ".[cli,testing,fast,aiohttp,redis]", "mypy>=1.10", "fastapi>=0.110")
    session.run("mypy", "--strict", "zigziik", "examples")


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing of the guarantee modules (mutmut 3): at least 90 % of each module's
    mutants must be killed. ``-- --changed`` only the modules that differ from main,
    ``-- zigziik/retry.py`` the named ones. Runs niced; mutation/run.py says more."""
    session.install("-e", ".[test]", "mutmut==3.8.1", "tomli>=2; python_version < '3.11'")
    session.run("python", "mutation/run.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks, side by side with hand-written httpx and aiohttp (``-- --quick``).

    Nothing is installed here: the runner makes its own plain environment (``pip install .``
    plus the peers' needs, benchmarks/_env.py) and measures there.
    """
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """A harvest against the embedded fake Zigna server."""
    session.install("-e", ".[demo]")
    session.run("zigziik", "demo", *session.posargs)
