"""What a new user meets first: install hints, the extras the demos need, and how a missing
delegated key looks through each SDK (docs/sdks.md)."""

from __future__ import annotations

import ast
import importlib.metadata
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from packaging.requirements import Requirement
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from aibridge_transport import (
    FlavorMismatchError,
    HTTPTransportFactory,
    InProcessTransportFactory,
    MissingDelegatedAPIKeyError,
    Source,
    delegated_api_key_id_from_context,
    unwrap,
    with_delegated_api_key_id,
)
from aibridge_transport._lifespan import NO_LIFESPAN_HINT
from aibridge_transport.testing import FakeAIBridge
from aibridge_transport.types import Receive, Scope, Send

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "aibridge-transport"


# -- a missing delegated key, as each SDK shows it (docs/sdks.md) ---------------------------


def anthropic_client(
    factory: InProcessTransportFactory, attempts: list[str], max_retries: int
) -> anthropic.AsyncAnthropic:
    async def count(request: httpx2.Request) -> None:
        attempts.append(request.url.path)

    transport = factory.transport_for("anthropic", Source.AGENTS, flavor="httpx2")
    return anthropic.AsyncAnthropic(
        base_url="http://aibridge",
        api_key="unused-in-process",
        http_client=httpx2.AsyncClient(transport=transport, event_hooks={"request": [count]}),
        max_retries=max_retries,
    )


async def ask_anthropic(client: anthropic.AsyncAnthropic) -> None:
    await client.messages.create(
        model="claude-sonnet-5-5", max_tokens=16, messages=[{"role": "user", "content": "Hi"}]
    )


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "aibridge_transport" and record.levelno == logging.WARNING
    ]


@pytest.mark.anyio
async def test_anthropic_retries_a_missing_key_and_reports_a_connection_error_caused_by_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = FakeAIBridge()
    factory = InProcessTransportFactory(bridge)
    attempts: list[str] = []
    client = anthropic_client(factory, attempts, max_retries=2)

    with pytest.raises(anthropic.APIConnectionError) as caught:
        await ask_anthropic(client)
    await client.close()

    # The cause is in the log too, once per refused attempt (behaviour §7).
    assert (
        refusals(caplog)
        == [
            "refused a request (provider=anthropic source=agents): no delegated API key id on the "
            "caller's context: wrap the call in `with with_delegated_api_key_id(key_id):`"
        ]
        * 3
    )
    assert unwrap(caught.value) is caught.value.__cause__

    assert str(caught.value) == "Connection error."
    assert isinstance(caught.value.__cause__, MissingDelegatedAPIKeyError)
    assert "with_delegated_api_key_id" in str(caught.value.__cause__)
    assert attempts == ["/v1/messages"] * 3  # the first try and the SDK's two retries
    assert bridge.requests == []  # the app never ran


@pytest.mark.anyio
async def test_the_documented_pattern_finds_the_missing_key_behind_anthropics_error() -> None:
    bridge = FakeAIBridge()
    factory = InProcessTransportFactory(bridge)
    client = anthropic_client(factory, [], max_retries=0)

    # The pattern docs/sdks.md gives, as written there.
    with pytest.raises(MissingDelegatedAPIKeyError):
        try:
            await ask_anthropic(client)
        except anthropic.APIConnectionError as exc:
            if isinstance(exc.__cause__, MissingDelegatedAPIKeyError):
                raise exc.__cause__ from None
            raise
    await client.close()


@pytest.mark.anyio
async def test_the_documented_guard_fails_before_anthropic_is_called() -> None:
    bridge = FakeAIBridge()
    factory = InProcessTransportFactory(bridge)
    attempts: list[str] = []
    client = anthropic_client(factory, attempts, max_retries=2)

    with pytest.raises(MissingDelegatedAPIKeyError):
        if delegated_api_key_id_from_context() is None:
            raise MissingDelegatedAPIKeyError()
        await ask_anthropic(client)
    await client.close()

    assert attempts == []


@pytest.mark.anyio
async def test_openai_raises_a_missing_key_as_it_is_without_retrying() -> None:
    bridge = FakeAIBridge()
    factory = InProcessTransportFactory(bridge)
    attempts: list[str] = []

    async def count(request: httpx2.Request) -> None:
        attempts.append(request.url.path)

    transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
    client = openai.AsyncOpenAI(
        base_url="http://aibridge/v1",
        api_key="unused-in-process",
        http_client=httpx2.AsyncClient(transport=transport, event_hooks={"request": [count]}),
    )

    with pytest.raises(MissingDelegatedAPIKeyError):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    await client.close()

    assert attempts == ["/v1/chat/completions"]
    assert bridge.requests == []


