"""`FakeAIBridge`: an ASGI app that answers like the AI providers behind the bridge routes."""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._bridge_identity import (
    delegated_api_key_id_from_context,
    delegated_attribution_from_context,
    source_from_context,
)
from .._bridge_paths import AI_GATEWAY_ROOT_PATH, AIBRIDGE_ROOT_PATH, split_bridge_path
from ..types import Receive, Scope, Send
from ._asgi import serve_lifespan
from ._formats import (
    AnthropicMessages,
    Format,
    OpenAIChat,
    OpenAIResponses,
    anthropic_error,
    openai_error,
    plan_reply,
)
from ._models import MODEL_SNAPSHOTS
from ._record import RecordedRequest, redact_headers
from ._script import Chunking, Crash, HTTPError, Reply, Script, SimulatedCrash, Stall
from ._scripted import Responder, ScriptBook, When
from ._sse import ChunkWriter
from ._tokens import input_tokens
from ._validate import (
    ANTHROPIC_MAX_REQUEST_BYTES,
    Invalid,
    validate_anthropic_messages,
    validate_openai_chat,
    validate_openai_responses,
)
from ._wake import DEFAULT_SYNC_TIMEOUT, Waiters

__all__ = ["DEFAULT_PROVIDERS", "FakeAIBridge", "ProviderAPI"]

ProviderAPI = Literal["openai", "anthropic"]
"""The API a provider speaks."""

DEFAULT_PROVIDERS: Final[Mapping[str, ProviderAPI]] = {"openai": "openai", "anthropic": "anthropic"}

_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_DEFAULT_MODEL: Final = "fake-model"
_REQUEST_ID_HEADERS: Final[Mapping[ProviderAPI, str]] = {
    "openai": "x-request-id",
    "anthropic": "request-id",
}

# The routes each API serves: (method, path under the provider) to the handler's name.
_ROUTES: Final[Mapping[ProviderAPI, Mapping[tuple[str, str], str]]] = {
    "openai": {
        ("POST", "/v1/chat/completions"): "_chat",
        ("POST", "/v1/responses"): "_responses",
        ("GET", "/v1/models"): "_models",
    },
    "anthropic": {
        ("POST", "/v1/messages"): "_messages",
        ("POST", "/v1/messages/count_tokens"): "_count_tokens",
        ("GET", "/v1/models"): "_models",
    },
}

_NOT_JSON: Final = (
    "We could not parse the JSON body of your request. The API expects a JSON object as "
    "the body, but what was sent was not valid JSON."
)
_TOO_LARGE: Final = "Request exceeds the maximum allowed number of bytes."

Check = Callable[[Mapping[str, Any], Mapping[str, str]], None]


class _NotJSON(ValueError):
    """A number JSON does not have (`NaN`, `Infinity`, or one too large for a float)."""


def _no_constant(name: str) -> Any:
    raise _NotJSON(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJSON(text)
    return value


def _parse(raw: bytes) -> Any:
    """Strict JSON: Python's parser takes `NaN` and `Infinity`, which JSON has not."""
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)


