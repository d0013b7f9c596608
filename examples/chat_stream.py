"""Stream a chat completion through the in-process AI bridge with the openai SDK.

The bridge here is the library's fake provider, which sends 20 tokens 50 ms apart. Through the
in-process factory each token reaches the SDK as the bridge sends it; through
`httpx.ASGITransport`, which runs the app to completion first, every token arrives at the end.

    python examples/chat_stream.py          # add `trio` to run it on trio

Needs the `examples` extra: pip install -e '.[examples]' in a clone.
"""

from __future__ import annotations

import sys
import time

import anyio
import httpx
import httpx2
import openai

from aibridge_transport import (
    AIBRIDGE_ROOT_PATH,
    InProcessTransportFactory,
    Source,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import FakeAIBridge, Reply

TEXT = (
    "Each token leaves the provider fifty milliseconds after the last"
    " and reaches the SDK as soon as it is sent."
)
TOKENS = len(TEXT.split())
TOKEN_DELAY = 0.05


async def stream_chat(client: openai.AsyncOpenAI) -> list[float]:
    """Print each token as it arrives; return the arrival times (seconds since the request)."""
    arrivals: list[float] = []
    started = time.perf_counter()
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Count to twenty."}],
        stream=True,
    )
    async with stream:
        async for chunk in stream:
            if not chunk.choices or not chunk.choices[0].delta.content:
                continue
            elapsed = time.perf_counter() - started
            arrivals.append(elapsed)
            print(f"  {elapsed * 1000:6.0f} ms  {chunk.choices[0].delta.content!r}", flush=True)
    return arrivals


async def main() -> None:
    print("openai SDK -> in-process bridge (streams):")
    bridge = FakeAIBridge(default=Reply(text=TEXT, delay=TOKEN_DELAY))
    async with InProcessTransportFactory(bridge) as factory:
        with with_delegated_api_key_id("example-key"):
            transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
            client = openai.AsyncOpenAI(
                base_url="http://aibridge/v1",
                api_key="unused-in-process",
                http_client=httpx2.AsyncClient(transport=transport),
            )
            streamed = await stream_chat(client)
            await client.close()

    # For comparison: the same app behind httpx's own ASGITransport, which buffers. It knows
    # nothing of the bridge's routes, so the base URL carries the prefix itself. openai 3.x
    # declares an httpx2 client but still accepts a legacy httpx one.
    print("openai SDK -> httpx.ASGITransport (buffers the whole response):")
    legacy_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=bridge))
    client = openai.AsyncOpenAI(
        base_url=f"http://aibridge{AIBRIDGE_ROOT_PATH}/openai/v1",
        api_key="unused-in-process",
        http_client=legacy_client,  # type: ignore[arg-type]
    )
    buffered = await stream_chat(client)
    await client.close()

    print(
        f"time to first token: {streamed[0] * 1000:.0f} ms streamed, "
        f"{buffered[0] * 1000:.0f} ms buffered "
        f"({TOKENS} tokens, {TOKEN_DELAY * 1000:.0f} ms apart)"
    )


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
