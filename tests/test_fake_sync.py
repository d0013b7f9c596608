"""The fake bridge answers the sync SDKs as the real APIs would (behaviour §12).

The same points as the async fake tests, through `openai.OpenAI` and `anthropic.Anthropic`:
the app runs on the factory's loop thread, the SDKs read from the test's thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import anthropic
import anyio
import httpx
import httpx2
import openai
import pydantic
import pytest
from sdk_helpers import KEY_ID, forbid_network

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.pytest_plugin import AIBridgeSyncClientFactory
from aibridge_transport.testing import (
    ARGUMENT_PIECE_SIZE,
    Chunking,
    FakeAIBridge,
    HTTPError,
    RecordedRequest,
    Reply,
    TokenGate,
    ToolCall,
)
from aibridge_transport.types import ASGIApp

USER: list[Any] = [{"role": "user", "content": "Weather?"}]
ARGUMENTS = {"city": "Paris", "unit": "celsius"}
ARGUMENTS_TEXT = json.dumps(ARGUMENTS, separators=(",", ":"))
CALL = ToolCall("weather", ARGUMENTS, id="call_1")
COUNT = "one two three four five"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


@dataclass
class SyncClients:
    """Sync SDK clients of each provider wired to one `FakeAIBridge`, without retries."""

    bridge: FakeAIBridge
    factory: InProcessTransportFactory

    def http(self, provider: str) -> httpx2.Client:
        transport = self.factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
        return httpx2.Client(transport=transport, base_url="http://bridge")

    def openai(self, provider: str = "openai", flavour: str = "httpx2") -> openai.OpenAI:
        http_client: Any  # openai types its client as httpx2's; it takes httpx's too
        if flavour == "httpx":
            http_client = httpx.Client(
                transport=self.factory.transport_for(provider, Source.AGENTS)
            )
        else:
            http_client = self.http(provider)
        return openai.OpenAI(
            api_key="sk-test-secret",
            base_url="http://bridge.invalid/v1",
            max_retries=0,
            http_client=http_client,
        )

    def anthropic(self, provider: str = "anthropic") -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key="sk-ant-test-secret",
            base_url="http://bridge.invalid",
            max_retries=0,
            http_client=self.http(provider),
        )


@contextmanager
def sync_clients(bridge: FakeAIBridge | None = None) -> Iterator[SyncClients]:
    """A bridge (a new one unless given) on its factory's loop thread, with the key id set."""
    bridge = bridge if bridge is not None else FakeAIBridge()
    with InProcessTransportFactory(bridge) as factory, with_delegated_api_key_id(KEY_ID):
        yield SyncClients(bridge, factory)


def anthropic_message(error: anthropic.BadRequestError) -> str:
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "invalid_request_error"
    return cast(str, error.body["error"]["message"])


# 1. Request validation


def test_sync_openai_tool_calls_without_their_tool_messages_are_refused() -> None:
    call = {"id": "call_x", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages: Any = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "user", "content": "well?"},
    ]
    with sync_clients() as clients:
        with pytest.raises(openai.BadRequestError) as caught:
            clients.openai().chat.completions.create(model="m", messages=messages)
        record = clients.bridge.last_request
    error = caught.value
    assert error.type == "invalid_request_error"
    assert isinstance(error.body, dict)
    assert error.body["message"] == (
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        "call_x"
    )
    assert error.body["param"] == "messages.[1].role"
    assert (record.status, record.error) == (400, error.body["message"])
    assert error.request_id is not None
    assert error.request_id.startswith("req_fake_")


