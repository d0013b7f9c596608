"""The fake bridge refuses what the real APIs refuse, with their 400 and their words."""

from __future__ import annotations

from typing import Any, cast

import anthropic
import openai
import pytest
from sdk_helpers import fake_clients, forbid_network

from aibridge_transport.testing import FakeAIBridge, Reply

pytestmark = pytest.mark.anyio

CALL = {"id": "call_x", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
USE = {"type": "tool_use", "id": "toolu_x", "name": "lookup", "input": {}}
OLD_VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


async def openai_refusal(messages: list[Any], **options: Any) -> openai.BadRequestError:
    async with fake_clients() as clients:
        client = clients.openai()
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="gpt-test", messages=messages, **options)
        record = clients.bridge.last_request
    assert record.status == 400
    assert record.error is not None
    assert record.error in caught.value.message
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_fake_")
    return caught.value


async def anthropic_refusal(
    messages: list[Any], *, max_tokens: int = 64, **options: Any
) -> anthropic.BadRequestError:
    async with fake_clients() as clients:
        client = clients.anthropic()
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model="claude-test", max_tokens=max_tokens, messages=messages, **options
            )
    return caught.value


def openai_error(error: openai.BadRequestError) -> dict[str, Any]:
    assert isinstance(error.body, dict)
    assert error.type == "invalid_request_error"
    return error.body


def anthropic_message(error: anthropic.BadRequestError) -> str:
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "invalid_request_error"
    return cast(str, error.body["error"]["message"])


async def test_openai_tool_calls_without_their_tool_messages_are_refused() -> None:
    messages = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "user", "content": "well?"},
    ]
    body = openai_error(await openai_refusal(messages))
    assert body["message"] == (
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        "call_x"
    )
    assert body["param"] == "messages.[1].role"


async def test_openai_history_ending_on_unanswered_tool_calls_is_refused() -> None:
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [CALL]}]
    body = openai_error(await openai_refusal(messages))
    assert body["message"].endswith("did not have response messages: call_x")


async def test_openai_tool_message_without_its_call_is_refused() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_y", "content": "42"},
    ]
    body = openai_error(await openai_refusal(messages))
    assert body["message"] == (
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
        "message with 'tool_calls'."
    )
    assert body["param"] == "messages.[1].role"


async def test_openai_tool_message_answering_another_call_is_refused() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_other", "content": "42"},
    ]
    body = openai_error(await openai_refusal(messages))
    assert "preceeding message with 'tool_calls'" in body["message"]


async def test_openai_complete_tool_history_is_answered() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_x", "content": "42"},
        {"role": "user", "content": "thanks"},
    ]
    async with fake_clients() as clients:
        completion = await clients.openai().chat.completions.create(
            model="gpt-test", messages=cast(Any, messages)
        )
    assert completion.choices[0].message.content == "Hello from the fake bridge."


async def test_openai_unknown_role_is_refused() -> None:
    body = openai_error(await openai_refusal([{"role": "robot", "content": "hi"}]))
    assert body["message"].startswith("Invalid value: 'robot'. Supported values are:")
    assert (body["param"], body["code"]) == ("messages[0].role", "invalid_value")


async def test_openai_empty_messages_are_refused() -> None:
    body = openai_error(await openai_refusal([]))
    assert body["code"] == "empty_array"
    assert body["param"] == "messages"


@pytest.mark.parametrize(
    ("options", "message", "code"),
    [
        (
            {"temperature": "hot"},
            "Invalid type for 'temperature': expected a decimal, but got a string instead.",
            "invalid_type",
        ),
        (
            {"temperature": 3},
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
            "but got 3 instead.",
            "decimal_above_max_value",
        ),
        (
            {"max_tokens": -1},
            "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
            "but got -1 instead.",
            "integer_below_min_value",
        ),
        (
            {"n": "2"},
            "Invalid type for 'n': expected an integer, but got a string instead.",
            "invalid_type",
        ),
    ],
)
async def test_openai_fields_of_the_wrong_type_or_range_are_refused(
    options: dict[str, Any], message: str, code: str
) -> None:
    # The SDK's parameters are typed dicts: nothing checks them before they are sent.
    body = openai_error(await openai_refusal([{"role": "user", "content": "hi"}], **options))
    assert body["message"] == message
    assert body["code"] == code
    assert body["param"] == next(iter(options))


