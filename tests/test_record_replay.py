"""Record an agent loop from a bridge served over a real socket, replay it in process, and
compare: the same chunks, the same things parsed by the SDK, every request matched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from _uvicorn import running_server
from agent_loops import (
    anthropic_loop,
    anthropic_loop_sync,
    openai_loop,
    openai_loop_sync,
    scripted_bridge,
)
from sdk_helpers import UNEXHAUSTED_SSE, forbid_network

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import (
    Cassette,
    CassetteMismatchError,
    FakeAIBridge,
    ForwardingApp,
    RecordingMiddleware,
    ReplayApp,
    Reply,
    RequestMatcher,
    TokenGate,
    VirtualClock,
    wait_apps_ended,
)
from aibridge_transport.types import ASGIApp

pytestmark = UNEXHAUSTED_SSE

KEY = "sk-recording-test"


@contextmanager
def socket_bridge() -> Iterator[ForwardingApp]:
    """A forwarding bridge whose upstream is a scripted fake behind uvicorn on 127.0.0.1."""
    upstream = scripted_bridge()
    with running_server(upstream) as url:
        yield ForwardingApp(
            {
                "openai": f"{url}/api/v2/aibridge/openai",
                "anthropic": f"{url}/api/v2/aibridge/anthropic",
            }
        )
    upstream.assert_scripts_used()


def _openai(factory: InProcessTransportFactory) -> openai.AsyncOpenAI:
    transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
    return openai.AsyncOpenAI(
        api_key=KEY,
        base_url="http://aibridge/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )


def _anthropic(factory: InProcessTransportFactory) -> anthropic.AsyncAnthropic:
    transport = factory.transport_for("anthropic", Source.AGENTS, flavor="httpx2")
    return anthropic.AsyncAnthropic(
        api_key=KEY,
        base_url="http://aibridge",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )


async def _run_async(app: ASGIApp, provider: str) -> list[Any]:
    async with InProcessTransportFactory(app, strict=True) as factory:
        with with_delegated_api_key_id("key-1"):
            if provider == "openai":
                client: Any = _openai(factory)
                seen = await openai_loop(client)
            else:
                client = _anthropic(factory)
                seen = await anthropic_loop(client)
            await client.close()
    return seen


def _run_sync(app: ASGIApp, provider: str) -> list[Any]:
    with InProcessTransportFactory(app, strict=True) as factory:
        with with_delegated_api_key_id("key-1"):
            transport = factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
            http = httpx2.Client(transport=transport)
            if provider == "openai":
                client: Any = openai.OpenAI(
                    api_key=KEY, base_url="http://aibridge/v1", max_retries=0, http_client=http
                )
                seen = openai_loop_sync(client)
            else:
                client = anthropic.Anthropic(
                    api_key=KEY, base_url="http://aibridge", max_retries=0, http_client=http
                )
                seen = anthropic_loop_sync(client)
            client.close()
    return seen


def _chunks(cassette: Cassette) -> list[list[bytes]]:
    return [[piece for piece, _ in item.response.pieces()] for item in cassette]


def _assert_same_replay(recorded: Cassette, replayed: Cassette) -> None:
    assert len(replayed) == len(recorded) >= 2  # a tool call, then the answer
    assert _chunks(replayed) == _chunks(recorded)
    # Each ends as it was recorded: complete, or left by the client when it stopped reading
    # at the last event before the body's end came over the socket (openai releases before
    # the drain after `[DONE]` do; scripts/sdk_floor.py runs the oldest).
    endings = [item.response.ending for item in recorded]
    assert [item.response.ending for item in replayed] == endings
    assert set(endings) <= {"complete", "disconnected"}
    for item in recorded:
        assert len(item.response.chunks or []) > 1  # a stream, chunk by chunk


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_agent_loop_recorded_from_a_socket_replays_in_process_identically(
    anyio_backend: str, provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket_bridge() as bridge:
        recorder = RecordingMiddleware(bridge)
        seen_live = await _run_async(recorder, provider)
    path = tmp_path / "loop.yaml"
    recorder.cassette.save(path)

    forbid_network(monkeypatch)
    replay = ReplayApp(Cassette.load(path))
    observer = RecordingMiddleware(replay)
    seen_replayed = await _run_async(observer, provider)

    assert seen_replayed == seen_live
    _assert_same_replay(Cassette.load(path), observer.cassette)
    assert replay.plays == list(range(len(replay.cassette)))
    replay.assert_all_played()
    replay.check()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_sync_agent_loop_recorded_from_a_socket_replays_in_process_identically(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket_bridge() as bridge:
        recorder = RecordingMiddleware(bridge)
        seen_live = _run_sync(recorder, provider)
    path = tmp_path / "loop.yaml"
    recorder.cassette.save(path)

    forbid_network(monkeypatch)
    replay = ReplayApp(Cassette.load(path))
    observer = RecordingMiddleware(replay)
    seen_replayed = _run_sync(observer, provider)

    assert seen_replayed == seen_live
    _assert_same_replay(Cassette.load(path), observer.cassette)
    replay.assert_all_played()


async def test_a_loop_recorded_async_replays_to_a_sync_client(anyio_backend: str) -> None:
    with socket_bridge() as bridge:
        recorder = RecordingMiddleware(bridge)
        seen_live = await _run_async(recorder, "openai")
    replay = ReplayApp(recorder.cassette)
    assert _run_sync(replay, "openai") == seen_live


async def test_a_request_no_interaction_matches_fails_with_a_diff_against_the_nearest(
    anyio_backend: str,
) -> None:
    with socket_bridge() as bridge:
        recorder = RecordingMiddleware(bridge)
        await _run_async(recorder, "openai")
    replay = ReplayApp(recorder.cassette)
    async with InProcessTransportFactory(replay) as factory:
        with with_delegated_api_key_id("key-1"):
            client = _openai(factory)
            with pytest.raises(openai.NotFoundError) as raised:
                await client.chat.completions.create(
                    model="gpt-4o",  # recorded: gpt-4o-mini
                    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                    stream=True,
                )
            await client.close()
    assert len(replay.mismatches) == 1
    message = str(replay.mismatches[0])
    assert "No recorded interaction matches POST" in message
    assert '-  "model": "gpt-4o-mini"' in message
    assert '+  "model": "gpt-4o"' in message
    assert "gpt-4o-mini" in raised.value.message
    with pytest.raises(CassetteMismatchError):
        replay.check()
    assert replay.plays == []  # nothing was answered, and the SDK did not retry


async def test_ignored_fields_do_not_count_and_custom_matchers_do(anyio_backend: str) -> None:
    with socket_bridge() as bridge:
        recorder = RecordingMiddleware(bridge)
        await _run_async(recorder, "openai")
    first = recorder.cassette.interactions[0].request
    body = first.json
    varied = type(first)(
        method="POST", uri=first.uri, body=_dumps({**body, "user": "someone-else"})
    )
    assert RequestMatcher().matches(varied, first)
    assert not RequestMatcher(ignore_fields=()).matches(varied, first)

    def same_model(incoming: Any, recorded: Any) -> bool:
        return bool(incoming.json["model"] == recorded.json["model"])

    other_question = type(first)(
        method="POST", uri=first.uri, body=_dumps({**body, "messages": []})
    )
    assert not RequestMatcher().matches(other_question, first)
    assert RequestMatcher(on=("method", "route", same_model)).matches(other_question, first)
    with pytest.raises(ValueError, match="unknown matcher 'headers'"):
        RequestMatcher(on=("headers",))


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


async def test_a_replayed_interaction_is_not_played_twice_unless_allowed(
    anyio_backend: str,
) -> None:
    with socket_bridge() as bridge:
        recorder = RecordingMiddleware(bridge)
        await _run_async(recorder, "openai")
    once = ReplayApp(recorder.cassette)
    await _run_async(once, "openai")
    async with InProcessTransportFactory(once) as factory:
        with with_delegated_api_key_id("key-1"):
            client = _openai(factory)
            with pytest.raises(openai.NotFoundError, match="already played"):
                await openai_loop(client)
            await client.close()
    again = ReplayApp(recorder.cassette, allow_repeats=True)
    first = await _run_async(again, "openai")
    assert await _run_async(again, "openai") == first


async def test_recorded_timing_replays_on_the_clock_and_fast_replay_never_sleeps(
    anyio_backend: str,
) -> None:
    from aibridge_transport.testing import LatencyMiddleware

    recording_clock = VirtualClock()
    paced = LatencyMiddleware(
        scripted_bridge(), first_token=0.4, tokens_per_second=20, clock=recording_clock
    )
    recorder = RecordingMiddleware(paced, clock=recording_clock)
    await _run_async(recorder, "anthropic")
    recorded_times = [[c.at for c in item.response.chunks or []] for item in recorder.cassette]
    assert recorded_times[0][0] == pytest.approx(0.4)
    assert recorded_times[0][1] - recorded_times[0][0] == pytest.approx(0.05)

    replay_clock = VirtualClock()
    timed = ReplayApp(recorder.cassette, timing="recorded", clock=replay_clock)
    observer = RecordingMiddleware(timed, clock=replay_clock)
    await _run_async(observer, "anthropic")
    replayed_times = [[c.at for c in item.response.chunks or []] for item in observer.cassette]
    assert replayed_times == [pytest.approx(times) for times in recorded_times]

    fast_clock = VirtualClock()
    await _run_async(ReplayApp(recorder.cassette, clock=fast_clock), "anthropic")
    assert fast_clock.slept == []


async def _read_cut_stream(app: ASGIApp) -> str:
    text = ""
    async with InProcessTransportFactory(app) as factory:
        with with_delegated_api_key_id("key-1"):
            client = _openai(factory)
            with pytest.raises(openai.APIConnectionError):
                stream = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                async for chunk in stream:
                    text += "".join(choice.delta.content or "" for choice in chunk.choices)
            await client.close()
    return text


async def test_a_truncated_recording_replays_as_a_truncated_stream(anyio_backend: str) -> None:
    from aibridge_transport.testing import disconnect_mid_stream

    bridge = FakeAIBridge(default=disconnect_mid_stream("one two three four five", after_tokens=2))
    recorder = RecordingMiddleware(bridge)
    assert await _read_cut_stream(recorder) == "one two"
    assert recorder.cassette.interactions[0].response.ending == "truncated"
    replay = ReplayApp(Cassette.loads(recorder.cassette.dumps()))
    assert await _read_cut_stream(replay) == "one two"


async def _read_until(app: ASGIApp, enough: Any, gate: Any = None) -> bytes:
    """Stream a chat answer raw and leave once `enough(received)` says so."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    received = b""
    async with InProcessTransportFactory(app) as factory:
        with with_delegated_api_key_id("key-1"):
            transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
            client = httpx2.AsyncClient(transport=transport)
            async with client.stream(
                "POST", "http://aibridge/v1/chat/completions", json=body
            ) as response:
                if gate is not None:
                    gate.release()
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if enough(received):
                        break
            await client.aclose()
            await wait_apps_ended(transport)
    return received


