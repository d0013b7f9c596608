"""What HTTP and the bridge accept: every check on names, values and apps, in one place.

A server refuses a malformed request before any app runs, and a client refuses a malformed
response; without a socket in between, the transport does both, with the rules of h11 (what
uvicorn and httpx run on). Header names are RFC 9110 tokens in both directions, from one
table. Header values hold no CR, LF or NUL. Identity values (the source and the delegated API
key id) travel as header values over HTTP and as log fields everywhere, so they hold no
control character at all and no surrounding whitespace, which h11 would strip or refuse on
one path and not on the other (behaviour §4).

The checks on the per-request path come in two speeds: one pass in C over everything (a join
and a `translate`), and a loop that runs only when that pass fails, to name the culprit.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ._errors import InvalidIdentityError, InvalidRequestHeaderError

__all__ = [
    "CONTROL_BYTES",
    "MAX_REQUEST_HEADER_BYTES",
    "TOKEN_CHARS",
    "check_asgi_app",
    "check_identity",
    "check_request_headers",
    "check_response_headers",
    "check_status",
    "declared_body_length",
    "has_control_character",
    "is_token",
    "path_without_query",
]

# RFC 9110 section 5.6.2: tchar.
TOKEN_CHARS: Final = (
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

# C0 and DEL, as bytes: what an identity header value or a gateway key may not hold.
CONTROL_BYTES: Final = bytes(range(0x20)) + b"\x7f"

# C0, DEL and C1, as text: none may reach a log line, a path or an identity header.
_CONTROL_CHARACTER: Final = re.compile("[\x00-\x1f\x7f-\x9f]")

# The size bound is above the request heads that uvicorn (h11) and nginx accept, so whatever
# a server takes passes here too.
MAX_REQUEST_HEADER_BYTES: Final = 64 * 1024


def is_token(name: bytes) -> bool:
    """Whether `name` is an HTTP token: not empty, tchar only."""
    # Deleting every token byte in C leaves nothing of a valid name.
    return bool(name) and not name.translate(None, TOKEN_CHARS)


def _value_is_clean(value: bytes) -> bool:
    return b"\r" not in value and b"\n" not in value and b"\x00" not in value


def has_control_character(text: str) -> bool:
    """Whether `text` holds a C0 or C1 control character or DEL."""
    return _CONTROL_CHARACTER.search(text) is not None


def path_without_query(raw_path: bytes) -> bytes:
    """The path of an httpx `raw_path` (which carries the query too), percent-encoded."""
    return raw_path.partition(b"?")[0]


# -- request headers ------------------------------------------------------------------------


def check_request_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request headers as the scope carries them, or `InvalidRequestHeaderError`."""
    # The same checks over all names and all values at once, in C. Only when one fails does
    # the loop below run, to name the first offending header.
    names = [name for name, _ in raw]
    all_names = b"".join(names)
    all_values = b"".join([value for _, value in raw])
    if (
        b"" not in names
        and not all_names.translate(None, TOKEN_CHARS)
        and _value_is_clean(all_values)
        and len(all_names) + len(all_values) <= MAX_REQUEST_HEADER_BYTES
    ):
        return [(name.lower(), value) for name, value in raw]
    headers: list[tuple[bytes, bytes]] = []
    total = 0
    for name, value in raw:
        if not is_token(name):
            raise InvalidRequestHeaderError(
                f"request header name {name!r} is not a valid HTTP token"
            )
        if not _value_is_clean(value):
            raise InvalidRequestHeaderError(
                f"request header {name!r} has CR, LF or NUL in its value"
            )
        total += len(name) + len(value)
        if total > MAX_REQUEST_HEADER_BYTES:
            raise InvalidRequestHeaderError(
                f"request headers exceed {MAX_REQUEST_HEADER_BYTES} bytes (names and values)"
            )
        headers.append((name.lower(), value))
    return headers


# -- the response start ---------------------------------------------------------------------

# Header names an app sends are a small set (mostly constants of its framework): each is
# checked once. Bounded in entries and in the length of what it keeps, so an app that makes
# up names cannot grow it without end (behaviour §6).
_VALID_NAMES: set[bytes] = set()
_VALID_NAMES_MAX = 1024
_VALID_NAME_MAX_LENGTH = 64


def _header_bytes(part: object, header: object) -> bytes:
    # bytes per the ASGI spec; str tolerated as httpx.ASGITransport does (latin-1).
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        try:
            return part.encode("latin-1")
        except UnicodeEncodeError:
            pass
    raise RuntimeError(f"ASGI 'http.response.start' header {header!r} is not a (bytes, bytes) pair")


