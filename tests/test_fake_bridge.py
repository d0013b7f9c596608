from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from functools import partial
from typing import Any, cast

import anyio
import httpx
import pytest
from starlette.routing import Mount, Router

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import (
    Crash,
    FakeAIBridge,
    HTTPError,
    Reply,
    SimulatedCrash,
    Stall,
    TokenGate,
    ToolCall,
)

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {
    "model": "claude-test",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


def client_for(bridge: FakeAIBridge, provider: str = "openai") -> httpx.AsyncClient:
    factory = InProcessTransportFactory(bridge)
    transport = factory.transport_for(provider, Source.AGENTS)
    return httpx.AsyncClient(transport=transport, base_url="http://bridge")


async def post(
    bridge: FakeAIBridge, path: str, body: Any, provider: str = "openai"
) -> httpx.Response:
    """One JSON request to `bridge`, read whole, as a caller with a delegated key."""
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge, provider) as client:
            return await client.post(path, json=body)


def parse_event(chunk: bytes) -> tuple[str | None, Any]:
    """One SSE event (the whole chunk) as (event name, data)."""
    assert chunk.endswith(b"\n\n"), chunk
    event: str | None = None
    data = ""
    for line in chunk.decode().strip("\n").split("\n"):
        field, _, value = line.partition(": ")
        if field == "event":
            event = value
        else:
            assert field == "data", line
            data = value
    return event, (data if data == "[DONE]" else json.loads(data))


async def stream_events(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> list[tuple[str | None, Any]]:
    async with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return [parse_event(chunk) async for chunk in response.aiter_raw()]


@asynccontextmanager
async def raw_chunks(response: httpx.Response) -> AsyncIterator[AsyncIterator[bytes]]:
    """The body chunks, closed on exit even when not read to the end."""
    async with aclosing(cast(AsyncGenerator[bytes, None], response.aiter_raw())) as chunks:
        yield chunks


async def test_chat_completion_stream_sends_one_chunk_per_token_then_done() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="Hello big world"))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            events = await stream_events(client, "/v1/chat/completions", CHAT)
    assert [name for name, _ in events] == [None] * 6
    assert events[0][1]["choices"][0]["delta"]["role"] == "assistant"
    tokens = [data["choices"][0]["delta"]["content"] for _, data in events[1:4]]
    assert tokens == ["Hello", " big", " world"]
    assert events[1][1]["object"] == "chat.completion.chunk"
    assert events[1][1]["model"] == "gpt-test"
    assert events[4][1]["choices"][0]["finish_reason"] == "stop"
    assert events[5][1] == "[DONE]"
    assert bridge.last_request.tokens_sent == 3
    assert bridge.last_request.outcome == "completed"


async def test_chat_completion_without_stream_answers_json() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="Hello world"))
    response = await post(bridge, "/v1/chat/completions", CHAT)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello world",
        "refusal": None,
        "annotations": [],
    }
    assert response.headers["x-request-id"] == "req_fake_1"


async def test_responses_stream_sends_the_responses_api_events() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text=["a", "b"]))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            events = await stream_events(client, "/v1/responses", {"model": "m", "input": "hi"})
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(10))
    assert [data["delta"] for _, data in events[4:6]] == ["a", "b"]
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "ab"


async def test_messages_stream_sends_the_anthropic_events_with_a_ping() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="Hi there"))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge, "anthropic") as client:
            events = await stream_events(client, "/v1/messages?beta=true", MESSAGES)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    assert [data["delta"]["text"] for _, data in events[3:5]] == ["Hi", " there"]
    assert events[0][1]["message"]["model"] == "claude-test"
    assert bridge.last_request.query == "beta=true"


async def test_messages_without_stream_answers_json() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="Hi there"))
    response = await post(bridge, "/v1/messages", MESSAGES, provider="anthropic")
    body = response.json()
    assert body["type"] == "message"
    assert body["content"][0]["text"] == "Hi there"
    assert body["stop_reason"] == "end_turn"
    assert response.headers["request-id"] == "req_fake_1"


async def test_a_provider_name_listed_in_providers_is_served() -> None:
    bridge = FakeAIBridge(providers={"azure-openai_2": "openai"})
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge, "azure-openai_2") as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert bridge.last_request.provider == "azure-openai_2"
    assert bridge.last_request.path == "/api/v2/aibridge/azure-openai_2/v1/chat/completions"


async def test_queue_is_consumed_in_order_then_the_default_answers() -> None:
    bridge = FakeAIBridge(default=Reply(text="default"))
    bridge.queue(Reply(text="first"), Reply(text="second"))
    assert bridge.pending == 2
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            texts = [
                (await client.post("/v1/chat/completions", json=CHAT)).json()["choices"][0][
                    "message"
                ]["content"]
                for _ in range(3)
            ]
    assert texts == ["first", "second", "default"]
    assert bridge.pending == 0


