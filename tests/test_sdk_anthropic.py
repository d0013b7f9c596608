from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from sdk_helpers import KEY_ID, SDKSetup, ended, forbid_network
from sdk_versions import anthropic_wraps_stream_errors

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import (
    Crash,
    FakeAIBridge,
    HTTPError,
    Reply,
    SimulatedCrash,
    Stall,
    TokenGate,
    ToolCall,
)

pytestmark = pytest.mark.anyio

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
MODEL = "claude-test"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


@pytest.fixture
async def setup() -> AsyncIterator[SDKSetup]:
    setup = SDKSetup.new()
    yield setup
    await setup.factory.aclose()


async def read_texts(client: anthropic.AsyncAnthropic, received: list[str]) -> None:
    """Streams a message, keeping each text delta as it arrives."""
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        async for text in stream.text_stream:
            received.append(text)


def test_anthropic_refuses_a_legacy_httpx_client() -> None:
    factory = InProcessTransportFactory(FakeAIBridge())
    legacy = httpx.AsyncClient(transport=factory.transport_for("anthropic", Source.AGENTS))
    with pytest.raises(TypeError, match="httpx2"):
        anthropic.AsyncAnthropic(api_key="sk", http_client=legacy)  # type: ignore[arg-type]


async def test_messages_stream_arrives_token_by_token(setup: SDKSetup) -> None:
    gate = TokenGate()
    setup.bridge.queue(Reply(text="Hello there friend", gate=gate))
    client = setup.anthropic()
    received: list[str] = []
    kinds: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.messages.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
        )
        record = setup.bridge.last_request
        gate.release()
        async with stream:
            async for event in stream:
                kinds.append(event.type)
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    received.append(event.delta.text)
                    # The bridge has sent exactly the tokens received so far: lock-step.
                    assert record.tokens_sent == len(received)
                    gate.release()
        await client.close()
    assert received == ["Hello", " there", " friend"]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "ping" not in kinds  # the SDK drops pings
    assert await ended(record) == "completed"


async def test_stream_helper_yields_text_token_by_token(setup: SDKSetup) -> None:
    gate = TokenGate()
    setup.bridge.queue(Reply(text="One two three", gate=gate))
    client = setup.anthropic()
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            record = setup.bridge.last_request
            gate.release()
            async for text in stream.text_stream:
                received.append(text)
                assert record.tokens_sent == len(received)
                gate.release()
            message = await stream.get_final_message()
        await client.close()
    assert received == ["One", " two", " three"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "One two three"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 3


async def test_messages_without_stream_return_the_text(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="Hello world"))
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        message = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        await client.close()
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello world"
    assert message.model == MODEL


async def test_beta_messages_reach_the_messages_route(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="beta reply"))
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.beta.messages.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
        )
        texts = [
            event.delta.text
            async for event in stream
            if event.type == "content_block_delta" and event.delta.type == "text_delta"
        ]
        await client.close()
    assert texts == ["beta", " reply"]
    assert setup.bridge.last_request.path == "/api/v2/aibridge/anthropic/v1/messages"


async def test_leaving_a_stream_with_break_stops_the_app(setup: SDKSetup) -> None:
    gate = TokenGate()
    setup.bridge.queue(Reply(text="a b c d", gate=gate))
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            gate.release()
            async for _text in stream.text_stream:
                break
        record = setup.bridge.last_request
        # "disconnected": the app saw http.disconnect and stopped, before any grace expired.
        assert await ended(record) == "disconnected"
        await client.close()
    assert record.tokens_sent == 1


async def test_closing_a_stream_stops_the_app(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="a b c", gate=TokenGate()))
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.messages.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
        )
        await stream.close()
        assert await ended(setup.bridge.last_request) == "disconnected"
        await client.close()
    assert setup.bridge.last_request.tokens_sent == 0


async def test_crash_mid_stream_is_the_protocol_error_after_the_tokens_sent(
    setup: SDKSetup,
) -> None:
    # Before 2.17 anthropic passes httpx2's RemoteProtocolError itself; since, it wraps it in
    # APIConnectionError (tests/sdk_versions.py).
    setup.bridge.queue(Reply(text="a b c", ending="crash", after_tokens=2))
    client = setup.anthropic(max_retries=2)
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)) as caught:
            await read_texts(client, received)
        await client.close()
    assert received == ["a", " b"]
    protocol_error = stream_error_of(caught.value, anthropic.APIConnectionError)
    assert type(protocol_error) is httpx2.RemoteProtocolError
    assert isinstance(protocol_error.__cause__, SimulatedCrash)
    assert len(setup.bridge.requests) == 1  # mid-stream errors are never retried


async def test_crash_before_the_response_is_a_500_the_sdk_retries(setup: SDKSetup) -> None:
    setup.bridge.queue(Crash(), Reply(text="recovered"))
    client = setup.anthropic(max_retries=1)
    with with_delegated_api_key_id(KEY_ID):
        message = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        await client.close()
    assert message.content[0].type == "text"
    assert message.content[0].text == "recovered"
    first, second = setup.bridge.requests
    assert (first.outcome, first.status) == ("crashed", None)
    retry_counts = [
        first.headers["x-stainless-retry-count"],
        second.headers["x-stainless-retry-count"],
    ]
    assert retry_counts == ["0", "1"]


