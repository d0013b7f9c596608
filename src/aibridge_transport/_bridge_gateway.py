"""The standalone bridge's side of behaviour §11: identity from headers, behind a gateway key.

The header protocol is coder/coder's standalone AI Gateway's, so that `HTTPTransportFactory`
can reach a Coder deployment and a Coder deployment can reach a bridge behind
`GatewayAuthMiddleware`. The caller sends the identity in `X-Coder-AI-Gateway-*` headers
together with a shared gateway key. The middleware wraps the bridge app: it checks the key in
constant time, strips the headers and hands the identity to the app the way the in-process
factory does (context variables and `scope["extensions"]["aibridge"]`), so the app cannot
tell the two paths apart. Only the middleware ever answers with the error marker
(`X-Coder-AI-Gateway-Error: gateway_key_mismatch`): the app's own responses lose it, so a
provider's 401 can never pass for a gateway key refusal.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import uuid
from collections.abc import Awaitable, Generator, Mapping, Sequence
from typing import Any

from ._bridge_identity import (
    aibridge_extension,
    attributed_workspace,
    check_delegated_api_key_id,
    check_source,
    check_workspace_id,
    identity_context,
)
from ._bridge_paths import split_bridge_path, validate_provider_name
from ._errors import (
    GatewayKeyMismatchError,
    InvalidProviderNameError,
    RedirectRefusedError,
)
from ._rules import CONTROL_BYTES
from .types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DELEGATED_KEY_ID_HEADER",
    "ERROR_HEADER",
    "GATEWAY_KEY_HEADER",
    "GATEWAY_KEY_MISMATCH",
    "HEADER_PREFIX",
    "SOURCE_HEADER",
    "WORKSPACE_ID_HEADER",
    "GatewayAuthMiddleware",
    "GatewayKey",
    "bridge_refusal",
    "encode_gateway_key",
]

logger = logging.getLogger("aibridge_transport")

# coder/coder's names (`coderd/aibridge/delegation.go`), lower-cased as ASGI gives them.
# Every `x-coder-ai-gateway-*` header belongs to the gateway: the caller's factory never
# forwards one its caller set, and the middleware never lets one through to the app.
HEADER_PREFIX = b"x-coder-ai-gateway-"
GATEWAY_KEY_HEADER = b"x-coder-ai-gateway-key"
DELEGATED_KEY_ID_HEADER = b"x-coder-ai-gateway-delegated-key-id"
SOURCE_HEADER = b"x-coder-ai-gateway-source"
WORKSPACE_ID_HEADER = b"x-coder-ai-gateway-workspace-id"
ERROR_HEADER = b"x-coder-ai-gateway-error"
GATEWAY_KEY_MISMATCH = b"gateway_key_mismatch"
_IDENTITY_HEADERS = (
    GATEWAY_KEY_HEADER,
    DELEGATED_KEY_ID_HEADER,
    SOURCE_HEADER,
    WORKSPACE_ID_HEADER,
)


def encode_gateway_key(gateway_key: str | bytes) -> bytes:
    """The key as header bytes; `ValueError` (never quoting the key) when it cannot be one."""
    if not isinstance(gateway_key, str | bytes):
        raise TypeError(f"gateway_key must be a str, not {type(gateway_key).__name__}")
    key = gateway_key.encode("utf-8") if isinstance(gateway_key, str) else bytes(gateway_key)
    if not key:
        raise ValueError("gateway_key must not be empty")
    if len(key.translate(None, CONTROL_BYTES)) != len(key) or key != key.strip():
        raise ValueError("gateway_key must not hold control characters or surrounding spaces")
    return key


class GatewayKey:
    """The gateway key, kept out of sight: its `repr` hides it, and its bytes leave it only
    into a header list (behaviour §11: no traceback's locals, no log line may print it)."""

    __slots__ = ("_key",)

    def __init__(self, gateway_key: str | bytes) -> None:
        self._key = encode_gateway_key(gateway_key)

    def __repr__(self) -> str:
        return "GatewayKey(<hidden>)"

    def add_to(self, headers: list[tuple[bytes, bytes]]) -> None:
        headers.append((GATEWAY_KEY_HEADER, self._key))

    def matches(self, sent: bytes) -> bool:
        """Whether `sent` is this key, compared in constant time."""
        return hmac.compare_digest(sent, self._key)


class _BadIdentity(Exception):
    """Identity headers that no `HTTPTransportFactory` sends (duplicated or malformed)."""


def _single(values: list[bytes], name: bytes) -> bytes | None:
    if not values:
        return None
    if len(values) > 1:
        raise _BadIdentity(f"{name.decode()} sent {len(values)} times")
    return values[0]


def _decode(value: bytes | None, name: bytes) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadIdentity(f"{name.decode()} is not UTF-8") from None


def _text(found: dict[bytes, list[bytes]], name: bytes) -> str | None:
    """The one value of header `name`, decoded, or `None` when it was not sent."""
    return _decode(_single(found[name], name), name)


def _route_path(scope: Scope) -> str:
    # ASGI: `path` holds `root_path` (a server mounted under a prefix); routes start after it.
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path) :]
    return path


