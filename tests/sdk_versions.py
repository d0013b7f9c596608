"""What each SDK version makes of the transport's errors: one table for the SDK tests and for
the failure table of docs/sdks.md (tests/test_sdk_versions.py checks the page against it)."""

from __future__ import annotations

import anthropic
from packaging.version import Version

# anthropic 2.17 wraps an error raised while a stream is read (anthropic/_streaming.py): the
# client's RemoteProtocolError becomes APIConnectionError, a ReadTimeout becomes
# APITimeoutError, with ours as `__cause__`. Before it, the raw error reached the caller.
ANTHROPIC_WRAPS_STREAM_ERRORS = Version("2.17")


def anthropic_wraps_stream_errors(version: str = anthropic.__version__) -> bool:
    return Version(version) >= ANTHROPIC_WRAPS_STREAM_ERRORS


# The rows of docs/sdks.md's "mid-stream" table: (failure, anthropic before 2.17, since 2.17).
ANTHROPIC_MID_STREAM = [
    (
        "crashes mid-stream after N tokens",
        "N tokens, then the raw `httpx2.RemoteProtocolError` (its `__cause__`: the app's "
        "exception); not retried",
        "N tokens, then `APIConnectionError` whose `__cause__` is the `httpx2.RemoteProtocolError` "
        "(its own `__cause__`: the app's exception); not retried",
    ),
    (
        "stalls beyond the read timeout mid-stream",
        "the raw `httpx2.ReadTimeout`; the app is disconnected",
        "`APITimeoutError` whose `__cause__` is the `httpx2.ReadTimeout`; the app is disconnected",
    ),
]
