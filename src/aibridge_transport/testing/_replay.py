"""`ReplayApp`: an ASGI app that answers from a cassette, chunk by chunk as recorded.

Put behind an `InProcessTransportFactory`, it goes through the same transport as the real
bridge, so the SDKs parse the replayed stream exactly as they parsed the recorded one: each
recorded chunk is one ASGI body message. Each request takes the first recorded interaction
that matches it and has not been played; one that matches none is answered with an error
the SDKs do not retry, holding a diff against the nearest recorded request, and is kept in
`mismatches` (the pytest fixtures fail the test for it).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Literal

from ..types import ASGIApp, Message, Receive, Scope, Send
from ._asgi import read_request_body, serve_lifespan
from ._cassette import Cassette, CassetteRequest, Interaction
from ._clock import Clock, RealClock
from ._forward import HOP_BY_HOP
from ._match import CassetteMismatchError, RequestMatcher
from ._recorder import request_uri

__all__ = ["ReplayApp", "Timing"]

Timing = Literal["fast", "recorded"]


class ReplayApp:
    """
    Answers requests from a cassette, with the recorded chunk boundaries.

    ```python
    replay = ReplayApp(Cassette.load("tests/cassettes/agent_loop.yaml"))
    factory = InProcessTransportFactory(replay)
    ```

    Arguments:
        cassette: The cassette, or the path of one.
        matcher: How requests are matched (default: `RequestMatcher()`).
        timing: `"fast"` sends every chunk at once (the default); `"recorded"` waits before
            the response start and each chunk as long as the recording did, on `clock`.
        clock: What `"recorded"` timing sleeps on: `RealClock(speed=10)` replays ten times
            faster, `VirtualClock()` never waits (default: `RealClock()`).
        allow_repeats: Let an interaction answer more than one request.
        fallback: An app for the requests no interaction matches (the recording side of the
            `new_episodes` mode); without one, they are mismatches.
    """

    def __init__(
        self,
        cassette: Cassette | str | Path,
        *,
        matcher: RequestMatcher | None = None,
        timing: Timing = "fast",
        clock: Clock | None = None,
        allow_repeats: bool = False,
        fallback: ASGIApp | None = None,
    ) -> None:
        self.cassette = cassette if isinstance(cassette, Cassette) else Cassette.load(cassette)
        self.matcher = matcher if matcher is not None else RequestMatcher()
        if timing not in ("fast", "recorded"):
            raise ValueError(f"timing must be 'fast' or 'recorded', not {timing!r}")
        self.timing = timing
        self.clock: Clock = clock if clock is not None else RealClock()
        self.allow_repeats = allow_repeats
        self.fallback = fallback
        self.plays: list[int] = []
        """The index of the interaction each matched request was answered with, in order."""
        self.mismatches: list[CassetteMismatchError] = []
        self._lock = threading.Lock()  # sync clients reach the app from a loop thread

    @property
    def unplayed(self) -> list[Interaction]:
        """The recorded interactions no request has been answered with."""
        played = set(self.plays)
        return [item for index, item in enumerate(self.cassette) if index not in played]

    def check(self) -> None:
        """Raise the first mismatch, if any request matched no interaction."""
        if self.mismatches:
            raise self.mismatches[0]

    def assert_all_played(self) -> None:
        """Fail if a recorded interaction never answered a request."""
        unplayed = self.unplayed
        if unplayed:
            listed = ", ".join(f"{item.request.method} {item.request.path}" for item in unplayed)
            raise AssertionError(f"{len(unplayed)} recorded interactions never played: {listed}")

    def _select(self, request: CassetteRequest) -> Interaction | CassetteMismatchError:
        with self._lock:
            played = set(self.plays)
            already = False
            for index, interaction in enumerate(self.cassette):
                if not self.matcher.matches(request, interaction.request):
                    continue
                if index in played and not self.allow_repeats:
                    already = True
                    continue
                self.plays.append(index)
                return interaction
            if already:
                return CassetteMismatchError(
                    f"{request.method} {request.path} matches only recorded interactions that "
                    "were already played: the client sent it more often than when it was "
                    "recorded (a retry?). ReplayApp(allow_repeats=True) plays them again."
                )
            candidates = [item.request for item in self.cassette]
            return self.matcher.mismatch(request, candidates, played=len(played))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
                return
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        began = self.clock.now()
        body, cut_short = await read_request_body(receive)
        if cut_short is not None:
            return  # the client left
        request = CassetteRequest(
            method=scope["method"],
            uri=request_uri(scope),
            headers=[
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in scope.get("headers", [])
            ],
            body=body,
        )
        selected = self._select(request)
        if isinstance(selected, CassetteMismatchError):
            if self.fallback is not None:
                await self.fallback(scope, _replaying(request.body, receive), send)
                return
            with self._lock:
                self.mismatches.append(selected)
            await _answer_mismatch(send, selected)
            return
        await self._play(selected, began, receive, send)

    async def _wait_until(self, began: float, at: float | None) -> None:
        if self.timing == "recorded" and at is not None:
            due = at - (self.clock.now() - began)
            if due > 0:
                await self.clock.sleep(due)

    async def _play(
        self, interaction: Interaction, began: float, receive: Receive, send: Send
    ) -> None:
        response = interaction.response
        complete = response.ending == "complete"
        headers = []
        for name, value in response.headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP:
                continue
            # A length that no longer fits the stored body (pydantic-ai's re-serialized JSON,
            # an edited cassette) would make the transport refuse it (behaviour §5).
            if lowered == "content-length" and (
                not complete or value.strip() != str(len(response.body))
            ):
                continue
            headers.append((lowered.encode("latin-1"), value.encode("latin-1")))
        await self._wait_until(began, response.started_at)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        pieces = list(response.pieces())
        for number, (piece, at) in enumerate(pieces, start=1):
            await self._wait_until(began, at)
            # A complete body ends with its last chunk, as a server ends it right after the
            # last write: a client that stops reading at the last event (openai's `[DONE]`)
            # finds the body complete, not cut short.
            last = complete and number == len(pieces)
            await send({"type": "http.response.body", "body": piece, "more_body": not last})
        if complete and not pieces:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif response.ending == "disconnected":
            # The recorded client left here; so will this one.
            while (await receive())["type"] != "http.disconnect":
                pass
        # "truncated": return without ending the body, as the recorded app did; the client
        # sees an incomplete response (behaviour §7).


def _replaying(body: bytes, receive: Receive) -> Receive:
    handed = False

    async def replaying_receive() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying_receive


async def _answer_mismatch(send: Send, error: CassetteMismatchError) -> None:
    # Readable by both SDKs (`error.message`), and never retried: a retry cannot match.
    body = {"type": "error", "error": {"type": "cassette_mismatch", "message": str(error)}}
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"application/json"), (b"x-should-retry", b"false")],
        }
    )
    await send(
        {"type": "http.response.body", "body": json.dumps(body).encode(), "more_body": False}
    )
