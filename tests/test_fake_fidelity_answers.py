"""The fake bridge answers in today's real APIs' shapes: usage details, model snapshots,
finish reasons, event fields, scriptable routes (docs/testing.md, "Answer details", "Models").

Each point goes through the real SDKs, async and sync, on asyncio and trio (`sdk_modes`).
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from sdk_helpers import UNEXHAUSTED_SSE, forbid_network
from sdk_modes import MODES, Mode, anthropic_error_message, sdks

from aibridge_transport.testing import (
    MODEL_SNAPSHOTS,
    FakeAIBridge,
    HTTPError,
    Reply,
    ToolCall,
)

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

USER: list[Any] = [{"role": "user", "content": "Weather?"}]
WEATHER: Any = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
}
CALL = ToolCall("weather", {"city": "Oslo"}, id="call_1")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


# Shapes the real APIs answer in


@MODES
async def test_chat_usage_carries_its_detail_objects(mode: Mode) -> None:
    async with sdks(mode) as clients:
        whole = await clients.call(
            "openai", lambda client: client.chat.completions.create(model="m", messages=USER)
        )
        chunks = await clients.stream(
            "openai",
            lambda client: client.chat.completions.create(
                model="m", messages=USER, stream=True, stream_options={"include_usage": True}
            ),
        )
    streamed = chunks[-1].usage
    for usage in (whole.usage, streamed):
        assert usage.prompt_tokens_details.model_dump(exclude_unset=True) == {
            "cached_tokens": 0,
            "audio_tokens": 0,
        }
        assert usage.completion_tokens_details.model_dump(exclude_unset=True) == {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }


@MODES
async def test_anthropic_cache_token_counts_are_integers(mode: Mode) -> None:
    async with sdks(mode) as clients:
        whole = await clients.call(
            "anthropic",
            lambda client: client.messages.create(model="c", max_tokens=64, messages=USER),
        )
        events = await clients.stream(
            "anthropic",
            lambda client: client.messages.create(
                model="c", max_tokens=64, messages=USER, stream=True
            ),
        )
    started = events[0].message.usage
    delta = next(event.usage for event in events if event.type == "message_delta")
    for usage in (whole.usage, started, delta):
        assert usage.cache_creation_input_tokens == 0
        assert usage.cache_read_input_tokens == 0
    assert whole.usage.service_tier == "standard"


@MODES
async def test_an_alias_is_answered_with_its_dated_snapshot(mode: Mode) -> None:
    async with sdks(mode) as clients:
        chat = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(model="gpt-4o-mini", messages=USER),
        )
        response = await clients.call(
            "openai", lambda client: client.responses.create(model="gpt-4o-mini", input="hi")
        )
        message = await clients.call(
            "anthropic",
            lambda client: client.messages.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=USER
            ),
        )
        unknown = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(model="my-model", messages=USER),
        )
    assert chat.model == response.model == "gpt-4o-mini-2024-07-18"
    assert message.model == MODEL_SNAPSHOTS["claude-sonnet-4-5"] == "claude-sonnet-4-5-20250929"
    assert unknown.model == "my-model"


@MODES
async def test_the_snapshot_table_is_scriptable(mode: Mode) -> None:
    bridge = FakeAIBridge(model_snapshots={"gpt-4o-mini": "gpt-4o-mini-2026-01-01"})
    bridge.queue(Reply(model="scripted-model"))
    async with sdks(mode, bridge) as clients:
        scripted = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(model="gpt-4o-mini", messages=USER),
        )
        mapped = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(model="gpt-4o-mini", messages=USER),
        )
        bridge.model_snapshots.clear()
        echoed = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(model="gpt-4o-mini", messages=USER),
        )
    assert [scripted.model, mapped.model, echoed.model] == [
        "scripted-model",
        "gpt-4o-mini-2026-01-01",
        "gpt-4o-mini",
    ]


@MODES
async def test_a_tool_choice_forcing_a_named_function_finishes_with_stop(mode: Mode) -> None:
    forced = {"type": "function", "function": {"name": "weather"}}
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    async with sdks(mode, bridge) as clients:
        whole = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(
                model="m", messages=USER, tools=[WEATHER], tool_choice=forced
            ),
        )
        chunks = await clients.stream(
            "openai",
            lambda client: client.chat.completions.create(
                model="m", messages=USER, tools=[WEATHER], tool_choice=forced, stream=True
            ),
        )
        free = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(
                model="m", messages=USER, tools=[WEATHER]
            ),
        )
    assert whole.choices[0].finish_reason == "stop"
    assert whole.choices[0].message.tool_calls[0].function.name == "weather"
    assert [chunk.choices[0].finish_reason for chunk in chunks][-1] == "stop"
    assert free.choices[0].finish_reason == "tool_calls"


@MODES
async def test_responses_function_call_events_and_ids_are_the_apis(mode: Mode) -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    async with sdks(mode, bridge) as clients:
        events = await clients.stream(
            "openai",
            lambda client: client.responses.create(model="m", input="hi", stream=True),
        )
    [done] = [event for event in events if event.type == "response.function_call_arguments.done"]
    assert done.model_extra == {}  # no `name`: the real event has none
    [item] = [event.item for event in events if event.type == "response.output_item.done"]
    assert item.call_id == "call_1"
    assert item.id is not None
    assert item.id.startswith("fc_")
    assert done.item_id == item.id


@MODES
async def test_count_tokens_and_models_answer_a_queued_script(mode: Mode) -> None:
    bridge = FakeAIBridge()
    bridge.queue(HTTPError(529, "Overloaded"), HTTPError(429, "slow down"), Reply())
    async with sdks(mode, bridge) as clients:
        overloaded = await clients.refused(
            "anthropic",
            anthropic.APIStatusError,
            lambda client: client.messages.count_tokens(model="c", messages=USER),
        )
        limited = await clients.refused(
            "openai", openai.RateLimitError, lambda client: client.models.list()
        )
        counted = await clients.call(
            "anthropic", lambda client: client.messages.count_tokens(model="c", messages=USER)
        )
    assert overloaded.status_code == 529
    assert anthropic_error_message(overloaded) == "Overloaded"
    assert isinstance(overloaded.body, dict)
    assert overloaded.body["error"]["type"] == "overloaded_error"
    assert limited.message.endswith("slow down")
    assert counted.input_tokens > 0
    assert bridge.pending == 0


# Smaller details, matched where cheap


@MODES
async def test_chat_answers_name_their_service_tier_and_fingerprint(mode: Mode) -> None:
    async with sdks(mode) as clients:
        whole = await clients.call(
            "openai", lambda client: client.chat.completions.create(model="m", messages=USER)
        )
        chunks = await clients.stream(
            "openai",
            lambda client: client.chat.completions.create(model="m", messages=USER, stream=True),
        )
    for answer in (whole, *chunks):
        assert answer.service_tier == "default"
        assert answer.system_fingerprint is not None
        assert answer.system_fingerprint.startswith("fp_")


@MODES
async def test_tool_only_streams_open_as_the_real_ones(mode: Mode) -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    async with sdks(mode, bridge) as clients:
        chunks = await clients.stream(
            "openai",
            lambda client: client.chat.completions.create(model="m", messages=USER, stream=True),
        )
        lines = await clients.raw_lines(
            "anthropic",
            lambda client: client.messages.with_streaming_response.create(
                model="c", max_tokens=64, messages=USER, stream=True
            ),
        )
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    # Chat: the role comes with the first tool call, in one chunk.
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    assert first.tool_calls is not None
    assert first.tool_calls[0].id == "call_1"
    # Anthropic: the ping follows the first block's start.
    assert events[:3] == [
        "message_start",
        "content_block_start",
        "ping",
    ]


@MODES
async def test_openai_errors_say_their_charset(mode: Mode) -> None:
    async with sdks(mode, FakeAIBridge(default=HTTPError(500, "boom"))) as clients:
        error = await clients.refused(
            "openai",
            openai.InternalServerError,
            lambda client: client.chat.completions.create(model="m", messages=USER),
        )
    assert error.response.headers["content-type"] == "application/json; charset=utf-8"


@MODES
async def test_responses_echo_the_fields_the_api_always_sends(mode: Mode) -> None:
    async with sdks(mode) as clients:
        response = await clients.call(
            "openai",
            lambda client: client.responses.create(model="m", input="hi", service_tier="auto"),
        )
    assert response.service_tier == "default"
    assert response.background is False
    assert response.top_logprobs == 0
    assert response.text is not None
    assert response.text.verbosity == "medium"
    assert {"prompt_cache_key", "safety_identifier"} <= response.model_fields_set
