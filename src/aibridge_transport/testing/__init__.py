"""A fake AI bridge for tests (answers like the providers, scripted, recording every request),
cassettes to record real exchanges and replay them chunk by chunk, faults and latency, and
what a test may read of a transport: the exchanges it still holds."""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "aibridge_transport.testing needs starlette (the testing extra): pip install starlette"
    ) from exc

from ._app import DEFAULT_PROVIDERS, FakeAIBridge, ProviderAPI
from ._cassette import Cassette, CassetteRequest, CassetteResponse, Interaction, RecordedChunk
from ._clock import Clock, RealClock, VirtualClock
from ._faults import (
    assert_retry_after_honoured,
    disconnect_mid_stream,
    overloaded,
    rate_limited,
    refuses_truncated_stream,
    server_error,
)
from ._forward import DEFAULT_UPSTREAMS, ForwardingApp
from ._latency import LatencyMiddleware
from ._match import (
    DEFAULT_IGNORED_FIELDS,
    DEFAULT_IGNORED_QUERY,
    CassetteMismatchError,
    Matcher,
    RequestMatcher,
)
from ._models import MODEL_SNAPSHOTS
from ._record import Outcome, RecordedRequest
from ._recorder import RecordingMiddleware
from ._replay import ReplayApp, Timing
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
from ._scripted import Responder, When, last_user_text, tool_results
from ._scrub import Scrubber
from ._session import RECORD_MODES, CassetteNotFoundError, CassetteSession, RecordMode
from ._transport import live_exchanges, wait_apps_ended, wait_apps_ended_sync

__all__ = [
    "ARGUMENT_PIECE_SIZE",
    "DEFAULT_IGNORED_FIELDS",
    "DEFAULT_IGNORED_QUERY",
    "DEFAULT_PROVIDERS",
    "DEFAULT_UPSTREAMS",
    "MODEL_SNAPSHOTS",
    "RECORD_MODES",
    "Cassette",
    "CassetteMismatchError",
    "CassetteNotFoundError",
    "CassetteRequest",
    "CassetteResponse",
    "CassetteSession",
    "Chunking",
    "Clock",
    "Crash",
    "Ending",
    "FakeAIBridge",
    "Finish",
    "ForwardingApp",
    "HTTPError",
    "Interaction",
    "LatencyMiddleware",
    "Matcher",
    "Outcome",
    "ProviderAPI",
    "RealClock",
    "RecordMode",
    "RecordedChunk",
    "RecordedRequest",
    "RecordingMiddleware",
    "ReplayApp",
    "Reply",
    "RequestMatcher",
    "Responder",
    "Script",
    "Scrubber",
    "SimulatedCrash",
    "Stall",
    "Timing",
    "TokenGate",
    "ToolCall",
    "VirtualClock",
    "When",
    "assert_retry_after_honoured",
    "disconnect_mid_stream",
    "last_user_text",
    "live_exchanges",
    "overloaded",
    "rate_limited",
    "refuses_truncated_stream",
    "server_error",
    "tool_results",
    "wait_apps_ended",
    "wait_apps_ended_sync",
]
