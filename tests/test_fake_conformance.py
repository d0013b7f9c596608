"""Every object and event the fake bridge sends validates against the SDKs' own types, with
nothing the real API lacks and nothing it always sends missing (`fake_conformance.py`).

The answers are read raw, off the transport, so that nothing the SDKs drop or default hides
a difference.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic.types as anthropic_types
import httpx2
import pytest
from anthropic.pagination import SyncPage as AnthropicPage
from fake_conformance import check_against_sdk_type
from openai.pagination import SyncPage as OpenAIPage
from openai.types import ErrorObject, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from sdk_helpers import KEY_ID, forbid_network

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge, HTTPError, Reply, Script, ToolCall

pytestmark = pytest.mark.anyio

USER: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
TOOLS = [ToolCall("weather", {"city": "Oslo"}), ToolCall("time", {"zone": "CET"})]

# The fake's reply kinds: every way a script makes it answer.
REPLIES: dict[str, Script] = {
    "text": Reply("Hello there, Oslo is cold."),
    "text-and-tools": Reply("Let me look.", tool_calls=TOOLS),
    "tools-only": Reply("", tool_calls=TOOLS),
    "refusal": Reply("I can't help with that.", finish="refusal"),
    "length": Reply("one two three", finish="length"),
    "content-filter": Reply("one two", finish="content_filter"),
    "stop-sequence": Reply("one two", finish="stop_sequence", stop_sequence="END"),
    "error-event": Reply("one two", ending="error_event", after_tokens=1),
    "http-error": HTTPError(429, "slow down"),
    "overloaded": HTTPError(529, "Overloaded"),
}

# (provider, path, request body) of each answering route.
ROUTES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "chat": ("openai", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER}),
    "responses": ("openai", "/v1/responses", {"model": "gpt-4o-mini", "input": "Oslo?"}),
    "messages": (
        "anthropic",
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": USER},
    ),
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


@asynccontextmanager
async def raw_client(bridge: FakeAIBridge, provider: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with InProcessTransportFactory(bridge) as factory:
        transport = factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
        headers = {"anthropic-version": "2026-10-21"} if provider == "anthropic" else {}
        with with_delegated_api_key_id(KEY_ID):
            async with httpx2.AsyncClient(
                transport=transport, base_url="http://bridge", headers=headers
            ) as client:
                yield client


def sse_events(body: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event."""
    events: list[tuple[str | None, str]] = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        name = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
        events.append((name, "\n".join(data)))
    return events


def error_differences(api: str, body: Any) -> list[str]:
    if api == "anthropic":
        return check_against_sdk_type(body, anthropic_types.ErrorResponse)
    if not isinstance(body, dict) or set(body) != {"error"}:
        return [f"$: an OpenAI error body is {{'error': ...}}, got {body!r}"]
    return check_against_sdk_type(body["error"], ErrorObject)


def whole_differences(route: str, status: int, body: Any) -> list[str]:
    api = ROUTES[route][0]
    if status != 200:
        return error_differences(api, body)
    sdk_type = {"chat": ChatCompletion, "responses": Response}.get(route, anthropic_types.Message)
    return check_against_sdk_type(body, sdk_type)


