"""What each `anthropic-version` changes in the requests the Messages API takes.

Anthropic versions its API by a request header; a request is checked by the rules of the
version it names. The rules are one table, ordered by version (the versions are dates, so
they order as strings): a request takes the rules of the latest entry at or before its
version. A request without the header (the SDKs always send one; a raw client may not) is
checked by the oldest rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["ANTHROPIC_VERSIONS", "AnthropicRules", "anthropic_rules"]


@dataclass(frozen=True)
class AnthropicRules:
    """What one `anthropic-version` accepts that another may not."""

    version: str
    sampling: bool
    """`temperature`, `top_p` and `top_k` are accepted (checked for type and range)."""
    assistant_documents: bool
    """`document` blocks are accepted in assistant messages."""
    user_citations: bool
    """Blocks of user messages may carry non-empty `citations`."""


# 2023-06-01 is the version litellm still sends; 2026-10-21 is anthropic 2.x's default
# (`anthropic._constants.ANTHROPIC_API_VERSION`), under which the API refuses the sampling
# parameters even at their default values, document blocks in assistant messages and
# non-empty citations in user messages (docs/testing.md, "API versions").
ANTHROPIC_VERSIONS: Final[tuple[AnthropicRules, ...]] = (
    AnthropicRules("2023-06-01", sampling=True, assistant_documents=True, user_citations=True),
    AnthropicRules("2026-10-21", sampling=False, assistant_documents=False, user_citations=False),
)


def anthropic_rules(headers: Mapping[str, str]) -> AnthropicRules:
    """The rules of the `anthropic-version` a request names (lower-cased header names)."""
    oldest = min(ANTHROPIC_VERSIONS, key=lambda entry: entry.version)
    version = headers.get("anthropic-version")
    if version is None:
        return oldest
    earlier = [entry for entry in ANTHROPIC_VERSIONS if entry.version <= version.strip()]
    return max(earlier, key=lambda entry: entry.version, default=oldest)
