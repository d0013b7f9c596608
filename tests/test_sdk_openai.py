from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from sdk_helpers import KEY_ID, UNEXHAUSTED_SSE, SDKSetup, ended, forbid_network

from aibridge_transport import with_delegated_api_key_id
from aibridge_transport.testing import (
    Crash,
    HTTPError,
    Reply,
    SimulatedCrash,
    Stall,
    TokenGate,
    ToolCall,
)

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


@pytest.fixture(params=["httpx2", "httpx"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[SDKSetup]:
    setup = SDKSetup.new(request.param)
    yield setup
    await setup.factory.aclose()


async def read_contents(
    stream: openai.AsyncStream[ChatCompletionChunk], received: list[str]
) -> None:
    """Reads a chat stream to its end, keeping each content delta as it arrives."""
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)


async def test_chat_stream_arrives_token_by_token(setup: SDKSetup) -> None:
    gate = TokenGate()
    setup.bridge.queue(Reply(text="Hello there friend", gate=gate))
    client = setup.openai()
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        record = setup.bridge.last_request
        gate.release()
        async with stream:
            async for chunk in stream:
                content = chunk.choices[0].delta.content if chunk.choices else None
                if content:
                    received.append(content)
                    # The bridge has sent exactly the tokens received so far: lock-step.
                    assert record.tokens_sent == len(received)
                    gate.release()
        await client.close()
    assert received == ["Hello", " there", " friend"]
    assert await ended(record) == "completed"


async def test_chat_without_stream_returns_the_text(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="Hello world"))
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        await client.close()
    assert completion.choices[0].message.content == "Hello world"
    assert completion.model == "gpt-test"


async def test_responses_stream_arrives_token_by_token(setup: SDKSetup) -> None:
    gate = TokenGate()
    setup.bridge.queue(Reply(text="One two three", gate=gate))
    client = setup.openai()
    received: list[str] = []
    kinds: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.responses.create(model="gpt-test", input="Count", stream=True)
        record = setup.bridge.last_request
        gate.release()
        async with stream:
            async for event in stream:
                kinds.append(event.type)
                if event.type == "response.output_text.delta":
                    received.append(event.delta)
                    assert record.tokens_sent == len(received)
                    gate.release()
                elif event.type == "response.completed":
                    assert event.response.output_text == "One two three"
        await client.close()
    assert received == ["One", " two", " three"]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert record.path == "/api/v2/aibridge/openai/v1/responses"


async def test_leaving_a_stream_with_break_stops_the_app(setup: SDKSetup) -> None:
    gate = TokenGate()
    setup.bridge.queue(Reply(text="a b c d", gate=gate))
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        gate.release()
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
        record = setup.bridge.last_request
        # "disconnected": the app saw http.disconnect and stopped, before any grace expired.
        assert await ended(record) == "disconnected"
        await client.close()
    assert record.tokens_sent == 1


async def test_closing_a_stream_stops_the_app(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="a b c", gate=TokenGate()))
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        await stream.close()
        assert await ended(setup.bridge.last_request) == "disconnected"
        await client.close()
    assert setup.bridge.last_request.tokens_sent == 0


async def test_crash_mid_stream_is_a_connection_error_after_the_tokens_sent(
    setup: SDKSetup,
) -> None:
    setup.bridge.queue(Reply(text="a b c", ending="crash", after_tokens=2))
    client = setup.openai(max_retries=2)
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        with pytest.raises(openai.APIConnectionError) as caught:
            await read_contents(stream, received)
        await client.close()
    assert received == ["a", " b"]
    protocol_error = caught.value.__cause__
    assert type(protocol_error) is setup.remote_protocol_error
    assert isinstance(protocol_error.__cause__, SimulatedCrash)
    assert len(setup.bridge.requests) == 1  # mid-stream errors are never retried


async def test_crash_before_the_response_is_a_500_the_sdk_retries(setup: SDKSetup) -> None:
    setup.bridge.queue(Crash(), Reply(text="recovered"))
    client = setup.openai(max_retries=1)
    with with_delegated_api_key_id(KEY_ID):
        completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        await client.close()
    assert completion.choices[0].message.content == "recovered"
    first, second = setup.bridge.requests
    assert (first.outcome, first.status) == ("crashed", None)
    assert [
        first.headers["x-stainless-retry-count"],
        second.headers["x-stainless-retry-count"],
    ] == [
        "0",
        "1",
    ]


async def test_crash_before_the_response_without_retries_is_an_internal_server_error(
    setup: SDKSetup,
) -> None:
    setup.bridge.queue(Crash())
    client = setup.openai(max_retries=0)
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        await client.close()
    assert caught.value.status_code == 500
    assert caught.value.response.text == "Internal Server Error"


async def test_rate_limit_error_is_retried_as_the_headers_ask(setup: SDKSetup) -> None:
    setup.bridge.queue(
        HTTPError(status=429, message="slow down", headers={"retry-after-ms": "1"}),
        Reply(text="done"),
    )
    client = setup.openai(max_retries=1)
    with with_delegated_api_key_id(KEY_ID):
        completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        await client.close()
    assert completion.choices[0].message.content == "done"
    assert [request.status for request in setup.bridge.requests] == [429, 200]