def _provider_from_path(path: str) -> str:
    placed = split_bridge_path(path)
    if placed is None:
        raise _BadIdentity("the path is not under either mount's /<provider>/")
    try:
        return validate_provider_name(placed[1])
    except InvalidProviderNameError:
        raise _BadIdentity("the path names no valid provider") from None


def _workspace_id(value: str | None) -> uuid.UUID | None:
    if not value:
        return None  # an empty header is no attribution, as in coder
    try:
        return attributed_workspace(check_workspace_id(value))
    except ValueError:
        raise _BadIdentity(f"{WORKSPACE_ID_HEADER.decode()} is not a UUID") from None


def _is_error_marker(pair: object) -> bool:
    return (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and isinstance(pair[0], bytes)
        and pair[0].lower() == ERROR_HEADER
    )


class _SendWithoutMarker:
    """The app's `send`, minus any error marker in its response headers: only the
    middleware may say `gateway_key_mismatch` (behaviour §11)."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def __call__(self, message: Message) -> None:
        if message.get("type") == "http.response.start":
            headers = message.get("headers")
            if headers is not None and not isinstance(headers, str | bytes | Mapping):
                # Any iterable is taken (behaviour §3); a malformed pair is left for the
                # server to refuse.
                pairs = list(headers)
                message = {**message, "headers": [p for p in pairs if not _is_error_marker(p)]}
        await self._send(message)


class _RunInContext:
    """Awaits `awaitable` with each of its steps run in `context`.

    So the app, and every task it starts (they copy the current context), see the identity
    the middleware set, while nothing the app sets leaks back to the server (behaviour §4).
    """

    __slots__ = ("_awaitable", "_context")

    def __init__(self, awaitable: Awaitable[None], context: contextvars.Context) -> None:
        self._awaitable = awaitable
        self._context = context

    def __await__(self) -> Generator[Any, Any, None]:
        run = self._context.run
        steps = run(self._awaitable.__await__)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                if thrown is None:
                    yielded = run(steps.send, sent)
                else:
                    error, thrown = thrown, None
                    yielded = run(steps.throw, error)
            except StopIteration:
                return
            try:
                sent = yield yielded
            except GeneratorExit:
                run(steps.close)
                raise
            except BaseException as exc:
                thrown = exc


class GatewayAuthMiddleware:
    """
    ASGI middleware for a standalone bridge: trusts identity headers only with the gateway key.

    ```python
    app = GatewayAuthMiddleware(bridge_app, gateway_key=os.environ["AIBRIDGE_GATEWAY_KEY"])
    uvicorn.run(app, host="0.0.0.0", port=8080)
    ```

    The header protocol is coder/coder's standalone AI Gateway's, and the bridge answers
    under both mounts (`/api/v2/ai-gateway/<provider>/...` and `/api/v2/aibridge/...`).

    - A request with a valid `X-Coder-AI-Gateway-Key` loses its `X-Coder-AI-Gateway-*`
      headers and reaches the app with the identity they carried, as the in-process factory
      sets it: the context variables (`source_from_context()`,
      `delegated_api_key_id_from_context()`, `delegated_attribution_from_context()`) and
      `scope["extensions"]["aibridge"]`. Without a delegated key id it has no identity.
    - A request with any `X-Coder-AI-Gateway-*` identity header but no valid key is answered
      `401` with `X-Coder-AI-Gateway-Error: gateway_key_mismatch`; the app is not called.
      Duplicated or malformed identity headers (a workspace id that is not a UUID) are
      answered `400`.
    - A request without `X-Coder-AI-Gateway-*` headers passes through untouched, with no
      identity. An `X-Coder-AI-Gateway-Error` header is removed from every request, and
      from every response of the app: only the middleware sends one.
    - Lifespan scopes pass through; websocket scopes lose their `X-Coder-AI-Gateway-*`
      headers and never carry an identity.

    Arguments:
        app: The bridge's ASGI app.
        gateway_key: The secret shared with the callers' `HTTPTransportFactory`, or several
            accepted at once (while a new key rolls out to the callers).
    """

    def __init__(self, app: ASGIApp, gateway_key: str | bytes | Sequence[str | bytes]) -> None:
        self.app = app
        keys = [gateway_key] if isinstance(gateway_key, str | bytes) else list(gateway_key)
        if not keys:
            raise ValueError("gateway_key must not be empty")
        self._gateway_keys = tuple(GatewayKey(key) for key in keys)

    def _is_valid(self, sent: bytes) -> bool:
        # Every key is compared, so the time taken says nothing about which one matched.
        valid = False
        for key in self._gateway_keys:
            valid |= key.matches(sent)
        return valid

    def __repr__(self) -> str:
        return f"{type(self).__name__}(app={self.app!r}, gateway_key=<hidden>)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        app_send = _SendWithoutMarker(send) if kind == "http" else send
        if not any(name.lower().startswith(HEADER_PREFIX) for name, _ in scope["headers"]):
            await self.app(scope, receive, app_send)
            return
        # Read in a frame of its own, which has ended before the app runs, and `scope` rebound
        # to the copy without the identity headers: no local of this frame holds the key the
        # client sent, should the app's error be rendered with the locals of every frame
        # (behaviour §11).
        scope, context, refusal = self._admit(scope)
        if refusal is not None:
            await _refuse(send, refusal)
        elif context is None:
            await self.app(scope, receive, app_send)
        else:
            await _RunInContext(self.app(scope, receive, app_send), context)

    def _admit(self, scope: Scope) -> tuple[Scope, contextvars.Context | None, _Refusal | None]:
        """The scope the app gets, the context it runs in, and why it is refused (if it is)."""
        found: dict[bytes, list[bytes]] = {name: [] for name in _IDENTITY_HEADERS}
        delegated = False
        kept: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered.startswith(HEADER_PREFIX):
                # The error marker alone asks for nothing: it is dropped, as in coder.
                delegated = delegated or lowered != ERROR_HEADER
                if lowered in found:
                    found[lowered].append(value)
            else:
                kept.append((name, value))
        scope = dict(scope)
        scope["headers"] = kept
        if scope["type"] == "websocket" or not delegated:
            return scope, None, None

        keys = found[GATEWAY_KEY_HEADER]
        if len(keys) != 1 or not self._is_valid(keys[0]):
            logger.warning(
                "refused %s %r from %s: missing or wrong gateway key",
                scope.get("method"),
                scope.get("path"),
                scope.get("client"),
            )
            return scope, None, _KEY_MISMATCH
        try:
            key_id = _text(found, DELEGATED_KEY_ID_HEADER)
            source = _text(found, SOURCE_HEADER)
            workspace_id = _workspace_id(_text(found, WORKSPACE_ID_HEADER))
            provider = None
            if key_id:
                check_delegated_api_key_id(key_id)
                if source is not None:
                    check_source(source)
                provider = _provider_from_path(_route_path(scope))
        except (_BadIdentity, ValueError) as exc:
            # Our own reasons name headers, never their values (behaviour §7).
            reason = str(exc) if isinstance(exc, _BadIdentity) else "a header value not allowed"
            logger.warning(
                "refused %s %r from %s: %s",
                scope.get("method"),
                scope.get("path"),
                scope.get("client"),
                reason,
            )
            return scope, None, _INVALID_IDENTITY

        if not key_id or provider is None:
            # Authenticated, but nobody to act for: the app sees no identity (behaviour §11).
            return scope, identity_context(None, None), None
        extensions = dict(scope.get("extensions") or {})
        extensions["aibridge"] = aibridge_extension(provider, source, key_id, workspace_id)
        scope["extensions"] = extensions
        return scope, identity_context(source, key_id, workspace_id), None


class _Refusal:
    """What the middleware answers instead of calling the app."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, error: bytes | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        if error is not None:
            self.headers.append((ERROR_HEADER, error))


# The two answers coder's gateway gives: only the key refusal carries the error marker, the
# one refusal its callers may retry.
_KEY_MISMATCH = _Refusal(
    401, b"AI Gateway authentication failed: gateway key mismatch", GATEWAY_KEY_MISMATCH
)
_INVALID_IDENTITY = _Refusal(400, b"invalid AI Gateway delegation metadata")


async def _refuse(send: Send, refusal: _Refusal) -> None:
    await send(
        {"type": "http.response.start", "status": refusal.status, "headers": [*refusal.headers]}
    )
    await send({"type": "http.response.body", "body": refusal.body})


def bridge_refusal(response: Any) -> Exception | None:
    """The error for a bridge response the caller must not get, or `None`."""
    status: int = response.status_code
    if 300 <= status < 400 and status != 304:
        # Redirects are refused, never followed (behaviour §11); a 304 answers a
        # conditional request and points nowhere.
        return RedirectRefusedError(status, response.headers.get("location"))
    if status == 401 and response.headers.get(ERROR_HEADER.decode()) == (
        GATEWAY_KEY_MISMATCH.decode()
    ):
        return GatewayKeyMismatchError()
    return None
