"""A fake AI bridge for tests (answers like the providers, scripted, recording every request),
and what a test may read of a transport: the exchanges it still holds."""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "aibridge_transport.testing needs starlette (the testing extra): pip install starlette"
    ) from exc

from ._app import DEFAULT_PROVIDERS, FakeAIBridge, ProviderAPI
from ._record import Outcome, RecordedRequest
from ._script import (
    ARGUMENT_PIECE_SIZE,
    Chunking,
    Crash,
    Ending,
    Finish,
    HTTPError,
    Reply,
    Script,
    SimulatedCrash,
    Stall,
    TokenGate,
    ToolCall,
)
from ._transport import live_exchanges, wait_apps_ended

__all__ = [
    "ARGUMENT_PIECE_SIZE",
    "DEFAULT_PROVIDERS",
    "Chunking",
    "Crash",
    "Ending",
    "FakeAIBridge",
    "Finish",
    "HTTPError",
    "Outcome",
    "ProviderAPI",
    "RecordedRequest",
    "Reply",
    "Script",
    "SimulatedCrash",
    "Stall",
    "TokenGate",
    "ToolCall",
    "live_exchanges",
    "wait_apps_ended",
]