async def test_http_error_body_reaches_the_sdk_error(setup: SDKSetup) -> None:
    setup.bridge.queue(HTTPError(status=400, message="bad model"))
    client = setup.openai(max_retries=2)
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
        await client.close()
    assert caught.value.body == {
        "message": "bad model",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert len(setup.bridge.requests) == 1


async def test_in_band_error_event_is_an_api_error(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="a b", ending="error_event", after_tokens=1))
    client = setup.openai()
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        with pytest.raises(openai.APIError, match="simulated error"):
            await read_contents(stream, received)
        await client.close()
    assert received == ["a"]


async def test_stall_mid_stream_beyond_the_timeout_is_a_timeout_error(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="a b", ending="stall", after_tokens=1))
    client = setup.openai(timeout=0.1)
    received: list[str] = []
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        with pytest.raises(openai.APITimeoutError):
            await read_contents(stream, received)
        assert await ended(setup.bridge.last_request) == "disconnected"
        await client.close()
    assert received == ["a"]


async def test_stall_before_the_response_is_a_timeout_error(setup: SDKSetup) -> None:
    setup.bridge.queue(Stall())
    client = setup.openai(timeout=0.1)
    with with_delegated_api_key_id(KEY_ID):
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        assert await ended(setup.bridge.last_request) == "disconnected"
        await client.close()


async def test_base_url_holding_the_bridge_prefix_reaches_the_same_route(setup: SDKSetup) -> None:
    client = setup.openai(base_url="http://bridge.invalid/api/v2/aibridge/openai/v1")
    with with_delegated_api_key_id(KEY_ID):
        completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        await client.close()
    assert completion.choices[0].message.content == "Hello from the fake bridge."
    assert setup.bridge.last_request.path == "/api/v2/aibridge/openai/v1/chat/completions"


async def test_the_app_sees_source_and_delegated_key(setup: SDKSetup) -> None:
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        await client.close()
    record = setup.bridge.last_request
    assert record.source == "agents"
    assert record.delegated_api_key_id == KEY_ID
    assert record.extensions == {
        "provider": "openai",
        "source": "agents",
        "delegated_api_key_id": KEY_ID,
    }
    assert record.headers["authorization"] == "Bearer [redacted]"
    assert record.body["model"] == "gpt-test"


async def test_models_listing(setup: SDKSetup) -> None:
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        models = [model.id async for model in client.models.list()]
        await client.close()
    assert models == ["fake-model"]


async def test_closing_the_client_stops_an_open_stream(setup: SDKSetup) -> None:
    setup.bridge.queue(Reply(text="a b", ending="stall", after_tokens=1))
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
        record = setup.bridge.last_request
        await client.close()
    # SDKs never enter their http_client; close() closes it, and with it every app task:
    # the app is told the client left and cancelled at once, whichever it notices first.
    assert record.ended
    assert record.outcome in ("disconnected", "cancelled")


async def test_chat_tool_calls_are_parsed_streamed_and_whole(setup: SDKSetup) -> None:
    call = ToolCall(name="get_weather", arguments={"city": "Paris"}, id="call_1")
    setup.bridge.queue(Reply(text="", tool_calls=[call]), Reply(text="", tool_calls=[call]))
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        completion = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        names: list[str] = []
        arguments = ""
        finish_reasons: list[str] = []
        async with stream:
            async for chunk in stream:
                choice = chunk.choices[0]
                for delta in choice.delta.tool_calls or []:
                    if delta.function and delta.function.name:
                        names.append(delta.function.name)
                    if delta.function and delta.function.arguments:
                        arguments += delta.function.arguments
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
        await client.close()
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    whole = message.tool_calls[0]
    assert whole.type == "function"
    assert (whole.id, whole.function.name) == ("call_1", "get_weather")
    assert json.loads(whole.function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"
    assert names == ["get_weather"]
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish_reasons == ["tool_calls"]


async def test_responses_tool_call_is_a_function_call_item(setup: SDKSetup) -> None:
    call = ToolCall(name="get_weather", arguments={"city": "Paris"})
    setup.bridge.queue(Reply(text="Checking.", tool_calls=[call]))
    client = setup.openai()
    with with_delegated_api_key_id(KEY_ID):
        stream = await client.responses.create(model="gpt-test", input="Weather?", stream=True)
        final = None
        async with stream:
            async for event in stream:
                if event.type == "response.completed":
                    final = event.response
        await client.close()
    assert final is not None
    assert final.output_text == "Checking."
    function_call = final.output[1]
    assert function_call.type == "function_call"
    assert function_call.name == "get_weather"
    assert json.loads(function_call.arguments) == {"city": "Paris"}


async def test_the_network_guard_refuses_a_real_connection() -> None:
    client = openai.AsyncOpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(openai.APIConnectionError) as caught:
        await client.models.list()
    await client.close()
    assert "network access is forbidden in these tests" in messages_behind(caught.value)


def messages_behind(error: BaseException | None) -> list[str]:
    """The messages of `error` and of every exception behind it (causes, group members)."""
    if error is None:
        return []
    members = error.exceptions if isinstance(error, BaseExceptionGroup) else ()
    behind = [message for member in members for message in messages_behind(member)]
    return [str(error), *behind, *messages_behind(error.__cause__ or error.__context__)]
