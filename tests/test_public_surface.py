"""The public surface is what it means to be: ``zigziik``'s own names, plus a few more in the
modules that hold them (types a caller may annotate with, the optional transport, the testing
toolkit, the command's exit codes). Internals stay out of every ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import zigziik
import zigziik.errors

ALSO_PUBLIC = {
    "zigziik.cli": {
        "EXIT_FAILED",
        "EXIT_INTERRUPTED",
        "EXIT_OK",
        "EXIT_USAGE",
        "build_parser",
        "main",
    },
    # The types of the BudgetStore protocol's and DailyBudget.reserve's signatures (what a
    # store of one's own implements against).
    "zigziik.ratelimit": {"BudgetDecision", "BudgetTerms"},
    "zigziik.retry": {"Failure", "FailureKind"},  # what RetryPolicy.delay_for takes
    "zigziik.transports": {"AiohttpClient", "AiohttpTransport", "aiohttp_client"},
    "zigziik.zigna": {"DEFAULT_BASE_URL", "Orders", "Pictures"},
    "zigziik.zigna.client": {"DEFAULT_BASE_URL", "Orders", "Pictures"},
    # The harvest itself, the type of its strategy option, and the error it raises for a
    # symbolic link under dest_dir.
    "zigziik.zigna.harvest": {"Strategy", "UnsafePathError", "harvest"},
    "zigziik.ziik": {"FileVersions", "Relationships", "Units", "Unset"},
    "zigziik.ziik.client": {"Units"},
    "zigziik.ziik.models": {"FileVersions", "Relationships", "Unset"},
}
"""Beyond ``zigziik.__all__``: the names each public module may export."""

SEPARATE = ("zigziik.testing",)
"""Modules with a surface of their own: the testing toolkit."""


def _public_modules() -> list[str]:
    names = []
    for module in pkgutil.walk_packages(zigziik.__path__, "zigziik."):
        if any(part.startswith("_") for part in module.name.split(".")[1:]):
            continue
        if module.name.startswith(SEPARATE):
            continue
        names.append(module.name)
    return names


@pytest.mark.parametrize("name", _public_modules())
def test_a_public_module_exports_only_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(getattr(module, "__all__", ()))
    assert exported - set(zigziik.__all__) - ALSO_PUBLIC.get(name, set()) == set()
    for attribute in exported:
        assert hasattr(module, attribute), attribute


def test_every_error_is_in_errors_all() -> None:
    errors = {
        name
        for name, value in vars(zigziik.errors).items()
        if isinstance(value, type) and issubclass(value, zigziik.ZigziikError)
    }
    assert errors <= set(zigziik.errors.__all__)
    assert "IncompleteBodyError" in zigziik.errors.__all__