def test_sync_anthropic_system_turn_is_answered_and_orphan_tool_result_refused() -> None:
    # Current models take `system` turns inside `messages`; the real API answers them.
    system_turn: Any = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    orphan: Any = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": [{"type": "text", "text": "Sure."}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "42"}],
        },
    ]
    with sync_clients() as clients:
        client = clients.anthropic()
        answered = client.messages.create(model="c", max_tokens=64, messages=system_turn)
        with pytest.raises(anthropic.BadRequestError) as orphaned:
            client.messages.create(model="c", max_tokens=64, messages=orphan)
    assert answered.stop_reason == "end_turn"
    assert anthropic_message(orphaned.value) == (
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
        "toolu_x. Each `tool_result` block must have a corresponding `tool_use` block in the "
        "previous message."
    )


def test_sync_anthropic_without_max_tokens_is_refused_by_the_bridge() -> None:
    # The SDK's `messages.create` insists on max_tokens; a raw post reaches the bridge.
    with sync_clients() as clients:
        with pytest.raises(anthropic.BadRequestError) as caught:
            clients.anthropic().post(
                "/v1/messages", body={"model": "c", "messages": USER}, cast_to=object
            )
        record = clients.bridge.last_request
    assert anthropic_message(caught.value) == "max_tokens: Field required"
    assert record.status == 400
    assert caught.value.request_id == caught.value.response.headers["request-id"]


def test_sync_validation_can_be_relaxed_per_bridge() -> None:
    unknown_role: Any = [{"role": "tool", "content": "be nice"}, {"role": "user", "content": "hi"}]
    with sync_clients(FakeAIBridge(validate=False)) as clients:
        message = clients.anthropic().messages.create(
            model="c", max_tokens=64, messages=unknown_role
        )
        with clients.http("openai") as raw:
            response = raw.post("/v1/chat/completions", content=b"{not json")
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert response.status_code == 200


# 2. Tool-call arguments in several deltas


def test_sync_chat_tool_arguments_arrive_in_pieces_and_accumulate() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    pieces: list[str] = []
    with sync_clients(bridge) as clients:
        client = clients.openai()
        with client.chat.completions.create(model="m", messages=USER, stream=True) as stream:
            for chunk in stream:
                for choice in chunk.choices:
                    for delta in choice.delta.tool_calls or ():
                        if delta.function is not None and delta.function.arguments:
                            pieces.append(delta.function.arguments)
        with client.chat.completions.stream(model="m", messages=USER) as helper:
            final = helper.get_final_completion()
    assert len(pieces) == -(-len(ARGUMENTS_TEXT) // ARGUMENT_PIECE_SIZE) > 1
    assert "".join(pieces) == ARGUMENTS_TEXT
    [call] = final.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert json.loads(call.function.arguments) == ARGUMENTS


def test_sync_responses_tool_arguments_arrive_in_pieces_and_accumulate() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    pieces: list[str] = []
    with sync_clients(bridge) as clients:
        with clients.openai().responses.stream(model="m", input="Weather?") as stream:
            for event in stream:
                if event.type == "response.function_call_arguments.delta":
                    pieces.append(event.delta)
            final = stream.get_final_response()
    assert len(pieces) > 1
    assert "".join(pieces) == ARGUMENTS_TEXT
    [item] = final.output
    assert item.type == "function_call"
    assert json.loads(item.arguments) == ARGUMENTS


def test_sync_anthropic_tool_input_arrives_in_pieces_and_accumulates() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    pieces: list[str] = []
    with sync_clients(bridge) as clients:
        with clients.anthropic().messages.stream(model="c", max_tokens=64, messages=USER) as stream:
            for event in stream:
                if event.type == "input_json":
                    pieces.append(event.partial_json)
            message = stream.get_final_message()
    assert len(pieces) > 2
    assert "".join(pieces) == ARGUMENTS_TEXT
    [block] = message.content
    assert block.type == "tool_use"
    assert block.input == ARGUMENTS


# 3. Endings


class Answer(pydantic.BaseModel):
    words: list[str]


def test_sync_chat_token_limit_ends_with_length_and_the_helpers_raise() -> None:
    bridge = FakeAIBridge(default=Reply('{"words": ["a", "b", "c"]}'))
    with sync_clients(bridge) as clients:
        client = clients.openai()
        with client.chat.completions.create(
            model="m", messages=USER, max_tokens=2, stream=True
        ) as stream:
            chunks = list(stream)
        with pytest.raises(openai.LengthFinishReasonError):
            client.chat.completions.parse(
                model="m", messages=USER, max_completion_tokens=1, response_format=Answer
            )
        with pytest.raises(openai.LengthFinishReasonError):
            with client.chat.completions.stream(
                model="m", messages=USER, max_completion_tokens=2, response_format=Answer
            ) as helper:
                helper.until_done()
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == '{"words": ["a",'


def test_sync_anthropic_max_tokens_and_stop_sequence_endings() -> None:
    bridge = FakeAIBridge(default=Reply(COUNT))
    with sync_clients(bridge) as clients:
        client = clients.anthropic()
        with client.messages.stream(model="c", max_tokens=3, messages=USER) as stream:
            truncated = stream.get_final_message()
        with client.messages.stream(
            model="c", max_tokens=64, messages=USER, stop_sequences=["two"]
        ) as stream:
            stopped = stream.get_final_message()
        whole = client.messages.create(
            model="c", max_tokens=64, messages=USER, stop_sequences=["three"]
        )
    assert truncated.stop_reason == "max_tokens"
    assert truncated.content[0].type == "text"
    assert truncated.content[0].text == "one two three"
    assert truncated.usage.output_tokens == 3
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "two")
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text == "one "
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", "three")


