from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from asgi import chunk, start

from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    InProcessTransportFactory,
    InvalidProviderNameError,
    InvalidRequestHeaderError,
    PathOutsideProviderError,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport._rules import MAX_REQUEST_HEADER_BYTES
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio

SEEN: list[Scope] = []


@pytest.fixture(autouse=True)
def _forget_seen() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


async def recording_app(scope: Scope, receive: Receive, send: Send) -> None:
    SEEN.append(scope)
    await send(start())
    await send(chunk(b"ok", more_body=False))


def factory_client(flavour: str, mount: str = AIBRIDGE_ROOT_PATH) -> Any:
    factory = InProcessTransportFactory(recording_app, root_path=mount)
    transport = factory.transport_for("openai", "agents", flavor=flavour)  # type: ignore[call-overload]
    module: Any = httpx2 if flavour == "httpx2" else httpx
    return module.AsyncClient(transport=transport, base_url="http://bridge")


def generic_client(flavour: str) -> Any:
    if flavour == "httpx2":
        return httpx2.AsyncClient(
            transport=StreamingASGITransport2(app=recording_app), base_url="http://app"
        )
    return httpx.AsyncClient(
        transport=StreamingASGITransport(app=recording_app), base_url="http://app"
    )


FLAVOURS = pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
# The bridge's two mounts: a path contained under one is contained under the other.
MOUNTS = pytest.mark.parametrize("mount", [AIBRIDGE_ROOT_PATH, AI_GATEWAY_ROOT_PATH])


async def send_raw(client: Any, path: str, headers: list[tuple[Any, Any]]) -> Any:
    # Built outside the client: its header merge refuses non-ASCII names before the transport.
    module: Any = httpx2 if isinstance(client, httpx2.AsyncClient) else httpx
    request = module.Request("GET", f"{client.base_url}".rstrip("/") + path, headers=headers)
    return await client.send(request)


# -- provider names (behaviour §2) ---------------------------------------------------------------

BAD_PROVIDER_NAMES = [
    ("", "provider name is required"),
    (".", "dot segment"),
    ("..", "dot segment"),
    ("../openai", "a slash"),
    ("open/ai", "a slash"),
    ("open\\ai", "a backslash"),
    ("%2e%2e", "a percent sign"),
    ("%2E%2e", "a percent sign"),
    ("open%2fai", "a percent sign"),
    ("open%00ai", "a percent sign"),
    ("open?ai", "a question mark"),
    ("open#ai", "a hash sign"),
    ("open ai", "whitespace"),
    ("open\u00a0ai", "whitespace"),
    ("open\u2028ai", "whitespace"),
    ("open\tai", "control character"),
    ("open\r\nai", "control character"),
    ("open\x00ai", "control character"),
    ("open\x7fai", "control character"),
    ("open\x85ai", "control character"),
    ("open\u200bai", "invisible character (U+200B)"),
    ("\u202eianepo", "invisible character (U+202E)"),
    ("\ufeffopenai", "invisible character (U+FEFF)"),
    ("open\ud800ai", "invisible character (U+D800)"),
    ("x" * 256, "at most 255"),
    ("x" * 100_000, "at most 255"),
]


@pytest.mark.parametrize(("name", "why"), BAD_PROVIDER_NAMES)
async def test_bad_provider_name_is_refused_saying_why(name: str, why: str) -> None:
    factory = InProcessTransportFactory(recording_app)
    with pytest.raises(InvalidProviderNameError, match="provider name") as caught:
        factory.transport_for(name, "agents")
    assert isinstance(caught.value, ValueError)
    assert why in str(caught.value)
    assert len(str(caught.value)) < 400 or name == "x" * 100_000