def _route_path(scope: Scope) -> str:
    """The path under the app's mount point: servers such as uvicorn prefix `root_path`."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def _served(api: ProviderAPI) -> str:
    return ", ".join(f"{method} {path}" for method, path in _ROUTES[api])


_MOUNTS: Final = f"{AI_GATEWAY_ROOT_PATH}/<instance> (or {AIBRIDGE_ROOT_PATH}/<instance>)"


class FakeAIBridge:
    """
    An ASGI app that answers like the AI providers under `/api/v2/ai-gateway/<instance>/...`
    and its alias `/api/v2/aibridge/<instance>/...`: OpenAI chat completions and Responses,
    Anthropic messages (also `?beta=true`) and their token count, and a models listing.
    Streams use each provider's SSE framing, one ASGI body message per event unless
    `chunking` says otherwise.

    Requests are checked as the real APIs check them today: a request they would refuse
    gets their 400 (`invalid_request_error`, naming what is wrong; Anthropic's 413 over its
    size limit; Anthropic's rules of the `anthropic-version` the request names) and takes no
    reply from the queue. An unknown provider instance or route gets a 404 in the provider's
    error shape, naming the instance.

    Replies come from a queue, one per request on every route (`queue(...)`); when it is
    empty, `default` answers. Every request is recorded in `requests`, with the source,
    delegated key id and attribution the app saw and how its answer ended.

    ```python
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="Hi there"), HTTPError(status=429))
    factory = InProcessTransportFactory(bridge)
    ```

    Arguments:
        default: The reply used when the queue is empty.
        validate: Check requests as the real APIs do (`False` answers anything that parses).
        chunking: How stream events are cut into body chunks (default: one event each).
        providers: Provider instance names to the API each speaks, as a deployment names
            its providers (`{"openai-eu": "openai"}`; default: `openai` and `anthropic`,
            `DEFAULT_PROVIDERS`); an instance not listed gets a 404.
        model_snapshots: Model aliases to the dated snapshot an answer names, as the real
            APIs report them (default: `MODEL_SNAPSHOTS`); a name not listed is echoed.
        strict_scripts: The pytest fixtures fail the test when a scripted reply (queued or
            added with `on`) never answered a request (`assert_scripts_used()`).
    """

    def __init__(
        self,
        default: Script | None = None,
        *,
        validate: bool = True,
        chunking: Chunking | None = None,
        providers: Mapping[str, ProviderAPI] | None = None,
        model_snapshots: Mapping[str, str] | None = None,
        strict_scripts: bool = False,
    ) -> None:
        self.default: Script = default if default is not None else Reply()
        self.validate = validate
        self.chunking = chunking
        self.providers: dict[str, ProviderAPI] = dict(
            providers if providers is not None else DEFAULT_PROVIDERS
        )
        self.model_snapshots: dict[str, str] = dict(
            model_snapshots if model_snapshots is not None else MODEL_SNAPSHOTS
        )
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Script] = deque()
        self._arrivals = Waiters()
        self._served = 0
        self.strict_scripts = strict_scripts
        self._book = ScriptBook()

    def on(self, when: When, *replies: Script | Responder, repeat: bool = False) -> None:
        """Answer the requests `when` matches with `replies`, in order (each once, or in a
        cycle with `repeat=True`); a reply may be a function of the request returning one.
        Rules are tried in the order added, before the queue."""
        self._book.add(when, replies, repeat=repeat)

    def respond(self, responder: Responder) -> None:
        """Answer every request (that no earlier rule takes) with `responder(request)`."""
        self._book.add(When(), [responder], repeat=True)

    def assert_scripts_used(self) -> None:
        """Fail if a queued reply or a rule added with `on` never answered a request."""
        unused = self._book.unused()
        if self._queue:
            unused.append(f"the queue (replies left: {len(self._queue)})")
        if unused:
            raise AssertionError("scripted replies never used: " + "; ".join(unused))

    def queue(self, *replies: Script) -> None:
        """Add replies to the queue; each request takes the next one."""
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many queued replies no request has taken yet."""
        return len(self._queue)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (`IndexError` when there is none)."""
        return self.requests[-1]

    async def wait_for_request(self, count: int = 1) -> RecordedRequest:
        """Wait until `count` requests have arrived; return the `count`-th."""
        await self._arrivals.wait_for(lambda: len(self.requests) >= count)
        return self.requests[count - 1]

    def wait_for_request_sync(
        self, count: int = 1, *, timeout: float = DEFAULT_SYNC_TIMEOUT
    ) -> RecordedRequest:
        """`wait_for_request()` for sync tests: block until `count` requests have arrived and
        return the `count`-th; `TimeoutError` after `timeout` seconds."""
        self._arrivals.wait_for_blocking(
            lambda: len(self.requests) >= count, timeout, f"request {count} did not arrive"
        )
        return self.requests[count - 1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        response = await self._route(Request(scope, receive))
        await response(scope, receive, send)

    async def _route(self, request: Request) -> Response:
        self._served += 1
        number = self._served
        path = _route_path(request.scope)
        placed = split_bridge_path(path)
        provider, rest = (placed[1], placed[2]) if placed is not None else ("", "")
        api = self.providers.get(provider) if placed is not None else None
        if api is None:
            served = "; ".join(
                f"'{name}' ({kind}: {_served(kind)})" for name, kind in self.providers.items()
            )
            asked = (
                f"no provider instance named '{provider}'"
                if placed is not None
                else "nothing outside its mounts"
            )
            message = (
                f"The fake bridge serves {asked} (path {path}). It serves, under "
                f"{_MOUNTS}: {served}."
            )
            body = openai_error(404, message, code="unknown_provider")
            return _json(body, 404, _Call(request, "openai", number))
        handler_name = _ROUTES[api].get((request.method, rest or "/"))
        if handler_name is None:
            message = (
                f"Invalid URL ({request.method} {path}): the provider instance '{provider}' "
                f"({api}) serves {_served(api)}."
            )
            call = _Call(request, api, number)
            return _json(call.error_body(404, message), 404, call)
        handler: Callable[[_Call], Awaitable[Response]] = getattr(self, handler_name)
        return await handler(_Call(request, api, number))

    def _next_script(self, record: RecordedRequest) -> Script:
        scripted = self._book.take(record)
        if scripted is not None:
            return scripted
        return self._queue.popleft() if self._queue else self.default

    async def _record(self, request: Request) -> tuple[RecordedRequest, bool, int]:
        """Record the request; also say whether its body parsed as JSON, and its size."""
        raw = await request.body()
        parsed = True
        try:
            body = _parse(raw) if raw else None
        except (ValueError, RecursionError):
            # Nesting deeper than the parser's recursion limit is no JSON the API takes either.
            body, parsed = None, False
        extensions = request.scope.get("extensions", {}).get("aibridge")
        placed = split_bridge_path(_route_path(request.scope))
        record = RecordedRequest(
            provider=placed[1] if placed is not None else "",
            method=request.method,
            path=request.scope["path"],
            query=request.scope["query_string"].decode("latin-1"),
            headers=redact_headers(request.scope["headers"]),
            body=body,
            source=source_from_context(),
            delegated_api_key_id=delegated_api_key_id_from_context(),
            workspace_id=delegated_attribution_from_context(),
            extensions=dict(extensions) if extensions is not None else None,
        )
        with self._arrivals.lock:
            self.requests.append(record)
            self._arrivals.wake_all()
        return record, parsed and (raw == b"" or isinstance(body, dict)), len(raw)

    def _refuse(
        self, record: RecordedRequest, call: _Call, invalid: Invalid, status: int = 400
    ) -> Response:
        record.status = status
        record.error = invalid.message
        record._end("completed")
        body = call.error_body(status, invalid.message, param=invalid.param, code=invalid.code)
        return _json(body, status, call)

    async def _checked(self, call: _Call, check: Check) -> tuple[RecordedRequest, Response | None]:
        """Record the request and check it; return the 4xx when the real API would refuse."""
        record, parsed, size = await self._record(call.request)
        if not self.validate:
            return record, None
        if call.api == "anthropic" and size > ANTHROPIC_MAX_REQUEST_BYTES:
            # Anthropic's size limit answers before any check of the content.
            return record, self._refuse(record, call, Invalid(_TOO_LARGE), 413)
        try:
            if not parsed or not isinstance(record.body, dict):
                raise Invalid(_NOT_JSON)
            check(record.body, record.headers)
        except Invalid as invalid:
            return record, self._refuse(record, call, invalid)
        return record, None

    async def _chat(self, call: _Call) -> Response:
        return await self._answer(call, OpenAIChat, lambda body, _: validate_openai_chat(body))

    async def _responses(self, call: _Call) -> Response:
        def check(body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
            validate_openai_responses(body)

        return await self._answer(call, OpenAIResponses, check)

    async def _messages(self, call: _Call) -> Response:
        return await self._answer(call, AnthropicMessages, validate_anthropic_messages)

    async def _count_tokens(self, call: _Call) -> Response:
        def check(body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
            validate_anthropic_messages(body, headers, count_tokens=True)

        record, refused = await self._checked(call, check)
        if refused is not None:
            return refused
        body = record.body if isinstance(record.body, dict) else {}
        count = {"input_tokens": input_tokens(body)}
        return self._whole(call, record, self._next_script(record), lambda: count)

    async def _models(self, call: _Call) -> Response:
        record, _, _ = await self._record(call.request)
        if "anthropic-version" in record.headers:
            # An Anthropic client reads Anthropic's listing, whatever the provider speaks.
            call = _Call(call.request, "anthropic", call.number)
        return self._whole(call, record, self._next_script(record), lambda: _listing(call))

    def _whole(
        self,
        call: _Call,
        record: RecordedRequest,
        script: Script,
        answer: Callable[[], Any],
        tokens: int = 0,
    ) -> Response:
        """An answer that is one JSON body (a request that does not stream, a token count,
        a listing), or the failure its script asks for: every route is scriptable."""
        if isinstance(script, HTTPError):
            record.status = script.status
            record.error = script.message
            record._end("completed")
            body = call.error_body(
                script.status,
                script.message,
                type=script.type,
                code=script.code,
                param=script.param,
            )
            return _json(body, script.status, call, **script.headers)
        if isinstance(script, Crash):
            record._end("crashed")
            raise SimulatedCrash(script.message)
        if isinstance(script, Stall) or script.ending == "stall":
            return _Answer(record, stall=True)
        if script.ending == "crash":
            record._end("crashed")
            raise SimulatedCrash("simulated crash before the response")
        if script.ending == "error_event":
            record.status = 500
            record.error = "simulated error"
            record._end("completed")
            return _json(call.error_body(500, "simulated error"), 500, call)
        record.status = 200
        record.tokens_sent = tokens
        record._end("completed")
        return _json(answer(), 200, call)

    def _model_named(self, body: Mapping[str, Any], script: Script) -> str:
        """The model an answer names: the scripted one, or the snapshot of the one asked for."""
        if isinstance(script, Reply) and script.model is not None:
            return script.model
        asked = body.get("model")
        if not isinstance(asked, str) or not asked:
            return _DEFAULT_MODEL
        return self.model_snapshots.get(asked, asked)

    async def _answer(
        self,
        call: _Call,
        format_class: type[Format],
        check: Check,
    ) -> Response:
        record, refused = await self._checked(call, check)
        if refused is not None:
            return refused
        script = self._next_script(record)
        body: dict[str, Any] = record.body if isinstance(record.body, dict) else {}
        model = self._model_named(body, script)
        reply = script if isinstance(script, Reply) else Reply()
        answer = format_class(call.number, model, body, plan_reply(reply, body))
        if not isinstance(script, Reply) or not record.stream:
            return self._whole(call, record, script, answer.whole, len(answer.plan.tokens))
        headers = {answer.request_id_header: call.request_id}
        chunking = script.chunking if script.chunking is not None else self.chunking
        return _Answer(record, reply=script, answer=answer, headers=headers, chunking=chunking)


@dataclass(frozen=True)
class _Call:
    """One request being answered: what it asked, the API it reached, its number."""

    request: Request
    api: ProviderAPI
    number: int

    @property
    def request_id(self) -> str:
        return f"req_fake_{self.number}"

    def error_body(self, status: int, message: str, **fields: Any) -> dict[str, Any]:
        if self.api == "anthropic":
            return anthropic_error(
                status, message, request_id=self.request_id, type=fields.get("type")
            )
        return openai_error(status, message, **fields)


def _listing(call: _Call) -> dict[str, Any]:
    """`GET /v1/models` in the API's shape."""
    if call.api == "anthropic":
        model = {
            "type": "model",
            "id": _DEFAULT_MODEL,
            "display_name": "Fake model",
            "created_at": "2026-01-01T00:00:00Z",
            "lifecycle": "active",
        }
        first = last = _DEFAULT_MODEL
        return {"data": [model], "has_more": False, "first_id": first, "last_id": last}
    entry = {"id": _DEFAULT_MODEL, "object": "model", "created": 1767225600, "owned_by": "fake"}
    return {"object": "list", "data": [entry]}


def _json(body: Any, status: int, call: _Call, **headers: str) -> JSONResponse:
    """A JSON answer with the provider's request id header, as every real answer has; answers
    and errors alike say `application/json`, no charset, on both APIs (as recorded)."""
    header = _REQUEST_ID_HEADERS[call.api]
    return JSONResponse(
        body, status, headers={header: call.request_id, **headers}, media_type="application/json"
    )


class _Answer(Response):
    """A streamed answer (or a stall) that watches for the client leaving as it goes."""

    def __init__(
        self,
        record: RecordedRequest,
        *,
        reply: Reply | None = None,
        answer: Format | None = None,
        headers: dict[str, str] | None = None,
        chunking: Chunking | None = None,
        stall: bool = False,
    ) -> None:
        self.record = record
        self.reply = reply
        self.answer = answer
        self.extra_headers = headers or {}
        self.chunking = chunking
        self.stall = stall
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = self.record
        crashed = False

        async def produce() -> None:
            nonlocal crashed
            if self.stall:
                await anyio.sleep_forever()
            crashed = await self._stream(send)
            group.cancel_scope.cancel()

        async def watch_disconnect() -> None:
            # At ASGI spec 2.3 the app learns of the client leaving only from receive().
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    record._end("disconnected")
                    group.cancel_scope.cancel()
                    return

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(watch_disconnect)
                group.start_soon(produce)
        except anyio.get_cancelled_exc_class():
            record._end("cancelled")
            raise
        except BaseException:
            record._end("crashed")
            raise
        if crashed:
            # Raised outside the task group, so the transport sees this exception itself
            # rather than an exception group around it.
            record._end("crashed")
            raise SimulatedCrash(f"simulated crash after {record.tokens_sent} tokens")

    async def _stream(self, send: Send) -> bool:
        """Send the reply; return whether the script asks for a crash now."""
        reply, answer, record = self.reply, self.answer, self.record
        assert reply is not None and answer is not None
        headers = [
            *_SSE_HEADERS,
            *((name.encode(), value.encode()) for name, value in self.extra_headers.items()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        record.status = 200
        writer = ChunkWriter(send, self.chunking)
        await writer.write(*answer.opening())
        tokens = answer.plan.tokens
        if reply.ending != "complete" and reply.after_tokens is not None:
            tokens = tokens[: max(reply.after_tokens, 0)]
        for token in tokens:
            if reply.gate is not None or reply.delay:
                # What is pending goes out before a wait, so lock-step tests see it.
                await writer.flush()
            if reply.gate is not None:
                await reply.gate.wait()
            if reply.delay:
                await anyio.sleep(reply.delay)
            await writer.write(*answer.token(token))
            record.tokens_sent += 1
        if reply.ending == "crash":
            await writer.flush()
            return True
        if reply.ending == "stall":
            await writer.flush()
            await anyio.sleep_forever()
        events = answer.error_events("simulated error") if reply.ending == "error_event" else []
        await writer.write(*(events or answer.closing()))
        await writer.flush()
        record._end("completed")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return False
