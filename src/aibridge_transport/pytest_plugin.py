"""pytest fixtures for code that talks to an AI bridge in process.

Loaded automatically (a `pytest11` entry point). The fixtures, all function-scoped:

- `aibridge_app`: the bridge app under test; a `FakeAIBridge` unless a conftest overrides it.
- `aibridge_strict`: whether app exceptions hidden by a 500 fail the test (default `True`;
  `False` under `@pytest.mark.aibridge_lenient`).
- `aibridge_factory`: an `InProcessTransportFactory` over `aibridge_app`, its lifespan running.
- `aibridge_delegated_key`: sets the delegated API key id `"test-key"` for the test.
- `aibridge_client`: `aibridge_client("openai")` gives an `httpx2.AsyncClient` (the flavour
  openai 3.x and anthropic >= 1.0 need), `aibridge_client("custom", flavor="httpx")` an
  `httpx.AsyncClient`; closed at teardown.
- For sync tests (plain `def test_...`, behaviour §12): `aibridge_sync_factory` (the factory
  entered with `with`: its lifespan on a loop thread of its own), `aibridge_sync_delegated_key`
  and `aibridge_sync_client`, which gives `httpx.Client` / `httpx2.Client` the same way.
- Cassettes: a test marked `@pytest.mark.aibridge_cassette` (optionally naming the file) gets
  as `aibridge_app` the cassette in the record mode of `--aibridge-record-mode` (`none`, the
  default, replays only); `aibridge_cassette` is that `CassetteSession`, and
  `aibridge_record_upstream` the app that records (a `ForwardingApp` to the real providers
  unless a conftest overrides it).

The async fixtures run under anyio's pytest plugin (tests marked `anyio`, on any backend) and
under pytest-asyncio (tests marked `asyncio`, or its auto mode). A plain `def` test that asks
for them, or an `async def` test that no async plugin runs, fails at setup with a message
naming the `aibridge_sync_*` fixtures or the marker.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, overload

import httpx
import pytest

from ._bridge_factory import InProcessTransportFactory
from ._bridge_identity import Source, with_delegated_api_key_id
from ._errors import AIBridgeTransportError
from ._flavors import Flavor, flavor_module
from .types import ASGIApp

if TYPE_CHECKING:
    import httpx2

    from .testing import CassetteSession

__all__ = [
    "CLIENT_FLAVOR",
    "DEFAULT_BASE_URL",
    "DEFAULT_DELEGATED_KEY",
    "AIBridgeClientFactory",
    "AIBridgeSyncClientFactory",
]

DEFAULT_DELEGATED_KEY = "test-key"
DEFAULT_BASE_URL = "http://aibridge"
# The clients' flavour unless a test names one: what both current SDKs need (anthropic >= 1.0
# refuses httpx objects, openai 3.x depends on httpx2; behaviour §2). Not keyed on the provider
# name: a name is the provider's instance name ("openai-eu"), and a default that changed with
# the value of a `str` would make the fixture's static type a lie. The factory's own default
# stays httpx (docs/testing.md says why).
CLIENT_FLAVOR: Final = "httpx2"

_LENIENT_MARKER = "aibridge_lenient"
_CASSETTE_MARKER = "aibridge_cassette"
_RECORD_MODES = ("none", "once", "new_episodes", "all")  # checked against RECORD_MODES in tests
_STRICT_NOTE = (
    "The bridge app raised this while the client got a 500 (strict mode of the aibridge "
    f"fixtures). Mark the test with @pytest.mark.{_LENIENT_MARKER} if it expects it."
)

# An async fixture must be run by whichever async plugin runs the test. pytest-asyncio, in its
# default strict mode, runs only fixtures it marked; anyio's plugin runs any async fixture of
# a test that uses `anyio_backend`. So the fixtures carry pytest-asyncio's mark, and
# `pytest_fixture_setup` below hides the mark for anyio tests (where the loop may be trio).
_ANYIO_STAND_INS: dict[Callable[..., Any], Callable[..., Any]] = {}


def _stand_in(fixture_function: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    async def unmarked(**kwargs: Any) -> AsyncIterator[Any]:
        async for value in fixture_function(**kwargs):
            yield value

    return unmarked


def _async_fixture(fixture_function: Callable[..., AsyncIterator[Any]]) -> Any:
    _ANYIO_STAND_INS[fixture_function] = _stand_in(fixture_function)
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(fixture_function)
    return pytest_asyncio.fixture(fixture_function)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aibridge", "aibridge-transport cassettes")
    group.addoption(
        "--aibridge-record-mode",
        choices=_RECORD_MODES,
        default="none",
        help="how tests marked aibridge_cassette use their cassettes: none (replay only, the "
        "default), once (record missing cassettes), new_episodes (record unmatched requests), "
        "all (record everything again)",
    )


# The fixtures that need an async test; each has a sync counterpart for plain `def` tests.
_SYNC_COUNTERPARTS: Final = {
    "aibridge_factory": "aibridge_sync_factory",
    "aibridge_client": "aibridge_sync_client",
    "aibridge_delegated_key": "aibridge_sync_delegated_key",
}


def _runs_async(item: pytest.Item) -> bool:
    """Whether an async plugin will run this coroutine test (anyio's, or pytest-asyncio's)."""
    if "anyio_backend" in getattr(item, "fixturenames", ()):  # @pytest.mark.anyio
        return True
    if item.get_closest_marker("asyncio") is not None:
        return True
    try:
        return bool(item.config.getini("asyncio_mode") == "auto")
    except ValueError:  # pytest-asyncio is not installed
        return False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse a test that cannot use the async fixtures it asks for, before any is set up.

    Left to pytest, a plain `def` test (or an unmarked `async def` one) fails with a generic
    error halfway through setting the fixtures up, and what that leaves behind fails every
    later test that uses them, with bare `AssertionError`s.
    """
    requested = [name for name in _SYNC_COUNTERPARTS if name in getattr(item, "fixturenames", ())]
    if not requested:
        return
    names = ", ".join(f"`{name}`" for name in requested)
    if not inspect.iscoroutinefunction(getattr(item, "obj", None)):
        counterparts = ", ".join(f"`{_SYNC_COUNTERPARTS[name]}`" for name in requested)
        pytest.fail(
            f"{item.name} is a plain `def` test, but {names} need an async test: use "
            f"{counterparts} in a plain `def` test (sync clients), or make it an "
            "`async def` test marked `@pytest.mark.anyio`",
            pytrace=False,
        )
    if not _runs_async(item):
        pytest.fail(
            f"{item.name} is an `async def` test that no async plugin runs, so {names} cannot "
            "be set up: mark it `@pytest.mark.anyio` (or `pytestmark = pytest.mark.anyio` in "
            "the module), or `@pytest.mark.asyncio` under pytest-asyncio",
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_LENIENT_MARKER}: let the bridge app raise behind a 500 without failing the test",
    )
    config.addinivalue_line(
        "markers",
        f"{_CASSETTE_MARKER}(path=None, **options): the bridge app replays (or records) a "
        "cassette; options as CassetteSession takes them",
    )


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    func = fixturedef.func
    stand_in = _ANYIO_STAND_INS.get(func)
    if stand_in is None or "anyio_backend" not in request.fixturenames:
        return (yield)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fixturedef, "func", stand_in)
        return (yield)


