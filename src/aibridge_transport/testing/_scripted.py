"""Replies matched to requests: by model, by the last user message, by the tool results a
request carries, or by any function of the request, besides the fake's plain queue.

An agent loop sends requests whose order depends on the agent; a reply tied to what the
request says (its question, the tool output it hands back) keeps a test right whatever the
order. The rules are tried in the order they were added, before the queue.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ._record import RecordedRequest
from ._script import Script

__all__ = [
    "Responder",
    "ScriptBook",
    "When",
    "last_user_text",
    "tool_results",
]

Responder: TypeAlias = Callable[[RecordedRequest], Script]
"""A function of the request that returns the script answering it."""

Text: TypeAlias = str | re.Pattern[str]


def _texts(content: Any) -> Iterator[str]:
    """The text of a message's content: a string, or its text parts (any API's)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]
            elif isinstance(part, str):
                yield part


def _turns(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        return []
    turns = body.get("messages", body.get("input"))
    if isinstance(turns, str):
        return [{"role": "user", "content": turns}]
    return turns if isinstance(turns, list) else []


def last_user_text(body: Any) -> str | None:
    """The text of the last user message that has text (chat, Responses or Anthropic);
    Anthropic turns that only hand back tool results are skipped."""
    for turn in reversed(_turns(body)):
        if isinstance(turn, dict) and turn.get("role") == "user":
            text = "".join(_texts(turn.get("content")))
            if text:
                return text
    return None


def tool_results(body: Any) -> list[str]:
    """The tool results the request hands back in its latest turn: chat `tool` messages,
    Responses `function_call_output` items, Anthropic `tool_result` blocks."""
    turns = _turns(body)
    results: list[str] = []
    if turns and isinstance(turns[-1], dict) and isinstance(turns[-1].get("content"), list):
        for block in turns[-1]["content"]:  # Anthropic: the last user turn's blocks
            if isinstance(block, dict) and block.get("type") == "tool_result":
                results.append("".join(_texts(block.get("content"))))
    if results:
        return results
    for turn in reversed(turns):
        if not isinstance(turn, dict):
            break
        if turn.get("role") == "tool":
            results.append("".join(_texts(turn.get("content"))))
        elif turn.get("type") == "function_call_output":
            output = turn.get("output")
            results.append(output if isinstance(output, str) else "".join(_texts(output)))
        elif turn.get("type") != "function_call":
            break
    results.reverse()
    return results


def _found(pattern: Text, text: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(text) is not None
    return pattern in text


@dataclass(frozen=True, kw_only=True, repr=False)
class When:
    """
    Which requests a scripted reply answers; every condition given must hold.

    ```python
    When(model="gpt-4o")
    When(last_user="weather in Paris")        # contained in the last user message
    When(tool_result=re.compile(r"\\d+ ?°C"))  # a tool result the request hands back
    When(match=lambda request: request.stream)
    ```

    Arguments:
        model: The model the request names, exactly.
        provider: The provider segment of the path.
        last_user: Text contained in the last user message (a compiled pattern: searched).
        tool_result: Text contained in one of the tool results of the request's latest
            turn (a compiled pattern: searched).
        match: Any test of the `RecordedRequest`.
    """

    model: str | None = None
    provider: str | None = None
    last_user: Text | None = None
    tool_result: Text | None = None
    match: Callable[[RecordedRequest], bool] | None = None

    def __repr__(self) -> str:
        given = ", ".join(
            f"{name}={value!r}"
            for name in ("model", "provider", "last_user", "tool_result", "match")
            if (value := getattr(self, name)) is not None
        )
        return f"When({given})"

    def matches(self, request: RecordedRequest) -> bool:
        body = request.body
        asked = body.get("model") if isinstance(body, dict) else None
        if self.model is not None and asked != self.model:
            return False
        if self.provider is not None and request.provider != self.provider:
            return False
        if self.last_user is not None:
            text = last_user_text(body)
            if text is None or not _found(self.last_user, text):
                return False
        if self.tool_result is not None:
            pattern = self.tool_result
            if not any(_found(pattern, result) for result in tool_results(body)):
                return False
        return self.match is None or self.match(request)


class _Rule:
    def __init__(self, when: When, replies: Sequence[Script | Responder], repeat: bool) -> None:
        self.when = when
        self.replies: deque[Script | Responder] = deque(replies)
        self.repeat = repeat
        self.used = 0


class ScriptBook:
    """The fake's scripted rules (`FakeAIBridge.on`, `respond`), tried before its queue."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()  # sync tests script from their own thread

    def add(self, when: When, replies: Sequence[Script | Responder], *, repeat: bool) -> None:
        if not replies:
            raise ValueError("give at least one reply (a script, or a function returning one)")
        with self._lock:
            self._rules.append(_Rule(when, replies, repeat))

    def take(self, request: RecordedRequest) -> Script | None:
        """The script of the first rule that matches `request` and has a reply left."""
        with self._lock:
            for rule in self._rules:
                if not rule.replies or not rule.when.matches(request):
                    continue
                reply = rule.replies[0]
                if rule.repeat:
                    rule.replies.rotate(-1)
                else:
                    rule.replies.popleft()
                rule.used += 1
                break
            else:
                return None
        return reply(request) if callable(reply) else reply

    def unused(self) -> list[str]:
        """What was scripted and never answered a request, described."""
        with self._lock:
            return [
                f"{rule.when!r} (replies left: {len(rule.replies)}, used: {rule.used})"
                for rule in self._rules
                if (rule.replies and not rule.repeat) or rule.used == 0
            ]
