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
from sdk_modes import MODES, Mode, anthropic_error_message, openai_error_message, sdks

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
                model="claude-haiku-4-5", max_tokens=64, messages=USER
            ),
        )
        unknown = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(model="my-model", messages=USER),
        )
    assert chat.model == response.model == "gpt-4o-mini-2024-07-18"
    assert message.model == MODEL_SNAPSHOTS["claude-haiku-4-5"] == "claude-haiku-4-5-20251001"
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


FORCED: Any = {"type": "function", "function": {"name": "weather"}}


async def forced_finishes(clients: Any, model: str) -> tuple[str, str | None, str | None]:
    """The model an answer names, and the finish_reason of a forced call, whole and streamed."""
    whole = await clients.call(
        "openai",
        lambda client: client.chat.completions.create(
            model=model, messages=USER, tools=[WEATHER], tool_choice=FORCED
        ),
    )
    chunks = await clients.stream(
        "openai",
        lambda client: client.chat.completions.create(
            model=model, messages=USER, tools=[WEATHER], tool_choice=FORCED, stream=True
        ),
    )
    assert whole.choices[0].message.tool_calls[0].function.name == "weather"
    return whole.model, whole.choices[0].finish_reason, chunks[-1].choices[0].finish_reason


@MODES
async def test_a_tool_choice_forcing_a_named_function_finishes_as_the_model_does(
    mode: Mode,
) -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    async with sdks(mode, bridge) as clients:
        models = ("gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo", "gpt-5-mini", "o3", "m")
        finishes = [await forced_finishes(clients, model) for model in models]
        # A reply scripted with a model answers as that model does.
        older = Reply("", tool_calls=[CALL], model="gpt-4o-mini-2024-07-18")
        bridge.queue(older, older)
        scripted = await forced_finishes(clients, "gpt-5-mini")
        free = await clients.call(
            "openai",
            lambda client: client.chat.completions.create(
                model="gpt-4o", messages=USER, tools=[WEATHER]
            ),
        )
    # The gpt-4 and gpt-3.5 lines say "stop", the gpt-5 line and the rest "tool_calls".
    assert finishes == [
        ("gpt-4o-2024-08-06", "stop", "stop"),
        ("gpt-4.1-mini-2025-04-14", "stop", "stop"),
        ("gpt-3.5-turbo-0125", "stop", "stop"),
        ("gpt-5-mini-2025-08-07", "tool_calls", "tool_calls"),
        ("o3-2025-04-16", "tool_calls", "tool_calls"),
        ("m", "tool_calls", "tool_calls"),
    ]
    assert scripted == ("gpt-4o-mini-2024-07-18", "stop", "stop")
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
    assert openai_error_message(limited) == "slow down"
    assert counted.input_tokens > 0
    assert bridge.pending == 0


# Smaller details, matched where cheap


async def chat_answers(clients: Any, model: str) -> list[Any]:
    """A whole chat answer of `model` and the chunks of a streamed one."""
    whole = await clients.call(
        "openai", lambda client: client.chat.completions.create(model=model, messages=USER)
    )
    chunks = await clients.stream(
        "openai",
        lambda client: client.chat.completions.create(model=model, messages=USER, stream=True),
    )
    return [whole, *chunks]


@MODES
async def test_chat_answers_name_their_service_tier_and_fingerprint_as_the_model_does(
    mode: Mode,
) -> None:
    async with sdks(mode) as clients:
        older = await chat_answers(clients, "gpt-4o-mini")
        current = await chat_answers(clients, "gpt-5-mini")
        unknown = await chat_answers(clients, "m")
    assert {answer.service_tier for answer in (*older, *current, *unknown)} == {"default"}
    # The gpt-4o line names a fingerprint; the gpt-5 line, and names the fake does not know, none.
    assert {answer.system_fingerprint[:3] for answer in older} == {"fp_"}
    assert {answer.system_fingerprint for answer in (*current, *unknown)} == {None}


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
async def test_error_responses_say_application_json_without_a_charset(mode: Mode) -> None:
    bridge = FakeAIBridge(default=HTTPError(400, "no"))
    async with sdks(mode, bridge) as clients:
        openai_error = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.chat.completions.create(model="m", messages=USER),
        )
        anthropic_error = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            lambda client: client.messages.create(model="c", max_tokens=8, messages=USER),
        )
    # As the recorded 400s of both providers say it.
    assert openai_error.response.headers["content-type"] == "application/json"
    assert anthropic_error.response.headers["content-type"] == "application/json"


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