@pytest.mark.anyio
async def test_a_wrong_flavour_behind_anthropics_connection_error_is_logged_and_unwrapped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = InProcessTransportFactory(FakeAIBridge())
    wrong: Any = factory.transport_for("anthropic", "cli")  # flavor="httpx2" forgotten
    client = anthropic.AsyncAnthropic(
        base_url="http://aibridge",
        api_key="unused-in-process",
        http_client=httpx2.AsyncClient(transport=wrong),
        max_retries=1,
    )

    with with_delegated_api_key_id("key-7f3a-secret"), pytest.raises(Exception) as caught:
        await ask_anthropic(client)
    await client.close()

    assert type(caught.value) is anthropic.APIConnectionError
    cause = unwrap(caught.value)
    assert isinstance(cause, FlavorMismatchError) and isinstance(cause, TypeError)
    logged = refusals(caplog)
    assert len(logged) == 2  # the first try and the one retry
    assert logged[0].startswith("refused a request (provider=anthropic source=cli): this ")
    assert 'flavor="httpx2"' in logged[0]
    assert all("key-7f3a-secret" not in line for line in caplog.text.splitlines())


@pytest.mark.anyio
async def test_the_http_factory_logs_its_refusals_before_anything_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = HTTPTransportFactory("http://127.0.0.1:9", "gateway-key-secret")
    transport = factory.transport_for("openai", Source.AGENTS)
    async with httpx.AsyncClient(transport=transport, base_url="http://aibridge") as client:
        with pytest.raises(MissingDelegatedAPIKeyError):
            await client.get("/v1/models")
    await factory.aclose()

    assert refusals(caplog) == [
        "refused a request (provider=openai source=agents): no delegated API key id on the "
        "caller's context: wrap the call in `with with_delegated_api_key_id(key_id):`"
    ]
    assert "gateway-key-secret" not in caplog.text


def test_unwrap_finds_the_library_error_then_the_client_error_then_gives_up() -> None:
    library = MissingDelegatedAPIKeyError()
    transport_error = httpx2.RemoteProtocolError("incomplete response")
    transport_error.__cause__ = ValueError("the app's own")
    wrapped_library = RuntimeError("Connection error.")
    wrapped_library.__cause__ = library
    wrapped_transport = RuntimeError("Connection error.")
    wrapped_transport.__cause__ = transport_error
    plain = RuntimeError("nothing behind it")
    looped = RuntimeError("a cycle")
    looped.__cause__ = looped

    assert unwrap(wrapped_library) is library
    assert unwrap(library) is library
    assert unwrap(wrapped_transport) is transport_error
    assert unwrap(plain) is plain
    assert unwrap(looped) is looped


# -- missing extras ---------------------------------------------------------------------------


def import_without(blocked: str, module: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys; sys.modules[{blocked!r}] = None; import {module}"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [
        ("starlette", "aibridge_transport.testing", "testing"),
        ("httpx2", "aibridge_transport.httpx2", "httpx2"),
    ],
)
def test_a_missing_extra_says_which_extra_to_install(blocked: str, module: str, extra: str) -> None:
    completed = import_without(blocked, module)

    assert completed.returncode == 1
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: ")
    assert f"(the {extra} extra): pip install {blocked}" in last_line


def extra_closure(extra: str) -> set[str]:
    """Every distribution an extra of this package installs, its own extras followed."""
    found: set[str] = set()
    pending = [extra]
    seen_extras: set[str] = set()
    while pending:
        current = pending.pop()
        seen_extras.add(current)
        for line in importlib.metadata.requires(DISTRIBUTION) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            in_extra = marker is None or marker.evaluate({"extra": current})
            if not in_extra:
                continue
            name = requirement.name.lower().replace("_", "-")
            if name == DISTRIBUTION:
                pending.extend(requirement.extras - seen_extras)
            else:
                found.add(name)
    return found


def third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names} - {"aibridge_transport"}


def test_the_examples_extra_installs_everything_the_examples_import() -> None:
    """The README's demo commands (trio included) work after the README's install line."""
    installed = extra_closure("examples")
    by_module = importlib.metadata.packages_distributions()
    for path in sorted((ROOT / "examples").glob("*.py")):
        for module in third_party_imports(path):
            if module == "pytest":  # the fixtures example is run by the user's own pytest
                continue
            distributions = {name.lower() for name in by_module.get(module, [])}
            assert distributions & installed, f"{path.name} imports {module}, not in [examples]"
    assert "trio" in installed


