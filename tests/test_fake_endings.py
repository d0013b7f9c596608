"""Every way an answer ends: token limits, stop sequences, `n` choices and scripted finishes."""

from __future__ import annotations

from typing import Any

import openai
import pydantic
import pytest
from sdk_helpers import UNEXHAUSTED_SSE, fake_clients, forbid_network

from aibridge_transport.testing import FakeAIBridge, Reply, ToolCall

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

USER: list[Any] = [{"role": "user", "content": "Count"}]
COUNT = "one two three four five"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


class Answer(pydantic.BaseModel):
    words: list[str]


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
async def test_chat_token_limit_truncates_and_ends_with_length(limit: str) -> None:
    bridge = FakeAIBridge(default=Reply(COUNT, tool_calls=[ToolCall("never_called")]))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        options: dict[str, Any] = {limit: 2}
        whole = await client.chat.completions.create(model="m", messages=USER, **options)
        stream = await client.chat.completions.create(
            model="m", messages=USER, stream=True, **options
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
    choice = whole.choices[0]
    assert choice.message.content == "one two"
    assert choice.finish_reason == "length"
    assert not choice.message.tool_calls
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 2
    deltas = [chunk.choices[0].delta for chunk in chunks]
    assert "".join(delta.content or "" for delta in deltas) == "one two"
    assert not any(delta.tool_calls for delta in deltas)
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_length_finish_reason_error_is_raised_by_the_sdk_helpers() -> None:
    bridge = FakeAIBridge(default=Reply('{"words": ["a", "b", "c"]}'))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        with pytest.raises(openai.LengthFinishReasonError):
            await client.chat.completions.parse(
                model="m", messages=USER, max_completion_tokens=1, response_format=Answer
            )
        with pytest.raises(openai.LengthFinishReasonError):
            async with client.chat.completions.stream(
                model="m", messages=USER, max_completion_tokens=2, response_format=Answer
            ) as stream:
                await stream.until_done()


async def test_chat_stop_sequence_cuts_the_text_before_it() -> None:
    bridge = FakeAIBridge(default=Reply(COUNT))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        whole = await client.chat.completions.create(model="m", messages=USER, stop=["four", "ree"])
        async with client.chat.completions.stream(model="m", messages=USER, stop="wo") as s:
            streamed = await s.get_final_completion()
    assert whole.choices[0].message.content == "one two th"
    assert whole.choices[0].finish_reason == "stop"
    assert streamed.choices[0].message.content == "one t"


async def test_chat_serves_n_choices_whole_and_streamed() -> None:
    bridge = FakeAIBridge(default=Reply("same words"))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        whole = await client.chat.completions.create(model="m", messages=USER, n=3)
        async with client.chat.completions.stream(model="m", messages=USER, n=2) as s:
            streamed = await s.get_final_completion()
    assert [choice.index for choice in whole.choices] == [0, 1, 2]
    assert {choice.message.content for choice in whole.choices} == {"same words"}
    assert [choice.message.content for choice in streamed.choices] == ["same words"] * 2
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 3 * 2


async def test_chat_scripted_content_filter_and_refusal() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply("partial", finish="content_filter"), Reply("I can't.", finish="refusal"))
    bridge.queue(Reply("I won't.", finish="refusal"))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        with pytest.raises(openai.ContentFilterFinishReasonError):
            await client.chat.completions.parse(model="m", messages=USER, response_format=Answer)
        refused = await client.chat.completions.create(model="m", messages=USER)
        async with client.chat.completions.stream(model="m", messages=USER) as stream:
            streamed = await stream.get_final_completion()
    assert refused.choices[0].message.refusal == "I can't."
    assert refused.choices[0].message.content is None
    assert refused.choices[0].finish_reason == "stop"
    assert streamed.choices[0].message.refusal == "I won't."
    assert streamed.choices[0].message.content is None


async def test_anthropic_max_tokens_truncates_and_ends_with_max_tokens() -> None:
    bridge = FakeAIBridge(default=Reply(COUNT))
    async with fake_clients(bridge) as clients:
        client = clients.anthropic()
        whole = await client.messages.create(model="c", max_tokens=3, messages=USER)
        async with client.messages.stream(model="c", max_tokens=3, messages=USER) as stream:
            streamed = await stream.get_final_message()
    for message in (whole, streamed):
        assert message.stop_reason == "max_tokens"
        assert message.content[0].type == "text"
        assert message.content[0].text == "one two three"
        assert message.usage.output_tokens == 3


async def test_anthropic_stop_sequence_is_reported() -> None:
    bridge = FakeAIBridge(default=Reply(COUNT))
    async with fake_clients(bridge) as clients:
        client = clients.anthropic()
        options: dict[str, Any] = {"max_tokens": 64, "messages": USER}
        whole = await client.messages.create(model="c", stop_sequences=["three"], **options)
        async with client.messages.stream(model="c", stop_sequences=["two"], **options) as s:
            streamed = await s.get_final_message()
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", "three")
    assert whole.content[0].type == "text"
    assert whole.content[0].text == "one two "
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", "two")
    assert streamed.content[0].type == "text"
    assert streamed.content[0].text == "one "


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("refusal", "refusal"), ("content_filter", "refusal"), ("length", "max_tokens")],
)
async def test_anthropic_scripted_endings(finish: Any, stop_reason: str) -> None:
    bridge = FakeAIBridge(default=Reply("Not that.", finish=finish))
    async with fake_clients(bridge) as clients:
        async with clients.anthropic().messages.stream(
            model="c", max_tokens=64, messages=USER
        ) as stream:
            message = await stream.get_final_message()
    assert message.stop_reason == stop_reason


async def test_anthropic_scripted_stop_sequence_names_the_requests_first() -> None:
    bridge = FakeAIBridge(default=Reply("Done", finish="stop_sequence"))
    async with fake_clients(bridge) as clients:
        message = await clients.anthropic().messages.create(
            model="c", max_tokens=64, messages=USER, stop_sequences=["END", "STOP"]
        )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


LONG = " ".join(f"w{index}" for index in range(20))


async def test_responses_max_output_tokens_is_an_incomplete_response() -> None:
    bridge = FakeAIBridge(default=Reply(LONG))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        whole = await client.responses.create(model="m", input="hi", max_output_tokens=16)
        stream = await client.responses.create(
            model="m", input="hi", max_output_tokens=16, stream=True
        )
        async with stream:
            events = [event async for event in stream]
        async with client.responses.stream(model="m", input="hi", max_output_tokens=16) as s:
            # The helper keeps only a `response.completed` as the final response.
            with pytest.raises(RuntimeError, match=r"response\.completed"):
                await s.get_final_response()
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.output_text == " ".join(LONG.split()[:16])
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


async def test_responses_scripted_content_filter_and_refusal() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply("cut", finish="content_filter"), Reply("No.", finish="refusal"))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        filtered = await client.responses.create(model="m", input="hi")
        async with client.responses.stream(model="m", input="hi") as stream:
            refusals = [
                event.delta async for event in stream if event.type == "response.refusal.delta"
            ]
            refused = await stream.get_final_response()
    assert filtered.status == "incomplete"
    assert filtered.incomplete_details is not None
    assert filtered.incomplete_details.reason == "content_filter"
    assert refusals == ["No."]
    [item] = refused.output
    assert item.type == "message"
    [part] = item.content
    assert part.type == "refusal"
    assert part.refusal == "No."
