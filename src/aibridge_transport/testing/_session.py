"""Record modes: when a test replays its cassette, records a new one, or both.

The modes are pytest-recording's (and vcrpy's), and mean the same:

| mode           | cassette exists                          | cassette missing         |
|----------------|------------------------------------------|--------------------------|
| `none`         | replay; an unmatched request fails       | fail: nothing to replay  |
| `once`         | replay; an unmatched request fails       | record every request     |
| `new_episodes` | replay; an unmatched request is recorded and added | record every request |
| `all`          | record every request, replacing it       | record every request     |

`none` never builds the recording app, so it can never reach a network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal, get_args

from ..types import ASGIApp
from ._cassette import Cassette
from ._clock import Clock
from ._match import RequestMatcher
from ._recorder import RecordingMiddleware
from ._replay import ReplayApp, Timing
from ._scrub import Scrubber

__all__ = ["RECORD_MODES", "CassetteNotFoundError", "CassetteSession", "RecordMode"]

RecordMode = Literal["none", "once", "new_episodes", "all"]
RECORD_MODES: Final[tuple[str, ...]] = get_args(RecordMode)


class CassetteNotFoundError(FileNotFoundError):
    """A cassette to replay does not exist, and the record mode forbids recording it."""


class CassetteSession:
    """
    One test's cassette in a record mode: `app` is what the bridge under test should be
    (a `ReplayApp`, a `RecordingMiddleware` around the upstream, or a replay that records
    what it cannot answer); `finish()` saves what was recorded and raises a mismatch.

    Arguments:
        path: The cassette file.
        mode: The record mode.
        upstream: Builds the app that records (your bridge, a `ForwardingApp`); only
            called when the mode may record.
        matcher: As `ReplayApp` takes it.
        timing: As `ReplayApp` takes it.
        clock: As `ReplayApp` takes it.
        allow_repeats: As `ReplayApp` takes it.
        scrubber: As `RecordingMiddleware` takes it.
    """

    def __init__(
        self,
        path: str | Path,
        mode: RecordMode = "none",
        *,
        upstream: Callable[[], ASGIApp] | None = None,
        matcher: RequestMatcher | None = None,
        timing: Timing = "fast",
        clock: Clock | None = None,
        allow_repeats: bool = False,
        scrubber: Scrubber | None = None,
    ) -> None:
        if mode not in RECORD_MODES:
            raise ValueError(f"record mode must be one of {', '.join(RECORD_MODES)}, not {mode!r}")
        self.path = Path(path)
        self.mode: RecordMode = mode
        exists = self.path.is_file()
        self.replay: ReplayApp | None = None
        self.recorder: RecordingMiddleware | None = None
        self._existing: Cassette | None = None

        def recorder() -> RecordingMiddleware:
            if upstream is None:
                raise ValueError(f"record mode {mode!r} needs an upstream app to record from")
            return RecordingMiddleware(upstream(), scrubber=scrubber)

        def replay(cassette: Cassette, fallback: ASGIApp | None = None) -> ReplayApp:
            return ReplayApp(
                cassette,
                matcher=matcher,
                timing=timing,
                clock=clock,
                allow_repeats=allow_repeats,
                fallback=fallback,
            )

        if mode == "all" or (not exists and mode != "none"):
            self.recorder = recorder()
            self.app: ASGIApp = self.recorder
        elif not exists:
            raise CassetteNotFoundError(
                f"cassette {self.path} does not exist and record mode 'none' replays only. "
                "Record it once against a real bridge: pytest --aibridge-record-mode=once"
            )
        elif mode == "new_episodes":
            self._existing = Cassette.load(self.path)
            self.recorder = recorder()
            self.replay = replay(self._existing, fallback=self.recorder)
            self.app = self.replay
        else:
            self.replay = replay(Cassette.load(self.path))
            self.app = self.replay

    def finish(self) -> None:
        """Save what was recorded (if anything), then raise the first replay mismatch."""
        if self.recorder is not None and len(self.recorder.cassette):
            recorded = self.recorder.cassette.interactions
            existing = self._existing.interactions if self._existing is not None else []
            Cassette([*existing, *recorded]).save(self.path)
        if self.replay is not None:
            self.replay.check()
