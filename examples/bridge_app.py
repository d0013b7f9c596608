"""A small AI bridge app, and a chat service streaming through it in process.

The bridge is an ordinary Starlette app: it serves `/api/v2/aibridge/{provider}/...`, reads
who is calling from the context (the delegated API key id and the source that the in-process
transport sets), swaps the caller's credentials for its own and forwards the request to the
provider over httpx, streaming the answer back as it comes.

Run as a script, it shows the whole chain streaming token by token:

    chat service (openai SDK) -> InProcessTransportFactory -> bridge app -> fake provider

    python examples/bridge_app.py          # add `trio` to run it on trio

Needs the `examples` extra: pip install -e '.[examples]' in a clone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import httpx2
import openai
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aibridge_transport import (
    AIBRIDGE_ROOT_PATH,
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    delegated_api_key_id_from_context,
    source_from_context,
    with_delegated_api_key_id,
)
from aibridge_transport.testing import FakeAIBridge, Reply

# Where the bridge sends each provider's requests. In production these would be the
# providers' own APIs ("https://api.openai.com", "https://api.anthropic.com"); here it is the
# library's fake provider, which answers under the bridge's own prefix.
FAKE_PROVIDER_UPSTREAMS: Mapping[str, str] = {
    "openai": f"http://fake-provider{AIBRIDGE_ROOT_PATH}/openai",
    "anthropic": f"http://fake-provider{AIBRIDGE_ROOT_PATH}/anthropic",
}

# Headers that belong to one hop, or to the caller's own credentials.
_NOT_FORWARDED = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "authorization", "x-api-key"}
)


@dataclass(frozen=True)
class Interception:
    """One request the bridge forwarded: who asked, from where, and what the provider said."""

    provider: str
    source: str | None
    delegated_api_key_id: str
    path: str
    status: int


def create_bridge_app(
    upstreams: Mapping[str, str] = FAKE_PROVIDER_UPSTREAMS,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    provider_api_key: str = "bridge-owned-provider-key",
) -> Starlette:
    """
    The bridge app. `app.state.interceptions` lists every request it forwarded.

    Arguments:
        upstreams: Provider name to the base URL its requests go to.
        upstream_transport: The transport to the providers; by default an in-process fake
            provider (`FakeAIBridge`) behind a `StreamingASGITransport`.
        provider_api_key: The credential the bridge sends upstream in place of the caller's.
    """
    if upstream_transport is None:
        upstream_transport = StreamingASGITransport(FakeAIBridge())
    interceptions: list[Interception] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with httpx.AsyncClient(transport=upstream_transport, timeout=60) as upstream:
            yield {"upstream": upstream}

    async def forward(request: Request) -> Response:
        provider: str = request.path_params["provider"]
        base_url = upstreams.get(provider)
        if base_url is None:
            return JSONResponse({"error": f"unknown provider {provider!r}"}, status_code=404)
        key_id = delegated_api_key_id_from_context()
        if key_id is None:
            return JSONResponse({"error": "no delegated API key id"}, status_code=401)
        headers = [
            (name, value) for name, value in request.headers.items() if name not in _NOT_FORWARDED
        ]
        headers.append(("authorization", f"Bearer {provider_api_key}"))
        upstream: httpx.AsyncClient = request.state.upstream
        upstream_request = upstream.build_request(
            request.method,
            f"{base_url}/{request.path_params['path']}",
            params=request.url.query,
            headers=headers,
            content=request.stream(),
        )
        response = await upstream.send(upstream_request, stream=True)
        interceptions.append(
            Interception(
                provider=provider,
                source=source_from_context(),
                delegated_api_key_id=key_id,
                path=request.url.path,
                status=response.status_code,
            )
        )
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers={
                name: value
                for name, value in response.headers.items()
                if name not in _NOT_FORWARDED
            },
            # Closing the upstream response also tells the provider the caller left.
            background=BackgroundTask(response.aclose),
        )

    app = Starlette(
        routes=[
            Route(
                AIBRIDGE_ROOT_PATH + "/{provider}/{path:path}",
                forward,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            )
        ],
        lifespan=lifespan,
    )
    app.state.interceptions = interceptions
    return app


TEXT = "Tokens stream from the provider through the bridge app to the chat service, one by one."
TOKEN_DELAY = 0.05


async def main() -> None:
    provider = FakeAIBridge(default=Reply(text=TEXT, delay=TOKEN_DELAY))
    bridge = create_bridge_app(upstream_transport=StreamingASGITransport(provider))
    async with InProcessTransportFactory(bridge) as factory:
        with with_delegated_api_key_id("example-key"):
            transport = factory.transport_for("openai", Source.AGENTS, flavor="httpx2")
            client = openai.AsyncOpenAI(
                base_url="http://aibridge/v1",
                api_key="unused-in-process",
                http_client=httpx2.AsyncClient(transport=transport),
            )
            print("chat service -> bridge app -> fake provider:")
            arrivals: list[float] = []
            started = time.perf_counter()
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "How do tokens travel?"}],
                stream=True,
            )
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        arrivals.append(time.perf_counter() - started)
                        content = chunk.choices[0].delta.content
                        print(f"  {arrivals[-1] * 1000:6.0f} ms  {content!r}", flush=True)
            await client.close()

    for seen in bridge.state.interceptions:
        print(
            f"bridge forwarded {seen.path} for key {seen.delegated_api_key_id!r} "
            f"(source {seen.source!r}): provider answered {seen.status}"
        )
    print(
        f"{len(arrivals)} tokens: first after {arrivals[0] * 1000:.0f} ms, last after "
        f"{arrivals[-1] * 1000:.0f} ms ({TOKEN_DELAY * 1000:.0f} ms apart at the provider)"
    )


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
