"""Every code block of docs/testing.md runs, on asyncio and trio."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import anthropic
import anyio
import pytest
from sdk_helpers import UNEXHAUSTED_SSE, forbid_network

# Inner runs are in process: pytester drops the modules they import when they end, while the
# factory keeps the flavour classes it built. Importing the flavours here keeps both alive.
import aibridge_transport.httpx2
import aibridge_transport.testing  # noqa: F401
from aibridge_transport.testing._versions import ANTHROPIC_VERSIONS

pytest_plugins = ["pytester"]

PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
TESTS = [block for block in BLOCKS if "async def test_" in block]
SCRIPTS = [block for block in BLOCKS if block not in TESTS]

INI = """\
[pytest]
addopts = --strict-markers -p no:cacheprovider
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    ignore:Async generator 'httpx2?\\.:ResourceWarning
    ignore:Exception ignored in. <async_generator object:pytest.PytestUnraisableExceptionWarning
"""

BOTH_BACKENDS = """\
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


def test_the_page_has_code_blocks_of_both_kinds() -> None:
    assert TESTS
    assert len(SCRIPTS) >= 3


@UNEXHAUSTED_SSE  # the agent-loop blocks stream with openai, which stops at [DONE]
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("block", SCRIPTS, ids=lambda block: block.splitlines()[-1][:40])
def test_script_blocks_run(block: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)
    namespace: dict[str, Any] = {"__name__": "docs_block"}
    exec(compile(block, str(PAGE), "exec"), namespace)
    main = namespace.get("main")
    if main is not None:
        anyio.run(cast(Callable[[], Awaitable[None]], main), backend=backend)


@pytest.mark.parametrize("block", TESTS, ids=lambda block: block.splitlines()[-1][:40])
def test_test_blocks_pass_with_the_fixtures(block: str, pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(BOTH_BACKENDS)
    pytester.makepyfile(test_docs_block=block)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2 * block.count("async def test_"))


def locked_version(package: str) -> str:
    lock = PAGE.parent.parent / "requirements" / "lock.txt"
    [version] = re.findall(rf"^{package}==(\S+)", lock.read_text(), flags=re.MULTILINE)
    return str(version)


def test_the_page_names_the_versions_the_fake_is_checked_against() -> None:
    # The conformance suite runs against the locked SDKs; the page says which, and the
    # Anthropic API version their default header names.
    text = PAGE.read_text()
    assert f"openai {locked_version('openai')}" in text
    assert f"anthropic {locked_version('anthropic')}" in text
    assert f"`{anthropic._constants.ANTHROPIC_API_VERSION}` | anthropic 2.x by default" in text
    versions = [rules.version for rules in ANTHROPIC_VERSIONS]
    assert all(f"| `{version}` |" in text for version in versions)
