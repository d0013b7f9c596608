"""What the fake bridge answers: the scripted replies and the gate that paces their tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal, TypeAlias

from ._wake import Waiters

__all__ = [
    "ARGUMENT_PIECE_SIZE",
    "Chunking",
    "Crash",
    "Ending",
    "Finish",
    "HTTPError",
    "Reply",
    "Script",
    "SimulatedCrash",
    "Stall",
    "TokenGate",
    "ToolCall",
    "split_tokens",
]

Ending = Literal["complete", "crash", "error_event", "stall"]

Finish = Literal["stop", "length", "content_filter", "refusal", "stop_sequence"]
"""How a complete answer says it stopped, in neutral words each API spells its own way:

| `finish`         | chat `finish_reason`   | Anthropic `stop_reason` | Responses `status`   |
|------------------|------------------------|-------------------------|----------------------|
| `stop`           | `stop` / `tool_calls`  | `end_turn` / `tool_use` | `completed`          |
| `length`         | `length`               | `max_tokens`            | `incomplete` (1)     |
| `content_filter` | `content_filter`       | `refusal`               | `incomplete` (2)     |
| `refusal`        | `stop`, in `refusal`   | `refusal`               | a `refusal` part     |
| `stop_sequence`  | `stop`                 | `stop_sequence`         | `completed`          |

(1) `incomplete_details.reason` `max_output_tokens`; (2) `content_filter`.
"""

ARGUMENT_PIECE_SIZE = 4
"""How many characters of a tool call's arguments each delta carries unless scripted."""

_TOKEN = re.compile(r"\s*\S+\s*$|\s*\S+")


def split_tokens(text: str) -> tuple[str, ...]:
    """Split `text` into word tokens that keep their leading whitespace ("a b" -> "a", " b")."""
    return tuple(_TOKEN.findall(text))


class SimulatedCrash(RuntimeError):
    """The exception the fake bridge raises where a script asks it to crash."""


class TokenGate:
    """
    Releases a streamed reply's tokens one at a time, for lock-step tests.

    The bridge waits on the gate before each token; `release()` lets the next one go.
    Framing events (the stream's opening and closing) do not wait.

    ```python
    gate = TokenGate()
    bridge.queue(Reply("one two", gate=gate))
    gate.release()  # the bridge may now send "one"
    ```
    """

    def __init__(self) -> None:
        self._released = 0
        self._taken = 0
        # A sync test releases tokens from its own thread while the bridge waits on a loop
        # in another (behaviour §12): the count changes under the waiters' lock.
        self._waiters = Waiters()

    @property
    def released(self) -> int:
        """How many tokens have been let go so far."""
        return self._released

    def release(self, count: int = 1) -> None:
        """Let `count` more tokens go. Callable from sync code, in any thread."""
        with self._waiters.lock:
            self._released += count
            self._waiters.wake_all()

    async def wait(self) -> None:
        """Wait until a token may go (called by the bridge)."""
        await self._waiters.wait_for(self._take)

    def _take(self) -> bool:
        if self._taken < self._released:
            self._taken += 1
            return True
        return False


@dataclass(frozen=True, kw_only=True)
class Chunking:
    """
    How a stream's server-sent events are cut into body chunks, as networks deliver them.

    By default each event is one chunk. `events` puts that many events in one chunk
    (coalescing); `size` then cuts every chunk into pieces of at most that many bytes
    (splitting events, even inside a UTF-8 character). What is pending goes out before the
    bridge waits (on a `TokenGate`, a delay or a stall) and at the end of the stream.

    ```python
    Reply("one two", chunking=Chunking(events=3))  # three events per chunk
    Reply("one two", chunking=Chunking(size=7))    # every event in pieces of 7 bytes
    ```
    """

    events: int = 1
    size: int | None = None

    def __post_init__(self) -> None:
        if self.events < 1:
            raise ValueError("Chunking.events must be at least 1")
        if self.size is not None and self.size < 1:
            raise ValueError("Chunking.size must be at least 1")


