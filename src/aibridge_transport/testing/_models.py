"""The dated snapshot each provider reports for a model alias."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["MODEL_SNAPSHOTS"]

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