class AIBridgeClientFactory(Protocol):
    """The `aibridge_client` fixture: a client whose requests go to the bridge app."""

    @overload
    def __call__(
        self,
        provider: str,
        *,
        source: Source | str = ...,
        flavor: Literal["httpx2"] = ...,
        base_url: str = ...,
        **client_options: Any,
    ) -> httpx2.AsyncClient: ...

    @overload
    def __call__(
        self,
        provider: str,
        *,
        source: Source | str = ...,
        flavor: Literal["httpx"],
        base_url: str = ...,
        **client_options: Any,
    ) -> httpx.AsyncClient: ...


@pytest.fixture
def aibridge_app(request: pytest.FixtureRequest) -> ASGIApp:
    """The bridge app under test. Override it in a conftest to test your own.

    Under `@pytest.mark.aibridge_cassette`, the cassette's app (replaying or recording)."""
    if request.node.get_closest_marker(_CASSETTE_MARKER) is not None:
        session: CassetteSession = request.getfixturevalue("aibridge_cassette")
        return session.app
    from .testing import FakeAIBridge

    app: ASGIApp = FakeAIBridge()
    return app


@pytest.fixture
def aibridge_strict(request: pytest.FixtureRequest) -> bool:
    """Fail the test at teardown when the app raised behind a 500 (behaviour §7)."""
    return request.node.get_closest_marker(_LENIENT_MARKER) is None