def test_the_readme_install_line_names_the_examples_extra_the_demo_needs() -> None:
    readme = (ROOT / "README.md").read_text()
    demo = re.search(r"pip install -e '\.\[examples\]' && \.venv/bin/python examples/", readme)
    assert demo is not None


def test_the_quick_start_install_line_brings_everything_the_quick_start_imports() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") :]
    line = re.search(r"`pip install -e '\.\[([a-z0-9,]+)\]'((?: [a-z0-9-]+)*)`", quick_start)
    assert line is not None
    installed = {name for extra in line[1].split(",") for name in extra_closure(extra)}
    installed |= {"httpx", "anyio"} | set(line[2].split())
    by_module = importlib.metadata.packages_distributions()
    for module in third_party_imports(ROOT / "examples" / "quickstart.py"):
        distributions = {name.lower() for name in by_module.get(module, [])}
        assert distributions & installed, f"the quick start imports {module}"


# -- a factory never entered, whose app needs its lifespan (behaviour §8) ---------------------


@asynccontextmanager
async def lifespan_with_state(app: Starlette) -> AsyncIterator[dict[str, str]]:
    app.state.greeting = "hello"  # the older pattern: state on the app object
    yield {"upstream": "connected"}  # the ASGI lifespan state: on each request's scope


async def reads_request_state(request: Request) -> Response:
    return PlainTextResponse(request.state.upstream)


async def reads_app_state(request: Request) -> Response:
    return PlainTextResponse(request.app.state.greeting)


async def reads_something_else(request: Request) -> Response:
    return PlainTextResponse(request.unknown_attribute)  # type: ignore[attr-defined]


def stateful_bridge() -> Starlette:
    return Starlette(
        lifespan=lifespan_with_state,
        routes=[
            Route("/api/v2/aibridge/openai/request-state", reads_request_state),
            Route("/api/v2/aibridge/openai/app-state", reads_app_state),
            Route("/api/v2/aibridge/openai/other", reads_something_else),
        ],
    )


async def scope_state_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = scope["state"]["upstream"].encode()  # the lifespan state, looked up raw
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def get_through(factory: InProcessTransportFactory, path: str) -> httpx.Response:
    transport = factory.transport_for("openai", Source.AGENTS)
    async with httpx.AsyncClient(transport=transport, base_url="http://aibridge") as client:
        with with_delegated_api_key_id("key-1"):
            return await client.get(path)


def app_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "aibridge_transport" and record.levelno == logging.ERROR
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/request-state", "/app-state"])
async def test_a_factory_never_entered_names_the_missing_lifespan_in_its_500_log_line(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    factory = InProcessTransportFactory(stateful_bridge())  # no `async with`

    response = await get_through(factory, path)

    assert response.status_code == 500
    [line] = app_failures(caplog)
    # Starlette sends its own 500 and then re-raises: the response is complete by then.
    assert line.startswith("ASGI app raised after completing the response to GET /api/v2/")
    assert line.endswith(NO_LIFESPAN_HINT)
    assert "the factory was never entered (lifespan not run)" in line
    assert caplog.records[-1].exc_info is not None
    exc = caplog.records[-1].exc_info[1]
    assert isinstance(exc, AttributeError)
    assert exc.__notes__ == [NO_LIFESPAN_HINT]


@pytest.mark.anyio
async def test_a_raw_lookup_in_the_empty_scope_state_names_the_missing_lifespan_too() -> None:
    factory = InProcessTransportFactory(scope_state_app, raise_app_exceptions=True)

    with pytest.raises(KeyError) as caught:
        await get_through(factory, "/v1/models")

    assert caught.value.__notes__ == [NO_LIFESPAN_HINT]


@pytest.mark.anyio
async def test_an_entered_factory_serves_the_state_and_other_failures_get_no_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with InProcessTransportFactory(stateful_bridge()) as factory:
        request_state = await get_through(factory, "/request-state")
        app_state = await get_through(factory, "/app-state")
    never_entered = InProcessTransportFactory(stateful_bridge())
    other = await get_through(never_entered, "/other")

    assert (request_state.text, app_state.text) == ("connected", "hello")
    assert other.status_code == 500
    [line] = app_failures(caplog)
    assert "lifespan" not in line
