"""Quick start: the openai SDK streams a chat completion from a bridge app in the same process.

    python examples/quickstart.py

Needs pip install -e '.[httpx2,testing]' openai in a clone (the `examples` extra has it
all). The README shows this file from `import anyio` on.
"""

from __future__ import annotations

import anyio
import httpx2
import openai

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge, Reply


async def main() -> None:
    bridge = FakeAIBridge(default=Reply(text="Hello from the bridge, token by token"))  # your app
    async with InProcessTransportFactory(bridge) as factory:
        transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
        http = httpx2.AsyncClient(transport=transport)  # the host is never contacted
        client = openai.AsyncOpenAI(base_url="http://aibridge/v1", api_key="-", http_client=http)
        with with_delegated_api_key_id("key-123"):  # whom the bridge acts for
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            async for chunk in stream:  # each token as the bridge sends it
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="|", flush=True)
        await client.close()


anyio.run(main)