@_async_fixture
async def aibridge_factory(
    aibridge_app: ASGIApp, aibridge_strict: bool
) -> AsyncIterator[InProcessTransportFactory]:
    """An `InProcessTransportFactory` over `aibridge_app`, inside its lifespan."""
    factory = InProcessTransportFactory(aibridge_app, strict=aibridge_strict)
    await factory.__aenter__()  # lifespan startup: a failure is the setup's error
    try:
        yield factory
    finally:
        await _close_factory(factory)


async def _close_factory(factory: InProcessTransportFactory) -> None:
    try:
        await factory.aclose()
    except AIBridgeTransportError:
        raise
    except Exception as exc:
        # Anything else is the app's own exception that strict mode kept (behaviour §7).
        exc.add_note(_STRICT_NOTE)
        raise
    _check_scripts(factory.app)


def _check_scripts(app: object) -> None:
    """A `FakeAIBridge(strict_scripts=True)` fails the test for a reply never used."""
    if getattr(app, "strict_scripts", False):
        app.assert_scripts_used()  # type: ignore[attr-defined]


@_async_fixture
async def aibridge_delegated_key() -> AsyncIterator[str]:
    """Sets the delegated API key id `"test-key"` for the test; the value is the key id.

    Set in an async fixture so that it reaches the test under both async plugins: anyio's
    runs fixtures and test in one task, pytest-asyncio copies the fixture's context into
    the test's. A sync fixture would miss the test under anyio's plugin whenever an async
    fixture started the event loop first.
    """
    with with_delegated_api_key_id(DEFAULT_DELEGATED_KEY):
        yield DEFAULT_DELEGATED_KEY


@_async_fixture
async def aibridge_client(
    aibridge_factory: InProcessTransportFactory,
) -> AsyncIterator[AIBridgeClientFactory]:
    """Makes clients whose requests go to `aibridge_app`; every one is closed at teardown."""
    clients: list[Any] = []
    try:
        yield _client_maker(aibridge_factory, clients, sync=False)
    finally:
        for client in clients:
            await client.aclose()


class AIBridgeSyncClientFactory(Protocol):
    """The `aibridge_sync_client` fixture: a sync client whose requests go to the bridge app."""

    @overload
    def __call__(
        self,
        provider: str,
        *,
        source: Source | str = ...,
        flavor: Literal["httpx2"] = ...,
        base_url: str = ...,
        **client_options: Any,
    ) -> httpx2.Client: ...

    @overload
    def __call__(
        self,
        provider: str,
        *,
        source: Source | str = ...,
        flavor: Literal["httpx"],
        base_url: str = ...,
        **client_options: Any,
    ) -> httpx.Client: ...


