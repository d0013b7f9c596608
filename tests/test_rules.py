from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from aibridge_transport import InvalidIdentityError, InvalidRequestHeaderError
from aibridge_transport._rules import (
    check_asgi_app,
    check_identity,
    check_request_headers,
    check_response_headers,
    check_status,
    path_without_query,
)
from aibridge_transport.testing import FakeAIBridge
from aibridge_transport.types import Receive, Scope, Send

# RFC 9110 section 5.6.2, spelled out from the grammar rather than from the code under test:
# tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" /
#         "~" / DIGIT / ALPHA
RFC_TCHAR = set(b"!#$%&'*+-.^_`|~")
RFC_TCHAR |= set(range(ord("0"), ord("9") + 1))
RFC_TCHAR |= set(range(ord("A"), ord("Z") + 1)) | set(range(ord("a"), ord("z") + 1))

ALL_BYTES = range(256)


def request_name_ok(name: bytes) -> bool:
    try:
        check_request_headers([(name, b"v")])
    except InvalidRequestHeaderError:
        return False
    return True


def response_name_ok(name: bytes) -> bool:
    try:
        check_response_headers([(name, b"v")])
    except RuntimeError:
        return False
    return True


def request_value_ok(value: bytes) -> bool:
    try:
        check_request_headers([(b"x-test", value)])
    except InvalidRequestHeaderError:
        return False
    return True


def response_value_ok(value: bytes) -> bool:
    try:
        check_response_headers([(b"x-test", value)])
    except RuntimeError:
        return False
    return True


def identity_ok(value: str) -> bool:
    try:
        check_identity(value, "value")
    except InvalidIdentityError:
        return False
    return True


@pytest.mark.parametrize("byte", ALL_BYTES)
def test_header_names_follow_one_token_table_in_both_directions(byte: int) -> None:
    name = b"x" + bytes([byte]) + b"y"
    assert request_name_ok(name) is response_name_ok(name) is (byte in RFC_TCHAR)
    alone = bytes([byte])
    assert request_name_ok(alone) is response_name_ok(alone) is (byte in RFC_TCHAR)


@pytest.mark.parametrize("byte", ALL_BYTES)
def test_header_values_follow_one_rule_in_both_directions(byte: int) -> None:
    value = b"a" + bytes([byte]) + b"b"
    allowed = byte not in b"\r\n\x00"
    assert request_value_ok(value) is response_value_ok(value) is allowed


@pytest.mark.parametrize("byte", ALL_BYTES)
def test_identity_refuses_whatever_a_header_value_refuses(byte: int) -> None:
    char = chr(byte)
    inside = "a" + char + "b"
    control = byte < 0x20 or 0x7F <= byte < 0xA0
    assert identity_ok(inside) is not control
    if not request_value_ok(inside.encode("utf-8")):
        assert not identity_ok(inside)
    # Whitespace at either end changes the value on its way through a server: refused.
    assert identity_ok(char + "a") is not (control or char.isspace())
    assert identity_ok("a" + char) is not (control or char.isspace())


def test_empty_header_name_is_refused_both_ways() -> None:
    assert not request_name_ok(b"")
    assert not response_name_ok(b"")


def test_identity_message_never_quotes_the_value() -> None:
    for value in (" key-7f3a", "key-7f3a\n", "key-7f3a\x85"):
        with pytest.raises(InvalidIdentityError) as caught:
            check_identity(value, "delegated API key id")
        assert "key-7f3a" not in str(caught.value)
        assert "delegated API key id" in str(caught.value)


def test_identity_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        check_identity(b"key", "delegated API key id")


def _pairs() -> Any:
    yield (b"a", b"1")
    yield (b"b", b"2")


