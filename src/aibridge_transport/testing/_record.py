"""What the fake bridge saw of each request, and how its answer ended."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._bridge_gateway import GATEWAY_KEY_HEADER
from ._wake import DEFAULT_SYNC_TIMEOUT, Waiters

__all__ = ["Outcome", "RecordedRequest", "redact_headers"]

Outcome = Literal["running", "completed", "disconnected", "cancelled", "crashed"]

_SECRET_HEADERS = frozenset({"authorization", "x-api-key", GATEWAY_KEY_HEADER.decode()})


def redact_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header names to values (the last of duplicates), with credentials replaced."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in _SECRET_HEADERS:
            scheme, _, credential = value.partition(" ")
            value = f"{scheme} [redacted]" if credential else "[redacted]"
        headers[name] = value
    return headers


@dataclass(eq=False, kw_only=True)
class RecordedRequest:
    """
    One request as the fake bridge saw it.

    Arguments:
        provider: The provider segment of the path.
        method: The HTTP method.
        path: `scope["path"]`, e.g. `/api/v2/aibridge/openai/v1/chat/completions`.
        query: The query string, decoded.
        headers: Lower-cased names to values; `authorization`, `x-api-key` and the gateway
            key are redacted.
        body: The JSON body, or `None` when there was none.
        source: `source_from_context()` inside the app.
        delegated_api_key_id: `delegated_api_key_id_from_context()` inside the app.
        extensions: `scope["extensions"]["aibridge"]`, or `None` when absent.
        workspace_id: `delegated_attribution_from_context()` inside the app.
    """

    provider: str
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: Any
    source: str | None
    delegated_api_key_id: str | None
    extensions: Mapping[str, Any] | None
    workspace_id: uuid.UUID | None = None
    status: int | None = None
    """The status the bridge answered with (`None` if it never started a response)."""
    error: str | None = None
    """The message of the error the bridge answered with (a 400 names what was wrong)."""
    tokens_sent: int = 0
    """How many text tokens went out (streamed, or in the whole answer)."""
    outcome: Outcome = "running"
    """How the answer ended: `completed`, `disconnected` (the app saw `http.disconnect` and
    stopped), `cancelled` (its task was cancelled), `crashed` (a scripted crash)."""
    _done: bool = field(default=False, init=False, repr=False)
    _waiters: Waiters = field(default_factory=Waiters, init=False, repr=False)

    @property
    def stream(self) -> bool:
        """Whether the request asked for a stream."""
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    @property
    def ended(self) -> bool:
        """Whether the app has stopped handling this request."""
        return self._done

    async def wait_ended(self) -> Outcome:
        """Wait until the app has stopped handling this request; return the outcome."""
        await self._waiters.wait_for(self._is_done)
        return self.outcome

    def wait_ended_sync(self, timeout: float = DEFAULT_SYNC_TIMEOUT) -> Outcome:
        """`wait_ended()` for sync tests: block until the app has stopped handling this
        request and return the outcome; `TimeoutError` after `timeout` seconds."""
        self._waiters.wait_for_blocking(self._is_done, timeout, "the app did not end")
        return self.outcome

    def _is_done(self) -> bool:
        return self._done

    def _end(self, outcome: Outcome) -> None:
        if self.outcome == "running":
            self.outcome = outcome
        with self._waiters.lock:
            self._done = True
            self._waiters.wake_all()