def _header_pairs(headers: object) -> Iterable[Any]:
    # Any iterable of pairs, as uvicorn and httpx take (Sanic sends a generator); a string or
    # a mapping iterates too, but never as pairs (behaviour §5).
    if isinstance(headers, str | bytes | bytearray | memoryview | Mapping) or not isinstance(
        headers, Iterable
    ):
        raise RuntimeError(
            "ASGI 'http.response.start' headers must be an iterable of (bytes, bytes) pairs, "
            f"got {type(headers).__name__}"
        )
    return headers


def check_response_headers(headers: object) -> list[tuple[bytes, bytes]]:
    """The headers of an `http.response.start` as a new list, or `RuntimeError` naming the fault."""
    pairs: Iterable[Any] = headers if isinstance(headers, list | tuple) else _header_pairs(headers)
    checked: list[tuple[bytes, bytes]] = []
    for header in pairs:
        try:
            name, value = header
        except (TypeError, ValueError):
            raise RuntimeError(
                f"ASGI 'http.response.start' header {header!r} is not a (bytes, bytes) pair"
            ) from None
        if type(name) is not bytes:
            name = _header_bytes(name, header)
        if type(value) is not bytes:
            value = _header_bytes(value, header)
        if name not in _VALID_NAMES:
            if not is_token(name):
                raise RuntimeError(f"ASGI response header name {name!r} is not a valid token")
            if len(_VALID_NAMES) < _VALID_NAMES_MAX and len(name) <= _VALID_NAME_MAX_LENGTH:
                _VALID_NAMES.add(name)
        if not _value_is_clean(value):
            raise RuntimeError(f"ASGI response header {name!r} has CR, LF or NUL in its value")
        checked.append((name, value))
    return checked


def check_status(status: object) -> int:
    """The status of an `http.response.start`, or `RuntimeError` naming the fault."""
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise RuntimeError(
            f"ASGI 'http.response.start' status must be an int from 100 to 599, got {status!r}"
        )
    return status


# -- identity -------------------------------------------------------------------------------


def check_identity(value: object, what: str) -> str:
    """Return `value` as a plain `str`, or raise saying what is wrong with it.

    The message never quotes the value: a delegated key id is an identity (behaviour §4).
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if has_control_character(value):
        raise InvalidIdentityError(f"{what} holds a control character")
    if value != value.strip():
        raise InvalidIdentityError(f"{what} has surrounding whitespace")
    return str(value)


# -- the app --------------------------------------------------------------------------------


def _is_async_callable(obj: object) -> bool:
    # iscoroutinefunction sees through functools.partial and bound methods.
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 - the method itself is what is inspected
    )


def _takes_three_arguments(app: object) -> bool:
    try:
        signature = inspect.signature(app)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True  # cannot tell (a builtin, say): not clearly wrong
    try:
        signature.bind(None, None, None)
    except TypeError:
        return False
    return True


def check_asgi_app(app: object) -> None:
    """Refuse what is clearly not an ASGI app, with a `TypeError` that says what one is.

    Only the clear cases: something not callable, a class (whose call builds an instance, not
    a response), or a callable that cannot take `(scope, receive, send)`. A plain function
    that might return an awaitable is accepted: a false refusal would be worse.
    """
    what = "an ASGI app is an async callable `app(scope, receive, send)`"
    if inspect.isclass(app):
        if hasattr(app, "__await__"):
            return  # `App(scope, receive, send)` builds an awaitable: an odd, valid app
        name = app.__qualname__
        if _is_async_callable(app.__call__):
            raise TypeError(f"got the class {name}, not an app: {what}; instantiate it: `{name}()`")
        raise TypeError(f"got the class {name}, not an app: {what}")
    if not callable(app):
        raise TypeError(f"got {type(app).__name__}, which is not callable: {what}")
    if not _is_async_callable(app) and not _takes_three_arguments(app):
        raise TypeError(f"got {app!r}, which cannot be called with (scope, receive, send): {what}")


# A response with one of these statuses has no body whatever its headers say (RFC 9110).
_NO_BODY_STATUSES: Final = frozenset({204, 304})


def declared_body_length(status: int, headers: list[tuple[bytes, bytes]]) -> int:
    """The body length the response's `content-length` binds it to; -1 for none.

    -1 also for a status that has no body (1xx, 204, 304) and for a malformed value, which is
    then not enforced (behaviour §5).
    """
    if status < 200 or status in _NO_BODY_STATUSES:
        return -1
    for name, value in headers:
        if len(name) == 14 and name.lower() == b"content-length":
            return int(value) if value.isdigit() else -1
    return -1