async def test_longest_and_non_ascii_provider_names_are_one_encoded_segment() -> None:
    for name, raw in [("x" * 255, b"x" * 255), ("\u00e9", b"%C3%A9")]:
        factory = InProcessTransportFactory(recording_app)
        async with httpx.AsyncClient(
            transport=factory.transport_for(name, "agents"), base_url="http://bridge"
        ) as client:
            with with_delegated_api_key_id("key-1"):
                response = await client.get("/v1/models")
        assert response.status_code == 200
        assert SEEN[-1]["path"] == f"/api/v2/aibridge/{name}/v1/models"
        assert SEEN[-1]["raw_path"] == b"/api/v2/aibridge/" + raw + b"/v1/models"


# -- request paths (behaviour §3) ----------------------------------------------------------------

ESCAPING_PATHS = [
    "/%2e%2e/admin",
    "/%2E%2e/admin",
    "/%2e%2E/%2E%2E/admin",
    "/v1/%2e%2e/%2e%2e/admin",
    "/%2f../admin",
    "/%2F..%2Fadmin",
    "/v1%2f..%2f..%2fadmin",
    "/api/v2/aibridge/openai/%2e%2e/anthropic/v1/messages",
    "/api/v2/ai-gateway/openai/%2e%2e/anthropic/v1/messages",
    "/api/v2/ai-gateway/openai/%2e%2e",
    "/api/v2/aibridge/openai/v1%2f..%2f..%2f..%2fadmin",
    "/v1/%2e%2e%2f%2e%2e%2fadmin",
]
CONTROL_PATHS = [
    "/v1/%00/models",
    "/v1/models%00.json",
    "/v1/%0d%0aX-Injected:%201",
    "/v1/%7f",
    "/v1/%c2%85",
]


@FLAVOURS
@MOUNTS
@pytest.mark.parametrize("path", ESCAPING_PATHS)
async def test_encoded_dots_never_leave_the_provider(flavour: str, mount: str, path: str) -> None:
    async with factory_client(flavour, mount) as client:
        with with_delegated_api_key_id("key-1"):
            with pytest.raises(PathOutsideProviderError, match="climbs above the provider"):
                await client.get(path)
    assert SEEN == []


@FLAVOURS
@MOUNTS
@pytest.mark.parametrize("path", CONTROL_PATHS)
async def test_encoded_control_characters_in_the_path_are_refused(
    flavour: str, mount: str, path: str
) -> None:
    async with factory_client(flavour, mount) as client:
        with with_delegated_api_key_id("key-1"):
            with pytest.raises(PathOutsideProviderError, match="control character") as caught:
                await client.get(path)
    assert isinstance(caught.value, ValueError)
    assert SEEN == []


@FLAVOURS
@MOUNTS
async def test_encoded_dots_that_stay_inside_are_resolved(flavour: str, mount: str) -> None:
    async with factory_client(flavour, mount) as client:
        with with_delegated_api_key_id("key-1"):
            response = await client.get("/v1/%2e%2E/v1/./models")
    assert response.status_code == 200
    assert SEEN[0]["path"] == f"{mount}/openai/v1/models"


@FLAVOURS
@MOUNTS
async def test_an_encoded_double_percent_is_a_name_not_a_dot(flavour: str, mount: str) -> None:
    async with factory_client(flavour, mount) as client:
        with with_delegated_api_key_id("key-1"):
            response = await client.get("/v1/%252e%252e/models")
    assert response.status_code == 200
    assert SEEN[0]["path"] == f"{mount}/openai/v1/%2e%2e/models"


# -- request headers ---------------------------------------------------------------------------


@FLAVOURS
async def test_the_client_itself_refuses_non_ascii_text_headers_and_raw_control_urls(
    flavour: str,
) -> None:
    module: Any = httpx2 if flavour == "httpx2" else httpx
    with pytest.raises(UnicodeEncodeError):
        module.Request("GET", "http://app/", headers={"x-name": "caf\u00e9"})
    with pytest.raises(UnicodeEncodeError):
        module.Request("GET", "http://app/", headers={"caf\u00e9": "x"})
    for url in ["http://app/a\x00b", "http://app/a\r\nb", "http://app/a\tb"]:
        with pytest.raises(module.InvalidURL, match="non-printable"):
            module.Request("GET", url)