def test_sync_responses_max_output_tokens_is_an_incomplete_response() -> None:
    long = " ".join(f"w{index}" for index in range(20))
    bridge = FakeAIBridge(default=Reply(long))
    with sync_clients(bridge) as clients:
        client = clients.openai()
        whole = client.responses.create(model="m", input="hi", max_output_tokens=16)
        with client.responses.create(
            model="m", input="hi", max_output_tokens=16, stream=True
        ) as stream:
            events = list(stream)
        with client.responses.stream(model="m", input="hi", max_output_tokens=16) as helper:
            # The helper keeps only a `response.completed` as the final response.
            with pytest.raises(RuntimeError, match=r"response\.completed"):
                helper.get_final_response()
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.output_text == " ".join(long.split()[:16])
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


# 4. Usage


def test_sync_usage_grows_with_the_prompt() -> None:
    short: Any = [{"role": "user", "content": "Say hello"}]
    long: Any = [
        *short,
        {"role": "assistant", "content": "Hello there, how can I help you today?"},
        {"role": "user", "content": "Say it again, but louder this time please."},
    ]
    bridge = FakeAIBridge(default=Reply("Hello world"))
    with sync_clients(bridge) as clients:
        client = clients.openai()
        first = client.chat.completions.create(model="m", messages=short)
        second = client.chat.completions.create(model="m", messages=long)
        with client.chat.completions.create(
            model="m", messages=long, stream=True, stream_options={"include_usage": True}
        ) as stream:
            streamed = list(stream)[-1].usage
        with clients.anthropic().messages.stream(
            model="c", max_tokens=64, messages=long
        ) as messages:
            message = messages.get_final_message()
    assert first.usage is not None and second.usage is not None
    # "Say hello": ceil(9 / 4) = 3, plus 3 for the message; "Hello world": two tokens.
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (6, 2)
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    assert second.usage.completion_tokens == 2
    assert streamed == second.usage
    assert message.usage.input_tokens == second.usage.prompt_tokens


# 5. Routes


