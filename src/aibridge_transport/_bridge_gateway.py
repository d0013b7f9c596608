"""The standalone bridge's side of behaviour §11: identity from headers, behind a gateway key.

`HTTPTransportFactory` sends the caller's identity in `X-AIBridge-*` headers together with a
shared gateway key. `GatewayAuthMiddleware` wraps the bridge app: it checks the key in
constant time, strips the headers and hands the identity to the app the way the in-process
factory does (context variables and `scope["extensions"]["aibridge"]`), so the app cannot
tell the two paths apart.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
from collections.abc import Awaitable, Generator, Sequence
from typing import Any

from ._bridge_identity import check_delegated_api_key_id, check_source, identity_context
from ._bridge_paths import AIBRIDGE_ROOT_PATH, validate_provider_name
from ._errors import (
    GatewayKeyMismatchError,
    InvalidProviderNameError,
    RedirectRefusedError,
)
from ._rules import CONTROL_BYTES
from .types import ASGIApp, Receive, Scope, Send

__all__ = [
    "DELEGATED_KEY_ID_HEADER",
    "ERROR_HEADER",
    "GATEWAY_KEY_HEADER",
    "GATEWAY_KEY_MISMATCH",
    "HEADER_PREFIX",
    "SOURCE_HEADER",
    "GatewayAuthMiddleware",
    "GatewayKey",
    "bridge_refusal",
    "encode_gateway_key",
]

logger = logging.getLogger("aibridge_transport")

# Every `x-aibridge-*` header belongs to the bridge: a caller never sets one, and the
# middleware never lets one through to the app from a request it has not authenticated.
HEADER_PREFIX = b"x-aibridge-"
GATEWAY_KEY_HEADER = b"x-aibridge-gateway-key"
DELEGATED_KEY_ID_HEADER = b"x-aibridge-delegated-key-id"
SOURCE_HEADER = b"x-aibridge-source"
ERROR_HEADER = b"x-aibridge-error"
GATEWAY_KEY_MISMATCH = b"gateway_key_mismatch"
_INVALID_IDENTITY = b"invalid_identity"
_IDENTITY_HEADERS = (GATEWAY_KEY_HEADER, DELEGATED_KEY_ID_HEADER, SOURCE_HEADER)
_ROOT_PREFIX = AIBRIDGE_ROOT_PATH + "/"


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


def _route_path(scope: Scope) -> str:
    # ASGI: `path` holds `root_path` (a server mounted under a prefix); routes start after it.
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path) :]
    return path


def _provider_from_path(path: str) -> str:
    if not path.startswith(_ROOT_PREFIX):
        raise _BadIdentity(f"the path is not under {AIBRIDGE_ROOT_PATH}/<provider>/")
    try:
        return validate_provider_name(path[len(_ROOT_PREFIX) :].split("/", 1)[0])
    except InvalidProviderNameError:
        raise _BadIdentity("the path names no valid provider") from None


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

    - A request with a valid `X-AIBridge-Gateway-Key` loses its `X-AIBridge-*` headers and
      reaches the app with the identity they carried, as the in-process factory sets it: the
      context variables (`source_from_context()`, `delegated_api_key_id_from_context()`)
      and `scope["extensions"]["aibridge"]`. Without a delegated key id it has no identity.
    - A request with any `X-AIBridge-*` header but no valid key is answered `401` with
      `X-AIBridge-Error: gateway_key_mismatch`; the app is not called.
    - A request without `X-AIBridge-*` headers passes through untouched, with no identity.
    - Lifespan scopes pass through; websocket scopes lose their `X-AIBridge-*` headers and
      never carry an identity.

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
        if kind not in ("http", "websocket") or not any(
            name.startswith(HEADER_PREFIX) for name, _ in scope["headers"]
        ):
            await self.app(scope, receive, send)
            return
        # Read in a frame of its own, which has ended before the app runs, and `scope` rebound
        # to the copy without the identity headers: no local of this frame holds the key the
        # client sent, should the app's error be rendered with the locals of every frame
        # (behaviour §11).
        scope, context, refusal = self._admit(scope)
        if refusal is not None:
            await _refuse(send, refusal)
        elif context is None:
            await self.app(scope, receive, send)
        else:
            await _RunInContext(self.app(scope, receive, send), context)

    def _admit(self, scope: Scope) -> tuple[Scope, contextvars.Context | None, _Refusal | None]:
        """The scope the app gets, the context it runs in, and why it is refused (if it is)."""
        found: dict[bytes, list[bytes]] = {name: [] for name in _IDENTITY_HEADERS}
        kept: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered.startswith(HEADER_PREFIX):
                if lowered in found:
                    found[lowered].append(value)
            else:
                kept.append((name, value))
        scope = dict(scope)
        scope["headers"] = kept
        if scope["type"] == "websocket":
            return scope, None, None

        keys = found[GATEWAY_KEY_HEADER]
        if len(keys) != 1 or not self._is_valid(keys[0]):
            logger.warning(
                "refused %s %r from %s: missing or wrong gateway key",
                scope.get("method"),
                scope.get("path"),
                scope.get("client"),
            )
            return scope, None, _Refusal(401, GATEWAY_KEY_MISMATCH, b"gateway key mismatch")
        try:
            key_id = _decode(
                _single(found[DELEGATED_KEY_ID_HEADER], DELEGATED_KEY_ID_HEADER),
                DELEGATED_KEY_ID_HEADER,
            )
            source = _decode(_single(found[SOURCE_HEADER], SOURCE_HEADER), SOURCE_HEADER)
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
            return scope, None, _Refusal(400, _INVALID_IDENTITY, b"invalid identity headers")

        if not key_id or provider is None:
            # Authenticated, but nobody to act for: the app sees no identity (behaviour §11).
            return scope, identity_context(None, None), None
        extensions = dict(scope.get("extensions") or {})
        extensions["aibridge"] = {
            "provider": provider,
            "source": source,
            "delegated_api_key_id": key_id,
        }
        scope["extensions"] = extensions
        return scope, identity_context(source, key_id), None


class _Refusal:
    """What the middleware answers instead of calling the app."""

    __slots__ = ("body", "error", "status")

    def __init__(self, status: int, error: bytes, body: bytes) -> None:
        self.status = status
        self.error = error
        self.body = body


async def _refuse(send: Send, refusal: _Refusal) -> None:
    body = refusal.body
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (ERROR_HEADER, refusal.error),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