@pytest.mark.parametrize(
    "headers",
    [
        [(b"a", b"1"), (b"b", b"2")],
        ((b"a", b"1"), (b"b", b"2")),
        _pairs,
        lambda: iter([[b"a", b"1"], [b"b", b"2"]]),
        lambda: map(tuple, [(b"a", b"1"), (b"b", b"2")]),
    ],
)
def test_response_headers_may_be_any_iterable_of_pairs(headers: Any) -> None:
    if callable(headers):
        headers = headers()
    assert check_response_headers(headers) == [(b"a", b"1"), (b"b", b"2")]


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ("a: 1", "str"),
        (b"a: 1", "bytes"),
        (bytearray(b"a: 1"), "bytearray"),
        ({b"a": b"1"}, "dict"),
        (42, "int"),
        (None, "NoneType"),
    ],
)
def test_response_headers_refuse_strings_mappings_and_non_iterables(
    headers: Any, kind: str
) -> None:
    with pytest.raises(RuntimeError, match=f"iterable of \\(bytes, bytes\\) pairs, got {kind}"):
        check_response_headers(headers)


def test_response_header_name_cache_keeps_no_long_names() -> None:
    from aibridge_transport import _rules

    long_name = b"x-" + b"a" * 10_000
    assert check_response_headers([(long_name, b"v")]) == [(long_name, b"v")]
    assert long_name not in _rules._VALID_NAMES


@pytest.mark.parametrize("status", [100, 200, 599])
def test_status_in_range_passes(status: int) -> None:
    assert check_status(status) == status


@pytest.mark.parametrize("status", [99, 600, True, "200", 200.0, None])
def test_status_out_of_range_or_not_an_int_is_refused(status: object) -> None:
    with pytest.raises(RuntimeError, match="status must be an int from 100 to 599"):
        check_status(status)


@pytest.mark.parametrize(
    ("raw", "path"),
    [(b"/a/b?x=1", b"/a/b"), (b"/a", b"/a"), (b"/?", b"/"), (b"/a?b?c", b"/a"), (b"", b"")],
)
def test_path_without_query(raw: bytes, path: bytes) -> None:
    assert path_without_query(raw) == path


# -- what an ASGI app is --------------------------------------------------------------------


async def function_app(scope: Scope, receive: Receive, send: Send) -> None:
    pass


async def app_with_option(scope: Scope, receive: Receive, send: Send, *, option: int) -> None:
    pass


class AppInstance:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pass


class Handlers:
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        pass


def returns_a_coroutine(scope: Scope, receive: Receive, send: Send) -> Any:
    # A sync wrapper that hands back the awaitable: a valid app that no check can tell.
    return function_app(scope, receive, send)


class AwaitableApp:
    """`AwaitableApp(scope, receive, send)` builds an awaitable: an ASGI 3 app, oddly."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pass

    def __await__(self) -> Any:
        return anyio.lowlevel.checkpoint().__await__()


async def homepage(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.mark.parametrize(
    "app",
    [
        function_app,
        functools.partial(app_with_option, option=1),
        AppInstance(),
        Handlers().handle,
        returns_a_coroutine,
        lambda scope, receive, send: function_app(scope, receive, send),
        AwaitableApp,
        Starlette(routes=[Route("/", homepage)]),
        FakeAIBridge(),
    ],
)
def test_asgi_apps_are_accepted(app: Any) -> None:
    check_asgi_app(app)


def test_an_app_class_is_refused_with_the_hint_to_instantiate_it() -> None:
    with pytest.raises(TypeError) as caught:
        check_asgi_app(FakeAIBridge)
    message = str(caught.value)
    assert "async callable `app(scope, receive, send)`" in message
    assert "instantiate it: `FakeAIBridge()`" in message


def test_a_class_that_builds_no_app_is_refused_without_the_hint() -> None:
    with pytest.raises(TypeError) as caught:
        check_asgi_app(dict)
    assert "async callable `app(scope, receive, send)`" in str(caught.value)
    assert "instantiate" not in str(caught.value)


@pytest.mark.parametrize("app", ["http://app", 42, object(), [function_app]])
def test_non_callables_are_refused(app: Any) -> None:
    with pytest.raises(TypeError, match="not callable: an ASGI app is an async callable"):
        check_asgi_app(app)


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    return [b""]


def test_a_callable_that_cannot_take_three_arguments_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be called with \\(scope, receive, send\\)"):
        check_asgi_app(wsgi_app)