def test_sync_unknown_provider_and_route_are_404s_and_count_tokens_is_served() -> None:
    with sync_clients() as clients:
        with pytest.raises(openai.NotFoundError) as misspelt:
            clients.openai("opnai").chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.NotFoundError) as unknown_route:
            clients.openai().embeddings.create(model="m", input="hi")
        anthropic_client = clients.anthropic()
        counted = anthropic_client.messages.count_tokens(model="c", messages=USER)
        message = anthropic_client.messages.create(model="c", max_tokens=64, messages=USER)
        paths = [record.path for record in clients.bridge.requests]
    assert "no provider instance named 'opnai'" in misspelt.value.message
    assert "/api/v2/aibridge/opnai/v1/chat/completions" in misspelt.value.message
    assert misspelt.value.request_id is not None
    assert unknown_route.value.type == "invalid_request_error"
    assert isinstance(unknown_route.value.body, dict)
    assert unknown_route.value.body["message"].startswith(
        "Invalid URL (POST /api/v2/aibridge/openai/v1/embeddings)"
    )
    assert counted.input_tokens == message.usage.input_tokens > 0
    # A 404 reached no route, so only the served requests are recorded.
    assert paths == [
        "/api/v2/aibridge/anthropic/v1/messages/count_tokens",
        "/api/v2/aibridge/anthropic/v1/messages",
    ]


# 6. Error shapes


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(409, openai.ConflictError), (422, openai.UnprocessableEntityError)],
)
def test_sync_openai_scripted_errors_have_their_type_and_request_id(
    status: int, error_class: type[openai.APIStatusError]
) -> None:
    with sync_clients(FakeAIBridge(default=HTTPError(status, "no"))) as clients:
        with pytest.raises(error_class) as caught:
            clients.openai().chat.completions.create(model="m", messages=USER)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.body["message"] == "no"
    assert caught.value.request_id == "req_fake_1"


def test_sync_anthropic_scripted_conflict_has_its_type_and_request_id() -> None:
    with sync_clients(FakeAIBridge(default=HTTPError(409, "no"))) as clients:
        with pytest.raises(anthropic.ConflictError) as caught:
            clients.anthropic().messages.create(model="c", max_tokens=8, messages=USER)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.request_id == "req_fake_1" == caught.value.body["request_id"]


# 7. Chunking


@pytest.mark.parametrize(
    "chunking", [Chunking(size=5), Chunking(events=3), Chunking(events=4, size=11)], ids=repr
)
@pytest.mark.parametrize("flavour", ["httpx2", "httpx"])
def test_sync_sdks_parse_streams_whatever_the_chunks(chunking: Chunking, flavour: str) -> None:
    text = "Héllo wörld, one two three"
    bridge = FakeAIBridge(default=Reply(text, tool_calls=[CALL]), chunking=chunking)
    with sync_clients(bridge) as clients:
        client = clients.openai(flavour=flavour)
        with client.chat.completions.stream(model="m", messages=USER) as chat:
            completion = chat.get_final_completion()
        with client.responses.stream(model="m", input="hi") as responses:
            response = responses.get_final_response()
        with clients.anthropic().messages.stream(
            model="c", max_tokens=64, messages=USER
        ) as messages:
            message = messages.get_final_message()
        with clients.http("openai") as raw:
            body = {"model": "m", "messages": USER, "stream": True}
            with raw.stream("POST", "/v1/chat/completions", json=body) as streamed:
                chunks = list(streamed.iter_raw())
    chat_message = completion.choices[0].message
    assert chat_message.content == text
    assert [call.function.arguments for call in chat_message.tool_calls or []] == [ARGUMENTS_TEXT]
    assert response.output_text == text
    assert response.output[1].type == "function_call"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[0].type == "text"
    assert message.content[0].text == text
    # The sync reader sees the chunks as the bridge cut or grouped them.
    if chunking.size is not None:
        assert all(len(chunk) <= chunking.size for chunk in chunks)
    else:
        counts = [chunk.count(b"\n\n") for chunk in chunks]
        assert counts[:-1] == [chunking.events] * (len(chunks) - 1)


# 8. A tool-only answer


def test_sync_streamed_tool_only_chat_answer_has_no_content() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[ToolCall("weather", {"city": "Oslo"})]))
    with sync_clients(bridge) as clients:
        with clients.openai().chat.completions.stream(model="m", messages=USER) as stream:
            completion = stream.get_final_completion()
    message = completion.choices[0].message
    assert message.content is None
    [call] = message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "weather"
    assert completion.choices[0].finish_reason == "tool_calls"


