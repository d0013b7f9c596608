"""pytest plugin for the peer suites: Starlette's TestClient sends HTTP through our transport.

Loaded into another project's own test run by `scripts/peer_suites.py` (`-p peer_swap`). It
replaces `starlette.testclient._TestClientTransport`, the one class `TestClient.__init__`
builds its transport from, with `PeerTransport`: every HTTP request goes through the sync side
of our `StreamingASGITransport` (behaviour §12), of the flavour TestClient's module uses
(httpx2 when installed); websocket sessions stay on TestClient's own transport (the transport
is HTTP only). Then it marks the tests that `peer_suites.toml` expects to fail, each with its
reason, as strict xfails: an unlisted failure fails the run, and so does a listed test that
passes.

Where the app runs, as TestClient runs it:

- while the TestClient is entered (`with client:`), on its portal's loop, where the lifespan
  ran: our transport is entered there with `async with` (behaviour §12, "the loop on which
  ... was entered");
- otherwise, on asyncio, on the bare transport's own loop thread (what a user of
  `httpx2.Client(transport=StreamingASGITransport(app))` gets); on trio, on a trio loop the
  harness starts for the TestClient and enters the transport on, so that a test that asks for
  trio gets trio. The harness stops that loop when the test ends (its own machinery, not
  ours, so it is not left to the garbage collector). Our transport itself is closed only
  when TestClient closes it: what TestClient leaves open is left to the collector, as in a
  user's process: collected, it stops its loop thread by a signal (behaviour §12).

The lifespan is TestClient's (the bare transport runs none): the app sees a copy of the state
TestClient's lifespan filled, as TestClient's own transport gives it.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
import starlette.testclient as testclient

if testclient.httpx.__name__ == "httpx2":  # type: ignore[attr-defined]
    from aibridge_transport.httpx2 import StreamingASGITransport
else:
    from aibridge_transport import StreamingASGITransport  # type: ignore[assignment]

_TestClientTransport = testclient._TestClientTransport

SUITES_FILE = Path(__file__).with_name("peer_suites.toml")


def _with_state(app: Any, app_state: dict[str, Any]) -> Any:
    """The app, seeing a copy of TestClient's lifespan state in each request's scope."""

    async def app_with_state(scope: Any, receive: Any, send: Any) -> None:
        scope["state"] = app_state.copy()
        await app(scope, receive, send)

    return app_with_state


class PeerTransport(testclient.httpx.BaseTransport):  # type: ignore[misc,name-defined]
    """TestClient's transport: HTTP through ours, websockets through TestClient's own."""

    def __init__(
        self,
        app: Any,
        portal_factory: Callable[[], AbstractContextManager[anyio.from_thread.BlockingPortal]],
        raise_server_exceptions: bool = True,
        root_path: str = "",
        *,
        client: tuple[str, int],
        app_state: dict[str, Any],
    ) -> None:
        self._websockets = _TestClientTransport(
            app,
            portal_factory,
            raise_server_exceptions,
            root_path,
            client=client,
            app_state=app_state,
        )
        # TestClient hands in its bound `_portal_factory`: its `portal` (set while entered)
        # and `async_backend` say where the app runs.
        self._test_client: Any = portal_factory.__self__  # type: ignore[attr-defined]
        self._http = StreamingASGITransport(
            _with_state(app, app_state),
            raise_app_exceptions=raise_server_exceptions,
            root_path=root_path,
            client=client,
            # TestClient hands each chunk over in lock step (a zero-size buffer): so does ours
            # with no buffer (behaviour §5), which Starlette's backpressure tests then check.
            max_buffered_chunks=0,
            # TestClient's close cancels at once what still runs after a complete response
            # (background tasks): ours with no graceful wait, where a server's would wait
            # (behaviour §6, `shutdown_timeout`).
            shutdown_timeout=0,
        )
        self._entered_on: anyio.from_thread.BlockingPortal | None = None
        self._trio_loop: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._trio_portal: anyio.from_thread.BlockingPortal | None = None
        self._trio_lock = threading.Lock()
        _CREATED.append(self)

    def handle_request(self, request: Any) -> Any:
        if request.url.scheme in {"ws", "wss"}:
            _SENT["websocket sessions through TestClient's own transport"] += 1
            return self._websockets.handle_request(request)
        _SENT["HTTP requests through StreamingASGITransport"] += 1
        self._choose_loop()
        return self._http.handle_request(request)

    def _choose_loop(self) -> None:
        portal = self._test_client.portal
        if portal is not None:
            if self._entered_on is not portal:
                portal.call(self._http.__aenter__)
                self._entered_on = portal
            return
        backend = self._test_client.async_backend
        if backend["backend"] == "asyncio":
            return
        with self._trio_lock:
            if self._trio_loop is None:
                self._trio_loop = anyio.from_thread.start_blocking_portal(**backend)
                self._trio_portal = self._trio_loop.__enter__()
                self._trio_portal.call(self._http.__aenter__)

    def stop_trio_loop(self) -> None:
        """Leave our transport's `async with` on the harness's trio loop, and stop that loop."""
        with self._trio_lock:
            loop, portal = self._trio_loop, self._trio_portal
            self._trio_loop = self._trio_portal = None
        if loop is None or portal is None:
            return
        try:
            portal.call(self._http.__aexit__, None, None, None)
        finally:
            loop.__exit__(None, None, None)

    def close(self) -> None:
        try:
            if self._entered_on is not None:
                portal, self._entered_on = self._entered_on, None
                portal.call(self._http.__aexit__, None, None, None)
            self.stop_trio_loop()
            self._http.close()
        finally:
            self._websockets.close()


# What went where: a run that sent nothing through ours checked nothing (a TestClient that no
# longer builds its transport from `_TestClientTransport` would bypass the swap silently).
_SENT: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        "peer_swap: " + ", ".join(f"{count} {what}" for what, count in sorted(_SENT.items()))
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.testscollected and not _SENT["HTTP requests through StreamingASGITransport"]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The transports made during the current test, ended when it ends (see `pytest_runtest_teardown`).
_CREATED: list[PeerTransport] = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    while _CREATED:
        _CREATED.pop().stop_trio_loop()


def pytest_configure(config: pytest.Config) -> None:
    testclient._TestClientTransport = PeerTransport  # type: ignore[misc]
    # FastAPI's tests group some modules for pytest-xdist, which the peer run does not use.
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's grouping")


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


def suite_config(suite: str, path: Path = SUITES_FILE) -> dict[str, Any]:
    return _load(path)[suite]  # type: ignore[no-any-return]


class Expected:
    """One test `peer_suites.toml` expects to fail: the section, the reason, strict or not."""

    def __init__(self, section: str, reason: str, strict: bool) -> None:
        self.section = section
        self.reason = reason
        self.strict = strict


def expected_failures(suite: str, path: Path = SUITES_FILE) -> dict[str, Expected]:
    """Node id -> what `peer_suites.toml` says of it, for one suite."""
    sections = suite_config(suite, path).get("expected_failures", {})
    expected: dict[str, Expected] = {}
    for section, groups in sections.items():
        for group in groups:
            entry = Expected(section, group["reason"], group.get("strict", True))
            for node_id in group["tests"]:
                if node_id in expected:
                    raise ValueError(f"{path.name} lists {node_id} twice")
                expected[node_id] = entry
    return expected


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suite = os.environ.get("PEER_SUITE")
    if not suite:
        return
    expected = expected_failures(suite)
    matched: set[str] = set()
    for item in items:
        # An entry without a parameter suffix names every parametrization of the test.
        for key in (item.nodeid, item.nodeid.partition("[")[0]):
            entry = expected.get(key)
            if entry is not None:
                reason = f"{entry.section}: {entry.reason}"
                item.add_marker(pytest.mark.xfail(strict=entry.strict, reason=reason))
                matched.add(key)
                break
    unmatched = sorted(set(expected) - matched)
    if unmatched and os.environ.get("PEER_SUITE_WHOLE") == "1":
        raise pytest.UsageError(
            f"{SUITES_FILE.name} names tests that this run did not collect: " + ", ".join(unmatched)
        )
