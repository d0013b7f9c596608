"""Stream a chat completion through the in-process AI bridge with the sync openai SDK.

The bridge here is the library's fake provider, which sends 20 tokens 50 ms apart. A sync
client (`openai.OpenAI`, as a Django view or a Celery task would hold) gets each token as the
bridge sends it: the bridge runs on the factory's own event loop thread, entered with `with`.

    python examples/sync_chat.py

Needs the `examples` extra: pip install -e '.[examples]' in a clone.
"""

from __future__ import annotations

import time

import httpx2
import openai

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge, Reply

TEXT = (
    "Each token leaves the provider fifty milliseconds after the last"
    " and reaches the SDK as soon as it is sent."
)
TOKENS = len(TEXT.split())
TOKEN_DELAY = 0.05


def stream_chat(client: openai.OpenAI) -> list[float]:
    """Print each token as it arrives; return the arrival times (seconds since the request)."""
    arrivals: list[float] = []
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Count to twenty."}],
        stream=True,
    )
    with stream:
        for chunk in stream:
            if not chunk.choices or not chunk.choices[0].delta.content:
                continue
            elapsed = time.perf_counter() - started
            arrivals.append(elapsed)
            print(f"  {elapsed * 1000:6.0f} ms  {chunk.choices[0].delta.content!r}", flush=True)
    return arrivals


def main() -> None:
    print("sync openai SDK -> in-process bridge (streams):")
    bridge = FakeAIBridge(default=Reply(text=TEXT, delay=TOKEN_DELAY))
    with InProcessTransportFactory(bridge) as factory, with_delegated_api_key_id("example-key"):
        transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
        client = openai.OpenAI(
            base_url="http://aibridge/v1",
            api_key="unused-in-process",
            http_client=httpx2.Client(transport=transport),
        )
        arrivals = stream_chat(client)
        client.close()
    print(
        f"{len(arrivals)} tokens: first after {arrivals[0] * 1000:.0f} ms, "
        f"last after {arrivals[-1] * 1000:.0f} ms ({TOKEN_DELAY * 1000:.0f} ms apart)"
    )


if __name__ == "__main__":
    main()
