"""Behaviour §3: the scope the app sees, built in one place, root path as uvicorn gives it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import httpx2
import pytest
from _uvicorn import running_server
from asgi import chunk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aibridge_transport import (
    GatewayAuthMiddleware,
    HTTPTransportFactory,
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

FLAVORS = pytest.mark.parametrize("flavor", ["httpx", "httpx2"])


async def paths(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps(
        {
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("ascii"),
            "root_path": scope["root_path"],
            "query_string": scope["query_string"].decode("ascii"),
            "aibridge": scope.get("extensions", {}).get("aibridge"),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send(chunk(body, more_body=False))


def generic_client(flavor: str, app: Any, **options: Any) -> Any:
    if flavor == "httpx2":
        return httpx2.AsyncClient(
            transport=StreamingASGITransport2(app, **options), base_url="http://app"
        )
    return httpx.AsyncClient(
        transport=StreamingASGITransport(app, **options), base_url="http://app"
    )


@FLAVORS
async def test_path_and_raw_path_include_the_root_path(flavor: str) -> None:
    async with generic_client(flavor, paths, root_path="/prefix") as client:
        seen = (await client.get("/json?x=1")).json()
    assert seen == {
        "path": "/prefix/json",
        "raw_path": "/prefix/json",
        "root_path": "/prefix",
        "query_string": "x=1",
        "aibridge": None,
    }


@FLAVORS
@pytest.mark.parametrize(
    ("request_path", "path"),
    [
        ("/prefix/json", "/prefix/json"),
        ("/prefix", "/prefix"),
        ("/prefix/", "/prefix/"),
        ("/prefixed", "/prefix/prefixed"),  # not under /prefix: the segment differs
        ("/", "/prefix/"),
    ],
)
async def test_a_path_already_under_the_root_path_is_not_prefixed_twice(
    flavor: str, request_path: str, path: str
) -> None:
    async with generic_client(flavor, paths, root_path="/prefix") as client:
        seen = (await client.get(request_path)).json()
    assert (seen["path"], seen["raw_path"], seen["root_path"]) == (path, path, "/prefix")


async def test_encoded_paths_keep_their_encoding_under_the_root_path() -> None:
    async with generic_client("httpx", paths, root_path="/prefix") as client:
        seen = (await client.get("/a%2Fb/c%20d")).json()
    assert seen["path"] == "/prefix/a/b/c d"
    assert seen["raw_path"] == "/prefix/a%2Fb/c%20d"


async def test_no_root_path_leaves_the_path_alone() -> None:
    async with generic_client("httpx", paths) as client:
        seen = (await client.get("/json")).json()
    assert (seen["path"], seen["root_path"]) == ("/json", "")


def test_root_path_must_be_a_path() -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        StreamingASGITransport(paths, root_path="prefix")


async def test_the_root_path_as_uvicorn_gives_it() -> None:
    # The yardstick (behaviour §3): the same app behind uvicorn --root-path, over a socket.
    with running_server(paths, root_path="/prefix") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            served = [(await client.get(path)).json() for path in ("/json", "/a%2Fb")]
    async with generic_client("httpx", paths, root_path="/prefix") as client:
        in_process = [(await client.get(path)).json() for path in ("/json", "/a%2Fb")]
    assert in_process == served


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"route": request.url.path, "root_path": request.scope["root_path"]})


async def test_a_framework_routes_under_the_root_path_as_behind_uvicorn() -> None:
    app = Starlette(routes=[Route("/whoami", whoami)])
    with running_server(app, root_path="/prefix") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            served = await client.get("/whoami")
    async with generic_client("httpx", app, root_path="/prefix") as client:
        in_process = await client.get("/whoami")
    assert (in_process.status_code, in_process.json()) == (served.status_code, served.json())
    assert in_process.status_code == 200


@FLAVORS
async def test_the_factory_puts_the_bridge_path_under_its_asgi_root_path(flavor: str) -> None:
    factory = InProcessTransportFactory(paths, asgi_root_path="/svc")
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)  # type: ignore[call-overload]
    module: Any = httpx2 if flavor == "httpx2" else httpx
    with with_delegated_api_key_id("key-1"):
        async with module.AsyncClient(transport=transport, base_url="http://bridge") as client:
            plain = (await client.get("/v1/models")).json()
            prefixed = (await client.get("/svc/api/v2/aibridge/openai/v1/models")).json()
    assert plain["path"] == "/svc/api/v2/aibridge/openai/v1/models"
    assert plain["raw_path"] == "/svc/api/v2/aibridge/openai/v1/models"
    assert plain["root_path"] == "/svc"
    assert plain["aibridge"]["provider"] == "openai"
    # The rewrite puts the request under the provider first; the root path then goes in front.
    assert prefixed["path"] == "/svc/api/v2/aibridge/openai/svc/api/v2/aibridge/openai/v1/models"


async def test_the_factory_under_a_root_path_matches_the_gateway_behind_uvicorn() -> None:
    # The bridge cannot tell the paths apart (behaviour §11), with a root path too.
    key = "gateway-key-for-scope-tests"

    # uvicorn --root-path: a proxy in front strips /svc, uvicorn puts it back into the path.
    with running_server(GatewayAuthMiddleware(paths, key), root_path="/svc") as url:
        async with HTTPTransportFactory(url, key) as remote:
            with with_delegated_api_key_id("key-1"):
                async with httpx.AsyncClient(
                    transport=remote.transport_for("openai", Source.AGENTS), base_url="http://x"
                ) as client:
                    served = (await client.get("/v1/models?limit=2")).json()
    factory = InProcessTransportFactory(paths, asgi_root_path="/svc")
    with with_delegated_api_key_id("key-1"):
        async with httpx.AsyncClient(
            transport=factory.transport_for("openai", Source.AGENTS), base_url="http://x"
        ) as client:
            in_process = (await client.get("/v1/models?limit=2")).json()
    assert in_process == served


@pytest.mark.parametrize(("url", "port"), [("http://app/", 80), ("https://app/", 443)])
async def test_the_default_port_is_filled_in(url: str, port: int) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(scope)
        await paths(scope, receive, send)

    async with httpx.AsyncClient(transport=StreamingASGITransport(app)) as client:
        await client.get(url, headers={"X-Mixed-Case": "Value"})
    assert seen["server"] == ("app", port)
    assert seen["type"] == "http"
    assert seen["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert seen["http_version"] == "1.1"
    assert (b"x-mixed-case", b"Value") in seen["headers"]
    assert seen["state"] == {}
    assert seen["client"] == ("127.0.0.1", 123)


def quart_app() -> Any:
    import quart

    app = quart.Quart("rooted")

    @app.route("/json")
    async def json_view() -> dict[str, str]:
        return {"root_path": quart.request.root_path, "path": quart.request.path}

    return app


async def test_quart_under_a_root_path_answers_as_behind_uvicorn(anyio_backend: str) -> None:
    # Quart routes on `path` minus `root_path`: given a path without the prefix, it answers 404.
    if anyio_backend != "asyncio":
        pytest.skip("Quart runs on asyncio only")
    app = quart_app()
    with running_server(app, root_path="/prefix") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            served = await client.get("/json")
    async with generic_client("httpx", app, root_path="/prefix") as client:
        in_process = await client.get("/json")
    assert served.status_code == 200
    assert (in_process.status_code, in_process.json()) == (served.status_code, served.json())
