"""What the fake knows of models: the dated snapshot each provider reports for an alias, and
how each OpenAI model family fills in the chat fields that vary by model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["CHAT_FAMILIES", "CURRENT_CHAT_FAMILY", "MODEL_SNAPSHOTS", "ChatFamily", "chat_family"]

# An alias asked for is answered with the snapshot it points to, as the real APIs report it
# (`"model": "gpt-4o-mini"` comes back as `gpt-4o-mini-2024-07-18`). Taken from the providers'
# model pages and recorded answers; an alias moves to newer snapshots over time, so this is a
# default a test may replace (`FakeAIBridge(model_snapshots=...)`). Names not listed (dated
# snapshots, made-up test names) are echoed as asked.
MODEL_SNAPSHOTS: Final[Mapping[str, str]] = {
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "o1": "o1-2024-12-17",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}


@dataclass(frozen=True)
class ChatFamily:
    """How a family of OpenAI models fills in the chat answer fields that vary by model."""

    forced_function_finish: Literal["stop", "tool_calls"]
    """`finish_reason` of an answer whose `tool_choice` forced a named function."""
    system_fingerprint: bool
    """Whether answers name a `system_fingerprint` (`fp_...`) or send null."""


# By model name prefix; the evidence for each line is in docs/testing.md, "Models". The older
# lines answer a forced named function with "stop" and name a fingerprint; the gpt-5 line
# answers "tool_calls" and a null fingerprint. Names not listed (reasoning models, newer
# lines, made-up test names) answer as the gpt-5 line does.
CHAT_FAMILIES: Final[Mapping[str, ChatFamily]] = {
    "gpt-3.5": ChatFamily("stop", system_fingerprint=True),
    "gpt-4": ChatFamily("stop", system_fingerprint=True),  # gpt-4, -turbo, gpt-4o, gpt-4.1
}
CURRENT_CHAT_FAMILY: Final = ChatFamily("tool_calls", system_fingerprint=False)


def chat_family(model: str) -> ChatFamily:
    """The family of `model` (the name the answer reports): the longest prefix listed."""
    prefixes = [prefix for prefix in CHAT_FAMILIES if model.startswith(prefix)]
    return CHAT_FAMILIES[max(prefixes, key=len)] if prefixes else CURRENT_CHAT_FAMILY
