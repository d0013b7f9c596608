"""Usage counts that grow with the prompt and the answer, and Anthropic's token count."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from sdk_helpers import UNEXHAUSTED_SSE, fake_clients, forbid_network

from aibridge_transport.testing import FakeAIBridge, Reply, ToolCall

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

SHORT: list[Any] = [{"role": "user", "content": "Say hello"}]
LONG: list[Any] = [
    {"role": "user", "content": "Say hello"},
    {"role": "assistant", "content": "Hello there, how can I help you today?"},
    {"role": "user", "content": "Say it again, but louder this time please."},
]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


async def test_chat_usage_is_counted_from_the_prompt_and_the_answer() -> None:
    bridge = FakeAIBridge(default=Reply("Hello world"))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        short = await client.chat.completions.create(model="m", messages=SHORT)
        long = await client.chat.completions.create(model="m", messages=LONG)
        tooled = await client.chat.completions.create(model="m", messages=SHORT, tools=TOOLS)
    assert short.usage is not None and long.usage is not None and tooled.usage is not None
    # "Say hello": ceil(9 / 4) = 3, plus 3 for the message; "Hello world": two tokens.
    assert (short.usage.prompt_tokens, short.usage.completion_tokens) == (6, 2)
    assert short.usage.total_tokens == 8
    assert long.usage.prompt_tokens > short.usage.prompt_tokens
    assert tooled.usage.prompt_tokens > short.usage.prompt_tokens


async def test_a_tool_only_answer_counts_its_calls_as_output() -> None:
    call = ToolCall("weather", {"city": "Paris"})
    bridge = FakeAIBridge(default=Reply("", tool_calls=[call]))
    async with fake_clients(bridge) as clients:
        chat = await clients.openai().chat.completions.create(model="m", messages=SHORT)
        response = await clients.openai().responses.create(model="m", input="hi")
        message = await clients.anthropic().messages.create(
            model="c", max_tokens=64, messages=SHORT
        )
    # ceil(len("weather" + '{"city":"Paris"}') / 4) = ceil(23 / 4) = 6
    assert chat.usage is not None and chat.usage.completion_tokens == 6
    assert response.usage is not None and response.usage.output_tokens == 6
    assert message.usage.output_tokens == 6


async def test_streamed_usage_matches_the_whole_answer() -> None:
    bridge = FakeAIBridge(default=Reply("one two three"))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        whole = await client.chat.completions.create(model="m", messages=LONG)
        stream = await client.chat.completions.create(
            model="m", messages=LONG, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
        async with clients.anthropic().messages.stream(
            model="c", max_tokens=64, messages=LONG
        ) as anthropic_stream:
            message = await anthropic_stream.get_final_message()
    assert whole.usage is not None
    assert chunks[-1].usage == whole.usage
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert message.usage.input_tokens == whole.usage.prompt_tokens
    assert message.usage.output_tokens == 3


async def test_anthropic_count_tokens_matches_the_messages_usage() -> None:
    system = "You are terse."
    async with fake_clients() as clients:
        client = clients.anthropic()
        counted = await client.messages.count_tokens(model="c", messages=LONG, system=system)
        message = await client.messages.create(
            model="c", max_tokens=64, messages=LONG, system=system
        )
        with pytest.raises(anthropic.BadRequestError, match="model: Field required"):
            await client.post("/v1/messages/count_tokens", body={"messages": LONG}, cast_to=object)
    assert counted.input_tokens == message.usage.input_tokens > 0
    record = clients.bridge.requests[0]
    assert record.path == "/api/v2/aibridge/anthropic/v1/messages/count_tokens"
    assert record.status == 200
