"""Behaviour §12 with the real sync SDKs: openai.OpenAI and anthropic.Anthropic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import anyio
import httpx
import httpx2
import openai
import pytest
from sdk_helpers import KEY_ID, forbid_network

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import (
    FakeAIBridge,
    HTTPError,
    RecordedRequest,
    Reply,
    SimulatedCrash,
    Stall,
    TokenGate,
)

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


@pytest.fixture
def bridge() -> FakeAIBridge:
    return FakeAIBridge()


@pytest.fixture
def factory(bridge: FakeAIBridge) -> Iterator[InProcessTransportFactory]:
    with InProcessTransportFactory(bridge) as factory, with_delegated_api_key_id(KEY_ID):
        yield factory


def on_loop(factory: InProcessTransportFactory, func: Callable[[], object]) -> None:
    """Run `func` on the factory's loop thread (the fake bridge's gate lives there)."""

    async def call() -> None:
        func()

    factory._loop_host.run(call)


def ended(factory: InProcessTransportFactory, record: RecordedRequest) -> str:
    outcome: list[str] = []

    async def wait() -> None:
        with anyio.fail_after(5):  # a regression fails instead of hanging
            outcome.append(await record.wait_ended())

    factory._loop_host.run(wait)
    return outcome[0]


def fast_retries(response: httpx.Response | httpx2.Response) -> None:
    if response.status_code >= 500:
        response.headers["retry-after-ms"] = "1"


def openai_client(
    factory: InProcessTransportFactory, flavour: str, *, max_retries: int = 0, timeout: float = 10
) -> openai.OpenAI:
    http_client: Any
    if flavour == "httpx2":
        transport2 = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
        http_client = httpx2.Client(transport=transport2, event_hooks={"response": [fast_retries]})
    else:
        transport = factory.transport_for("openai", Source.AGENTS)
        http_client = httpx.Client(transport=transport, event_hooks={"response": [fast_retries]})
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://bridge.invalid/v1",
        max_retries=max_retries,
        timeout=timeout,
        http_client=http_client,
    )


def anthropic_client(
    factory: InProcessTransportFactory, *, max_retries: int = 0, timeout: float = 10
) -> anthropic.Anthropic:
    transport = factory.transport_for("anthropic", Source.AGENTS, flavor="httpx2")
    return anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://bridge.invalid",
        max_retries=max_retries,
        timeout=timeout,
        http_client=httpx2.Client(transport=transport, event_hooks={"response": [fast_retries]}),
    )


@pytest.mark.parametrize("flavour", ["httpx2", "httpx"])
def test_openai_chat_stream_arrives_token_by_token(
    bridge: FakeAIBridge, factory: InProcessTransportFactory, flavour: str
) -> None:
    gate = TokenGate()
    bridge.queue(Reply(text="Hello there friend", gate=gate))
    client = openai_client(factory, flavour)
    received: list[str] = []
    stream = client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    record = bridge.last_request
    gate.release()  # from this thread: the gate wakes the bridge on its loop
    with stream:
        for chunk in stream:
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content:
                received.append(content)
                assert record.tokens_sent == len(received)  # lock-step across threads
                gate.release()
    client.close()
    assert received == ["Hello", " there", " friend"]
    assert ended(factory, record) == "completed"
    assert record.delegated_api_key_id == KEY_ID
    assert record.path == "/api/v2/aibridge/openai/v1/chat/completions"


@pytest.mark.parametrize("flavour", ["httpx2", "httpx"])
def test_openai_early_exit_disconnects_the_app(
    bridge: FakeAIBridge, factory: InProcessTransportFactory, flavour: str
) -> None:
    gate = TokenGate()
    bridge.queue(Reply(text="a b c d", gate=gate))
    client = openai_client(factory, flavour)
    stream = client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    on_loop(factory, gate.release)
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    record = bridge.last_request
    assert ended(factory, record) == "disconnected"
    assert record.tokens_sent == 1
    client.close()


@pytest.mark.parametrize("flavour", ["httpx2", "httpx"])
def test_openai_crash_mid_stream_is_a_connection_error(
    bridge: FakeAIBridge, factory: InProcessTransportFactory, flavour: str
) -> None:
    bridge.queue(Reply(text="a b c", ending="crash", after_tokens=2))
    client = openai_client(factory, flavour, max_retries=2)
    received: list[str] = []
    stream = client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    client.close()
    assert received == ["a", " b"]
    module: Any = httpx2 if flavour == "httpx2" else httpx
    protocol_error = caught.value.__cause__
    assert type(protocol_error) is module.RemoteProtocolError
    assert protocol_error is not None
    assert isinstance(protocol_error.__cause__, SimulatedCrash)
    assert len(bridge.requests) == 1


@pytest.mark.parametrize("flavour", ["httpx2", "httpx"])
def test_openai_retries_then_succeeds(
    bridge: FakeAIBridge, factory: InProcessTransportFactory, flavour: str
) -> None:
    bridge.queue(HTTPError(status=503), Reply(text="after retry"))
    client = openai_client(factory, flavour, max_retries=2)
    completion = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    client.close()
    assert completion.choices[0].message.content == "after retry"
    assert len(bridge.requests) == 2


@pytest.mark.parametrize("flavour", ["httpx2", "httpx"])
def test_openai_timeout_is_an_api_timeout(
    bridge: FakeAIBridge, factory: InProcessTransportFactory, flavour: str
) -> None:
    bridge.queue(Stall())
    client = openai_client(factory, flavour, timeout=0.1)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    client.close()
    assert ended(factory, bridge.last_request) in {"disconnected", "cancelled"}


def test_anthropic_stream_arrives_token_by_token(
    bridge: FakeAIBridge, factory: InProcessTransportFactory
) -> None:
    gate = TokenGate()
    bridge.queue(Reply(text="Hi from Claude", gate=gate))
    client = anthropic_client(factory)
    received: list[str] = []
    with client.messages.stream(model="claude-test", max_tokens=64, messages=MESSAGES) as stream:
        record = bridge.last_request
        on_loop(factory, gate.release)
        for text in stream.text_stream:
            received.append(text)
            assert record.tokens_sent == len(received)
            on_loop(factory, gate.release)
    client.close()
    assert received == ["Hi", " from", " Claude"]
    assert record.path == "/api/v2/aibridge/anthropic/v1/messages"


def test_anthropic_early_exit_crash_and_retry(
    bridge: FakeAIBridge, factory: InProcessTransportFactory
) -> None:
    gate = TokenGate()
    bridge.queue(Reply(text="a b c", gate=gate))
    client = anthropic_client(factory, max_retries=2)
    with client.messages.stream(model="claude-test", max_tokens=64, messages=MESSAGES) as stream:
        on_loop(factory, gate.release)
        for _ in stream.text_stream:
            break
    assert ended(factory, bridge.last_request) == "disconnected"

    bridge.queue(Reply(text="a b c", ending="crash", after_tokens=1))
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        with client.messages.stream(
            model="claude-test", max_tokens=64, messages=MESSAGES
        ) as stream:
            for _ in stream.text_stream:
                pass

    bridge.queue(HTTPError(status=529), Reply(text="retried"))
    before = len(bridge.requests)
    message = client.messages.create(model="claude-test", max_tokens=64, messages=MESSAGES)
    assert message.content[0].text == "retried"  # type: ignore[union-attr]
    assert len(bridge.requests) == before + 2
    client.close()


def test_anthropic_timeout(bridge: FakeAIBridge, factory: InProcessTransportFactory) -> None:
    bridge.queue(Stall())
    client = anthropic_client(factory, timeout=0.1)
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model="claude-test", max_tokens=64, messages=MESSAGES)
    client.close()
