"""The cassette format: vcrpy's own (vcrpy replays ours, we replay vcrpy's and the public
ones), chunks and times as an extension, and no secret ever written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
import vcr
from _uvicorn import running_server
from outside_data import require_outside_data
from sdk_helpers import UNEXHAUSTED_SSE, forbid_network

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import (
    Cassette,
    CassetteRequest,
    CassetteResponse,
    FakeAIBridge,
    HTTPError,
    Interaction,
    RecordedChunk,
    RecordingMiddleware,
    ReplayApp,
    Reply,
    Scrubber,
)

# Two public vcrpy cassettes of real provider traffic (pydantic-ai's, MIT): another project's
# data, kept outside the repository with their sources (tests/outside_data.py).
PUBLIC_CASSETTES = "vcrpy-tool-loops"


def _interaction(body: bytes = b"data: one\n\ndata: two\n\n") -> Interaction:
    return Interaction(
        CassetteRequest(
            method="POST",
            uri="http://aibridge/api/v2/aibridge/openai/v1/chat/completions?x=1",
            headers=[("content-type", "application/json"), ("x-trace", "a"), ("x-trace", "b")],
            body=b'{"model":"m"}',
            at=1.5,
        ),
        CassetteResponse(
            status=200,
            headers=[("content-type", "text/event-stream")],
            body=body,
            chunks=[RecordedChunk(4, 0.01), RecordedChunk(len(body) - 4, 0.02)],
            started_at=0.005,
            ending="truncated",
        ),
    )


def test_a_cassette_round_trips_bodies_chunks_times_and_endings() -> None:
    binary = bytes(range(256))
    cassette = Cassette([_interaction(), _interaction(binary)])
    loaded = Cassette.loads(cassette.dumps())
    assert [item.request for item in loaded] == [item.request for item in cassette]
    for before, after in zip(cassette, loaded, strict=True):
        assert after.response.body == before.response.body
        assert after.response.chunks == before.response.chunks
        assert after.response.started_at == before.response.started_at
        assert after.response.ending == "truncated"
        assert after.response.reason == "OK"
    assert [piece for piece, _ in loaded.interactions[0].response.pieces()] == [
        b"data",
        b": one\n\ndata: two\n\n",
    ]


def test_vcrpy_itself_replays_a_cassette_we_wrote(tmp_path: Path) -> None:
    path = tmp_path / "ours.yaml"
    Cassette([_interaction()]).save(path)
    with vcr.use_cassette(str(path), record_mode="none"):
        response = httpx.post(
            "http://aibridge/api/v2/aibridge/openai/v1/chat/completions?x=1",
            content=b'{"model":"m"}',
        )
    assert response.status_code == 200
    assert response.content == b"data: one\n\ndata: two\n\n"
    assert response.headers["content-type"] == "text/event-stream"


def _record_with_vcrpy(path: Path, bridge: FakeAIBridge, body: Any) -> None:
    with running_server(bridge) as url, vcr.use_cassette(str(path), record_mode="once"):
        live = httpx.post(f"{url}/api/v2/aibridge/openai/v1/chat/completions", json=body)
    assert live.status_code == 200


@UNEXHAUSTED_SSE
async def test_a_cassette_vcrpy_recorded_replays_through_the_sdk(
    anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vcrpy.yaml"
    bridge = FakeAIBridge(default=Reply("recorded by vcrpy"))
    body: Any = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    _record_with_vcrpy(path, bridge, body)

    forbid_network(monkeypatch)
    replay = ReplayApp(Cassette.load(path))
    async with InProcessTransportFactory(replay) as factory:
        with with_delegated_api_key_id("key-1"):
            transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
            client = openai.AsyncOpenAI(
                api_key="unused",
                base_url="http://aibridge/v1",
                http_client=httpx2.AsyncClient(transport=transport),
            )
            stream = await client.chat.completions.create(**body)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            await client.close()
    assert text == "recorded by vcrpy"
    replay.assert_all_played()


def _factory_client(factory: InProcessTransportFactory, provider: str) -> httpx2.AsyncClient:
    transport = factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
    return httpx2.AsyncClient(transport=transport)


@UNEXHAUSTED_SSE
async def test_a_public_openai_cassette_replays_a_streamed_tool_loop(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_network(monkeypatch)
    replay = ReplayApp(require_outside_data(PUBLIC_CASSETTES) / "openai_chat_stream_tool_loop.yaml")
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_capital",
                "description": "",
                "parameters": {
                    "additionalProperties": False,
                    "properties": {"country": {"type": "string"}},
                    "required": ["country"],
                    "type": "object",
                },
                "strict": True,
            },
        }
    ]
    question = "What is the capital of the UK? Use the tool, then answer."
    messages: list[Any] = [{"role": "user", "content": question}]
    async with InProcessTransportFactory(replay) as factory:
        with with_delegated_api_key_id("key-1"):
            client = openai.AsyncOpenAI(
                api_key="sk-unused",
                base_url="http://aibridge/v1",
                http_client=_factory_client(factory, "openai"),
            )
            options: Any = {
                "model": "gpt-4o-mini",
                "stream": True,
                "stream_options": {"include_usage": True},
                "tool_choice": "auto",
                "tools": tools,
            }
            first = [
                chunk
                async for chunk in await client.chat.completions.create(
                    messages=messages, **options
                )
            ]
            calls = [c.choices[0].delta.tool_calls for c in first if c.choices]
            call_id = calls[0][0].id
            arguments = "".join(d[0].function.arguments or "" for d in calls if d)
            assert json.loads(arguments) == {"country": "UK"}
            messages += [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": "get_capital", "arguments": arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": "London"},
            ]
            second = [
                chunk
                async for chunk in await client.chat.completions.create(
                    messages=messages, **options
                )
            ]
            await client.close()
    answer = "".join(c.choices[0].delta.content or "" for c in second if c.choices)
    assert answer == "The capital of the UK is London."
    assert second[-1].usage is not None and second[-1].usage.total_tokens == 87
    replay.assert_all_played()


async def test_a_public_anthropic_cassette_replays_a_tool_loop(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_network(monkeypatch)
    cassette = require_outside_data(PUBLIC_CASSETTES) / "anthropic_messages_tool_loop.yaml"
    replay = ReplayApp(cassette)
    tools: Any = [
        {
            "name": "get_user_country",
            "description": "",
            "input_schema": {"additionalProperties": False, "properties": {}, "type": "object"},
        },
        {
            "name": "final_result",
            "description": "The final response which ends this conversation",
            "input_schema": {
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city", "country"],
                "title": "CityLocation",
                "type": "object",
            },
        },
    ]
    question = "What is the largest city in the user country?"
    messages: list[Any] = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    async with InProcessTransportFactory(replay) as factory:
        with with_delegated_api_key_id("key-1"):
            client = anthropic.AsyncAnthropic(
                api_key="sk-ant-unused",
                base_url="http://aibridge",
                http_client=_factory_client(factory, "anthropic"),
            )
            options: Any = {
                "max_tokens": 4096,
                "model": "claude-sonnet-4-5",
                "stream": False,
                "tool_choice": {"type": "any"},
                "tools": tools,
            }
            first = await client.beta.messages.create(messages=messages, **options)
            use = first.content[0]
            assert use.type == "tool_use" and use.name == "get_user_country"
            messages += [
                {
                    "role": "assistant",
                    "content": [{"id": use.id, "input": {}, "name": use.name, "type": "tool_use"}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "content": "Mexico",
                            "is_error": False,
                            "tool_use_id": use.id,
                            "type": "tool_result",
                        }
                    ],
                },
            ]
            second = await client.beta.messages.create(messages=messages, **options)
            await client.close()
    final = second.content[0]
    assert final.type == "tool_use" and final.input == {"city": "Mexico City", "country": "Mexico"}
    replay.assert_all_played()


PLANTED = [
    "sk-planted-openai-key",
    "sk-ant-planted-key",
    "planted-cookie",
    "planted-set-cookie",
    "planted-gateway-key",
    "planted-delegated-key",
    "planted-old-gateway-key",
    "planted-query-key",
    "planted-query-token",
    "planted-custom-header",
    "planted-body-secret",
]


async def test_planted_secrets_never_reach_a_cassette(anyio_backend: str, tmp_path: Path) -> None:
    bridge = FakeAIBridge(validate=False)
    bridge.queue(
        Reply("the answer holds planted-body-secret too"),
        HTTPError(429, "slow down", headers={"set-cookie": "sid=planted-set-cookie"}),
    )
    recorder = RecordingMiddleware(
        bridge,
        scrubber=Scrubber(headers={"X-Custom-Token"}, secrets=["planted-body-secret"]),
    )
    headers = {
        "authorization": "Bearer sk-planted-openai-key",
        "x-api-key": "sk-ant-planted-key",
        "cookie": "session=planted-cookie",
        "X-Coder-AI-Gateway-Key": "planted-gateway-key",
        "X-Coder-AI-Gateway-Delegated-Key-ID": "planted-delegated-key",
        "X-AIBridge-Gateway-Key": "planted-old-gateway-key",
        "x-custom-token": "planted-custom-header",
    }
    body = {"model": "m", "messages": [{"role": "user", "content": "planted-body-secret"}]}
    async with InProcessTransportFactory(recorder) as factory:
        with with_delegated_api_key_id("key-1"):
            client = _factory_client(factory, "openai")
            url = "http://aibridge/v1/chat/completions?key=planted-query-key&token=planted-query-token"
            for _ in range(2):
                await client.post(url, json=body, headers=headers)
            await client.aclose()
    path = tmp_path / "scrubbed.yaml"
    recorder.cassette.save(path)
    written = path.read_bytes()
    assert len(recorder.cassette) == 2
    for secret in PLANTED:
        assert secret.encode() not in written, secret
    assert b"[scrubbed]" in written
    # What is not a secret stays, and the scrubbed cassette still replays.
    loaded = Cassette.load(path)
    answer = loaded.interactions[0].response
    assert b"the answer holds [scrubbed] too" in answer.body
    assert dict(answer.headers)["content-length"] == str(len(answer.body))
    assert loaded.interactions[1].response.status == 429
