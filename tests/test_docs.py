"""Every Python block of README.md and docs/*.md runs, on asyncio and on trio.

Blocks are found and run with sybil: it reads Markdown as a reader does, one namespace per page
and in page order, so a fragment may build on the blocks above it; an HTML comment on the page
can hold what completes a fragment (`<!-- invisible-code-block: python ... -->`), and a block
that cannot run is marked `<!-- skip: next "why" -->` next to a sentence saying so. A page added
to docs/ is collected without being listed here. Top-level `await` is allowed: such a block runs
in `anyio.run` on the backend of the test, as the body of an async `main()` would.

The namespace starts with `__name__ == "__main__"`, so a complete program runs as a script.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import re
import subprocess
import sys
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BACKENDS = ["asyncio", "trio"]
PYTHON_BLOCK = re.compile(
    r"^[ \t]*(```python[ \t]*|<!--[ \t]*invisible-code-block:[ \t]*python)$", re.M
)

pytestmark = [
    # The openai SDK leaves its SSE generators (and the response iterators under them)
    # unfinished when it stops at `[DONE]`; on trio their garbage collection warns.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object "
        r"(SSEDecoder|AsyncStream|Response)\.:pytest.PytestUnraisableExceptionWarning"
    ),
]


class AnyioEvaluator:
    """Runs a block as `exec` does, or, when it awaits at the top level, under `anyio.run`."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.evaluated = 0

    def __call__(self, example: Example) -> None:
        source = pad(example.parsed, example.line + example.parsed.line_offset)
        code = compile(
            source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        namespace = example.namespace
        self.evaluated += 1
        if code.co_flags & inspect.CO_COROUTINE:
            main: Callable[[], Any] = lambda: eval(code, namespace)  # noqa: E731
            anyio.run(main, backend=self.backend)
        else:
            exec(code, namespace)
        namespace.pop("__builtins__", None)


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", DOCUMENTS, ids=relative)
def test_every_python_block_runs(
    path: Path, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = AnyioEvaluator(backend)
    parsers: list[Any] = [CodeBlockParser(language="python", evaluator=evaluator), SkipParser()]
    document = Sybil(parsers=parsers, path=str(ROOT)).parse(path)
    document.namespace.update({"__name__": "__main__"})
    monkeypatch.chdir(tmp_path)  # a block that writes a file writes it here

    skipped: list[str] = []
    for example in document.examples():
        try:
            example.evaluate()
        except unittest.SkipTest as skip:
            skipped.append(f"line {example.line}: {skip}")

    blocks = len(PYTHON_BLOCK.findall(path.read_text()))
    assert evaluator.evaluated + len(skipped) == blocks, "a block was neither run nor skipped"


@pytest.mark.parametrize("path", DOCUMENTS, ids=relative)
def test_every_code_block_names_its_language(path: Path) -> None:
    """A block without a language, or with `py`, would escape the test above."""
    fences = [
        line.strip() for line in path.read_text().splitlines() if line.lstrip().startswith("```")
    ]
    openings = fences[::2]
    assert len(fences) % 2 == 0, "an unclosed code block"
    for opening in openings:
        language = opening.removeprefix("```")
        assert language, f"{relative(path)}: a code block without a language"
        assert language not in {"py", "python3", "pycon"}, f"{relative(path)}: use ```python"


# The first line of a block that awaits at the top level, which a plain script cannot do.
ASYNC_NOTE = (
    "# Top-level await: run it in an async context (an async def, python -m asyncio, a notebook)."
)


@pytest.mark.parametrize("path", DOCUMENTS, ids=relative)
def test_a_block_that_awaits_at_the_top_level_says_it_needs_an_async_context(path: Path) -> None:
    for block in re.findall(r"^```python\n(.*?)^```", path.read_text(), re.M | re.S):
        code = compile(block, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        awaits = bool(code.co_flags & inspect.CO_COROUTINE)
        assert block.startswith(ASYNC_NOTE) == awaits, block.splitlines()[0]


# -- the benchmarks page, rendered from the reference run -------------------------------------


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_benchmarks_page_and_the_readme_summary_match_the_reference_run() -> None:
    completed = run_python("benchmarks/render.py", "--check")

    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_benchmarks_page_shows_the_recorded_versions_and_says_when_none_were(
    tmp_path: Path,
) -> None:
    run = json.loads((ROOT / "benchmarks" / "reference.json").read_text())
    run["meta"]["versions"] = {"httpx": "0.28.1", "anyio": "4.16.0"}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))

    completed = run_python("benchmarks/render.py", "--json", str(path), "--print")

    assert completed.returncode == 0, completed.stderr
    assert "| httpx | 0.28.1 |" in completed.stdout
    assert "| anyio | 4.16.0 |" in completed.stdout
    assert "| trio | not recorded |" in completed.stdout


def sync_reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "benchmarks" / "reference-sync.json").read_text())
    return data


