"""Details of the answers' shapes that code reads: echoed settings, times, empty contents."""

from __future__ import annotations

import time
from typing import Any

import pytest
from openai.types.responses import FunctionTool
from sdk_helpers import UNEXHAUSTED_SSE, fake_clients, forbid_network

from aibridge_transport.testing import FakeAIBridge, Reply, ToolCall

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

USER: list[Any] = [{"role": "user", "content": "hi"}]
TOOL: Any = {
    "type": "function",
    "name": "weather",
    "description": "The weather",
    "parameters": {"type": "object", "properties": {}},
    "strict": False,
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


async def test_responses_echo_the_requests_settings() -> None:
    settings: dict[str, Any] = {
        "instructions": "Be brief.",
        "tools": [TOOL],
        "temperature": 0.25,
        "top_p": 0.5,
        "max_output_tokens": 100,
        "metadata": {"run": "7"},
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    async with fake_clients() as clients:
        whole = await clients.openai().responses.create(model="m", input="hi", **settings)
        async with clients.openai().responses.stream(model="m", input="hi", **settings) as s:
            created = [event async for event in s if event.type == "response.created"]
            streamed = await s.get_final_response()
    for response in (whole, created[0].response, streamed):
        assert response.instructions == "Be brief."
        [tool] = response.tools
        assert isinstance(tool, FunctionTool)
        assert tool.name == "weather"
        assert (response.temperature, response.top_p) == (0.25, 0.5)
        assert response.max_output_tokens == 100
        assert response.metadata == {"run": "7"}
        assert response.tool_choice == "required"
        assert response.parallel_tool_calls is False


async def test_responses_defaults_are_the_apis() -> None:
    async with fake_clients() as clients:
        response = await clients.openai().responses.create(model="m", input="hi")
    assert response.instructions is None
    assert response.tools == []
    assert (response.temperature, response.top_p) == (1.0, 1.0)
    assert response.tool_choice == "auto"


async def test_created_times_are_now() -> None:
    before = int(time.time())
    async with fake_clients() as clients:
        completion = await clients.openai().chat.completions.create(model="m", messages=USER)
        stream = await clients.openai().chat.completions.create(
            model="m", messages=USER, stream=True
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
        response = await clients.openai().responses.create(model="m", input="hi")
    after = int(time.time())
    stamps = [completion.created, response.created_at, *(chunk.created for chunk in chunks)]
    assert all(before <= stamp <= after for stamp in stamps), stamps


async def test_streamed_tool_only_chat_answer_has_no_content() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[ToolCall("weather", {"city": "Oslo"})]))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        async with client.chat.completions.stream(model="m", messages=USER) as stream:
            streamed = await stream.get_final_completion()
        whole = await client.chat.completions.create(model="m", messages=USER)
    for completion in (streamed, whole):
        message = completion.choices[0].message
        assert message.content is None
        [call] = message.tool_calls or []
        assert call.type == "function"
        assert call.function.name == "weather"
        assert completion.choices[0].finish_reason == "tool_calls"
