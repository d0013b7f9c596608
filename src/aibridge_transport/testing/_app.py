"""`FakeAIBridge`: an ASGI app that answers like the AI providers behind the bridge routes."""

from __future__ import annotations

import json
from collections import deque
from typing import Final

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from .._context import delegated_api_key_id_from_context, source_from_context
from .._paths import AIBRIDGE_ROOT_PATH
from ..types import Receive, Scope, Send
from ._formats import AnthropicMessages, Format, OpenAIChat, OpenAIResponses
from ._record import RecordedRequest, redact_headers
from ._script import Crash, HTTPError, Reply, Script, SimulatedCrash, Stall

__all__ = ["FakeAIBridge"]

_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_PREFIX: Final = AIBRIDGE_ROOT_PATH + "/{provider}"
_DEFAULT_MODEL: Final = "fake-model"


class FakeAIBridge:
    """
    An ASGI app that answers like the AI providers under `/api/v2/aibridge/<provider>/...`,
    for any provider name: OpenAI chat completions and Responses, Anthropic messages (also
    `?beta=true`), and a models listing. Streams use each provider's SSE framing, one ASGI
    body message per event.

    Replies come from a queue, one per request (`queue(...)`); when it is empty, `default`
    answers. Every request is recorded in `requests`, with the source and delegated key id
    the app saw and how its answer ended.

    ```python
    bridge = FakeAIBridge()
    bridge.queue(Reply(text="Hi there"), HTTPError(status=429))
    factory = InProcessTransportFactory(bridge)
    ```

    Arguments:
        default: The reply used when the queue is empty.
    """

    def __init__(self, default: Script | None = None) -> None:
        self.default: Script = default if default is not None else Reply()
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Script] = deque()
        self._arrival: anyio.Event | None = None
        self._router = Router(
            routes=[
                Route(_PREFIX + "/v1/chat/completions", self._chat, methods=["POST"]),
                Route(_PREFIX + "/v1/responses", self._responses, methods=["POST"]),
                Route(_PREFIX + "/v1/messages", self._messages, methods=["POST"]),
                Route(_PREFIX + "/v1/models", self._models, methods=["GET"]),
            ]
        )

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
        while len(self.requests) < count:
            if self._arrival is None:
                self._arrival = anyio.Event()
            await self._arrival.wait()
        return self.requests[count - 1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    def _next_script(self) -> Script:
        return self._queue.popleft() if self._queue else self.default

    async def _record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        extensions = request.scope.get("extensions", {}).get("aibridge")
        record = RecordedRequest(
            provider=str(request.path_params["provider"]),
            method=request.method,
            path=request.scope["path"],
            query=request.scope["query_string"].decode("latin-1"),
            headers=redact_headers(request.scope["headers"]),
            body=body,
            source=source_from_context(),
            delegated_api_key_id=delegated_api_key_id_from_context(),
            extensions=dict(extensions) if extensions is not None else None,
        )
        self.requests.append(record)
        arrival, self._arrival = self._arrival, None
        if arrival is not None:
            arrival.set()
        return record

    async def _chat(self, request: Request) -> Response:
        return await self._answer(request, OpenAIChat)

    async def _responses(self, request: Request) -> Response:
        return await self._answer(request, OpenAIResponses)

    async def _messages(self, request: Request) -> Response:
        return await self._answer(request, AnthropicMessages)

    async def _models(self, request: Request) -> Response:
        record = await self._record(request)
        record.status = 200
        record._end("completed")
        if "anthropic-version" in record.headers:
            model = {
                "type": "model",
                "id": _DEFAULT_MODEL,
                "display_name": "Fake model",
                "created_at": "2026-01-01T00:00:00Z",
            }
            return JSONResponse(
                {
                    "data": [model],
                    "has_more": False,
                    "first_id": model["id"],
                    "last_id": model["id"],
                }
            )
        listing = {"id": _DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "fake"}
        return JSONResponse({"object": "list", "data": [listing]})

    async def _answer(self, request: Request, format_class: type[Format]) -> Response:
        record = await self._record(request)
        script = self._next_script()
        asked = record.body.get("model") if isinstance(record.body, dict) else None
        model = str(asked) if asked else _DEFAULT_MODEL
        if isinstance(script, Reply) and script.model is not None:
            model = script.model
        reply = script if isinstance(script, Reply) else None
        answer = format_class(
            len(self.requests),
            model,
            record.body,
            has_text=bool(reply.tokens) if reply is not None else True,
            tool_calls=reply.tool_calls if reply is not None else (),
        )
        headers = {answer.request_id_header: f"req_fake_{len(self.requests)}"}
        if isinstance(script, HTTPError):
            record.status = script.status
            record._end("completed")
            body = answer.error_body(script.status, script.message)
            return JSONResponse(body, script.status, headers={**headers, **script.headers})
        if isinstance(script, Crash):
            record._end("crashed")
            raise SimulatedCrash(script.message)
        if isinstance(script, Stall):
            return _Answer(record, stall=True)
        if not record.stream:
            if script.ending == "crash":
                record._end("crashed")
                raise SimulatedCrash("simulated crash before the response")
            if script.ending == "stall":
                return _Answer(record, stall=True)
            if script.ending == "error_event":
                record.status = 500
                record._end("completed")
                body = answer.error_body(500, "simulated error")
                return JSONResponse(body, 500, headers=headers)
            record.status = 200
            record.tokens_sent = len(script.tokens)
            record._end("completed")
            return JSONResponse(answer.whole("".join(script.tokens)), headers=headers)
        return _Answer(record, reply=script, answer=answer, headers=headers)


class _Answer(Response):
    """A streamed answer (or a stall) that watches for the client leaving as it goes."""

    def __init__(
        self,
        record: RecordedRequest,
        *,
        reply: Reply | None = None,
        answer: Format | None = None,
        headers: dict[str, str] | None = None,
        stall: bool = False,
    ) -> None:
        self.record = record
        self.reply = reply
        self.answer = answer
        self.extra_headers = headers or {}
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
        for event in answer.opening():
            await _send_body(send, event)
        for token in reply.tokens_to_send:
            if reply.gate is not None:
                await reply.gate.wait()
            if reply.delay:
                await anyio.sleep(reply.delay)
            await _send_body(send, answer.token(token))
            record.tokens_sent += 1
        if reply.ending == "crash":
            return True
        if reply.ending == "stall":
            await anyio.sleep_forever()
        events = answer.error_events("simulated error") if reply.ending == "error_event" else []
        for event in events or answer.closing():
            await _send_body(send, event)
        record._end("completed")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return False


async def _send_body(send: Send, event: bytes) -> None:
    await send({"type": "http.response.body", "body": event, "more_body": True})
