"""`RecordingMiddleware`: writes every exchange of the app it wraps into a cassette.

It sits where the bridge app is (in process or behind a server) and records what the client
is sent: the status and headers of `http.response.start`, then each non-empty body message as
one chunk with its time, and how the body ended. The request body is read whole before the
app runs (a recorded request is always complete), then handed to the app in one message.
"""

from __future__ import annotations

from typing import Any, Final

import anyio

from ..types import ASGIApp, Message, Receive, Scope, Send
from ._asgi import read_request_body
from ._cassette import Cassette, CassetteRequest, CassetteResponse, Ending, Interaction
from ._cassette import RecordedChunk as Chunk
from ._clock import Clock, RealClock
from ._scrub import Scrubber

__all__ = ["RecordingMiddleware", "request_uri"]

_PRECISION: Final = 6  # microseconds are plenty for a cassette's times

# What a client sees when the app fails before starting its response (behaviour §7).
_SERVER_ERROR: Final = CassetteResponse(
    status=500,
    headers=[("content-type", "text/plain; charset=utf-8")],
    body=b"Internal Server Error",
    chunks=[],
    ending="complete",
)


def request_uri(scope: Scope) -> str:
    """The URI of a request as a server sees it: scheme, host, full path and query."""
    host = ""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1")
            break
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "testserver"
    query = scope.get("query_string", b"").decode("latin-1")
    uri = f"{scope.get('scheme', 'http')}://{host}{scope['path']}"
    return f"{uri}?{query}" if query else uri


def _text_headers(raw: Any) -> list[tuple[str, str]]:
    return [(bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in raw]


class RecordingMiddleware:
    """
    An ASGI middleware that records every HTTP exchange of `app` into `cassette`, secrets
    scrubbed, with each body chunk's size and time.

    ```python
    recorder = RecordingMiddleware(my_bridge)
    factory = InProcessTransportFactory(recorder)
    ...  # run the agent loop
    recorder.cassette.save("tests/cassettes/agent_loop.yaml")
    ```

    Arguments:
        app: The app to record: your bridge, a `ForwardingApp`, a `FakeAIBridge`.
        cassette: Where interactions are appended (default: a new, empty one).
        scrubber: What is removed before recording (default: `Scrubber()`).
        clock: What stamps the chunks (default: the monotonic clock).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cassette: Cassette | None = None,
        scrubber: Scrubber | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self.cassette = cassette if cassette is not None else Cassette()
        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self.clock: Clock = clock if clock is not None else RealClock()
        self._origin = self.clock.now()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = self.clock
        began = clock.now()
        request_body, cut_short = await read_request_body(receive)
        # The client left before sending its body: the app is told so, after the body.
        pending: list[Message] = [cut_short] if cut_short is not None else []
        request = CassetteRequest(
            method=scope["method"],
            uri=request_uri(scope),
            headers=_text_headers(scope.get("headers", [])),
            body=request_body,
            at=round(began - self._origin, _PRECISION),
        )
        handed = False
        client_left = False

        async def receive_with_body() -> Message:
            nonlocal handed, client_left
            if not handed:
                handed = True
                if not pending:
                    return {"type": "http.request", "body": request.body, "more_body": False}
            message = pending.pop(0) if pending else await receive()
            if message["type"] == "http.disconnect" and ending is None:
                client_left = True
            return message

        status: int | None = None
        headers: list[tuple[str, str]] = []
        started_at: float | None = None
        chunks: list[Chunk] = []
        body: list[bytes] = []
        ending: Ending | None = None

        async def recording_send(message: Message) -> None:
            nonlocal status, headers, started_at, ending
            kind = message["type"]
            if kind == "http.response.start" and status is None:
                status = int(message["status"])
                headers = _text_headers(message.get("headers", []))
                started_at = round(clock.now() - began, _PRECISION)
            elif kind == "http.response.body" and status is not None and ending is None:
                data = bytes(message.get("body", b""))
                if data and not client_left:
                    body.append(data)
                    chunks.append(Chunk(len(data), round(clock.now() - began, _PRECISION)))
                if not message.get("more_body", False):
                    ending = "complete"
            await send(message)

        try:
            await self.app(scope, receive_with_body, recording_send)
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            if status is None and not cancelled and not client_left:
                self._keep(Interaction(request, _SERVER_ERROR))
            raise
        else:
            if status is None and not client_left:  # returned without starting: a 500 too
                self._keep(Interaction(request, _SERVER_ERROR))
        finally:
            if status is not None:
                if ending is None:
                    ending = "disconnected" if client_left else "truncated"
                response = CassetteResponse(
                    status=status,
                    headers=headers,
                    body=b"".join(body),
                    chunks=chunks,
                    started_at=started_at,
                    ending=ending,
                )
                self._keep(Interaction(request, response))

    def _keep(self, interaction: Interaction) -> None:
        scrubbed = self.scrubber.interaction(interaction)
        if scrubbed is not None:
            self.cassette.append(scrubbed)
