"""Faults in the providers' own shapes, and the checks that a client coped: it waited as long
as `retry-after` asked, and never took a cut stream for a whole one.

The faults are scripts for `FakeAIBridge` (`HTTPError`, `Reply(ending="crash")`) with the
status, body and headers each provider really sends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx

from ._app import ProviderAPI
from ._cassette import Cassette, Interaction
from ._script import HTTPError, Reply

__all__ = [
    "RETRY_STATUSES",
    "assert_retry_after_honoured",
    "disconnect_mid_stream",
    "overloaded",
    "rate_limited",
    "refuses_truncated_stream",
    "retry_delay",
    "server_error",
]

RETRY_STATUSES: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""The statuses the SDKs retry, where a `retry-after` matters."""

_SERVER_ERROR_MESSAGES: Final[Mapping[tuple[ProviderAPI, int], str]] = {
    ("openai", 500): "The server had an error while processing your request. Sorry about that!",
    ("openai", 503): "The engine is currently overloaded, please try again later.",
    ("anthropic", 500): "Internal server error",
    ("anthropic", 503): "Service unavailable",
}


def _retry_after_headers(retry_after: float) -> dict[str, str]:
    # `retry-after` holds whole seconds; the SDKs prefer the exact `retry-after-ms`.
    return {
        "retry-after": str(max(1, math.ceil(retry_after))),
        "retry-after-ms": str(round(retry_after * 1000)),
    }


def rate_limited(
    api: ProviderAPI = "openai",
    *,
    retry_after: float = 1.0,
    limit: int = 60,
    message: str | None = None,
) -> HTTPError:
    """
    A 429 as the provider sends it: its error body (OpenAI `requests` /
    `rate_limit_exceeded`, Anthropic `rate_limit_error`), `retry-after`, `retry-after-ms`,
    and its rate-limit headers (`x-ratelimit-*`, `anthropic-ratelimit-*`) showing none left.

    Arguments:
        api: Whose shape: `"openai"` or `"anthropic"`.
        retry_after: Seconds the client is asked to wait.
        limit: The request limit the headers report.
        message: The error message (default: the provider's wording).
    """
    headers = _retry_after_headers(retry_after)
    if api == "anthropic":
        reset = (datetime.now(UTC) + timedelta(seconds=retry_after)).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers |= {
            "anthropic-ratelimit-requests-limit": str(limit),
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": "80000",
            "anthropic-ratelimit-tokens-remaining": "80000",
            "anthropic-ratelimit-tokens-reset": reset,
        }
        text = message or (
            "This request would exceed your organization's rate limit of "
            f"{limit} requests per minute. Please try again later."
        )
        return HTTPError(429, text, headers=headers)
    headers |= {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_after:g}s",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "200000",
        "x-ratelimit-reset-tokens": "0s",
    }
    text = message or (
        f"Rate limit reached for requests per min (RPM): Limit {limit}, Used {limit}, "
        f"Requested 1. Please try again in {retry_after:g}s."
    )
    return HTTPError(429, text, headers=headers)


def overloaded(*, retry_after: float | None = None) -> HTTPError:
    """Anthropic's 529: `{"type": "error", "error": {"type": "overloaded_error", "message":
    "Overloaded"}}` (OpenAI has no 529; use `server_error(503)`)."""
    headers = _retry_after_headers(retry_after) if retry_after is not None else {}
    return HTTPError(529, "Overloaded", type="overloaded_error", headers=headers)


def server_error(
    status: int = 500, api: ProviderAPI = "openai", *, retry_after: float | None = None
) -> HTTPError:
    """A 5xx with the provider's wording (OpenAI `server_error`, Anthropic `api_error`)."""
    if status < 500:
        raise ValueError("a server error has a 5xx status")
    message = _SERVER_ERROR_MESSAGES.get((api, status), "Internal server error")
    headers = _retry_after_headers(retry_after) if retry_after is not None else {}
    return HTTPError(status, message, headers=headers)


def disconnect_mid_stream(
    text: str = "The answer is cut off here and never finished.", *, after_tokens: int = 3
) -> Reply:
    """A stream that breaks off after `after_tokens` tokens: the connection drops without
    the stream's end (the client sees an incomplete response, behaviour §7)."""
    return Reply(text, ending="crash", after_tokens=after_tokens)


def retry_delay(headers: Iterable[tuple[str, str]]) -> float | None:
    """The wait a response asks for: `retry-after-ms`, else `retry-after` in seconds."""
    found = {name.lower(): value for name, value in headers}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = found.get(name)
        if value is not None:
            try:
                return float(value) / scale
            except ValueError:
                continue  # an HTTP date: not what the fakes send
    return None


def assert_retry_after_honoured(recording: Cassette | Iterable[Interaction]) -> None:
    """
    Fail unless every request that followed a retryable answer carrying `retry-after`
    (429, 529, 503, ...) on the same route came at least that long after it.

    Give it the `RecordingMiddleware`'s cassette: its times come from the recorder's clock.
    """
    interactions = list(recording)
    for index, interaction in enumerate(interactions):
        response = interaction.response
        if response.status not in RETRY_STATUSES:
            continue
        delay = retry_delay(response.headers)
        asked_at = interaction.request.at
        if delay is None or asked_at is None:
            continue
        answered_at = asked_at + (response.started_at or 0.0)
        following = next(
            (
                later
                for later in interactions[index + 1 :]
                if later.request.path == interaction.request.path
            ),
            None,
        )
        if following is None or following.request.at is None:
            continue
        waited = following.request.at - answered_at
        if waited < delay:
            raise AssertionError(
                f"the client retried {interaction.request.method} {interaction.request.path} "
                f"{waited:.3f}s after a {response.status} that asked it to wait {delay:g}s"
            )


def _breaks(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says a response ended before its end."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.TransportError):
            return True
        if type(current).__name__ in {"RemoteProtocolError", "APIConnectionError", "ReadError"}:
            return True  # httpx2's, and the SDKs' wrappers of it
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def refuses_truncated_stream() -> Iterator[None]:
    """
    Fail unless the block raises because a response broke off (an incomplete body: the
    transport's `RemoteProtocolError`, or an SDK's `APIConnectionError` around it); the
    expected error is swallowed. A block that finishes normally accepted a cut stream.

    ```python
    bridge.queue(disconnect_mid_stream())
    with refuses_truncated_stream():
        await run_agent_turn()
    ```
    """
    try:
        yield
    except Exception as error:
        if _breaks(error):
            return
        raise
    raise AssertionError("the client accepted a truncated stream as a whole answer")