def stream_differences(route: str, text: str) -> list[str]:
    differences: list[str] = []
    events = sse_events(text)
    for position, (name, data) in enumerate(events):
        where = f"event {position} ({name or 'data'})"
        if route == "chat":
            if data == "[DONE]":
                if position != len(events) - 1:
                    differences.append(f"{where}: [DONE] before the end")
                continue
            payload = json.loads(data)
            if "error" in payload:
                found = error_differences("openai", payload)
            else:
                found = check_against_sdk_type(payload, ChatCompletionChunk)
        else:
            payload = json.loads(data)
            if name != payload.get("type"):
                differences.append(
                    f"{where}: event name {name!r}, data type {payload.get('type')!r}"
                )
            if route == "responses":
                found = check_against_sdk_type(payload, ResponseStreamEvent)
            elif name == "ping":
                # The SDK has no type for it (it drops pings); the API sends exactly this.
                found = [] if payload == {"type": "ping"} else [f"ping: {payload!r}"]
            elif name == "error":
                found = error_differences("anthropic", payload)
            else:
                found = check_against_sdk_type(payload, anthropic_types.RawMessageStreamEvent)
        differences += [f"{where}: {difference}" for difference in found]
    return differences


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("reply", list(REPLIES))
@pytest.mark.parametrize("route", list(ROUTES))
async def test_every_answer_conforms_to_the_sdk_types(route: str, reply: str, stream: bool) -> None:
    provider, path, body = ROUTES[route]
    bridge = FakeAIBridge(default=REPLIES[reply])
    async with raw_client(bridge, provider) as client:
        response = await client.post(path, json={**body, "stream": stream})
    if stream and response.status_code == 200:
        assert response.headers["content-type"].startswith("text/event-stream")
        differences = stream_differences(route, response.text)
    else:
        assert response.headers["content-type"].startswith("application/json")
        differences = whole_differences(route, response.status_code, response.json())
    assert differences == []


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_chat_choices_and_usage_chunks_conform(stream: bool) -> None:
    body = {**ROUTES["chat"][2], "n": 2, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    async with raw_client(FakeAIBridge(default=Reply("a b", tool_calls=TOOLS)), "openai") as client:
        response = await client.post("/v1/chat/completions", json=body)
    if stream:
        assert stream_differences("chat", response.text) == []
    else:
        assert whole_differences("chat", 200, response.json()) == []


async def test_token_counts_model_listings_and_refusals_conform() -> None:
    oversized = {
        **ROUTES["messages"][2],
        "messages": [{"role": "user", "content": "x" * (33 << 20)}],
    }
    async with raw_client(FakeAIBridge(), "anthropic") as client:
        counted = await client.post(
            "/v1/messages/count_tokens", json={"model": "c", "messages": USER}
        )
        listed = await client.get("/v1/models")
        refused = await client.post("/v1/messages", json={"model": "c", "messages": USER})
        too_large = await client.post("/v1/messages", json=oversized)
        unknown = await client.post("/v1/complete", json={})
    assert check_against_sdk_type(counted.json(), anthropic_types.MessageTokensCount) == []
    assert check_against_sdk_type(listed.json(), AnthropicPage[anthropic_types.ModelInfo]) == []
    for error in (refused, unknown):
        assert error_differences("anthropic", error.json()) == []
    # The SDK's union of error objects lacks the documented `request_too_large`; the rest of
    # the body is checked as any other error's.
    large = too_large.json()
    assert large["error"]["type"] == "request_too_large"
    large["error"]["type"] = "invalid_request_error"
    assert error_differences("anthropic", large) == []
    async with raw_client(FakeAIBridge(), "openai") as client:
        models = await client.get("/v1/models")
        chat_refused = await client.post("/v1/chat/completions", json={"model": "m"})
        responses_refused = await client.post("/v1/responses", content=b"{not json")
        unknown = await client.post("/v1/embeddings", json={})
    assert check_against_sdk_type(models.json(), OpenAIPage[Model]) == []
    for error in (chat_refused, responses_refused, unknown):
        assert error_differences("openai", error.json()) == []


# The checker itself: each kind of difference is found.


def test_the_checker_finds_extra_missing_and_mistyped_keys() -> None:
    usage = {"input_tokens": 3, "output_tokens": 1}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": "hi", "colour": "red"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {**usage, "cache_creation_input_tokens": None, "cache_read_input_tokens": 0},
    }
    assert check_against_sdk_type(message, anthropic_types.Message) == [
        "$.content[0].colour: a key TextBlock does not have",
        "$.usage.cache_creation_input_tokens: null, the API always sends a value",
        "$.usage.service_tier: missing, the API always sends it",
    ]
    assert "$.role: 'user' is none of ['assistant']" in check_against_sdk_type(
        {**message, "role": "user"}, anthropic_types.Message
    )
    assert check_against_sdk_type({"input_tokens": "3"}, anthropic_types.MessageTokensCount) == [
        "$.input_tokens: expected int, got '3'"
    ]
    assert check_against_sdk_type({}, anthropic_types.MessageTokensCount) == [
        "$.input_tokens: missing, required by MessageTokensCount"
    ]
    done = {
        "type": "response.function_call_arguments.done",
        "sequence_number": 4,
        "item_id": "fc_1",
        "output_index": 0,
        "arguments": "{}",
        "name": "weather",
    }
    assert check_against_sdk_type(done, ResponseStreamEvent) == [
        "$.name: a key ResponseFunctionCallArgumentsDoneEvent does not have"
    ]
