"""Streams as real ones arrive: tool arguments in pieces, events grouped or cut by chunks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sdk_helpers import UNEXHAUSTED_SSE, FakeClients, fake_clients, forbid_network

from aibridge_transport.testing import (
    ARGUMENT_PIECE_SIZE,
    Chunking,
    FakeAIBridge,
    Reply,
    TokenGate,
    ToolCall,
)

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

USER: list[Any] = [{"role": "user", "content": "Weather?"}]
ARGUMENTS = {"city": "Paris", "unit": "celsius"}
ARGUMENTS_TEXT = json.dumps(ARGUMENTS, separators=(",", ":"))
CALL = ToolCall("weather", ARGUMENTS, id="call_1")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


async def chat_argument_deltas(clients: FakeClients) -> list[str]:
    stream = await clients.openai().chat.completions.create(
        model="gpt-test", messages=USER, stream=True
    )
    pieces: list[str] = []
    async with stream:
        async for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or ():
                    if call.function is not None and call.function.arguments:
                        pieces.append(call.function.arguments)
    return pieces


async def test_chat_tool_arguments_arrive_in_pieces_that_must_be_appended() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    async with fake_clients(bridge) as clients:
        pieces = await chat_argument_deltas(clients)
        async with clients.openai().chat.completions.stream(
            model="gpt-test", messages=USER
        ) as stream:
            final = await stream.get_final_completion()
    # A parser that kept only the last piece would see a fragment, not the arguments.
    assert len(pieces) == -(-len(ARGUMENTS_TEXT) // ARGUMENT_PIECE_SIZE) > 1
    assert all(len(piece) <= ARGUMENT_PIECE_SIZE for piece in pieces)
    assert "".join(pieces) == ARGUMENTS_TEXT
    [call] = final.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert json.loads(call.function.arguments) == ARGUMENTS


async def test_responses_tool_arguments_arrive_in_pieces() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    async with fake_clients(bridge) as clients:
        stream = await clients.openai().responses.create(
            model="gpt-test", input="Weather?", stream=True
        )
        pieces: list[str] = []
        done: list[str] = []
        async with stream:
            async for event in stream:
                if event.type == "response.function_call_arguments.delta":
                    pieces.append(event.delta)
                elif event.type == "response.function_call_arguments.done":
                    done.append(event.arguments)
        async with clients.openai().responses.stream(model="gpt-test", input="Weather?") as s:
            final = await s.get_final_response()
    assert len(pieces) > 1
    assert "".join(pieces) == ARGUMENTS_TEXT == done[0]
    [item] = final.output
    assert item.type == "function_call"
    assert json.loads(item.arguments) == ARGUMENTS


async def test_anthropic_tool_input_arrives_in_pieces() -> None:
    bridge = FakeAIBridge(default=Reply("", tool_calls=[CALL]))
    async with fake_clients(bridge) as clients:
        pieces: list[str] = []
        async with clients.anthropic().messages.stream(
            model="claude-test", max_tokens=64, messages=USER
        ) as stream:
            async for event in stream:
                if event.type == "input_json":
                    pieces.append(event.partial_json)
            message = await stream.get_final_message()
    assert len(pieces) > 2
    assert pieces[0] == ""
    assert "".join(pieces) == ARGUMENTS_TEXT
    [block] = message.content
    assert block.type == "tool_use"
    assert block.input == ARGUMENTS


async def test_scripted_pieces_are_sent_exactly() -> None:
    pieces = ['{"ci', 'ty":"Pa', 'ris"}']
    bridge = FakeAIBridge(default=Reply("", tool_calls=[ToolCall("weather", pieces=pieces)]))
    async with fake_clients(bridge) as clients:
        received = await chat_argument_deltas(clients)
    assert received == pieces


def test_tool_call_takes_arguments_or_pieces_not_both() -> None:
    with pytest.raises(ValueError, match="either"):
        ToolCall("f", {"a": 1}, pieces=['{"a":1}'])
    assert ToolCall("f", '{"raw": true}').arguments_text == '{"raw": true}'


CHUNKINGS = [Chunking(size=5), Chunking(events=3), Chunking(events=4, size=11)]
TEXT = "Héllo wörld, one two three"


@pytest.mark.parametrize("chunking", CHUNKINGS, ids=repr)
async def test_sdks_parse_streams_whatever_the_chunks(chunking: Chunking) -> None:
    bridge = FakeAIBridge(default=Reply(TEXT, tool_calls=[CALL]), chunking=chunking)
    async with fake_clients(bridge) as clients:
        async with clients.openai().chat.completions.stream(
            model="gpt-test", messages=USER
        ) as chat:
            completion = await chat.get_final_completion()
        async with clients.openai().responses.stream(model="gpt-test", input="hi") as responses:
            response = await responses.get_final_response()
        async with clients.anthropic().messages.stream(
            model="claude-test", max_tokens=64, messages=USER
        ) as messages:
            message = await messages.get_final_message()
    chat_message = completion.choices[0].message
    assert chat_message.content == TEXT
    assert [call.function.arguments for call in chat_message.tool_calls or []] == [ARGUMENTS_TEXT]
    assert response.output_text == TEXT
    assert response.output[1].type == "function_call"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT


async def raw_chunks(clients: FakeClients, body: dict[str, Any]) -> list[bytes]:
    async with clients.raw("openai") as raw:
        async with raw.stream("POST", "/v1/chat/completions", json=body) as response:
            return [chunk async for chunk in response.aiter_raw()]


CHAT: dict[str, Any] = {"model": "gpt-test", "messages": USER, "stream": True}


def unnumbered(stream: bytes) -> bytes:
    """The stream without what differs between two answers (their id and time)."""
    return re.sub(rb'"(id|created)":("[^"]*"|\d+)', b"", stream)


async def test_split_chunks_cut_events_at_the_given_size() -> None:
    async with fake_clients() as clients:
        whole = await raw_chunks(clients, CHAT)
        clients.bridge.queue(Reply(chunking=Chunking(size=5)))
        split = await raw_chunks(clients, CHAT)
    assert all(chunk.endswith(b"\n\n") for chunk in whole)
    assert all(len(chunk) <= 5 for chunk in split)
    assert len(split) > len(whole)
    assert unnumbered(b"".join(split)) == unnumbered(b"".join(whole))
    assert b"".join(split).count(b"\n\n") == b"".join(whole).count(b"\n\n")


async def test_coalesced_chunks_carry_several_events() -> None:
    async with fake_clients() as clients:
        whole = await raw_chunks(clients, CHAT)
        clients.bridge.queue(Reply(chunking=Chunking(events=3)))
        grouped = await raw_chunks(clients, CHAT)
    events = sum(chunk.count(b"\n\n") for chunk in whole)
    assert [chunk.count(b"\n\n") for chunk in grouped[:-1]] == [3] * (len(grouped) - 1)
    assert sum(chunk.count(b"\n\n") for chunk in grouped) == events
    assert len(grouped) == -(-events // 3)


async def test_coalescing_sends_what_is_pending_before_waiting_on_the_gate() -> None:
    gate = TokenGate()
    bridge = FakeAIBridge(chunking=Chunking(events=100))
    bridge.queue(Reply("a b", gate=gate))
    async with fake_clients(bridge) as clients:
        async with clients.raw("openai") as raw:
            async with raw.stream("POST", "/v1/chat/completions", json=CHAT) as response:
                chunks = response.aiter_raw()
                opening = await anext(chunks)
                assert bridge.last_request.tokens_sent == 0
                gate.release()
                first = await anext(chunks)
                gate.release()
                rest = [chunk async for chunk in chunks]
    assert b'"role":"assistant"' in opening
    assert b'"content":"a"' in first
    assert b'"content":" b"' in rest[0]
    assert rest[0].endswith(b"data: [DONE]\n\n")


def test_chunking_refuses_sizes_below_one() -> None:
    with pytest.raises(ValueError, match="events"):
        Chunking(events=0)
    with pytest.raises(ValueError, match="size"):
        Chunking(size=0)
