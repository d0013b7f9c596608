"""The ASGI lifespan protocol, run for the in-process factory (behaviour §8)."""

from __future__ import annotations

import contextvars
import logging
import re
from typing import Any, Final

import anyio

from ._backend import delivered_cancellation, fatal_in, spawn_detached
from ._errors import AIBridgeTransportError
from .types import ASGIApp, Message, Scope

__all__ = ["NO_LIFESPAN_HINT", "Lifespan", "LifespanError", "looked_up_missing_state"]

NO_LIFESPAN_HINT: Final = (
    "likely cause: the factory was never entered (lifespan not run), so what the app's "
    "startup sets is missing: enter it with `async with factory:` (or `with factory:` for sync "
    "clients) around its use, as docs/deployment.md shows"
)
# How Starlette, FastAPI and Litestar word a missing attribute of their `State`.
_STATE_ATTRIBUTE: Final = re.compile(r"'State' object has no attribute")

logger = logging.getLogger("aibridge_transport")


class LifespanError(AIBridgeTransportError):
    """The app's lifespan startup or shutdown failed."""


class Lifespan:
    """Runs an app's lifespan in a task of its own: startup on `start()`, shutdown on `stop()`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = True
        self._to_app_send, self._to_app = anyio.create_memory_object_stream[Message](1)
        self._from_app_send, self._from_app = anyio.create_memory_object_stream[Message | None](1)
        self._error: BaseException | None = None
        self._done = anyio.Event()
        self._cancel_scope = anyio.CancelScope()
        self._task: object = None  # keeps the detached task referenced while it runs

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            with self._cancel_scope, self._from_app_send:
                try:
                    await self.app(scope, self._receive, self._send)
                except BaseException as exc:
                    # Everything but the task's own cancellation: anything else escaping a
                    # task spawned at loop level is lost (asyncio) or ends `trio.run` (trio).
                    if delivered_cancellation(exc):
                        raise
                    self._error = exc
        finally:
            self._to_app.close()
            self._done.set()

    async def _receive(self) -> Message:
        try:
            return await self._to_app.receive()
        except anyio.EndOfStream:  # stop() gave up waiting: nothing more will come
            return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        try:
            await self._from_app_send.send(message)
        except anyio.BrokenResourceError:
            pass

    async def _reply(self) -> Message | None:
        try:
            return await self._from_app.receive()
        except anyio.EndOfStream:
            return None  # the app returned or raised without answering

    async def start(self) -> None:
        self._task = spawn_detached(self._run, contextvars.copy_context())
        try:
            try:
                await self._to_app_send.send({"type": "lifespan.startup"})
            except anyio.BrokenResourceError:
                pass  # the app returned before receiving: no lifespan support, handled below
            reply = await self._reply()
        except BaseException:
            # Cancelled while the app starts up: its task must not outlive the caller.
            await self._abort()
            raise
        if reply is None:
            # An app that raises or returns at once does not speak lifespan: tolerated,
            # as uvicorn's `lifespan="auto"` does. Not when it raised something other than
            # an `Exception`: that is a failure, never taken for "no lifespan" (behaviour §7).
            self.supported = False
            await self._done.wait()
            self._close_streams()
            error = self._error
            if error is not None and not isinstance(error, Exception):
                _raise_fatal(error)
                raise LifespanError(f"lifespan startup raised: {error!r}") from error
            if error is not None:
                logger.info("ASGI app does not support lifespan (%r); going on", self._error)
            return
        if reply["type"] == "lifespan.startup.failed":
            await self._finish()
            raise LifespanError(f"lifespan startup failed: {reply.get('message', '')}")
        if reply["type"] != "lifespan.startup.complete":
            await self._finish()
            raise LifespanError(f"unexpected lifespan message {reply['type']!r} at startup")

    async def stop(self) -> None:
        if not self.supported:
            return
        try:
            try:
                await self._to_app_send.send({"type": "lifespan.shutdown"})
            except anyio.BrokenResourceError:
                pass
            reply = await self._reply()
        except BaseException:
            await self._abort()
            raise
        await self._finish()
        if reply is None:
            if self._error is not None:
                _raise_fatal(self._error)
                raise LifespanError(f"lifespan shutdown raised: {self._error!r}") from self._error
            return
        if reply["type"] == "lifespan.shutdown.failed":
            raise LifespanError(f"lifespan shutdown failed: {reply.get('message', '')}")

    async def _finish(self) -> None:
        self._to_app_send.close()
        await self._done.wait()
        self._close_streams()

    async def _abort(self) -> None:
        self._cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._finish()

    def _close_streams(self) -> None:
        self._to_app_send.close()
        self._from_app.close()


def _raise_fatal(error: BaseException) -> None:
    """`KeyboardInterrupt` and `SystemExit` leave as they are, never wrapped (behaviour §7)."""
    fatal = fatal_in(error)
    if fatal is not None:
        raise fatal


def looked_up_missing_state(exc: BaseException, scope: Scope) -> bool:
    """Whether `exc`, or an exception it was raised from or while handling, is a failed
    lookup of lifespan state: a `State` object's missing attribute (`request.state.x`,
    `app.state.x`), or a `KeyError` raised where this request's `scope["state"]` (or the
    scope itself) is a local of the failing frame (`scope["state"]["x"]`).

    What makes the factory's 500 say that its lifespan never ran (behaviour §8), instead of
    leaving an opaque `AttributeError` in the log.
    """
    state = scope.get("state")
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AttributeError) and (
            _STATE_ATTRIBUTE.search(str(current)) or type(current.obj).__name__ == "State"
        ):
            return True
        if isinstance(current, KeyError) and _raised_looking_in(current, (state, scope)):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_looking_in(exc: KeyError, mappings: tuple[object, ...]) -> bool:
    traceback = exc.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return any(
        value is mapping for value in traceback.tb_frame.f_locals.values() for mapping in mappings
    )
