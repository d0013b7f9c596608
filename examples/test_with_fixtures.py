"""Testing code that talks to an AI bridge, with the library's pytest fixtures.

Installing aibridge-transport registers the fixtures; no conftest is needed:

- `aibridge_app`: the bridge app under test, a `FakeAIBridge` unless you override it;
- `aibridge_client`: `aibridge_client("openai")` gives an `httpx2.AsyncClient` (what openai 3.x
  and anthropic >= 1.0 need), `aibridge_client("custom", flavor="httpx")` an
  `httpx.AsyncClient`, both going straight to `aibridge_app` in process; closed at teardown;
- `aibridge_delegated_key`: sets the delegated API key id (`"test-key"`) for the test;
- `aibridge_factory`: the `InProcessTransportFactory` behind the clients, lifespan running.

An exception the app raised behind a `500` fails the test at teardown, with its traceback,
unless the test is marked `@pytest.mark.aibridge_lenient`.

The file stands alone: copy it into your project's tests and run it.

    pytest test_with_fixtures.py

These tests use anyio's pytest plugin; the fixtures work the same under pytest-asyncio
(`@pytest.mark.asyncio`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anthropic
import httpx
import httpx2
import openai
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aibridge_transport import (
    AIBRIDGE_ROOT_PATH,
    MissingDelegatedAPIKeyError,
    StreamingASGITransport,
    delegated_api_key_id_from_context,
    source_from_context,
)
from aibridge_transport.pytest_plugin import AIBridgeClientFactory
from aibridge_transport.testing import Crash, FakeAIBridge, Reply, TokenGate

pytestmark = [
    pytest.mark.anyio,
    # The openai SDK leaves its SSE generators (and the response iterators under them)
    # unfinished when it stops at `[DONE]`; on trio their garbage collection warns (asyncio
    # stays silent). Needed under `-W error` only.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object "
        r"(SSEDecoder|AsyncStream|Response)\."
        r":pytest.PytestUnraisableExceptionWarning"
    ),
]


# Usually in conftest.py: run every test on both of anyio's backends (trio's runs are skipped
# where the `trio` extra is not installed).
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "trio":
        pytest.importorskip("trio", reason="the trio runs need the trio extra")
    return str(request.param)


def openai_client(aibridge_client: AIBridgeClientFactory) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://aibridge/v1",
        api_key="unused-in-process",
        http_client=aibridge_client("openai"),
        max_retries=0,
    )


async def test_openai_chat_streams_token_by_token(
    aibridge_app: FakeAIBridge,
    aibridge_client: AIBridgeClientFactory,
    aibridge_delegated_key: str,
) -> None:
    aibridge_app.queue(Reply(text="Hello from the bridge"))
    client = openai_client(aibridge_client)

    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    async with stream:
        tokens = [
            chunk.choices[0].delta.content
            async for chunk in stream
            if chunk.choices and chunk.choices[0].delta.content
        ]

    assert tokens == ["Hello", " from", " the", " bridge"]
    seen = aibridge_app.last_request
    assert seen.path == "/api/v2/aibridge/openai/v1/chat/completions"
    assert seen.delegated_api_key_id == aibridge_delegated_key
    assert seen.source == "agents"


async def test_anthropic_messages_stream(
    aibridge_app: FakeAIBridge,
    aibridge_client: AIBridgeClientFactory,
    aibridge_delegated_key: str,
) -> None:
    aibridge_app.queue(Reply(text="Bonjour tout le monde"))
    # anthropic >= 1.0 takes only an httpx2 client.
    client = anthropic.AsyncAnthropic(
        base_url="http://aibridge",
        api_key="unused-in-process",
        http_client=aibridge_client("anthropic"),
    )

    async with client.messages.stream(
        model="claude-sonnet-5-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Salut"}],
    ) as stream:
        text = "".join([token async for token in stream.text_stream])

    assert text == "Bonjour tout le monde"
    assert aibridge_app.last_request.path == "/api/v2/aibridge/anthropic/v1/messages"


async def test_a_request_without_a_delegated_key_is_refused(
    aibridge_app: FakeAIBridge, aibridge_client: AIBridgeClientFactory
) -> None:
    client = aibridge_client("openai")

    with pytest.raises(MissingDelegatedAPIKeyError):
        await client.get("/v1/models")

    assert aibridge_app.requests == []


@pytest.mark.aibridge_lenient  # the crash is what this test is about
async def test_an_app_crash_reaches_the_client_as_a_500(
    aibridge_app: FakeAIBridge,
    aibridge_client: AIBridgeClientFactory,
    aibridge_delegated_key: str,
) -> None:
    aibridge_app.queue(Crash())
    client: httpx2.AsyncClient = aibridge_client("openai")

    response = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
    )

    assert response.status_code == 500
    assert response.text == "Internal Server Error"


def create_bridge_app(provider: FakeAIBridge) -> Starlette:
    """Stands for your own bridge app: forwards each request to `provider`, streaming.

    `app.state.seen` lists (provider, delegated key id, source) for each request forwarded.
    """
    seen: list[tuple[str, str | None, str | None]] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
        transport = StreamingASGITransport(provider)
        async with httpx.AsyncClient(transport=transport, base_url="http://provider") as upstream:
            yield {"upstream": upstream}

    async def forward(request: Request) -> Response:
        name = request.path_params["provider"]
        seen.append((name, delegated_api_key_id_from_context(), source_from_context()))
        upstream: httpx.AsyncClient = request.state.upstream
        response = await upstream.send(
            upstream.build_request(
                request.method,
                request.url.path,
                headers={"content-type": "application/json"},
                content=await request.body(),
            ),
            stream=True,
        )
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
            # Closing the upstream response tells the provider the caller left.
            background=BackgroundTask(response.aclose),
        )

    route = Route(AIBRIDGE_ROOT_PATH + "/{provider}/{path:path}", forward, methods=["POST"])
    app = Starlette(routes=[route], lifespan=lifespan)
    app.state.seen = seen
    return app


class TestOwnBridgeApp:
    """To test your own bridge app, override `aibridge_app` (here for one class)."""

    @pytest.fixture
    def provider(self) -> FakeAIBridge:
        return FakeAIBridge()

    @pytest.fixture
    def aibridge_app(self, provider: FakeAIBridge) -> Starlette:
        return create_bridge_app(provider)

    async def test_the_bridge_forwards_with_the_callers_identity(
        self,
        aibridge_app: Starlette,
        aibridge_client: AIBridgeClientFactory,
        aibridge_delegated_key: str,
    ) -> None:
        client = openai_client(aibridge_client)

        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )

        assert completion.choices[0].message.content
        assert aibridge_app.state.seen == [("openai", aibridge_delegated_key, "agents")]

    async def test_leaving_a_stream_early_stops_the_provider(
        self,
        provider: FakeAIBridge,
        aibridge_client: AIBridgeClientFactory,
        aibridge_delegated_key: str,
    ) -> None:
        gate = TokenGate()  # the provider sends a token only when the test lets it
        provider.queue(Reply(text="one two three", gate=gate))
        client = openai_client(aibridge_client)

        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        gate.release()
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    assert chunk.choices[0].delta.content == "one"
                    break

        # The disconnect went through the bridge to the provider, which stopped sending.
        assert await provider.last_request.wait_ended() == "disconnected"
        assert provider.last_request.tokens_sent == 1
