"""Faults in the providers' shapes, the checks that a client coped with them, and latency on
a clock the test controls."""

from __future__ import annotations

import json
import time
from itertools import pairwise
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from sdk_helpers import UNEXHAUSTED_SSE

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import (
    FakeAIBridge,
    LatencyMiddleware,
    RealClock,
    RecordingMiddleware,
    Reply,
    VirtualClock,
    assert_retry_after_honoured,
    disconnect_mid_stream,
    overloaded,
    rate_limited,
    refuses_truncated_stream,
    server_error,
)
from aibridge_transport.types import ASGIApp

pytestmark = UNEXHAUSTED_SSE
HI: Any = [{"role": "user", "content": "hi"}]


def _http(factory: InProcessTransportFactory, provider: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
    )


def _openai(factory: InProcessTransportFactory, retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-x", base_url="http://aibridge/v1", max_retries=retries,
        http_client=_http(factory, "openai"),
    )  # fmt: skip


def _anthropic(factory: InProcessTransportFactory, retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-x", base_url="http://aibridge", max_retries=retries,
        http_client=_http(factory, "anthropic"),
    )  # fmt: skip


async def _ask(app: ASGIApp, provider: str, retries: int = 0) -> Any:
    async with InProcessTransportFactory(app) as factory:
        with with_delegated_api_key_id("key-1"):
            if provider == "openai":
                client: Any = _openai(factory, retries)
                try:
                    return await client.chat.completions.create(model="m", messages=HI)
                finally:
                    await client.close()
            client = _anthropic(factory, retries)
            try:
                return await client.messages.create(model="m", max_tokens=16, messages=HI)
            finally:
                await client.close()


def _body(recorder: RecordingMiddleware, index: int) -> Any:
    return json.loads(recorder.cassette.interactions[index].response.body)


def _headers(recorder: RecordingMiddleware, index: int) -> dict[str, str]:
    return dict(recorder.cassette.interactions[index].response.headers)