# What httpx and httpx2 let through to the transport; a server (h11) would refuse each.
BAD_HEADERS: list[tuple[Any, Any, str]] = [
    ("x-a", "b\r\nx-injected: 1", "CR, LF or NUL"),
    (b"x-a", b"b\r\nx-injected: 1", "CR, LF or NUL"),
    ("x-a", "b\nx-injected: 1", "CR, LF or NUL"),
    ("x-a", "b\rc", "CR, LF or NUL"),
    (b"x-a", b"b\x00c", "CR, LF or NUL"),
    ("x-a\r\nx-injected", "1", "not a valid HTTP token"),
    ("x a", "1", "not a valid HTTP token"),
    ("x:a", "1", "not a valid HTTP token"),
    ("", "1", "not a valid HTTP token"),
    (b"x-\xc3\xa9", b"1", "not a valid HTTP token"),
    (b"x-\x00", b"1", "not a valid HTTP token"),
    (b"x-\x7f", b"1", "not a valid HTTP token"),
]


@FLAVOURS
@pytest.mark.parametrize(("name", "value", "why"), BAD_HEADERS)
async def test_generic_transport_refuses_headers_no_server_would_accept(
    flavour: str, name: Any, value: Any, why: str
) -> None:
    async with generic_client(flavour) as client:
        with pytest.raises(InvalidRequestHeaderError, match=why) as caught:
            await send_raw(client, "/", [(name, value)])
    assert isinstance(caught.value, ValueError)
    assert SEEN == []


@FLAVOURS
@pytest.mark.parametrize(("name", "value", "why"), BAD_HEADERS)
async def test_factory_refuses_headers_no_server_would_accept(
    flavour: str, name: Any, value: Any, why: str
) -> None:
    async with factory_client(flavour) as client:
        with with_delegated_api_key_id("key-1"):
            with pytest.raises(InvalidRequestHeaderError, match=why):
                await send_raw(client, "/v1/models", [(name, value)])
    assert SEEN == []


@FLAVOURS
async def test_header_values_never_appear_in_the_refusal(flavour: str) -> None:
    async with generic_client(flavour) as client:
        with pytest.raises(InvalidRequestHeaderError) as caught:
            await client.get("/", headers={"authorization": "Bearer sk-secret\r\n"})
    assert "sk-secret" not in str(caught.value)
    assert "authorization" in str(caught.value)


@FLAVOURS
async def test_obs_text_header_values_pass_as_bytes_as_under_h11(flavour: str) -> None:
    async with generic_client(flavour) as client:
        response = await client.get("/", headers={b"x-name": "caf\u00e9\tau lait".encode()})
    assert response.status_code == 200
    assert (b"x-name", "caf\u00e9\tau lait".encode()) in SEEN[0]["headers"]


@FLAVOURS
async def test_headers_up_to_the_size_limit_pass(flavour: str) -> None:
    value = "v" * (MAX_REQUEST_HEADER_BYTES - 4096)
    async with generic_client(flavour) as client:
        response = await client.get("/", headers={"x-big": value})
    assert response.status_code == 200
    assert (b"x-big", value.encode()) in SEEN[0]["headers"]


@FLAVOURS
@pytest.mark.parametrize(
    "headers",
    [
        {"x-big": "v" * (MAX_REQUEST_HEADER_BYTES + 1)},
        {f"x-{i}": "v" * 1024 for i in range(70)},
    ],
    ids=["one-huge", "many-large"],
)
async def test_oversized_headers_are_refused(flavour: str, headers: dict[str, str]) -> None:
    for client in (generic_client(flavour), factory_client(flavour)):
        async with client:
            with with_delegated_api_key_id("key-1"):
                with pytest.raises(InvalidRequestHeaderError, match="exceed 65536 bytes"):
                    await client.get("/v1/models", headers=headers)
    assert SEEN == []


