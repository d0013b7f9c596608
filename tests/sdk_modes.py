"""Real SDK clients over a `FakeAIBridge`, async or sync, for tests that check one point
both ways: a sync client runs in a worker thread of the test's loop (behaviour §12)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import anthropic
import anyio
import httpx2
import openai
import pytest
from sdk_helpers import KEY_ID

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge

__all__ = ["MODES", "Mode", "SDKs", "anthropic_error_message", "sdks"]

Mode = Literal["async", "sync"]
MODES = pytest.mark.parametrize("mode", ["async", "sync"])


@dataclass
class SDKs:
    """Runs one SDK call on an async client, or on a sync client in a worker thread."""

    bridge: FakeAIBridge
    factory: InProcessTransportFactory
    mode: Mode

    def _client(self, provider: str) -> Any:
        transport = self.factory.transport_for(provider, Source.AGENTS, flavor="httpx2")
        options: dict[str, Any] = {"base_url": "http://bridge.invalid", "max_retries": 0}
        if self.mode == "async":
            http: Any = httpx2.AsyncClient(transport=transport)
            if provider == "anthropic":
                return anthropic.AsyncAnthropic(api_key="sk-ant", http_client=http, **options)
            options["base_url"] += "/v1"
            return openai.AsyncOpenAI(api_key="sk", http_client=http, **options)
        http = httpx2.Client(transport=transport)
        if provider == "anthropic":
            return anthropic.Anthropic(api_key="sk-ant", http_client=http, **options)
        options["base_url"] += "/v1"
        return openai.OpenAI(api_key="sk", http_client=http, **options)

    async def call(self, provider: str, operation: Callable[[Any], Any]) -> Any:
        """`operation(client)`: awaited on an async client, run in a thread on a sync one."""
        client = self._client(provider)
        if self.mode == "async":
            return await operation(client)

        def run() -> Any:
            with with_delegated_api_key_id(KEY_ID):
                return operation(client)

        return await anyio.to_thread.run_sync(run)

    async def refused(
        self, provider: str, error: type[Exception], operation: Callable[[Any], Any]
    ) -> Any:
        """The error `operation` raises (it must raise `error`)."""
        with pytest.raises(error) as caught:
            await self.call(provider, operation)
        return caught.value

    async def stream(self, provider: str, operation: Callable[[Any], Any]) -> list[Any]:
        """The events of the stream `operation(client)` opens (`stream=True`)."""

        async def read_async(client: Any) -> list[Any]:
            stream = await operation(client)
            async with stream:
                return [event async for event in stream]

        def read_sync(client: Any) -> list[Any]:
            with operation(client) as stream:
                return list(stream)

        return cast(
            list[Any], await self.call(provider, read_async if self.mode == "async" else read_sync)
        )

    async def raw_lines(self, provider: str, operation: Callable[[Any], Any]) -> list[str]:
        """The SSE lines of the streamed answer `operation(client.<resource>)` opens, read
        through the SDK's `with_streaming_response` (the parsed streams drop pings)."""

        async def read_async(client: Any) -> list[str]:
            async with operation(client) as response:
                return [line async for line in response.iter_lines()]

        def read_sync(client: Any) -> list[str]:
            with operation(client) as response:
                return list(response.iter_lines())

        return cast(
            list[str], await self.call(provider, read_async if self.mode == "async" else read_sync)
        )


@asynccontextmanager
async def sdks(mode: Mode, bridge: FakeAIBridge | None = None) -> AsyncIterator[SDKs]:
    bridge = bridge if bridge is not None else FakeAIBridge()
    async with InProcessTransportFactory(bridge) as factory:
        with with_delegated_api_key_id(KEY_ID):
            yield SDKs(bridge, factory, mode)


def openai_error_message(error: openai.APIStatusError) -> str:
    """The message of the API's error body (how `error.message` quotes it varies by release)."""
    assert isinstance(error.body, dict)
    return cast(str, error.body["message"])


def anthropic_error_message(error: anthropic.APIStatusError) -> str:
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    return cast(str, error.body["error"]["message"])
