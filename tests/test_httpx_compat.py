"""The cases of httpx's own `tests/test_asgi.py`, against StreamingASGITransport.

The transport is a drop-in for `httpx.ASGITransport`; these are the behaviours httpx's test
suite checks for its transport (including str header values, which it tolerates).
"""

from __future__ import annotations

import json

import httpx
import pytest
from asgi import echo_body, hello_world, plain_headers, raise_exc, raise_exc_after_response

from aibridge_transport import StreamingASGITransport
from aibridge_transport.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio


async def echo_path(scope: Scope, receive: Receive, send: Send) -> None:
    output = json.dumps({"path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": plain_headers(output)})
    await send({"type": "http.response.body", "body": output})


async def echo_raw_path(scope: Scope, receive: Receive, send: Send) -> None:
    output = json.dumps({"raw_path": scope["raw_path"].decode("ascii")}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": plain_headers(output)})
    await send({"type": "http.response.body", "body": output})


async def echo_headers(scope: Scope, receive: Receive, send: Send) -> None:
    output = json.dumps(
        {"headers": [[name.decode(), value.decode()] for name, value in scope["headers"]]}
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": plain_headers(output)})
    await send({"type": "http.response.body", "body": output})


async def test_transport_used_directly() -> None:
    async with StreamingASGITransport(app=hello_world) as transport:
        response = await transport.handle_async_request(
            httpx.Request("GET", "http://www.example.com/")
        )
        await response.aread()
    assert response.status_code == 200
    assert response.content == b"Hello, World!"


async def test_transport_no_body() -> None:
    async with StreamingASGITransport(app=echo_body) as transport:
        response = await transport.handle_async_request(
            httpx.Request("GET", "http://www.example.com/")
        )
        await response.aread()
    assert response.status_code == 200
    assert response.content == b""


async def test_client_get() -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=hello_world)) as client:
        response = await client.get("http://www.example.org/")
    assert response.status_code == 200
    assert response.text == "Hello, World!"


async def test_urlencoded_path() -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=echo_path)) as client:
        url = httpx.URL("http://www.example.org/").copy_with(path="/user@example.org")
        response = await client.get(url)
    assert response.json() == {"path": "/user@example.org"}


async def test_raw_path() -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=echo_raw_path)) as client:
        url = httpx.URL("http://www.example.org/").copy_with(path="/user@example.org")
        response = await client.get(url)
    assert response.json() == {"raw_path": "/user@example.org"}


async def test_raw_path_excludes_query_string() -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=echo_raw_path)) as client:
        response = await client.get("http://www.example.org/path?query")
    assert response.json() == {"raw_path": "/path"}


async def test_upload() -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=echo_body)) as client:
        response = await client.post("http://www.example.org/", content=b"example")
    assert response.text == "example"


async def test_headers() -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=echo_headers)) as client:
        response = await client.get("http://www.example.org/")
        # "br" is advertised only where a brotli package is installed.
        accept_encoding = client.headers["accept-encoding"]
    assert response.json() == {
        "headers": [
            ["host", "www.example.org"],
            ["accept", "*/*"],
            ["accept-encoding", accept_encoding],
            ["connection", "keep-alive"],
            ["user-agent", f"python-httpx/{httpx.__version__}"],
        ]
    }


async def test_exception_raised() -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(app=raise_exc)) as client:
        with pytest.raises(RuntimeError):
            await client.get("http://www.example.org/")


async def test_exception_after_response_raised() -> None:
    transport = StreamingASGITransport(app=raise_exc_after_response)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(RuntimeError):
            await client.get("http://www.example.org/")


async def test_disconnect_after_response_complete() -> None:
    disconnect = False

    async def read_body(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal disconnect
        await send({"type": "http.response.start", "status": 200, "headers": []})
        message: Message = {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        # The ASGI spec: receive() after the response was sent gives the disconnect message.
        disconnect = (await receive())["type"] == "http.disconnect"

    async with httpx.AsyncClient(transport=StreamingASGITransport(app=read_body)) as client:
        response = await client.post("http://www.example.org/", content=b"example")
    assert response.status_code == 200
    assert disconnect


async def test_exception_without_raise_is_500() -> None:
    transport = StreamingASGITransport(app=raise_exc, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("http://www.example.org/")
    assert response.status_code == 500
