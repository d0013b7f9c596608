"""Scripted replies matched to requests: by model, last user message, tool results, or a
function of the request; tried before the queue; strict about replies never used."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sdk_helpers import fake_clients

from aibridge_transport.testing import (
    FakeAIBridge,
    HTTPError,
    RecordedRequest,
    Reply,
    Script,
    When,
    last_user_text,
    tool_results,
)

HI: Any = [{"role": "user", "content": "hi"}]


async def _chat(bridge: FakeAIBridge, messages: Any, model: str = "gpt-4o") -> str | None:
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        completion = await client.chat.completions.create(model=model, messages=messages)
        await client.close()
    return completion.choices[0].message.content


async def test_replies_match_by_model_whatever_the_order(anyio_backend: str) -> None:
    bridge = FakeAIBridge()
    bridge.on(When(model="big"), Reply("from big"))
    bridge.on(When(model="small"), Reply("from small"))
    assert await _chat(bridge, HI, model="small") == "from small"
    assert await _chat(bridge, HI, model="big") == "from big"
    assert await _chat(bridge, HI, model="big") == "Hello from the fake bridge."  # used up
    bridge.assert_scripts_used()


async def test_replies_match_by_the_last_user_message(anyio_backend: str) -> None:
    bridge = FakeAIBridge()
    bridge.on(When(last_user="weather"), Reply("sunny"), repeat=True)
    bridge.on(When(last_user=re.compile(r"^time\b")), Reply("noon"))
    bridge.queue(Reply("from the queue"))
    history: Any = [
        {"role": "user", "content": "what is the weather?"},
        {"role": "assistant", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "time please"}]},
    ]
    assert await _chat(bridge, history) == "noon"
    assert await _chat(bridge, history[:1]) == "sunny"
    assert await _chat(bridge, history[:1]) == "sunny"  # repeat
    assert await _chat(bridge, HI) == "from the queue"  # no rule matches: the queue


async def test_replies_match_by_the_tool_results_of_the_latest_turn(anyio_backend: str) -> None:
    bridge = FakeAIBridge()
    bridge.on(When(tool_result="21 C"), Reply("warm"))
    bridge.on(When(tool_result=re.compile(r"-\d+ C")), Reply("cold"))
    call = {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}

    def turn(result: str) -> Any:
        return [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result},
        ]

    assert await _chat(bridge, turn("-5 C")) == "cold"
    assert await _chat(bridge, turn("sunny, 21 C")) == "warm"


async def test_a_reply_can_be_a_function_of_the_request(anyio_backend: str) -> None:
    bridge = FakeAIBridge()
    seen: list[RecordedRequest] = []

    def echo(request: RecordedRequest) -> Script:
        seen.append(request)
        return Reply(f"you said: {last_user_text(request.body)}")

    bridge.on(When(match=lambda request: request.body.get("temperature") == 0), HTTPError(400))
    bridge.respond(echo)
    assert await _chat(bridge, HI) == "you said: hi"
    assert await _chat(bridge, [{"role": "user", "content": "again"}]) == "you said: again"
    assert [request.provider for request in seen] == ["openai", "openai"]


async def test_anthropic_and_responses_requests_are_matched_too(anyio_backend: str) -> None:
    bridge = FakeAIBridge()
    bridge.on(When(tool_result="Mexico", provider="anthropic"), Reply("Mexico City"))
    bridge.on(When(last_user="capital"), Reply("Paris"))
    async with fake_clients(bridge) as clients:
        claude = clients.anthropic()
        message = await claude.messages.create(
            model="claude",
            max_tokens=32,
            messages=[
                {"role": "user", "content": "largest city?"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "c", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Mexico"}
                    ],
                },
            ],
        )
        await claude.close()
        client = clients.openai()
        response = await client.responses.create(model="gpt-4o", input="the capital of France?")
        await client.close()
    assert message.content[0].type == "text" and message.content[0].text == "Mexico City"
    assert response.output_text == "Paris"


def test_the_request_readers_follow_each_api() -> None:
    responses_input = {
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "result"},
        ]
    }
    assert last_user_text(responses_input) == "q"
    assert tool_results(responses_input) == ["result"]
    anthropic_body = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]},
        ]
    }  # fmt: skip
    assert last_user_text(anthropic_body) == "q"  # a turn of tool results only is skipped
    assert tool_results(anthropic_body) == ["ab"]
    assert last_user_text({"messages": []}) is None
    assert tool_results({"messages": [{"role": "user", "content": "no tools"}]}) == []


async def test_strict_scripts_name_what_was_never_used(anyio_backend: str) -> None:
    bridge = FakeAIBridge(strict_scripts=True)
    bridge.on(When(model="never"), Reply("unused"))
    bridge.on(When(model="gpt-4o"), Reply("used"))
    bridge.queue(Reply("queued"), Reply("queued too"))
    assert await _chat(bridge, HI) == "used"
    with pytest.raises(AssertionError) as raised:
        bridge.assert_scripts_used()
    message = str(raised.value)
    assert "When(model='never') (replies left: 1, used: 0)" in message
    assert "the queue (replies left: 2)" in message
    assert "model='gpt-4o'" not in message


def test_a_rule_needs_a_reply() -> None:
    with pytest.raises(ValueError, match="at least one reply"):
        FakeAIBridge().on(When(model="m"))
