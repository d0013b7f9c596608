"""The documentation's code passes `mypy --strict` as a reader's would, and the factories'
overloads catch a transport put into the other client library's client (behaviour §2).

Each page's Python blocks (README.md and docs/*.md, the hidden setup blocks included, the
skipped ones left out, as tests/test_docs.py runs them) become one module, in page order: a
later block builds on the earlier ones, as a reader who copies them does. So that a page can
read like a session, mypy may see a name rebound to another type, a function defined again
and a top-level `await` (its `async with` / `async for` too); everything else is strict.
"""

from __future__ import annotations

import re
import textwrap
import unittest
from pathlib import Path
from typing import Any

from mypy import api as mypy_api
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# What a page may do that a module may not (see the docstring above).
PAGE_OPTIONS = [
    "--allow-redefinition",
    "--disable-error-code=no-redef",
    "--disable-error-code=top-level-await",
]
# mypy reports these two under the `syntax` code, which cannot be disabled alone.
TOP_LEVEL_ASYNC = re.compile(r'error: "async (with|for)" outside async function')


def mypy(paths: list[Path], *options: str) -> list[str]:
    """`mypy --strict` with the project's configuration; the error lines it prints."""
    stdout, stderr, _ = mypy_api.run(
        [
            "--strict",
            f"--config-file={ROOT / 'pyproject.toml'}",
            f"--cache-dir={ROOT / '.mypy_cache'}",
            "--no-error-summary",
            "--hide-error-context",
            *options,
            *map(str, paths),
        ]
    )
    assert not stderr, stderr
    return [line for line in stdout.splitlines() if ": error: " in line]


def page_module(path: Path) -> str:
    """The Python blocks of `path` that tests/test_docs.py runs, as one module."""
    blocks: list[str] = []

    def collect(example: Example) -> None:
        # Each block is preceded by its page line, so an error points back at the page.
        blocks.append(f"# {path.name}, line {example.line}\n{example.parsed}")

    parsers: list[Any] = [CodeBlockParser(language="python", evaluator=collect), SkipParser()]
    for example in Sybil(parsers=parsers, path=str(ROOT)).parse(path).examples():
        try:
            example.evaluate()
        except unittest.SkipTest:
            pass
    return "\n".join(blocks)


def page_error(module: Path, line: str) -> str:
    """An error line of `module`, pointing at the page line of its block."""
    number = int(line.split(":")[1])
    source = module.read_text().splitlines()[:number]
    heading = next(text for text in reversed(source) if re.match(r"# \S+\.md, line \d+$", text))
    return f"{heading[2:]} (+{number - source.index(heading) - 1}): {line.split(': ', 1)[1]}"


def test_every_python_block_of_the_docs_passes_mypy_strict(tmp_path: Path) -> None:
    modules: list[Path] = []
    for path in DOCUMENTS:
        text = page_module(path)
        if text:
            module = tmp_path / f"page_{path.stem.replace('-', '_')}.py"
            module.write_text(text + "\n")
            modules.append(module)
    assert len(modules) >= 8

    errors = [line for line in mypy(modules, *PAGE_OPTIONS) if not TOP_LEVEL_ASYNC.search(line)]

    # mypy names the module by the path it cached it under: find it here by its name.
    by_page = [page_error(tmp_path / Path(line.split(":")[0]).name, line) for line in errors]
    assert not by_page, "\n".join(by_page)


MISMATCHES = """\
import httpx
import httpx2

from aibridge_transport import (
    HTTPTransportFactory,
    InProcessTransportFactory,
    Source,
    TransportFactory,
)
from aibridge_transport.testing import FakeAIBridge


def check(factory: TransportFactory) -> None:
    # The right pairs pass ...
    httpx.AsyncClient(transport=factory.transport_for("openai", Source.AGENTS))
    httpx.Client(transport=factory.transport_for("openai", Source.AGENTS, flavor="httpx"))
    httpx2.AsyncClient(transport=factory.transport_for("openai", "agents", flavor="httpx2"))
    httpx2.Client(transport=factory.transport_for("openai", "agents", flavor="httpx2"))
    # ... the crossed ones do not.
    httpx2.AsyncClient(transport=factory.transport_for("anthropic", Source.AGENTS))  # line 20
    httpx.AsyncClient(transport=factory.transport_for("openai", "a", flavor="httpx2"))  # 21


check(InProcessTransportFactory(FakeAIBridge()))
check(HTTPTransportFactory("http://aibridge.internal", "gateway-key"))
in_process = InProcessTransportFactory(FakeAIBridge())
httpx2.AsyncClient(transport=in_process.transport_for("anthropic", Source.AGENTS))  # line 27
over_http = HTTPTransportFactory("http://aibridge.internal", "gateway-key")
httpx2.Client(transport=over_http.transport_for("anthropic", Source.AGENTS))  # line 29
"""


def test_a_transport_of_one_flavour_in_the_other_flavours_client_is_a_type_error(
    tmp_path: Path,
) -> None:
    module = tmp_path / "mismatches.py"
    module.write_text(textwrap.dedent(MISMATCHES))

    errors = mypy([module])

    assert [(int(line.split(":")[1]), line.rsplit("[", 1)[1]) for line in errors] == [
        (20, "arg-type]"),
        (21, "arg-type]"),
        (27, "arg-type]"),
        (29, "arg-type]"),
    ]
    assert 'incompatible type "Transport"; expected "AsyncBaseTransport | None"' in errors[0]
