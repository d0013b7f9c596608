"""What the fake bridge serves, and the error shapes of what it does not."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest
from sdk_helpers import KEY_ID, UNEXHAUSTED_SSE, FakeClients, fake_clients, forbid_network

from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    InProcessTransportFactory,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import FakeAIBridge, HTTPError, Reply

pytestmark = [pytest.mark.anyio, UNEXHAUSTED_SSE]

USER: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


async def test_a_misspelt_provider_is_a_404_naming_it_and_what_is_served() -> None:
    async with fake_clients() as clients:
        with pytest.raises(openai.NotFoundError) as from_openai:
            await clients.openai("opnai").chat.completions.create(model="m", messages=USER)
        with pytest.raises(anthropic.NotFoundError) as from_anthropic:
            await clients.anthropic("antropic").messages.create(
                model="c", max_tokens=8, messages=USER
            )
    message = from_openai.value.message
    assert "no provider instance named 'opnai'" in message
    assert "/api/v2/aibridge/opnai/v1/chat/completions" in message
    assert "under /api/v2/ai-gateway/<instance> (or /api/v2/aibridge/<instance>)" in message
    expected = "'openai' (openai: POST /v1/chat/completions, POST /v1/responses, GET /v1/models)"
    assert expected in message
    assert "'anthropic' (anthropic: POST /v1/messages, POST /v1/messages/count_tokens" in message
    assert from_openai.value.request_id is not None
    assert "no provider instance named 'antropic'" in from_anthropic.value.message
    assert clients.bridge.requests == []


async def test_provider_instances_are_named_for_the_api_they_speak() -> None:
    bridge = FakeAIBridge(providers={"openai-eu": "openai", "claude": "anthropic"})
    async with fake_clients(bridge) as clients:
        completion = await clients.openai("openai-eu").chat.completions.create(
            model="m", messages=USER
        )
        message = await clients.anthropic("claude").messages.create(
            model="c", max_tokens=8, messages=USER
        )
        with pytest.raises(openai.NotFoundError) as unknown:
            await clients.openai().chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.NotFoundError) as unknown_route:
            await clients.openai("openai-eu").embeddings.create(model="m", input="hi")
    assert completion.choices[0].message.content
    assert message.content
    assert [record.provider for record in bridge.requests] == ["openai-eu", "claude"]
    assert "no provider instance named 'openai'" in unknown.value.message
    assert "'openai-eu' (openai: POST /v1/chat/completions" in unknown.value.message
    assert "the provider instance 'openai-eu' (openai) serves POST" in unknown_route.value.message


@pytest.mark.parametrize("mount", [AI_GATEWAY_ROOT_PATH, AIBRIDGE_ROOT_PATH])
async def test_the_fake_answers_under_both_mounts(mount: str) -> None:
    bridge = FakeAIBridge(default=Reply(text="mounted"))
    async with InProcessTransportFactory(bridge, root_path=mount) as factory:
        with with_delegated_api_key_id(KEY_ID):
            clients = FakeClients(bridge, factory)
            completion = await clients.openai().chat.completions.create(model="m", messages=USER)
            with pytest.raises(openai.NotFoundError, match="instance named 'opnai'"):
                await clients.openai("opnai").chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == "mounted"
    (record,) = bridge.requests
    assert record.path == f"{mount}/openai/v1/chat/completions"
    assert record.provider == "openai"


async def test_a_path_outside_both_mounts_is_a_404_saying_so() -> None:
    # The app reached without the factory's rewrite, as a server would hand it any path.
    transport = StreamingASGITransport(FakeAIBridge())
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        response = await client.get("/health")
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "serves nothing outside its mounts (path /health)" in message


async def test_an_unknown_route_is_a_404_in_the_providers_shape() -> None:
    async with fake_clients() as clients:
        with pytest.raises(openai.NotFoundError) as from_openai:
            await clients.openai().embeddings.create(model="m", input="hi")
        with pytest.raises(anthropic.NotFoundError) as from_anthropic:
            await clients.anthropic().messages.batches.list()
        with pytest.raises(openai.NotFoundError) as wrong_api:
            # The OpenAI provider does not serve the Anthropic API.
            await clients.openai().post("/../v1/messages", body={}, cast_to=object)
    assert from_openai.value.type == "invalid_request_error"
    assert isinstance(from_openai.value.body, dict)
    assert from_openai.value.body["message"].startswith(
        "Invalid URL (POST /api/v2/aibridge/openai/v1/embeddings): the provider instance "
        "'openai' (openai) serves POST /v1/chat/completions"
    )
    assert from_openai.value.response.headers["x-request-id"].startswith("req_fake_")
    body = from_anthropic.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "not_found_error"
    assert "GET /api/v2/aibridge/anthropic/v1/messages/batches" in body["error"]["message"]
    assert from_anthropic.value.request_id == body["request_id"]
    assert wrong_api.value.status_code == 404


async def test_a_route_with_the_wrong_method_is_a_404() -> None:
    async with fake_clients() as clients:
        async with clients.raw("openai") as raw:
            response = await raw.get("/v1/chat/completions")
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith(
        "Invalid URL (GET /api/v2/aibridge/openai/v1/chat/completions)"
    )


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (422, openai.UnprocessableEntityError),
    ],
)
async def test_openai_client_errors_are_invalid_request_errors_with_a_request_id(
    status: int, error_class: type[openai.APIStatusError]
) -> None:
    bridge = FakeAIBridge(default=HTTPError(status, "no"))
    async with fake_clients(bridge) as clients:
        with pytest.raises(error_class) as caught:
            await clients.openai().chat.completions.create(model="m", messages=USER)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.request_id == "req_fake_1"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(409, "invalid_request_error"), (413, "request_too_large"), (529, "overloaded_error")],
)
async def test_anthropic_errors_carry_their_type_and_request_id(
    status: int, error_type: str
) -> None:
    bridge = FakeAIBridge(default=HTTPError(status, "no"))
    async with fake_clients(bridge) as clients:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await clients.anthropic().messages.create(model="c", max_tokens=8, messages=USER)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == error_type
    assert caught.value.request_id == "req_fake_1" == caught.value.body["request_id"]


async def test_http_error_fields_can_be_scripted() -> None:
    error = HTTPError(429, "quota", type="insufficient_quota", code="insufficient_quota")
    bridge = FakeAIBridge(default=error)
    async with fake_clients(bridge) as clients:
        with pytest.raises(openai.RateLimitError) as caught:
            await clients.openai().chat.completions.create(model="m", messages=USER)
    assert caught.value.type == "insufficient_quota"
    assert caught.value.code == "insufficient_quota"


async def test_responses_error_event_is_yielded_not_raised() -> None:
    # The Responses stream hands an `error` event over as a `ResponseErrorEvent`; nothing
    # raises until the stream helper is asked for the final response.
    bridge = FakeAIBridge(default=Reply("a b", ending="error_event", after_tokens=1))
    async with fake_clients(bridge) as clients:
        client = clients.openai()
        stream = await client.responses.create(model="m", input="hi", stream=True)
        async with stream:
            events = [event async for event in stream]
        async with client.responses.stream(model="m", input="hi") as helper:
            with pytest.raises(RuntimeError, match=r"response\.completed"):
                await helper.get_final_response()
    last = events[-1]
    assert last.type == "error"
    assert (last.code, last.message) == ("server_error", "simulated error")
    assert [event.type for event in events if event.type.endswith(".delta")] == [
        "response.output_text.delta"
    ]
