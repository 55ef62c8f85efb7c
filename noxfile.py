"""Developer and CI tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``demo``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True

SOURCES = ["zigziik", "tests", "benchmarks", "examples", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (unit, respx, loopback servers, asyncio and trio)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


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