# The plugin's sync fixtures


def test_sync_fixtures_serve_the_fake_bridges_tool_calls(
    aibridge_app: ASGIApp,
    aibridge_sync_client: AIBridgeSyncClientFactory,
    aibridge_sync_delegated_key: str,
) -> None:
    assert isinstance(aibridge_app, FakeAIBridge)
    aibridge_app.queue(Reply("", tool_calls=[CALL]))
    client = anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://bridge.invalid",
        max_retries=0,
        http_client=aibridge_sync_client("anthropic", flavor="httpx2"),
    )
    with client.messages.stream(model="c", max_tokens=64, messages=USER) as stream:
        message = stream.get_final_message()
    [block] = message.content
    assert block.type == "tool_use"
    assert block.input == ARGUMENTS
    assert aibridge_app.last_request.delegated_api_key_id == aibridge_sync_delegated_key


# A sync client in a worker thread of an async service


@pytest.mark.anyio
async def test_sync_sdk_in_a_worker_thread_meets_the_same_validation() -> None:
    bridge = FakeAIBridge()
    async with InProcessTransportFactory(bridge) as factory:
        clients = SyncClients(bridge, factory)

        def refused() -> anthropic.BadRequestError:
            with with_delegated_api_key_id(KEY_ID):
                with pytest.raises(anthropic.BadRequestError) as caught:
                    clients.anthropic().messages.create(
                        model="c",
                        max_tokens=64,
                        messages=cast(Any, [{"role": "tool", "content": "x"}]),
                    )
            return caught.value

        error = await anyio.to_thread.run_sync(refused)
    assert anthropic_message(error).startswith("messages.0.role: Input should be 'user'")
    assert bridge.last_request.status == 400


@pytest.mark.anyio
async def test_an_async_test_waits_on_the_bridge_while_it_serves_a_sync_client() -> None:
    # The bridge runs on the sync factory's loop thread; the test awaits on its own loop, so
    # the bridge's arrival and ending signals cross threads, as a `TokenGate`'s do.
    bridge = FakeAIBridge()
    gate = TokenGate()
    bridge.queue(Reply("a b", gate=gate))
    contents: list[str] = []
    arrived: list[RecordedRequest] = []
    outcomes: list[str] = []
    arrival = anyio.Event()
    with sync_clients(bridge) as clients:
        client = clients.openai()

        def chat() -> None:
            with with_delegated_api_key_id(KEY_ID):
                stream = client.chat.completions.create(model="m", messages=USER, stream=True)
                with stream:
                    for chunk in stream:
                        contents.extend(choice.delta.content or "" for choice in chunk.choices)

        async def wait_for_arrival() -> None:
            arrived.append(await bridge.wait_for_request())
            arrival.set()

        async def wait_for_end(record: RecordedRequest) -> None:
            outcomes.append(await record.wait_ended())

        with anyio.fail_after(10):  # a lost wake-up fails instead of hanging
            async with anyio.create_task_group() as tasks:
                try:
                    tasks.start_soon(wait_for_arrival)
                    await anyio.wait_all_tasks_blocked()
                    tasks.start_soon(anyio.to_thread.run_sync, chat)
                    with anyio.move_on_after(5) as deadline:
                        await arrival.wait()
                    # A wake-up lost across threads shows as an arrival seen only when the
                    # deadline woke the loop.
                    assert not deadline.cancel_called, "the arrival did not wake the test"
                    tasks.start_soon(wait_for_end, arrived[0])
                    await anyio.wait_all_tasks_blocked()
                finally:
                    # The reply's tokens go now, so the client's thread always finishes.
                    gate.release(2)
    assert "".join(contents) == "a b"
    assert arrived == bridge.requests
    assert outcomes == ["completed"]