def test_the_benchmarks_page_is_checked_against_the_sync_run_too(tmp_path: Path) -> None:
    run = sync_reference()
    run["results"]["small"]["testclient"]["median"] = 1.2345
    path = tmp_path / "sync.json"
    path.write_text(json.dumps(run))

    checked = run_python("benchmarks/render.py", "--sync-json", str(path), "--check")
    printed = run_python("benchmarks/render.py", "--sync-json", str(path), "--print")

    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "out of date: benchmarks.md" in checked.stdout
    assert printed.returncode == 0, printed.stderr
    assert "| small JSON: latency | 1.23 s |" in printed.stdout


def test_the_benchmarks_page_shows_the_floor_under_a_missed_sync_target_and_failed_requests(
    tmp_path: Path,
) -> None:
    run = sync_reference()
    run["failures"] = {"uvicorn-sync": {"count": 3, "first": "httpx.ReadError: gone"}}
    (row,) = [r for r in run["targets"] if r["target"] == "SSE first event vs TestClient"]
    row.update(value=0.41, met=False, floor=0.33)
    (threads,) = [r for r in run["targets"] if r["reference"] is None]
    threads.update(value=2, met=False)
    path = tmp_path / "sync.json"
    path.write_text(json.dumps(run))

    completed = run_python("benchmarks/render.py", "--sync-json", str(path), "--print")

    assert completed.returncode == 0, completed.stderr
    page = completed.stdout
    assert "| SSE first event vs TestClient | 0.41x | <= 0.30x | **missed** | 0.33x |" in page
    assert "- SSE first event vs TestClient: 0.41x, limit <= 0.30x. Our async path " in page
    assert "measured 0.33x against TestClient in the same rounds" in page
    assert "| threads of ours alive at the end | 2 | <= 1 | **missed** | - |" in page
    assert (
        "In the threads scenario, 3 requests of uvicorn-sync failed over the run (the first: "
        "`httpx.ReadError: gone`); its wall time includes them." in page
    )


def test_the_sync_reference_run_records_its_machine_and_versions() -> None:
    meta = sync_reference()["meta"]

    assert "--sync" in meta["argv"]
    assert "--quick" not in meta["argv"]
    assert meta["cpu"] and meta["cpus"] and meta["commit"] and meta["allocator"]
    for name in ("aibridge-transport", "httpx", "httpx2", "anyio", "trio", "starlette", "uvicorn"):
        assert meta["versions"][name] != "not installed"


def test_compare_puts_two_sync_runs_side_by_side() -> None:
    reference = "benchmarks/reference-sync.json"

    completed = run_python("benchmarks/run.py", "--compare", reference, reference)

    assert completed.returncode == 0, completed.stderr
    rows = [line.split() for line in completed.stdout.splitlines()[1:]]
    assert {(row[0], row[1]) for row in rows} >= {
        ("sync/small", "ours-sync"),
        ("sync/sse_first", "testclient"),
        ("sync/threads_wall", "uvicorn-sync"),
    }
    assert all(row[-1] == "1.00x" for row in rows)


def test_a_benchmark_run_records_the_versions_it_measured() -> None:
    code = "import json, run; print(json.dumps(run.machine()))"
    completed = run_python("-c", f"import sys; sys.path.insert(0, 'benchmarks'); {code}")

    assert completed.returncode == 0, completed.stderr
    versions = json.loads(completed.stdout)["versions"]
    for name in ("aibridge-transport", "httpx", "httpx2", "anyio", "trio", "starlette", "uvicorn"):
        assert versions[name] == importlib.metadata.version(name)


# -- the behaviour reference -------------------------------------------------------------------

# Cited as "behaviour §N" in code, tests and issues: numbers, topics and anchors never move.
BEHAVIOUR_SECTIONS = [
    "Public names",
    "The factory",
    "The request the app sees",
    "Identity: source and delegated key",
    "Streaming",
    "Ending, cancelling, timing out",
    "Errors",
    "Lifespan",
    "Backends",
    "The factory slot",
    "The standalone bridge over HTTP",
    "Sync clients",
]


def test_the_behaviour_reference_keeps_its_numbered_sections_and_anchors() -> None:
    text = (ROOT / "docs" / "behaviour.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)

    assert headings == [
        f"{number}. {title} {{#s{number}}}"
        for number, title in enumerate(BEHAVIOUR_SECTIONS, start=1)
    ]