@dataclass(frozen=True)
class ToolCall:
    """
    A tool call the reply makes after its text, in the provider's own shape (OpenAI
    `tool_calls` / Responses `function_call` items, Anthropic `tool_use` blocks).

    Streamed, the arguments' JSON text arrives in pieces of `ARGUMENT_PIECE_SIZE`
    characters, as real streams split it; `pieces` scripts the exact deltas instead.

    Arguments:
        name: The tool's name.
        arguments: The arguments: a mapping (sent as compact JSON) or the JSON text itself.
        id: The call id (default: one derived from the request and position).
        pieces: The exact argument deltas of a stream; their concatenation is the arguments
            text (leave `arguments` out when giving them).
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    _: KW_ONLY
    id: str | None = None
    pieces: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.pieces is not None and self.arguments:
            raise ValueError("give a ToolCall either `arguments` or `pieces`, not both")

    @property
    def arguments_text(self) -> str:
        """The arguments as the API sends them: one JSON text."""
        if self.pieces is not None:
            return "".join(self.pieces)
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))

    @property
    def argument_pieces(self) -> tuple[str, ...]:
        """The argument deltas a stream sends."""
        if self.pieces is not None:
            return tuple(self.pieces)
        text = self.arguments_text
        size = ARGUMENT_PIECE_SIZE
        return tuple(text[start : start + size] for start in range(0, len(text), size))


@dataclass(frozen=True)
class Reply:
    """
    A scripted answer: `text` streamed token by token (or sent whole when the request does
    not stream), ending the way `ending` says.

    Arguments:
        text: A string (split into word tokens) or the tokens themselves.
        ending: `"complete"` (a normal end), `"crash"` (raise `SimulatedCrash` after
            `after_tokens` tokens), `"error_event"` (the provider's in-band SSE error, then
            the end of the stream), `"stall"` (send nothing more until the client leaves).
            A request that does not stream crashes or stalls before the response starts and
            gets a 500 error body for `"error_event"`.
        after_tokens: How many tokens go out before a failing `ending` (default: all).
        delay: Seconds to wait before each token (for demos; tests use `gate`).
        gate: A `TokenGate` each token waits on.
        model: The model named in the answer (default: the dated snapshot of the one the
            request asked for, from the bridge's `model_snapshots`, or that name itself).
        tool_calls: Tool calls made after the text (the answer then stops for tool use).
        finish: How a complete answer says it stopped (see `Finish`); by default it stops
            normally, or at the request's token limit or stop sequence when it reaches one.
        stop_sequence: The stop sequence reported with `finish="stop_sequence"` (default:
            the request's first one).
        chunking: How this reply's events are cut into chunks (default: the bridge's).
    """

    text: str | Sequence[str] = "Hello from the fake bridge."
    _: KW_ONLY
    ending: Ending = "complete"
    after_tokens: int | None = None
    delay: float = 0.0
    gate: TokenGate | None = None
    model: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    finish: Finish | None = None
    stop_sequence: str | None = None
    chunking: Chunking | None = None

    @property
    def tokens(self) -> tuple[str, ...]:
        if isinstance(self.text, str):
            return split_tokens(self.text)
        return tuple(self.text)

    @property
    def tokens_to_send(self) -> tuple[str, ...]:
        """The tokens sent before the ending."""
        tokens = self.tokens
        if self.ending == "complete" or self.after_tokens is None:
            return tokens
        return tokens[: max(self.after_tokens, 0)]


@dataclass(frozen=True)
class HTTPError:
    """
    An error response with the provider's JSON error body.

    Arguments:
        status: The HTTP status (429, 500, 400, ...).
        message: The error message in the body.
        headers: Extra response headers, e.g. `{"retry-after-ms": "1"}` to make SDK
            retries fast or `{"x-should-retry": "false"}` to stop them.
    """

    status: int = 500
    message: str = "The fake bridge was asked to fail."
    _: KW_ONLY
    headers: Mapping[str, str] = field(default_factory=dict)
    type: str | None = None
    """The error's `type` in the body (default: the provider's type for `status`)."""
    code: str | None = None
    """OpenAI's `code` in the body (default: the one for `status`, if any)."""
    param: str | None = None
    """OpenAI's `param` in the body."""


@dataclass(frozen=True, kw_only=True)
class Crash:
    """Raise `SimulatedCrash` before the response starts (the transport answers 500)."""

    message: str = "simulated crash before the response"


@dataclass(frozen=True, kw_only=True)
class Stall:
    """Never start the response; wait until the client leaves or the app is cancelled."""


Script: TypeAlias = Reply | HTTPError | Crash | Stall
