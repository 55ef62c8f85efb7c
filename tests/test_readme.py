"""Every ```python block of README.md runs, against the fake servers, so the README cannot rot.

How blocks are found and run:

- Fenced blocks (```` ``` ```` or ``~~~``) whose info string starts with ``python`` (or ``py``,
  ``python3``) are Python blocks; every other block (``sh``, ``text``, a bare fence, the error
  tree...) is left alone.
- A Python block runs unless it is marked ``no-run``, either in its info string
  (```` ```python no-run ````) or by a ``<!-- no-run -->`` comment on the last non-blank line
  before it. A ``no-run`` block must still compile.
- Blocks run in README order, each in a fresh ``__main__`` namespace (as ``python block.py``
  would), inside its own temporary working directory, with fresh fake servers:
  ``ZIGNA_API_KEY``/``ZIGNA_BASE_URL`` point at a `FakeZigna` and ``ZIIK_BASE_URL``,
  ``ZIIK_TOKEN``, ``ZIIK_USERNAME``/``ZIIK_PASSWORD`` at a `FakeZiik`. A block marked
  ``continue`` (```` ```python continue ```` or ``<!-- continue -->``) runs in the namespace,
  directory and servers of the block before it, for a story told in several steps.
- A block whose info string says ``httpx2`` (```` ```python httpx2 ````) needs httpx2, which
  needs Python 3.11: where httpx2 is not installed it is skipped, saying so.
- A block fails the test if it raises (``SystemExit`` with code 0 or ``None`` is fine), or if a
  ``ResourceWarning`` (an unclosed client, say) shows up while it runs. Tracebacks point at
  README.md's own line numbers.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zigziik.testing import DEMO_API_KEY, FakeZigna, serve
from zigziik.testing._ziik import FakeZiik

README = Path(__file__).resolve().parent.parent / "README.md"

PYTHON_LANGUAGES = {"python", "py", "python3"}
ZIIK_TOKEN = "readme-ziik-token"
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
_MARKER = re.compile(r"^<!--\s*(?P<flag>no-run|continue)\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, what it says, and how to treat it."""

    line: int  # README line number of the block's first code line
    language: str
    flags: frozenset[str]
    code: str
    heading: str = ""

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON_LANGUAGES

    @property
    def runs(self) -> bool:
        return self.is_python and "no-run" not in self.flags

    @property
    def continues(self) -> bool:
        return "continue" in self.flags

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-") or "top"
        return f"L{self.line}-{slug}"


def extract_blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown`` (CommonMark-style fences; unclosed runs to the end)."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    heading = ""
    marks: set[str] = set()
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = _FENCE.match(line)
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            if title := _HEADING.match(line):
                heading = title["title"]
            if marker := _MARKER.match(line.strip()):
                marks.add(marker["flag"])
            elif line.strip():
                marks.clear()
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        words = opening["info"].strip().split()
        language = words[0].lower() if words else ""
        flags = frozenset(word.lower() for word in words[1:]) | frozenset(marks)
        marks.clear()
        body: list[str] = []
        index += 1
        start = index + 1
        while index < len(lines):
            closing = lines[index]
            stripped = closing.lstrip(" ")
            if (
                len(closing) - len(stripped) <= 3
                and stripped.startswith(fence)
                and not stripped.strip().strip(fence[0])
            ):
                break
            body.append(_dedent(closing, indent))
            index += 1
        index += 1  # past the closing fence
        code = "\n".join(body) + "\n"
        blocks.append(Block(start, language, flags, code, heading))
    return blocks


def _dedent(line: str, indent: int) -> str:
    removable = len(line) - len(line.lstrip(" "))
    return line[min(indent, removable) :]


def sessions(blocks: list[Block]) -> list[list[Block]]:
    """The runnable Python blocks, grouped: a block plus the ``continue`` blocks after it."""
    groups: list[list[Block]] = []
    for block in blocks:
        if not block.runs:
            continue
        if block.continues and groups:
            groups[-1].append(block)
        else:
            groups.append([block])
    return groups