async def test_a_client_that_left_replays_the_same_chunks_and_waits_for_it_to_leave(
    anyio_backend: str,
) -> None:
    gate = TokenGate()
    recorder = RecordingMiddleware(FakeAIBridge(default=Reply("one two three", gate=gate)))
    live = await _read_until(recorder, lambda received: b'"one"' in received, gate)
    recorded = recorder.cassette.interactions[0].response
    assert recorded.ending == "disconnected"
    assert recorded.body == live

    replay = ReplayApp(Cassette.loads(recorder.cassette.dumps()))
    observer = RecordingMiddleware(replay)
    # The replay sends what the recorded client got, then waits until this one leaves too.
    assert await _read_until(observer, lambda received: received == live) == live
    assert observer.cassette.interactions[0].response.ending == "disconnected"


async def _raises_before_start(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        raise RuntimeError("the bridge failed")


async def _returns_without_start(scope: Any, receive: Any, send: Any) -> None:
    return


@pytest.mark.parametrize("app", [_raises_before_start, _returns_without_start])
async def test_an_app_that_never_answers_is_recorded_as_the_500_the_client_got(
    anyio_backend: str, app: ASGIApp
) -> None:
    recorder = RecordingMiddleware(app)
    async with InProcessTransportFactory(recorder) as factory:
        with with_delegated_api_key_id("key-1"):
            transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
            async with httpx2.AsyncClient(transport=transport) as client:
                live = await client.post("http://aibridge/v1/models")
    (recorded,) = recorder.cassette.interactions
    assert (recorded.response.status, recorded.response.body) == (live.status_code, live.content)
    assert live.status_code == 500


async def test_recorded_timing_on_the_real_clock_waits_scaled_by_its_speed(
    anyio_backend: str,
) -> None:
    from aibridge_transport.testing import LatencyMiddleware, RealClock

    clock = VirtualClock()
    paced = LatencyMiddleware(scripted_bridge(), first_token=1.0, clock=clock)
    recorder = RecordingMiddleware(paced, clock=clock)
    await _run_async(recorder, "openai")
    assert (recorder.cassette.interactions[0].response.chunks or [])[0].at == 1.0

    observer = RecordingMiddleware(
        ReplayApp(recorder.cassette, timing="recorded", clock=RealClock(speed=25))
    )
    await _run_async(observer, "openai")
    for item in observer.cassette:
        assert (item.response.chunks or [])[0].at >= 1.0 / 25  # really waited, 25 times less