async def test_the_default_default_reply_is_a_text() -> None:
    bridge = FakeAIBridge()
    response = await post(bridge, "/v1/chat/completions", CHAT)
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake bridge."


async def test_http_error_uses_the_openai_error_body_and_headers() -> None:
    bridge = FakeAIBridge()
    bridge.queue(HTTPError(status=429, message="slow down", headers={"retry-after-ms": "1"}))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "1"
    assert response.json() == {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert bridge.last_request.status == 429


async def test_http_error_uses_the_anthropic_error_body() -> None:
    bridge = FakeAIBridge()
    bridge.queue(HTTPError(status=400, message="bad"))
    response = await post(bridge, "/v1/messages", MESSAGES, provider="anthropic")
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"},
        "request_id": "req_fake_1",
    }


async def test_crash_before_the_response_is_a_500_from_the_transport() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Crash())
    response = await post(bridge, "/v1/chat/completions", CHAT)
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert bridge.last_request.outcome == "crashed"
    assert bridge.last_request.status is None


async def test_crash_mid_stream_delivers_the_tokens_sent_then_a_protocol_error() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="one two three", ending="crash", after_tokens=2))
    chunks: list[bytes] = []
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            async with client.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as response:
                with pytest.raises(httpx.RemoteProtocolError) as caught:
                    async for chunk in response.aiter_raw():
                        chunks.append(chunk)
    assert isinstance(caught.value.__cause__, SimulatedCrash)
    contents = [parse_event(chunk)[1]["choices"][0]["delta"]["content"] for chunk in chunks]
    assert contents == ["", "one", " two"]
    assert bridge.last_request.outcome == "crashed"
    assert bridge.last_request.tokens_sent == 2


async def test_openai_error_event_is_in_band_then_done() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="one two", ending="error_event", after_tokens=1))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            events = await stream_events(client, "/v1/chat/completions", CHAT)
    assert events[1][1]["choices"][0]["delta"]["content"] == "one"
    assert events[2] == (
        None,
        {
            "error": {
                "message": "simulated error",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    )
    assert events[3] == (None, "[DONE]")
    assert len(events) == 4


async def test_anthropic_error_event_ends_the_stream() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="one two", ending="error_event", after_tokens=1))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge, "anthropic") as client:
            events = await stream_events(client, "/v1/messages", MESSAGES)
    name, data = events[-1]
    assert name == "error"
    assert data["error"] == {"type": "overloaded_error", "message": "simulated error"}
    assert [name for name, _ in events[:-1]] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
    ]


async def test_error_event_without_stream_is_a_500_error_body() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(ending="error_event"))
    response = await post(bridge, "/v1/chat/completions", CHAT)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


async def test_gate_releases_one_token_at_a_time() -> None:
    bridge = FakeAIBridge()
    gate = TokenGate()
    bridge.queue(Reply(text="a b c", gate=gate))
    received: list[str] = []
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            async with client.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as response:
                async with raw_chunks(response) as chunks:
                    await anext(chunks)  # the role chunk does not wait on the gate
                    record = bridge.last_request
                    for index in range(3):
                        assert record.tokens_sent == index
                        gate.release()
                        _, data = parse_event(await anext(chunks))
                        received.append(data["choices"][0]["delta"]["content"])
                        assert record.tokens_sent == index + 1
                    rest = [parse_event(chunk)[1] async for chunk in chunks]
    assert received == ["a", " b", " c"]
    assert rest[-1] == "[DONE]"


async def test_leaving_a_stream_early_is_recorded_as_a_disconnect() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="a b c", gate=TokenGate()))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            async with client.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as response:
                async with raw_chunks(response) as chunks:
                    await anext(chunks)
            record = bridge.last_request
            assert await record.wait_ended() == "disconnected"
    assert record.tokens_sent == 0


async def test_stall_mid_stream_waits_for_the_client_to_leave() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="a b", ending="stall", after_tokens=1))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            async with client.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as response:
                async with raw_chunks(response) as chunks:
                    await anext(chunks)
                    _, data = parse_event(await anext(chunks))
                    assert data["choices"][0]["delta"]["content"] == "a"
                    assert not bridge.last_request.ended
            assert await bridge.last_request.wait_ended() == "disconnected"


async def test_stall_before_the_response_hits_the_read_timeout() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Stall())
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/v1/chat/completions", json=CHAT, timeout=0.05)
            assert await bridge.last_request.wait_ended() == "disconnected"
    assert bridge.last_request.status is None


