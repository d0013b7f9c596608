"""`LatencyMiddleware`: time to first token and tokens per second, on a clock the test controls."""

from __future__ import annotations

from ..types import ASGIApp, Message, Receive, Scope, Send
from ._clock import Clock, RealClock

__all__ = ["LatencyMiddleware"]


class LatencyMiddleware:
    """
    Paces the body of every response of `app`: the first chunk goes `first_token` seconds
    after the request came, each later one `1 / tokens_per_second` after the one before,
    on `clock`. The fake sends one token per chunk, so this is its time to first token and
    its rate. On a `VirtualClock` nothing really waits.

    Arguments:
        app: The app to pace.
        first_token: Seconds from the request to the first body chunk.
        tokens_per_second: Chunks per second after the first (`None`: no wait).
        clock: What it sleeps on (default: the real clock).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        first_token: float = 0.0,
        tokens_per_second: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if first_token < 0:
            raise ValueError("first_token cannot be negative")
        if tokens_per_second is not None and tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")
        self.app = app
        self.first_token = first_token
        self.tokens_per_second = tokens_per_second
        self.clock: Clock = clock if clock is not None else RealClock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = self.clock
        began = clock.now()
        sent = 0

        async def paced_send(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.body" and message.get("body"):
                if sent == 0:
                    due = self.first_token - (clock.now() - began)
                    if due > 0:
                        await clock.sleep(due)
                elif self.tokens_per_second is not None:
                    await clock.sleep(1.0 / self.tokens_per_second)
                sent += 1
            await send(message)

        await self.app(scope, receive, paced_send)