async def test_crash_before_the_response_without_retries_is_an_internal_server_error(
    setup: SDKSetup,
) -> None:
    setup.bridge.queue(Crash())
    client = setup.anthropic(max_retries=0)
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        await client.close()
    assert caught.value.status_code == 500
    assert caught.value.response.text == "Internal Server Error"


async def test_overloaded_error_is_retried_as_the_headers_ask(setup: SDKSetup) -> None:
    setup.bridge.queue(
        HTTPError(status=529, message="Overloaded", headers={"retry-after-ms": "1"}),
        Reply(text="done"),
    )
    client = setup.anthropic(max_retries=1)
    with with_delegated_api_key_id(KEY_ID):
        message = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        await client.close()
    assert message.content[0].type == "text"
    assert message.content[0].text == "done"
    assert [request.status for request in setup.bridge.requests] == [529, 200]


async def test_http_error_body_reaches_the_sdk_error(setup: SDKSetup) -> None:
    setup.bridge.queue(HTTPError(status=400, message="bad model"))
    client = setup.anthropic(max_retries=2)
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
        await client.close()
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad model"},
        "request_id": "req_fake_1",
    }
    assert len(setup.bridge.requests) == 1


async def test_error_event_is_an_api_status_error(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="a b", ending="error_event", after_tokens=1))
    client = setup.anthropic()
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises(anthropic.APIStatusError) as caught:
            await read_texts(client, received)
        await client.close()
    assert received == ["a"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "simulated error"},
        "request_id": "req_fake_1",
    }


async def test_stall_mid_stream_beyond_the_timeout_is_a_read_timeout(setup: SDKSetup) -> None:
    # As for a crash mid-stream: the raw httpx2.ReadTimeout before 2.17, wrapped in
    # APITimeoutError since.
    setup.bridge.queue(Reply(text="a b", ending="stall", after_tokens=1))
    client = setup.anthropic(timeout=0.1)
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises((httpx2.ReadTimeout, anthropic.APITimeoutError)) as caught:
            await read_texts(client, received)
        assert type(stream_error_of(caught.value, anthropic.APITimeoutError)) is httpx2.ReadTimeout
        assert await ended(setup.bridge.last_request) == "disconnected"
        await client.close()
    assert received == ["a"]


async def test_stall_before_the_response_is_a_timeout_error(setup: SDKSetup) -> None:
    setup.bridge.queue(Stall())
    client = setup.anthropic(timeout=0.1)
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        assert await ended(setup.bridge.last_request) == "disconnected"
        await client.close()


async def test_base_url_holding_the_bridge_prefix_reaches_the_same_route(setup: SDKSetup) -> None:
    client = setup.anthropic(base_url="http://bridge.invalid/api/v2/aibridge/anthropic")
    with with_delegated_api_key_id(KEY_ID):
        message = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        await client.close()
    assert message.content[0].type == "text"
    assert setup.bridge.last_request.path == "/api/v2/aibridge/anthropic/v1/messages"


async def test_the_app_sees_source_and_delegated_key(setup: SDKSetup) -> None:
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        await client.close()
    record = setup.bridge.last_request
    assert record.source == "agents"
    assert record.delegated_api_key_id == KEY_ID
    assert record.extensions == {
        "provider": "anthropic",
        "source": "agents",
        "delegated_api_key_id": KEY_ID,
    }
    assert record.headers["authorization"] == "Bearer [redacted]"
    assert "anthropic-version" in record.headers
    assert record.body["max_tokens"] == 64


async def test_models_listing(setup: SDKSetup) -> None:
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        models = [model.id async for model in client.models.list()]
        await client.close()
    assert models == ["fake-model"]


async def test_closing_the_client_stops_an_open_stream(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="a b", ending="stall", after_tokens=1))
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
        record = setup.bridge.last_request
        await client.close()
    # SDKs never enter their http_client; close() closes it, and with it every app task:
    # the app is told the client left and cancelled at once, whichever it notices first.
    assert record.ended
    assert record.outcome in ("disconnected", "cancelled")


async def test_tool_use_is_accumulated_by_the_stream_helper(setup: SDKSetup) -> None:
    call = ToolCall(name="get_weather", arguments={"city": "Paris"}, id="toolu_1")
    setup.bridge.queue(
        Reply(text="Checking.", tool_calls=[call]), Reply(text="", tool_calls=[call])
    )
    client = setup.anthropic()
    with with_delegated_api_key_id(KEY_ID):
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            streamed = await stream.get_final_message()
        whole = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        await client.close()
    assert [block.type for block in streamed.content] == ["text", "tool_use"]
    assert streamed.stop_reason == "tool_use"
    tool_use = streamed.content[1]
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == (
        "toolu_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert [block.type for block in whole.content] == ["tool_use"]
    assert whole.stop_reason == "tool_use"


def stream_error_of(caught: BaseException, wrapper: type[BaseException]) -> BaseException:
    """The transport's error behind what the installed anthropic raised mid-stream."""
    if anthropic_wraps_stream_errors():
        assert type(caught) is wrapper
        assert caught.__cause__ is not None
        return caught.__cause__
    return caught
