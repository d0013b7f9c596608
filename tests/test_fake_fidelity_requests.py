"""The fake bridge takes the requests today's real APIs take and refuses those they refuse,
by the rules of the Anthropic API version a request names (docs/testing.md, "Provoking each
400", "API versions").

Each point goes through the real SDKs, async and sync, on asyncio and trio (`sdk_modes`).
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from sdk_helpers import UNEXHAUSTED_SSE, forbid_network
from sdk_modes import MODES, Mode, anthropic_error_message, openai_error_message, sdks

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

USER: list[Any] = [{"role": "user", "content": "Weather?"}]
OLD_VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


# Valid requests the real APIs answer


@MODES
async def test_anthropic_system_turns_inside_messages_are_answered(mode: Mode) -> None:
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "system", "content": [{"type": "text", "text": "Use Celsius."}]},
    ]
    async with sdks(mode) as clients:
        message = await clients.call(
            "anthropic",
            lambda client: client.messages.create(model="c", max_tokens=64, messages=messages),
        )
    assert message.stop_reason == "end_turn"
    assert clients.bridge.last_request.status == 200


@MODES
async def test_anthropic_system_turn_between_a_tool_use_and_its_result_is_answered(
    mode: Mode,
) -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 C"}
    messages: Any = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [use]},
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": [result]},
    ]
    async with sdks(mode) as clients:
        message = await clients.call(
            "anthropic",
            lambda client: client.messages.create(model="c", max_tokens=64, messages=messages),
        )
    assert message.stop_reason == "end_turn"


@MODES
async def test_responses_stored_prompt_stands_in_for_the_model(mode: Mode) -> None:
    prompt = {"id": "pmpt_abc123", "version": "2"}
    async with sdks(mode) as clients:
        response = await clients.call(
            "openai", lambda client: client.responses.create(prompt=prompt, input="Weather?")
        )
        refused = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.responses.create(input="Weather?"),
        )
    assert response.status == "completed"
    assert response.prompt is not None
    assert response.prompt.id == "pmpt_abc123"
    assert openai_error_message(refused) == "you must provide a model parameter"


@MODES
async def test_responses_function_call_output_may_answer_a_tool_search_call(mode: Mode) -> None:
    items: Any = [
        {"type": "tool_search_call", "call_id": "call_s1", "arguments": {"query": "weather"}},
        {"type": "function_call_output", "call_id": "call_s1", "output": "[]"},
    ]
    async with sdks(mode) as clients:
        response = await clients.call(
            "openai", lambda client: client.responses.create(model="m", input=items)
        )
    assert response.status == "completed"


# Invalid requests the real APIs refuse


@MODES
async def test_a_null_model_is_refused_on_every_route(mode: Mode) -> None:
    none: Any = None
    async with sdks(mode) as clients:
        chat = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.chat.completions.create(model=none, messages=USER),
        )
        responses = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.responses.create(model=none, input="hi"),
        )
        messages = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            lambda client: client.messages.create(model=none, max_tokens=64, messages=USER),
        )
        no_limit = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            # The SDK computes a timeout from `max_tokens`: the null goes in the body only.
            lambda client: client.messages.create(
                model="c", max_tokens=64, messages=USER, extra_body={"max_tokens": None}
            ),
        )
    assert openai_error_message(chat) == "you must provide a model parameter"
    assert openai_error_message(responses) == "you must provide a model parameter"
    assert anthropic_error_message(messages) == "model: Field required"
    assert anthropic_error_message(no_limit) == "max_tokens: Field required"
    assert [record.body["model"] for record in clients.bridge.requests[:3]] == [None] * 3


@MODES
async def test_non_finite_numbers_are_invalid_json_in_each_providers_shape(mode: Mode) -> None:
    # The SDKs' own encoder refuses NaN; other clients (and Python's json) write it, and the
    # APIs answer 400: JSON has no NaN or Infinity.
    json = {"content-type": "application/json"}
    chat_body = (
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    )
    responses_body = b'{"model": "m", "input": "hi", "top_p": Infinity}'
    messages_body = (
        b'{"model": "c", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],'
        b' "metadata": {"score": -Infinity}}'
    )
    async with sdks(mode) as clients:
        chat = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.post(
                "/chat/completions", content=chat_body, cast_to=object, options={"headers": json}
            ),
        )
        responses = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.post(
                "/responses", content=responses_body, cast_to=object, options={"headers": json}
            ),
        )
        messages = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            lambda client: client.post(
                "/v1/messages", content=messages_body, cast_to=object, options={"headers": json}
            ),
        )
    for error in (chat, responses):
        assert error.type == "invalid_request_error"
        assert "could not parse the JSON body" in error.message
    assert "could not parse the JSON body" in anthropic_error_message(messages)
    assert [record.status for record in clients.bridge.requests] == [400, 400, 400]


@MODES
async def test_anthropic_requests_over_32_mib_get_413_request_too_large(mode: Mode) -> None:
    big: Any = [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]
    async with sdks(mode) as clients:
        too_large = await clients.refused(
            "anthropic",
            anthropic.APIStatusError,
            lambda client: client.messages.create(model="c", max_tokens=64, messages=big),
        )
        counted = await clients.refused(
            "anthropic",
            anthropic.APIStatusError,
            lambda client: client.messages.count_tokens(model="c", messages=big),
        )
    for error in (too_large, counted):
        assert error.status_code == 413
        assert isinstance(error.body, dict)
        assert error.body["error"]["type"] == "request_too_large"
        assert error.body["request_id"] == error.request_id
    assert [record.status for record in clients.bridge.requests] == [413, 413]


@MODES
async def test_content_parts_without_a_type_are_refused(mode: Mode) -> None:
    untyped: Any = [{"role": "user", "content": [{"text": "hi"}]}]
    async with sdks(mode) as clients:
        chat = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.chat.completions.create(model="m", messages=untyped),
        )
        responses = await clients.refused(
            "openai",
            openai.BadRequestError,
            lambda client: client.responses.create(model="m", input=untyped),
        )
        messages = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            lambda client: client.messages.create(model="c", max_tokens=64, messages=untyped),
        )
        system = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            lambda client: client.messages.create(
                model="c", max_tokens=64, messages=USER, system=[{"text": "Be brief."}]
            ),
        )
    assert isinstance(chat.body, dict)
    assert chat.body["param"] == "messages[0].content[0].type"
    assert chat.body["code"] == "missing_required_parameter"
    assert isinstance(responses.body, dict)
    assert responses.body["param"] == "input[0].content[0].type"
    assert anthropic_error_message(messages) == "messages.0.content.0.type: Field required"
    assert anthropic_error_message(system) == "system.0.type: Field required"


# anthropic-version: the rules of the version the request names


@MODES
@pytest.mark.parametrize("name", ["temperature", "top_p", "top_k"])
async def test_anthropic_default_version_refuses_sampling_parameters(mode: Mode, name: str) -> None:
    # Even at their default values; the older version still takes them.
    value = {"temperature": 1.0, "top_p": 1.0, "top_k": 40}[name]
    async with sdks(mode) as clients:
        refused = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            lambda client: client.messages.create(
                model="c", max_tokens=64, messages=USER, extra_body={name: value}
            ),
        )
        older = await clients.call(
            "anthropic",
            lambda client: client.messages.create(
                model="c",
                max_tokens=64,
                messages=USER,
                extra_body={name: value},
                extra_headers=OLD_VERSION,
            ),
        )
    sent = [record.headers["anthropic-version"] for record in clients.bridge.requests]
    assert sent == [anthropic._constants.ANTHROPIC_API_VERSION, "2023-06-01"]
    assert anthropic_error_message(refused).startswith(
        f"{name}: is not supported with anthropic-version 2026-10-21"
    )
    assert older.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("2023-01-01", True),  # before the first entry: the oldest rules
        ("2023-06-01", True),
        ("2025-06-01", True),  # between entries: the earlier entry's rules
        ("2026-10-21", False),
        ("2027-03-01", False),  # after the last entry: the newest rules
    ],
)
async def test_a_request_takes_the_rules_of_the_latest_version_at_or_before_its_own(
    version: str, accepted: bool
) -> None:
    def operation(client: anthropic.AsyncAnthropic) -> Any:
        return client.messages.create(
            model="c",
            max_tokens=64,
            messages=USER,
            extra_body={"temperature": 0.5},
            extra_headers={"anthropic-version": version},
        )

    async with sdks("async") as clients:
        if accepted:
            await clients.call("anthropic", operation)
        else:
            await clients.refused("anthropic", anthropic.BadRequestError, operation)
    assert clients.bridge.last_request.headers["anthropic-version"] == version


DOCUMENT: Any = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "Oslo: 12 C"},
}
CITED: Any = {
    "type": "text",
    "text": "It is 12 C.",
    "citations": [
        {
            "type": "char_location",
            "cited_text": "Oslo: 12 C",
            "document_index": 0,
            "document_title": None,
            "start_char_index": 0,
            "end_char_index": 10,
        }
    ],
}


@MODES
@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [USER[0], {"role": "assistant", "content": [DOCUMENT]}],
            "messages.1.content.0: document blocks are not supported in assistant messages "
            "with anthropic-version 2026-10-21",
        ),
        (
            [{"role": "user", "content": [CITED]}],
            "messages.0.content.0.citations: citations are not supported in user messages "
            "with anthropic-version 2026-10-21",
        ),
    ],
    ids=["assistant-document", "user-citations"],
)
async def test_anthropic_default_version_refuses_assistant_documents_and_user_citations(
    mode: Mode, messages: Any, message: str
) -> None:
    async with sdks(mode) as clients:
        refused = await clients.refused(
            "anthropic",
            anthropic.BadRequestError,
            lambda client: client.messages.create(model="c", max_tokens=64, messages=messages),
        )
        older = await clients.call(
            "anthropic",
            lambda client: client.messages.create(
                model="c", max_tokens=64, messages=messages, extra_headers=OLD_VERSION
            ),
        )
    assert anthropic_error_message(refused) == message
    assert older.type == "message"