async def test_an_openai_429_has_its_shape_and_the_sdk_honours_retry_after(
    anyio_backend: str,
) -> None:
    bridge = FakeAIBridge()
    bridge.queue(rate_limited("openai", retry_after=0.05, limit=3), Reply("after the wait"))
    recorder = RecordingMiddleware(bridge)
    answer = await _ask(recorder, "openai", retries=1)
    assert answer.choices[0].message.content == "after the wait"
    assert [item.response.status for item in recorder.cassette] == [429, 200]
    error = _body(recorder, 0)["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("Rate limit reached for requests per min (RPM): Limit 3")
    headers = _headers(recorder, 0)
    assert headers["retry-after-ms"] == "50" and headers["retry-after"] == "1"
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "0.05s"
    assert_retry_after_honoured(recorder.cassette)


async def test_an_anthropic_429_has_its_shape_and_the_sdk_honours_retry_after(
    anyio_backend: str,
) -> None:
    bridge = FakeAIBridge()
    bridge.queue(rate_limited("anthropic", retry_after=0.05), Reply("after the wait"))
    recorder = RecordingMiddleware(bridge)
    answer = await _ask(recorder, "anthropic", retries=1)
    assert answer.content[0].text == "after the wait"
    body = _body(recorder, 0)
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    headers = _headers(recorder, 0)
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-limit"] == "60"
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert headers["retry-after-ms"] == "50"
    assert_retry_after_honoured(recorder.cassette)


async def test_a_client_that_retries_at_once_fails_the_retry_after_check(
    anyio_backend: str,
) -> None:
    bridge = FakeAIBridge()
    bridge.queue(rate_limited("openai", retry_after=30), Reply())
    recorder = RecordingMiddleware(bridge)
    async with InProcessTransportFactory(recorder) as factory:
        with with_delegated_api_key_id("key-1"):
            client = _http(factory, "openai")
            for _ in range(2):  # an impatient client: no wait at all
                await client.post(
                    "http://aibridge/v1/chat/completions", json={"model": "m", "messages": HI}
                )
            await client.aclose()
    with pytest.raises(AssertionError, match=r"retried POST .* asked it to wait 30s"):
        assert_retry_after_honoured(recorder.cassette)


async def test_anthropic_529_is_overloaded_error(anyio_backend: str) -> None:
    bridge = FakeAIBridge()
    bridge.queue(overloaded())
    with pytest.raises(anthropic.APIStatusError) as raised:
        await _ask(bridge, "anthropic")
    assert raised.value.status_code == 529
    body: Any = raised.value.body
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert body["type"] == "error" and body["request_id"] == "req_fake_1"


@pytest.mark.parametrize(
    ("status", "provider", "kind", "message"),
    [
        (500, "openai", "server_error", "The server had an error while processing"),
        (503, "openai", "server_error", "The engine is currently overloaded"),
        (500, "anthropic", "api_error", "Internal server error"),
        (503, "anthropic", "api_error", "Service unavailable"),
    ],
)
async def test_server_errors_have_the_providers_shapes(
    anyio_backend: str, status: int, provider: Any, kind: str, message: str
) -> None:
    bridge = FakeAIBridge()
    bridge.queue(server_error(status, provider))
    error_class: Any = openai.InternalServerError
    if provider == "anthropic":
        error_class = anthropic.APIStatusError
    with pytest.raises(error_class) as raised:
        await _ask(bridge, provider)
    failure: Any = raised.value
    assert failure.status_code == status
    body: Any = failure.body
    error = body if provider == "openai" else body["error"]
    assert error["type"] == kind
    assert error["message"].startswith(message)


async def _stream_text(app: ASGIApp, provider: str, *, swallow: bool = False) -> str:
    text = ""
    async with InProcessTransportFactory(app) as factory:
        with with_delegated_api_key_id("key-1"):
            if provider == "openai":
                client: Any = _openai(factory)
            else:
                client = _anthropic(factory)
            try:
                if provider == "openai":
                    stream = await client.chat.completions.create(
                        model="m", messages=HI, stream=True
                    )
                    async for chunk in stream:
                        text += "".join(choice.delta.content or "" for choice in chunk.choices)
                else:
                    async with client.messages.stream(
                        model="m", max_tokens=64, messages=HI
                    ) as events:
                        async for piece in events.text_stream:
                            text += piece
            # What the installed SDK raises for a cut stream: anthropic before 2.17 passes the
            # transport's own error (tests/sdk_versions.py).
            except (
                openai.APIConnectionError,
                anthropic.APIConnectionError,
                httpx2.RemoteProtocolError,
            ):
                if not swallow:
                    raise
            finally:
                await client.close()
    return text


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_disconnect_mid_stream_is_refused_by_the_sdk(
    anyio_backend: str, provider: str
) -> None:
    bridge = FakeAIBridge(default=disconnect_mid_stream("one two three four", after_tokens=2))
    with refuses_truncated_stream():
        await _stream_text(bridge, provider)
    assert bridge.last_request.tokens_sent == 2
    assert bridge.last_request.outcome == "crashed"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_client_that_keeps_a_cut_stream_fails_the_check(
    anyio_backend: str, provider: str
) -> None:
    bridge = FakeAIBridge(default=disconnect_mid_stream("one two three four", after_tokens=2))
    with pytest.raises(AssertionError, match="accepted a truncated stream"):
        with refuses_truncated_stream():
            assert await _stream_text(bridge, provider, swallow=True) == "one two"


def test_the_truncation_check_lets_other_errors_through() -> None:
    with pytest.raises(KeyError), refuses_truncated_stream():
        raise KeyError("not a stream problem")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_latency_on_a_virtual_clock_sets_time_to_first_token_and_rate_without_waiting(
    anyio_backend: str, provider: str
) -> None:
    clock = VirtualClock()
    bridge = FakeAIBridge(default=Reply("one two three four five"))
    paced = LatencyMiddleware(bridge, first_token=1.5, tokens_per_second=10, clock=clock)
    recorder = RecordingMiddleware(paced, clock=clock)
    started = time.monotonic()
    assert await _stream_text(recorder, provider) == "one two three four five"
    assert time.monotonic() - started < 1.5  # nothing really waited
    chunks = recorder.cassette.interactions[0].response.chunks or []
    times = [chunk.at for chunk in chunks]
    assert times[0] == pytest.approx(1.5)
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert gaps == pytest.approx([0.1] * len(gaps))
    assert len(chunks) >= 5  # one chunk per token, and the stream's framing
    assert clock.slept[0] == pytest.approx(1.5)


async def test_latency_on_the_real_clock_waits_scaled_by_its_speed(anyio_backend: str) -> None:
    bridge = FakeAIBridge(default=Reply("one two"))
    paced = LatencyMiddleware(bridge, first_token=2.0, clock=RealClock(speed=40))
    recorder = RecordingMiddleware(paced)
    assert await _stream_text(recorder, "openai") == "one two"
    first = (recorder.cassette.interactions[0].response.chunks or [])[0]
    assert first.at >= 2.0 / 40  # the real wait, 40 times shorter


def test_latency_and_clocks_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        RealClock(speed=0)
    with pytest.raises(ValueError, match="tokens_per_second"):
        LatencyMiddleware(FakeAIBridge(), tokens_per_second=0)
    with pytest.raises(ValueError, match="back"):
        VirtualClock().advance(-1)
    with pytest.raises(ValueError, match="5xx"):
        server_error(404)