async def test_cancelling_the_caller_disconnects_a_stall() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Stall())
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(partial(client.post, "/v1/chat/completions", json=CHAT))
                await bridge.wait_for_request()
                group.cancel_scope.cancel()
    assert await bridge.last_request.wait_ended() == "disconnected"


async def test_requests_are_recorded_with_identity_and_redacted_credentials() -> None:
    bridge = FakeAIBridge()
    with with_delegated_api_key_id("key-42"):
        async with client_for(bridge) as client:
            await client.post(
                "/v1/chat/completions?x=1",
                json=CHAT,
                headers={"authorization": "Bearer sk-secret", "x-api-key": "sk-other"},
            )
    record = bridge.last_request
    assert record.method == "POST"
    assert record.path == "/api/v2/aibridge/openai/v1/chat/completions"
    assert record.query == "x=1"
    assert record.body == CHAT
    assert not record.stream
    assert record.headers["authorization"] == "Bearer [redacted]"
    assert record.headers["x-api-key"] == "[redacted]"
    assert record.source == "agents"
    assert record.delegated_api_key_id == "key-42"
    assert record.extensions == {
        "provider": "openai",
        "source": "agents",
        "delegated_api_key_id": "key-42",
    }


async def test_models_listing_follows_the_caller_api() -> None:
    bridge = FakeAIBridge()
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            openai_models = (await client.get("/v1/models")).json()
            anthropic_models = (
                await client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
            ).json()
    assert openai_models["object"] == "list"
    assert openai_models["data"][0]["object"] == "model"
    assert anthropic_models["data"][0]["type"] == "model"
    assert anthropic_models["has_more"] is False


async def test_unknown_route_is_404() -> None:
    bridge = FakeAIBridge()
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:
            response = await client.post("/v1/embeddings", json={})
    assert response.status_code == 404
    assert bridge.requests == []


async def test_runs_inside_the_factory_lifespan() -> None:
    bridge = FakeAIBridge()
    with with_delegated_api_key_id("key-1"):
        async with InProcessTransportFactory(bridge) as factory:
            transport = factory.transport_for("openai", Source.AGENTS)
            async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
                response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200


async def test_tool_calls_follow_the_text_in_the_stream() -> None:
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="Hi", tool_calls=[ToolCall(name="lookup", arguments={"q": "x"})]))
    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge, "anthropic") as client:
            events = await stream_events(client, "/v1/messages", MESSAGES)
    assert [(name, data.get("index")) for name, data in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("ping", None),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        # The input's JSON text in pieces, after the empty one the API always sends first.
        *[("content_block_delta", 1)] * 4,
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[5][1]["content_block"]["id"] == "toolu_fake_1_0"
    pieces = [data["delta"]["partial_json"] for _, data in events[6:10]]
    assert pieces == ["", '{"q"', ':"x"', "}"]
    assert all(data["delta"]["type"] == "input_json_delta" for _, data in events[6:10])
    assert events[11][1]["delta"]["stop_reason"] == "tool_use"


async def test_a_bridge_mounted_under_a_root_path_serves_the_routes_below_it() -> None:
    bridge = FakeAIBridge()
    # Starlette's Mount, like uvicorn, keeps the full path and names the prefix `root_path`.
    app = Router(routes=[Mount("/svc", app=bridge)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        response = await client.post("/svc/api/v2/aibridge/openai/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    assert bridge.last_request.provider == "openai"


async def test_concurrent_requests_keep_their_own_request_ids() -> None:
    bridge = FakeAIBridge()
    first_part_read = anyio.Event()
    body_may_end = anyio.Event()
    responses: dict[str, httpx.Response] = {}

    async def slow_body() -> AsyncIterator[bytes]:
        yield json.dumps(CHAT)[:10].encode()
        first_part_read.set()
        await body_may_end.wait()
        yield json.dumps(CHAT)[10:].encode()

    with with_delegated_api_key_id("key-1"):
        async with client_for(bridge) as client:

            async def slow() -> None:
                responses["slow"] = await client.post("/v1/chat/completions", content=slow_body())

            async with anyio.create_task_group() as group:
                group.start_soon(slow)
                await first_part_read.wait()
                # The slow request's body is still arriving while another is answered.
                responses["quick"] = await client.post("/v1/chat/completions", json=CHAT)
                body_may_end.set()
    slow_id = responses["slow"].headers["x-request-id"]
    quick_id = responses["quick"].headers["x-request-id"]
    assert slow_id != quick_id
    assert responses["slow"].json()["id"].rsplit("-", 1)[1] == slow_id.rsplit("_", 1)[1]