# -- identity (behaviour §4) ---------------------------------------------------------------------


@pytest.mark.parametrize("key_id", ["key\r\n", "key\nx-admin: 1", "\x00", "k\x7f", "k\x85"])
async def test_delegated_key_id_with_control_characters_is_refused(key_id: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        with with_delegated_api_key_id(key_id):
            pytest.fail("the block must not run")


@pytest.mark.parametrize("source", ["agents\r\n", "a\x00", "\x1b[31mred"])
async def test_source_with_control_characters_is_refused(source: str) -> None:
    factory = InProcessTransportFactory(recording_app)
    with pytest.raises(ValueError, match="control character"):
        factory.transport_for("openai", source)


# -- malformed messages from the app (behaviour §7) ----------------------------------------------


async def status_is_a_string(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": "200", "headers": []})


async def status_is_a_bool(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": True, "headers": []})


async def status_out_of_range(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(status=1000))


async def status_missing(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "headers": []})


async def headers_are_a_dict(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": {b"a": b"b"}})


async def header_is_not_a_pair(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"a",)]})


async def header_holds_ints(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(1, 2)]})


async def header_value_splits_the_head(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"x-a", b"1\r\nset-cookie: admin=1")]
    await send(start(headers))


async def header_name_is_not_a_token(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x a", b"1")]})


async def header_name_is_latin_1(scope: Scope, receive: Receive, send: Send) -> None:
    # Refused on the request side too, as h11 refuses it: one token table both ways.
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-caf\xe9", b"1")]})


async def headers_are_a_string(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": "x-a: 1"})


async def headers_are_bytes(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": b"x-a: 1"})


async def unknown_message_first(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.trailers"})


async def body_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    await send(chunk(b"x", more_body=False))


BEFORE_START: list[tuple[Any, str]] = [
    (status_is_a_string, "status must be an int"),
    (status_is_a_bool, "status must be an int"),
    (status_out_of_range, "status must be an int from 100 to 599"),
    (status_missing, "status must be an int"),
    (headers_are_a_dict, "headers must be an iterable of \\(bytes, bytes\\) pairs, got dict"),
    (header_is_not_a_pair, "is not a \\(bytes, bytes\\) pair"),
    (header_holds_ints, "is not a \\(bytes, bytes\\) pair"),
    (header_value_splits_the_head, "CR, LF or NUL"),
    (header_name_is_not_a_token, "not a valid token"),
    (header_name_is_latin_1, "not a valid token"),
    (headers_are_a_string, "headers must be an iterable of \\(bytes, bytes\\) pairs, got str"),
    (headers_are_bytes, "headers must be an iterable of \\(bytes, bytes\\) pairs, got bytes"),
    (unknown_message_first, "unknown message type 'http.response.trailers'"),
    (body_before_start, "'http.response.body' before 'http.response.start'"),
]


@FLAVOURS
@pytest.mark.parametrize(("app", "violation"), BEFORE_START)
async def test_malformed_start_raises_from_send_in_raise_mode(
    flavour: str, app: Any, violation: str
) -> None:
    transport_class: Any = (
        StreamingASGITransport2 if flavour == "httpx2" else StreamingASGITransport
    )
    module: Any = httpx2 if flavour == "httpx2" else httpx
    async with module.AsyncClient(transport=transport_class(app=app), base_url="http://app") as c:
        with pytest.raises(RuntimeError, match=violation):
            await c.get("/")


@FLAVOURS
@pytest.mark.parametrize(("app", "violation"), BEFORE_START)
async def test_malformed_start_is_a_500_from_the_factory(
    flavour: str, app: Any, violation: str, caplog: pytest.LogCaptureFixture
) -> None:
    factory = InProcessTransportFactory(app)
    module: Any = httpx2 if flavour == "httpx2" else httpx
    transport = factory.transport_for("openai", "agents", flavor=flavour)  # type: ignore[call-overload]
    async with module.AsyncClient(transport=transport, base_url="http://bridge") as client:
        with with_delegated_api_key_id("key-1"):
            response = await client.get("/v1/models")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    logged = [record for record in caplog.records if record.name == "aibridge_transport"]
    assert logged
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], RuntimeError)


async def body_is_a_string(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await send({"type": "http.response.body", "body": "text", "more_body": True})


async def body_is_an_int(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await send({"type": "http.response.body", "body": 7, "more_body": True})


async def second_start(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    await send(start())


async def unknown_message_mid_body(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start())
    message: Message = {"type": "websocket.send", "bytes": b"x"}
    await send(message)


AFTER_START: list[tuple[Any, str]] = [
    (body_is_a_string, "body must be bytes, got str"),
    (body_is_an_int, "body must be bytes, got int"),
    (second_start, "'http.response.start' twice"),
    (unknown_message_mid_body, "'websocket.send' while sending the response body"),
]


@FLAVOURS
@pytest.mark.parametrize(("app", "violation"), AFTER_START)
@pytest.mark.parametrize("raise_app_exceptions", [True, False])
async def test_malformed_body_message_breaks_the_stream_naming_it(
    flavour: str, app: Any, violation: str, raise_app_exceptions: bool
) -> None:
    transport_class: Any = (
        StreamingASGITransport2 if flavour == "httpx2" else StreamingASGITransport
    )
    module: Any = httpx2 if flavour == "httpx2" else httpx
    transport = transport_class(app=app, raise_app_exceptions=raise_app_exceptions)
    # 500 mode: a protocol error caused by the RuntimeError of the app's send(); raise mode:
    # that RuntimeError itself, which the app raised on (behaviour §7).
    expected = RuntimeError if raise_app_exceptions else module.RemoteProtocolError
    async with module.AsyncClient(transport=transport, base_url="http://app") as client:
        async with client.stream("GET", "/") as response:
            assert response.status_code == 200
            with pytest.raises(expected) as caught:
                await response.aread()
    error = caught.value if raise_app_exceptions else caught.value.__cause__
    assert type(error) is RuntimeError
    assert violation in str(error)


# -- response headers as any iterable of pairs (behaviour §5) --------------------------------


def _sanic_headers() -> Iterator[tuple[bytes, bytes]]:
    yield (b"content-type", b"text/plain")
    yield (b"x-one", b"1")
    yield (b"x-one", b"2")


async def headers_from_a_generator(scope: Scope, receive: Receive, send: Send) -> None:
    # What Sanic sends on every response.
    await send({"type": "http.response.start", "status": 200, "headers": _sanic_headers()})
    await send(chunk(b"ok", more_body=False))


@FLAVOURS
async def test_response_headers_from_a_generator_are_taken(flavour: str) -> None:
    factory = InProcessTransportFactory(headers_from_a_generator)
    module: Any = httpx2 if flavour == "httpx2" else httpx
    transport = factory.transport_for("openai", "agents", flavor=flavour)  # type: ignore[call-overload]
    async with module.AsyncClient(transport=transport, base_url="http://bridge") as client:
        with with_delegated_api_key_id("key-1"):
            response = await client.get("/v1/models")
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers.get_list("x-one") == ["1", "2"]
    assert response.headers.raw[0] == (b"content-type", b"text/plain")


@FLAVOURS
async def test_request_and_response_refuse_the_same_header_name(flavour: str) -> None:
    async with generic_client(flavour) as client:
        with pytest.raises(InvalidRequestHeaderError, match="not a valid HTTP token"):
            await send_raw(client, "/", [(b"x-caf\xe9", b"1")])
    module: Any = httpx2 if flavour == "httpx2" else httpx
    transport_class: Any = (
        StreamingASGITransport2 if flavour == "httpx2" else StreamingASGITransport
    )
    transport = transport_class(app=header_name_is_latin_1)
    async with module.AsyncClient(transport=transport, base_url="http://app") as client:
        with pytest.raises(RuntimeError, match="not a valid token"):
            await client.get("/")