@pytest.fixture
def aibridge_sync_factory(
    aibridge_app: ASGIApp, aibridge_strict: bool
) -> Iterator[InProcessTransportFactory]:
    """An `InProcessTransportFactory` over `aibridge_app` for sync tests, inside its lifespan."""
    factory = InProcessTransportFactory(aibridge_app, strict=aibridge_strict)
    factory.__enter__()  # lifespan startup on the factory's loop thread
    try:
        yield factory
    finally:
        try:
            factory.close()
        except AIBridgeTransportError:
            raise
        except Exception as exc:
            exc.add_note(_STRICT_NOTE)
            raise
        _check_scripts(factory.app)


@pytest.fixture
def aibridge_sync_delegated_key() -> Iterator[str]:
    """Sets the delegated API key id `"test-key"` for a sync test; the value is the key id."""
    with with_delegated_api_key_id(DEFAULT_DELEGATED_KEY):
        yield DEFAULT_DELEGATED_KEY


@pytest.fixture
def aibridge_sync_client(
    aibridge_sync_factory: InProcessTransportFactory,
) -> Iterator[AIBridgeSyncClientFactory]:
    """Makes sync clients whose requests go to `aibridge_app`; every one is closed at teardown."""
    clients: list[Any] = []
    try:
        yield _client_maker(aibridge_sync_factory, clients, sync=True)
    finally:
        for client in clients:
            client.close()


def _client_maker(
    factory: InProcessTransportFactory, clients: list[Any], *, sync: bool
) -> Callable[..., Any]:
    """What `aibridge_client` and `aibridge_sync_client` hand out; each client kept to close."""

    def make_client(
        provider: str,
        *,
        source: Source | str = Source.AGENTS,
        flavor: Flavor = CLIENT_FLAVOR,
        base_url: str = DEFAULT_BASE_URL,
        **client_options: Any,
    ) -> Any:
        transport = factory.transport_for(provider, source, flavor=flavor)
        module = flavor_module(flavor)
        client_class = module.Client if sync else module.AsyncClient
        client = client_class(transport=transport, base_url=base_url, **client_options)
        clients.append(client)
        return client

    return make_client


@pytest.fixture
def aibridge_record_mode(request: pytest.FixtureRequest) -> str:
    """The record mode of `--aibridge-record-mode` (`none` by default)."""
    return str(request.config.getoption("--aibridge-record-mode"))


@pytest.fixture
def aibridge_record_upstream() -> ASGIApp:
    """The app that cassettes record from: a `ForwardingApp` to the real providers, sending
    the SDK's own API key. Override it in a conftest to record your own bridge."""
    from .testing import ForwardingApp

    app: ASGIApp = ForwardingApp()
    return app


def _cassette_name(node: pytest.Item) -> str:
    """`test_name[params]` less the async backend: one cassette serves asyncio and trio."""
    name = getattr(node, "originalname", node.name)
    callspec = getattr(node, "callspec", None)
    if callspec is not None:
        ids = [str(value) for key, value in callspec.params.items() if key != "anyio_backend"]
        if ids:
            name += "[" + "-".join(ids) + "]"
    return re.sub(r"[^\w.\[\]-]", "_", name)


@pytest.fixture
def aibridge_cassette(
    request: pytest.FixtureRequest, aibridge_record_mode: str
) -> Iterator[CassetteSession]:
    """The test's cassette: `cassettes/<module>/<test>.yaml` beside the test file, or the
    path the `aibridge_cassette` marker names (relative to that folder)."""
    from .testing import CassetteNotFoundError, CassetteSession

    marker = request.node.get_closest_marker(_CASSETTE_MARKER)
    args = marker.args if marker is not None else ()
    options = dict(marker.kwargs) if marker is not None else {}
    folder = Path(request.node.path).parent / "cassettes" / Path(request.node.path).stem
    path = folder / (args[0] if args else _cassette_name(request.node) + ".yaml")

    def upstream() -> ASGIApp:
        app: ASGIApp = request.getfixturevalue("aibridge_record_upstream")
        return app

    try:
        session = CassetteSession(
            path,
            aibridge_record_mode,  # type: ignore[arg-type]
            upstream=upstream,
            **options,
        )
    except CassetteNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield session
    session.finish()
