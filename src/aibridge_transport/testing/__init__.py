"""A fake AI bridge for tests: answers like the providers, scripted, recording every request."""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "aibridge_transport.testing needs starlette: pip install 'aibridge-transport[testing]'"
    ) from exc

from ._app import FakeAIBridge
from ._record import Outcome, RecordedRequest
from ._script import (
    Crash,
    Ending,
    HTTPError,
    Reply,
    Script,
    SimulatedCrash,
    Stall,
    TokenGate,
    ToolCall,
)

__all__ = [
    "Crash",
    "Ending",
    "FakeAIBridge",
    "HTTPError",
    "Outcome",
    "RecordedRequest",
    "Reply",
    "Script",
    "SimulatedCrash",
    "Stall",
    "TokenGate",
    "ToolCall",
]