@dataclass
class Session:
    """What the blocks of one session share: a namespace and a working directory."""

    source: Path
    directory: Path
    namespace: dict[str, Any] = field(default_factory=dict)

    def run(self, block: Block) -> None:
        """Run ``block`` as ``__main__``; its traceback lines are the README's own."""
        padded = "\n" * (block.line - 1) + block.code
        compiled = compile(padded, str(self.source), "exec")
        script = self.directory / f"readme_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        module = types.ModuleType("__main__")
        module.__dict__.update(self.namespace)
        module.__dict__.update({"__file__": str(script), "__builtins__": __builtins__})
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = module  # pydantic, dataclasses, pickle look names up here
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResourceWarning)
                try:
                    exec(compiled, module.__dict__)
                except SystemExit as exc:
                    if exc.code not in (0, None):
                        raise AssertionError(
                            f"block at line {block.line} exited {exc.code}"
                        ) from exc
                gc.collect()
        finally:
            sys.modules["__main__"] = saved
        self.namespace = module.__dict__
        leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaks, f"the block at line {block.line} leaked resources: {leaks}"


@contextmanager
def fake_environment(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Iterator[None]:
    """Fresh fake servers, the environment pointing at them, and ``directory`` as the cwd."""
    zigna = FakeZigna(orders=6, pictures_per_order=(2, 4), picture_size=(2_000, 12_000))
    ziik = FakeZiik(token=ZIIK_TOKEN)
    with ExitStack() as stack:
        zigna_origin = stack.enter_context(serve(zigna.app))
        ziik_origin = stack.enter_context(serve(ziik.app))
        monkeypatch.setenv("ZIGNA_API_KEY", DEMO_API_KEY)
        monkeypatch.setenv("ZIGNA_BASE_URL", zigna_origin + "/v2")
        monkeypatch.setenv("ZIIK_BASE_URL", ziik_origin + "/api")
        monkeypatch.setenv("ZIIK_TOKEN", ZIIK_TOKEN)
        monkeypatch.setenv("ZIIK_USERNAME", ziik.username)
        monkeypatch.setenv("ZIIK_PASSWORD", ziik.password)
        monkeypatch.chdir(directory)
        yield


def run_session(
    blocks: list[Block], source: Path, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_environment(monkeypatch, directory):
        session = Session(source, directory)
        for block in blocks:
            session.run(block)


def _readme_blocks() -> list[Block]:
    return extract_blocks(README.read_text(encoding="utf-8")) if README.is_file() else []


_SESSIONS = sessions(_readme_blocks())


# -- the README itself -----------------------------------------------------------------------


def test_readme_found_and_every_python_block_compiles() -> None:
    assert README.is_file(), f"no README at {README}"
    blocks = _readme_blocks()
    python = [b for b in blocks if b.is_python]
    for block in python:
        compile("\n" * (block.line - 1) + block.code, str(README), "exec")
    running = sum(len(group) for group in _SESSIONS)
    print(
        f"README.md: {len(blocks)} fenced blocks, {len(python)} Python, {running} run "
        f"in {len(_SESSIONS)} sessions, {len(python) - running} compiled only (no-run)"
    )
    assert running == sum(1 for b in python if b.runs)


def _session_param(blocks: list[Block]) -> Any:
    """A session; one that uses httpx2 needs Python 3.11 (httpx2's floor; deselected before)."""
    uses_httpx2 = any("httpx2" in block.flags for block in blocks)
    marks = [pytest.mark.needs_python((3, 11))] if uses_httpx2 else []
    return pytest.param(blocks, marks=marks, id=blocks[0].id)


@pytest.mark.parametrize("blocks", [_session_param(group) for group in _SESSIONS])
def test_readme_block(blocks: list[Block], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_session(blocks, README, tmp_path, monkeypatch)


# -- the harness -------------------------------------------------------------------------------

SAMPLE = """\
# Title

Some text.

```python
import os
RESULT = os.environ["ZIGNA_BASE_URL"]
from pathlib import Path
Path("written.txt").write_text(RESULT)
```

```sh
exit 1
```

## Second part

```python no-run
import anyio
anyio.run(forever)  # would never end
```

<!-- no-run -->

```python
raise RuntimeError("never run")
```

~~~py
step = 1
~~~

<!-- continue -->
```python
step += 1
assert step == 2
```

```
plain fence, not Python
```

  ```Python continue
  assert step == 2
  ```
"""


def test_extract_blocks_finds_languages_flags_lines_and_headings() -> None:
    blocks = extract_blocks(SAMPLE)
    assert [(b.language, sorted(b.flags), b.line) for b in blocks] == [
        ("python", [], 6),
        ("sh", [], 13),
        ("python", ["no-run"], 19),
        ("python", ["no-run"], 26),
        ("py", [], 30),
        ("python", ["continue"], 35),
        ("", [], 40),
        ("python", ["continue"], 44),
    ]
    assert blocks[0].heading == "Title"
    assert blocks[2].heading == "Second part"
    assert blocks[0].code.startswith("import os\n")
    assert blocks[-1].code == "assert step == 2\n"  # the fence's indent is removed
    assert [b.runs for b in blocks] == [True, False, False, False, True, True, False, True]
    groups = sessions(blocks)
    assert [[b.line for b in group] for group in groups] == [[6], [30, 35, 44]]


def test_a_marker_applies_only_to_the_next_block() -> None:
    text = "<!-- no-run -->\n\nSome prose.\n\n```python\nx = 1\n```\n"
    (block,) = extract_blocks(text)
    assert block.runs


def test_harness_runs_blocks_in_the_fake_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "SAMPLE.md"
    source.write_text(SAMPLE, encoding="utf-8")
    for number, group in enumerate(sessions(extract_blocks(SAMPLE))):
        directory = tmp_path / f"session{number}"
        directory.mkdir()
        run_session(group, source, directory, monkeypatch)
    written = (tmp_path / "session0" / "written.txt").read_text()
    assert written.startswith("http://127.0.0.1:") and written.endswith("/v2")
    assert os.environ.get("ZIGNA_BASE_URL") != written  # the environment was restored


def test_a_failing_block_fails_with_the_readme_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "# Broken\n\n```python\nx = 1\n\nraise ValueError('documented wrongly')\n```\n"
    source = tmp_path / "BROKEN.md"
    source.write_text(text, encoding="utf-8")
    (group,) = sessions(extract_blocks(text))
    with pytest.raises(ValueError, match="documented wrongly") as info:
        run_session(group, source, tmp_path, monkeypatch)
    last = info.traceback[-1]
    assert Path(str(last.path)) == source
    assert last.lineno + 1 == 6  # pytest's line numbers are 0-based


def test_a_block_that_exits_nonzero_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = "```python\nimport sys\nsys.exit(0)\n```\n"
    bad = "```python\nimport sys\nsys.exit(3)\n```\n"
    run_session(sessions(extract_blocks(ok))[0], tmp_path / "x.md", tmp_path, monkeypatch)
    with pytest.raises(AssertionError, match="exited 3"):
        run_session(sessions(extract_blocks(bad))[0], tmp_path / "x.md", tmp_path, monkeypatch)


def test_a_block_that_leaks_a_client_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "```python\nfrom zigziik import ZignaClient\nZignaClient()\n```\n"
    with pytest.raises(AssertionError, match="leaked resources"):
        run_session(sessions(extract_blocks(text))[0], tmp_path / "x.md", tmp_path, monkeypatch)


def test_a_no_run_block_must_still_compile() -> None:
    text = "```python no-run\ndef broken(:\n```\n"
    (block,) = extract_blocks(text)
    assert not block.runs
    with pytest.raises(SyntaxError):
        compile(block.code, "README.md", "exec")


def test_blocks_see_a_fresh_main_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "```python\n"
        "import dataclasses, sys\n"
        "assert __name__ == '__main__' and sys.modules['__main__'].__dict__ is globals()\n"
        "@dataclasses.dataclass\n"
        "class Point:\n"
        "    x: int\n"
        "assert Point(1).x == 1\n"
        "```\n"
        "```python\n"
        "assert 'Point' not in globals()\n"
        "```\n"
    )
    for group in sessions(extract_blocks(text)):
        run_session(group, tmp_path / "x.md", tmp_path, monkeypatch)