async def test_openai_stream_options_without_a_stream_are_refused() -> None:
    error = await openai_refusal(
        [{"role": "user", "content": "hi"}], stream_options={"include_usage": True}
    )
    body = openai_error(error)
    assert body["message"] == (
        "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    )
    assert body["param"] == "stream_options"


async def test_openai_missing_model_and_messages_are_refused() -> None:
    async with fake_clients() as clients:
        client = clients.openai()
        with pytest.raises(openai.BadRequestError) as no_model:
            await client.post("/chat/completions", body={"messages": []}, cast_to=object)
        with pytest.raises(openai.BadRequestError) as no_messages:
            await client.post("/chat/completions", body={"model": "m"}, cast_to=object)
    assert openai_error(no_model.value)["message"] == "you must provide a model parameter"
    missing = openai_error(no_messages.value)
    assert missing["message"] == "Missing required parameter: 'messages'."
    assert (missing["param"], missing["code"]) == ("messages", "missing_required_parameter")


async def test_a_body_that_is_not_json_is_refused_in_each_providers_shape() -> None:
    async with fake_clients() as clients:
        async with clients.raw("openai") as raw:
            chat = await raw.post("/v1/chat/completions", content=b"{not json")
            listed = await raw.post("/v1/chat/completions", json=["a", "list"])
        async with clients.raw("anthropic") as raw:
            messages = await raw.post("/v1/messages", content=b"model=claude")
    assert chat.status_code == listed.status_code == messages.status_code == 400
    assert chat.json()["error"]["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in chat.json()["error"]["message"]
    assert listed.json() == chat.json()
    assert messages.json()["error"]["type"] == "invalid_request_error"
    assert messages.headers["request-id"] == messages.json()["request_id"]
    assert chat.headers["x-request-id"].startswith("req_fake_")


async def test_responses_function_output_without_its_call_is_refused() -> None:
    async with fake_clients() as clients:
        with pytest.raises(openai.BadRequestError) as caught:
            await clients.openai().responses.create(
                model="gpt-test",
                input=[{"type": "function_call_output", "call_id": "call_z", "output": "42"}],
            )
    body = openai_error(caught.value)
    assert body["message"] == "No tool call found for function call output with call_id call_z."
    assert body["param"] == "input"


async def test_responses_function_call_without_its_output_is_refused() -> None:
    call = {"type": "function_call", "call_id": "call_z", "name": "f", "arguments": "{}"}
    async with fake_clients() as clients:
        with pytest.raises(openai.BadRequestError) as caught:
            await clients.openai().responses.create(model="gpt-test", input=cast(Any, [call]))
    assert openai_error(caught.value)["message"] == "No tool output found for function call call_z."


async def test_anthropic_tool_result_without_its_tool_use_is_refused() -> None:
    messages = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": [{"type": "text", "text": "Sure."}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "42"}],
        },
    ]
    assert anthropic_message(await anthropic_refusal(messages)) == (
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
        "toolu_x. Each `tool_result` block must have a corresponding `tool_use` block in the "
        "previous message."
    )


async def test_anthropic_tool_use_without_its_result_is_refused() -> None:
    messages = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": [USE]},
        {"role": "user", "content": "and?"},
    ]
    assert anthropic_message(await anthropic_refusal(messages)) == (
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately "
        "after: toolu_x. Each `tool_use` block must have a corresponding `tool_result` block "
        "in the next message."
    )


async def test_anthropic_consecutive_turns_of_one_role_are_merged_not_refused() -> None:
    # The API combines consecutive user or assistant turns; a tool result may come in a
    # second user message of the turn after the tool use, and an assistant may go first.
    messages = [
        {"role": "assistant", "content": "Earlier I said hello."},
        {"role": "user", "content": "look it up"},
        {"role": "user", "content": "please"},
        {"role": "assistant", "content": "Looking."},
        {"role": "assistant", "content": [USE]},
        {"role": "user", "content": "here:"},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "42"}],
        },
    ]
    async with fake_clients() as clients:
        message = await clients.anthropic().messages.create(
            model="claude-test", max_tokens=64, messages=cast(Any, messages)
        )
    assert message.stop_reason == "end_turn"


async def test_anthropic_unknown_role_is_refused() -> None:
    error = await anthropic_refusal([{"role": "tool", "content": "hi"}])
    assert anthropic_message(error) == (
        "messages.0.role: Input should be 'user', 'assistant' or 'system'"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 1"),
        ({"temperature": "warm"}, "temperature: Input should be a valid number"),
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        ({"stop_sequences": "END"}, "stop_sequences: Input should be a valid list"),
    ],
)
async def test_anthropic_fields_of_the_wrong_type_or_range_are_refused(
    options: dict[str, Any], message: str
) -> None:
    # anthropic 2.x no longer takes sampling settings as arguments; callers on the older API
    # version (litellm's 2023-06-01) still send them in the body, where the API checks them.
    error = await anthropic_refusal(
        [{"role": "user", "content": "hi"}], extra_body=options, extra_headers=OLD_VERSION
    )
    assert anthropic_message(error) == message


async def test_anthropic_required_fields_are_named() -> None:
    async with fake_clients() as clients:
        client = clients.anthropic()
        refused: list[str] = []
        for body in (
            {"model": "c", "messages": [{"role": "user", "content": "hi"}]},
            {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            {"model": "c", "max_tokens": 5},
            {"model": "c", "max_tokens": 5, "messages": []},
        ):
            with pytest.raises(anthropic.BadRequestError) as caught:
                await client.post("/v1/messages", body=body, cast_to=object)
            refused.append(anthropic_message(caught.value))
    assert refused == [
        "max_tokens: Field required",
        "model: Field required",
        "messages: Field required",
        "messages: at least one message is required",
    ]


async def test_a_refused_request_leaves_the_queued_reply_for_the_next() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply("queued"))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="gpt-test", messages=[])
        assert bridge.pending == 1
        completion = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )
    assert completion.choices[0].message.content == "queued"
    assert [record.status for record in bridge.requests] == [400, 200]
    assert bridge.requests[0].error is not None
    assert "empty array" in bridge.requests[0].error


async def test_validation_can_be_relaxed_per_bridge() -> None:
    messages = [{"role": "tool", "content": "be nice"}, {"role": "user", "content": "hi"}]
    async with fake_clients(FakeAIBridge(validate=False)) as clients:
        message = await clients.anthropic().messages.create(
            model="claude-test", max_tokens=64, messages=cast(Any, messages)
        )
        async with clients.raw("openai") as raw:
            response = await raw.post("/v1/chat/completions", content=b"{not json")
    assert message.content[0].type == "text"
    assert response.status_code == 200


async def test_a_body_nested_beyond_the_parsers_limit_is_refused_not_crashed() -> None:
    async with fake_clients() as clients:
        async with clients.raw("openai") as raw:
            response = await raw.post("/v1/chat/completions", content=b"[" * 100_000)
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]
    assert clients.bridge.last_request.body is None
