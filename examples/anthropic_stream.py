"""Stream a message through the in-process AI bridge with the anthropic SDK.

anthropic >= 1.0 accepts only an `httpx2.AsyncClient`, so the transport is the httpx2 flavour.
The bridge here is the library's fake provider, which sends 20 tokens 50 ms apart. Through the
in-process factory each token reaches the SDK as the bridge sends it; through
`httpx2.ASGITransport`, which runs the app to completion first, every token arrives at the end.

    python examples/anthropic_stream.py          # add `trio` to run it on trio

Needs the `examples` extra: pip install -e '.[examples]' in a clone.
"""

from __future__ import annotations

import sys
import time

import anthropic
import anyio
import httpx2

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


async def stream_message(client: anthropic.AsyncAnthropic) -> list[float]:
    """Print each token as it arrives; return the arrival times (seconds since the request)."""
    arrivals: list[float] = []
    started = time.perf_counter()
    async with client.messages.stream(
        model="claude-sonnet-5-5",
        max_tokens=256,
        messages=[{"role": "user", "content": "Count to twenty."}],
    ) as stream:
        async for text in stream.text_stream:
            elapsed = time.perf_counter() - started
            arrivals.append(elapsed)
            print(f"  {elapsed * 1000:6.0f} ms  {text!r}", flush=True)
    return arrivals


async def main() -> None:
    print("anthropic SDK -> in-process bridge (streams):")
    bridge = FakeAIBridge(default=Reply(text=TEXT, delay=TOKEN_DELAY))
    async with InProcessTransportFactory(bridge) as factory:
        with with_delegated_api_key_id("example-key"):
            transport = factory.transport_for("anthropic", Source.AGENTS, flavor="httpx2")
            client = anthropic.AsyncAnthropic(
                base_url="http://aibridge",
                api_key="unused-in-process",
                http_client=httpx2.AsyncClient(transport=transport),
            )
            streamed = await stream_message(client)
            await client.close()

    # For comparison: the same app behind httpx2's own ASGITransport, which buffers. It knows
    # nothing of the bridge's routes, so the base URL carries the prefix itself.
    print("anthropic SDK -> httpx2.ASGITransport (buffers the whole response):")
    client = anthropic.AsyncAnthropic(
        base_url=f"http://aibridge{AIBRIDGE_ROOT_PATH}/anthropic",
        api_key="unused-in-process",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=bridge)),
    )
    buffered = await stream_message(client)
    await client.close()

    print(
        f"time to first token: {streamed[0] * 1000:.0f} ms streamed, "
        f"{buffered[0] * 1000:.0f} ms buffered "
        f"({TOKENS} tokens, {TOKEN_DELAY * 1000:.0f} ms apart)"
    )


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
