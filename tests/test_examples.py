"""Every example, copied alone into an empty directory, runs there as its docstring says.

A user copies one file into a project of their own; nothing beside it (another example, the
repository's pytest settings) may be needed.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BACKENDS = ["asyncio", "trio"]

TOKEN_LINE = re.compile(r"^ +(\d+) ms  (.+)$")


def copied_alone(name: str, directory: Path) -> Path:
    target = directory / name
    shutil.copyfile(EXAMPLES / name, target)
    return target


def run_example(name: str, *args: str, directory: Path) -> str:
    completed = subprocess.run(
        [sys.executable, str(copied_alone(name, directory)), *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    return completed.stdout


def sections(output: str) -> dict[str, list[tuple[int, str]]]:
    """Each `header:` line with the `<ms> ms  <token>` lines under it."""
    found: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] | None = None
    for line in output.splitlines():
        token = TOKEN_LINE.match(line)
        if token is not None:
            assert current is not None, line
            current.append((int(token[1]), ast.literal_eval(token[2])))
        elif line.endswith(":"):
            current = found.setdefault(line, [])
    return found


def check_streamed_and_buffered(output: str, streamed: str, buffered: str) -> None:
    found = sections(output)
    assert list(found) == [streamed, buffered]
    streamed_tokens, buffered_tokens = found[streamed], found[buffered]
    text = "".join(token for _, token in streamed_tokens)
    assert len(text.split()) == len(streamed_tokens) == 20
    assert "".join(token for _, token in buffered_tokens) == text
    # The provider sleeps 50 ms before each token, so the buffered first token cannot come
    # before the whole reply was sent (1 s); a streamed one comes right after the first sleep.
    streamed_first, buffered_first = streamed_tokens[0][0], buffered_tokens[0][0]
    assert streamed_first < 1000 <= buffered_first
    assert streamed_tokens[-1][0] >= 1000
    times = [elapsed for elapsed, _ in streamed_tokens]
    assert times == sorted(times)
    summary = output.splitlines()[-1]
    assert summary == (
        f"time to first token: {streamed_first} ms streamed, {buffered_first} ms buffered "
        "(20 tokens, 50 ms apart)"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_chat_stream_streams_tokens_and_the_buffering_transport_does_not(
    backend: str, tmp_path: Path
) -> None:
    output = run_example("chat_stream.py", backend, directory=tmp_path)
    check_streamed_and_buffered(
        output,
        "openai SDK -> in-process bridge (streams):",
        "openai SDK -> httpx.ASGITransport (buffers the whole response):",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_anthropic_stream_streams_tokens_and_the_buffering_transport_does_not(
    backend: str, tmp_path: Path
) -> None:
    output = run_example("anthropic_stream.py", backend, directory=tmp_path)
    check_streamed_and_buffered(
        output,
        "anthropic SDK -> in-process bridge (streams):",
        "anthropic SDK -> httpx2.ASGITransport (buffers the whole response):",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_bridge_app_streams_end_to_end_with_the_callers_identity(
    backend: str, tmp_path: Path
) -> None:
    output = run_example("bridge_app.py", backend, directory=tmp_path)

    [(header, tokens)] = sections(output).items()
    assert header == "chat service -> bridge app -> fake provider:"
    assert len(tokens) == 16
    text = "".join(token for _, token in tokens)
    assert text.startswith("Tokens stream from the provider")
    # 16 tokens 50 ms apart at the provider: the first gets through the two hops long
    # before the provider is done.
    assert tokens[0][0] < 800 <= tokens[-1][0]
    lines = output.splitlines()
    assert lines[-2] == (
        "bridge forwarded /api/v2/aibridge/openai/v1/chat/completions for key 'example-key' "
        "(source 'agents'): provider answered 200"
    )
    assert lines[-1] == (
        f"16 tokens: first after {tokens[0][0]} ms, last after {tokens[-1][0]} ms "
        "(50 ms apart at the provider)"
    )


def test_quickstart_streams_a_chat_completion_with_the_openai_sdk(tmp_path: Path) -> None:
    output = run_example("quickstart.py", directory=tmp_path)

    assert output == "Hello| from| the| bridge,| token| by| token|"


@pytest.mark.parametrize("backend", BACKENDS)
def test_standalone_bridge_streams_over_http_and_refuses_a_wrong_gateway_key(
    backend: str, tmp_path: Path
) -> None:
    output = run_example("standalone_bridge.py", backend, directory=tmp_path)

    [(header, tokens)] = sections(output).items()
    assert header.startswith("bridge on http://127.0.0.1:")
    assert "".join(token for _, token in tokens).startswith("Each token crosses the socket")
    assert output.splitlines()[-1].startswith("wrong gateway key: ")


def test_the_fixtures_example_passes_copied_alone(tmp_path: Path) -> None:
    # Warnings as errors and strict markers, as a careful project's settings would have them;
    # the loop scope is set so that pytest-asyncio, when installed, does not warn on its own.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "--strict-markers",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            str(copied_alone("test_with_fixtures.py", tmp_path)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.search(r"^12 passed in ", completed.stdout, re.MULTILINE), completed.stdout


def test_sync_chat_streams_tokens_to_the_sync_sdk(tmp_path: Path) -> None:
    output = run_example("sync_chat.py", directory=tmp_path)
    [(header, tokens)] = sections(output).items()
    assert header == "sync openai SDK -> in-process bridge (streams):"
    assert len(tokens) == 20
    assert "".join(token for _, token in tokens).startswith("Each token leaves")
    # 20 tokens 50 ms apart: the first arrives long before the provider is done.
    assert tokens[0][0] < 1000 <= tokens[-1][0]
    assert output.splitlines()[-1] == (
        f"20 tokens: first after {tokens[0][0]} ms, last after {tokens[-1][0]} ms (50 ms apart)"
    )


def test_every_example_is_run_by_a_test() -> None:
    tested = {
        "anthropic_stream.py",
        "bridge_app.py",
        "chat_stream.py",
        "quickstart.py",
        "standalone_bridge.py",
        "sync_chat.py",
        "test_with_fixtures.py",
    }
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested
