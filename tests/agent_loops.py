"""Multi-turn tool-calling agent loops over the real SDKs, async and sync, and the fake
bridge scripted to drive them: what the record/replay tests run twice and compare.

Each loop streams, runs the tool the model asks for, hands the result back, and stops when
an answer calls no tool. It returns everything the SDK parsed, in order.
"""

from __future__ import annotations

from typing import Any, Final

import anthropic
import openai

from aibridge_transport.testing import FakeAIBridge, Reply, ToolCall, When

__all__ = [
    "ANTHROPIC_TOOLS",
    "OPENAI_TOOLS",
    "QUESTION",
    "TOOL_OUTPUT",
    "anthropic_loop",
    "anthropic_loop_sync",
    "openai_loop",
    "openai_loop_sync",
    "scripted_bridge",
]

QUESTION: Final = "What is the weather in Paris? Use the tool."
TOOL_OUTPUT: Final = "sunny, 21 C"
_SCHEMA: Final = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
OPENAI_TOOLS: Final[list[Any]] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": _SCHEMA}}
]
ANTHROPIC_TOOLS: Final[list[Any]] = [
    {"name": "get_weather", "description": "The weather in a city", "input_schema": _SCHEMA}
]
_MAX_TURNS: Final = 4


def scripted_bridge() -> FakeAIBridge:
    """A fake that asks for the tool until the request hands its result back."""
    bridge = FakeAIBridge(strict_scripts=True)
    bridge.on(When(tool_result="sunny"), Reply("It is sunny in Paris, 21 degrees."), repeat=True)
    bridge.on(
        When(last_user="weather in Paris"),
        Reply("Let me check.", tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        repeat=True,
    )
    return bridge


def _openai_turn(seen: list[Any], chunks: list[Any]) -> tuple[str, dict[int, dict[str, str]]]:
    text = ""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        seen.append(chunk.model_dump())
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function is not None:
                    call["name"] = delta.function.name or call["name"]
                    call["arguments"] += delta.function.arguments or ""
    return text, calls


def _openai_next(messages: list[Any], text: str, calls: dict[int, dict[str, str]]) -> None:
    messages.append(
        {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in calls.values()
            ],
        }
    )
    for call in calls.values():
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": TOOL_OUTPUT})


async def openai_loop(client: openai.AsyncOpenAI) -> list[Any]:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    seen: list[Any] = []
    for _ in range(_MAX_TURNS):
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=OPENAI_TOOLS, stream=True
        )
        text, calls = _openai_turn(seen, [chunk async for chunk in stream])
        if not calls:
            seen.append(text)
            return seen
        _openai_next(messages, text, calls)
    raise AssertionError("the loop never ended")


def openai_loop_sync(client: openai.OpenAI) -> list[Any]:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    seen: list[Any] = []
    for _ in range(_MAX_TURNS):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=OPENAI_TOOLS, stream=True
        )
        text, calls = _openai_turn(seen, list(stream))
        if not calls:
            seen.append(text)
            return seen
        _openai_next(messages, text, calls)
    raise AssertionError("the loop never ended")


def _anthropic_next(messages: list[Any], message: Any) -> bool:
    """Append the assistant turn and the tool results; say whether a tool was called."""
    content: list[Any] = []
    results: list[Any] = []
    for block in message.content:
        if block.type == "text":
            content.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            content.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
            results.append({"type": "tool_result", "tool_use_id": block.id, "content": TOOL_OUTPUT})
    messages.append({"role": "assistant", "content": content})
    if results:
        messages.append({"role": "user", "content": results})
    return bool(results)


async def anthropic_loop(client: anthropic.AsyncAnthropic) -> list[Any]:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    seen: list[Any] = []
    for _ in range(_MAX_TURNS):
        async with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=256, messages=messages, tools=ANTHROPIC_TOOLS
        ) as stream:
            seen.extend([event.model_dump() async for event in stream])
            message = await stream.get_final_message()
        if not _anthropic_next(messages, message):
            return seen
    raise AssertionError("the loop never ended")


def anthropic_loop_sync(client: anthropic.Anthropic) -> list[Any]:
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    seen: list[Any] = []
    for _ in range(_MAX_TURNS):
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=256, messages=messages, tools=ANTHROPIC_TOOLS
        ) as stream:
            seen.extend([event.model_dump() for event in stream])
            message = stream.get_final_message()
        if not _anthropic_next(messages, message):
            return seen
    raise AssertionError("the loop never ended")
