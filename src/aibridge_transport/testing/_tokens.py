"""How the fake bridge counts tokens: made up, but deterministic and growing with the text.

Input: every string in the system prompt (`system`, `instructions`) and in each message or
input item counts `ceil(characters / 4)`, except the keys that only label a part (`role`,
`type`, ids); each message or item adds `MESSAGE_OVERHEAD`, and the tool definitions count
`ceil(characters / 4)` of their compact JSON.

Output: one token per word token of the reply's text (the unit it streams and truncates
by), and `ceil((len(name) + len(arguments)) / 4)` per tool call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, Final

from ._script import ToolCall

__all__ = ["MESSAGE_OVERHEAD", "input_tokens", "text_tokens", "tool_call_tokens"]

MESSAGE_OVERHEAD: Final = 3
_LABELS: Final = frozenset({"role", "type", "id", "tool_call_id", "tool_use_id", "call_id"})


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def tool_call_tokens(call: ToolCall) -> int:
    return text_tokens(call.name + call.arguments_text)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _LABELS:
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _count(value: Any) -> int:
    return sum(text_tokens(text) for text in _strings(value))


def input_tokens(body: dict[str, Any]) -> int:
    """The prompt's tokens: system prompt, messages (or Responses input) and tools."""
    total = 0
    for key in ("system", "instructions"):
        if body.get(key):
            total += MESSAGE_OVERHEAD + _count(body[key])
    turns = body.get("messages", body.get("input"))
    if isinstance(turns, str):
        turns = [turns]
    if isinstance(turns, list):
        total += sum(MESSAGE_OVERHEAD + _count(turn) for turn in turns)
    tools = body.get("tools")
    if tools:
        total += text_tokens(json.dumps(tools, separators=(",", ":")))
    return total
