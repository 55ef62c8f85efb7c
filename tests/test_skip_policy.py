"""The suite's own rule (tests/conftest.py): a skip is a failure, and so is a test file that
collects nothing; ``--allow-skips`` turns both off. Run on a throwaway suite in a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FILES = {
    "test_passes.py": "def test_ok():\n    assert True\n",
    "test_skips.py": """
        import pytest

        def test_skipped():
            pytest.skip("no frobnicator here")

        @pytest.mark.skipif(True, reason="never on this machine")
        def test_skipif():
            pass
        """,
    "test_skips_at_import.py": """
        import pytest

        pytest.importorskip("no_such_module_anywhere")

        def test_never_runs():
            pass
        """,
    "test_collects_nothing.py": "def helper():\n    return 1\n",
    "test_needs_python.py": """
        import pytest

        @pytest.mark.needs_python((99, 0))
        def test_of_the_future():
            raise AssertionError("never runs here")
        """,
}


def run_suite(tmp_path: Path, files: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), tests / "conftest.py")
    for name in files:
        (tests / name).write_text(textwrap.dedent(FILES[name]))
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_file_that_skips_itself_at_import_fails_the_run(tmp_path: Path) -> None:
    done = run_suite(tmp_path, ["test_passes.py", "test_skips_at_import.py"])
    out = done.stdout
    assert done.returncode == pytest.ExitCode.INTERRUPTED, out  # a collection error stops it
    assert "no_such_module_anywhere" in out and "this suite allows no skipped test" in out


def test_skipped_tests_are_failures(tmp_path: Path) -> None:
    done = run_suite(tmp_path, ["test_passes.py", "test_skips.py"])
    out = done.stdout
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out
    last = out.splitlines()[-1]
    assert "1 passed" in last and "skipped" not in last, out
    # pytest.skip() fails the test; a skipif marker fails its setup (an error)
    assert "1 failed" in last and "1 error" in last, out
    assert "no frobnicator here" in out and "never on this machine" in out


def test_a_test_file_that_collects_nothing_fails_a_run_over_its_folder(tmp_path: Path) -> None:
    done = run_suite(tmp_path, ["test_passes.py", "test_collects_nothing.py"])
    out = done.stdout
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "1 passed" in out.splitlines()[-1], out
    assert "tests/test_collects_nothing.py: no test collected" in out, out


def test_a_run_of_named_files_does_not_ask_for_the_others(tmp_path: Path) -> None:
    done = run_suite(
        tmp_path, ["test_passes.py", "test_collects_nothing.py"], "tests/test_passes.py"
    )
    assert done.returncode == pytest.ExitCode.OK, done.stdout


def test_allow_skips_reports_skips_as_skips(tmp_path: Path) -> None:
    done = run_suite(tmp_path, sorted(FILES), "--allow-skips")
    out = done.stdout
    assert done.returncode == pytest.ExitCode.OK, out
    assert "1 passed, 3 skipped" in out.splitlines()[-1], out
    assert "no test collected" not in out


def test_a_test_for_a_newer_python_is_deselected_and_counted_not_skipped(tmp_path: Path) -> None:
    done = run_suite(
        tmp_path,
        ["test_passes.py", "test_needs_python.py"],
        "tests/test_passes.py",
        "tests/test_needs_python.py",
    )
    out = done.stdout
    assert done.returncode == pytest.ExitCode.OK, out
    assert "1 passed, 1 deselected" in out.splitlines()[-1], out
    assert "1 tests need a newer Python than" in out


# -- the same rules under pytest-xdist (nox -s tests runs the suite in parallel workers) --------

XDIST = ("-n", "2")


def test_under_xdist_skipped_tests_are_failures(tmp_path: Path) -> None:
    done = run_suite(tmp_path, ["test_passes.py", "test_skips.py"], *XDIST)
    out = done.stdout
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out
    last = out.splitlines()[-1]
    assert "1 passed" in last and "1 failed" in last and "skipped" not in last, out


def test_under_xdist_a_file_that_collects_nothing_fails_the_run(tmp_path: Path) -> None:
    done = run_suite(tmp_path, ["test_passes.py", "test_collects_nothing.py"], *XDIST)
    out = done.stdout
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "tests/test_collects_nothing.py: no test collected" in out, out
    assert "tests/test_passes.py: no test collected" not in out, out


def test_under_xdist_a_file_deselected_by_k_still_counts_as_collected(tmp_path: Path) -> None:
    done = run_suite(tmp_path, ["test_passes.py", "test_needs_python.py"], *XDIST, "-k", "ok")
    out = done.stdout
    assert done.returncode == pytest.ExitCode.OK, out
    assert "no test collected" not in out, out
    assert "1 tests need a newer Python than" in out, out
