"""Behaviour §12: the pytest plugin's fixtures for sync tests."""

from __future__ import annotations

import threading

import httpx
import httpx2
import openai

from aibridge_transport import InProcessTransportFactory
from aibridge_transport.pytest_plugin import AIBridgeSyncClientFactory
from aibridge_transport.testing import FakeAIBridge, Reply
from aibridge_transport.types import ASGIApp


def test_sync_client_reaches_the_fake_bridge(
    aibridge_app: ASGIApp,
    aibridge_sync_client: AIBridgeSyncClientFactory,
    aibridge_sync_delegated_key: str,
) -> None:
    assert isinstance(aibridge_app, FakeAIBridge)
    aibridge_app.queue(Reply(text="Hello sync"))
    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://bridge.invalid/v1",
        max_retries=0,
        http_client=aibridge_sync_client("openai", flavor="httpx2"),
    )
    completion = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello sync"
    assert aibridge_app.last_request.delegated_api_key_id == aibridge_sync_delegated_key
    assert isinstance(aibridge_sync_client("openai"), httpx2.Client)  # what the SDKs need
    assert isinstance(aibridge_sync_client("openai", flavor="httpx"), httpx.Client)


def test_sync_factory_runs_on_a_loop_thread_of_its_own(
    aibridge_sync_factory: InProcessTransportFactory,
) -> None:
    names = [thread.name for thread in threading.enumerate()]
    assert names.count("aibridge-transport-loop") == 1
