from __future__ import annotations

import textwrap

import pytest

# Inner runs are in process: pytester drops the modules they import when they end, while the
# factory keeps the flavour classes it built. Importing the flavours here keeps both alive.
import aibridge_transport.httpx2
import aibridge_transport.testing  # noqa: F401

pytest_plugins = ["pytester"]

INI = """\
[pytest]
addopts = --strict-markers -p no:cacheprovider
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    ignore:Async generator 'httpx2?\\.:ResourceWarning
"""

BOTH_BACKENDS = """\
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

RAISING_APP = """\
async def raising_app(scope, receive, send):
    if scope["type"] != "http":
        return
    raise ValueError("boom from the bridge")
"""


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under CI, pytest prints whole exception messages in its short summary: the inner runs'
    # output must not depend on where the outer run happens.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makeconftest(BOTH_BACKENDS)
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    return pytester.runpytest(*args)


def test_fixtures_serve_both_flavours_under_anyio_on_both_backends(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import httpx
        import httpx2
        import pytest

        from aibridge_transport import InProcessTransportFactory, delegated_api_key_id_from_context
        from aibridge_transport.testing import FakeAIBridge

        pytestmark = pytest.mark.anyio

        async def test_key_reaches_the_test(aibridge_delegated_key):
            assert aibridge_delegated_key == "test-key"
            assert delegated_api_key_id_from_context() == "test-key"

        async def test_httpx_client(aibridge_app, aibridge_client, aibridge_delegated_key):
            assert isinstance(aibridge_app, FakeAIBridge)
            client = aibridge_client("openai", flavor="httpx")
            assert type(client) is httpx.AsyncClient
            response = await client.get("/v1/models")
            assert response.status_code == 200
            seen = aibridge_app.last_request
            assert seen.path == "/api/v2/aibridge/openai/v1/models"
            assert (seen.delegated_api_key_id, seen.source) == ("test-key", "agents")

        async def test_httpx2_client(aibridge_app, aibridge_client, aibridge_delegated_key):
            client = aibridge_client("anthropic", source="cli")  # httpx2 unless told
            assert type(client) is httpx2.AsyncClient
            assert not any(
                cls.__module__.startswith("httpx.") for cls in type(client._transport).__mro__
            )
            response = await client.get("/v1/models", headers={"anthropic-version": "1"})
            assert response.json()["data"][0]["type"] == "model"
            assert aibridge_app.last_request.source == "cli"

        async def test_client_options(aibridge_app, aibridge_client, aibridge_delegated_key):
            client = aibridge_client(
                "openai", base_url="http://elsewhere/api/v2/aibridge/openai", headers={"x-a": "b"}
            )
            response = await client.get("/v1/models")
            assert response.status_code == 200
            assert aibridge_app.last_request.path == "/api/v2/aibridge/openai/v1/models"
            assert aibridge_app.last_request.headers["x-a"] == "b"

        async def test_factory_is_the_clients(aibridge_factory, aibridge_app, aibridge_client):
            assert isinstance(aibridge_factory, InProcessTransportFactory)
            assert aibridge_factory.app is aibridge_app

        async def test_key_does_not_outlive_its_test():
            assert delegated_api_key_id_from_context() is None
        """,
    )
    result.assert_outcomes(passed=12)


def test_fixtures_run_under_anyio_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        INI.replace("asyncio_mode = strict\n", "").replace(
            "asyncio_default_fixture_loop_scope = function\n", ""
        )
    )
    pytester.makeconftest(BOTH_BACKENDS)
    pytester.makepyfile(
        test_inner="""
        import pytest

        @pytest.mark.anyio
        async def test_clients(aibridge_app, aibridge_client, aibridge_delegated_key):
            response = await aibridge_client("openai").get("/v1/models")
            assert response.status_code == 200
            response = await aibridge_client("openai", flavor="httpx2").get("/v1/models")
            assert response.status_code == 200
            assert aibridge_app.last_request.delegated_api_key_id == "test-key"
        """
    )
    result = pytester.runpytest("-p", "no:asyncio")
    result.assert_outcomes(passed=2)
    assert "asyncio-" not in result.stdout.str()  # pytest-asyncio was not loaded


def test_fixtures_run_under_pytest_asyncio(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import httpx2
        import pytest

        from aibridge_transport import delegated_api_key_id_from_context

        @pytest.mark.asyncio
        async def test_key_reaches_the_test(aibridge_delegated_key):
            assert delegated_api_key_id_from_context() == "test-key"

        @pytest.mark.asyncio
        async def test_clients(aibridge_app, aibridge_client, aibridge_delegated_key):
            response = await aibridge_client("openai").get("/v1/models")
            assert response.status_code == 200
            client = aibridge_client("anthropic", flavor="httpx2")
            assert type(client) is httpx2.AsyncClient
            response = await client.get("/v1/models")
            assert response.status_code == 200
            assert aibridge_app.last_request.delegated_api_key_id == "test-key"

        @pytest.mark.asyncio
        async def test_key_does_not_outlive_its_test():
            assert delegated_api_key_id_from_context() is None
        """,
    )
    result.assert_outcomes(passed=3)


def test_a_request_without_the_key_fixture_is_refused(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        from aibridge_transport import MissingDelegatedAPIKeyError

        @pytest.mark.anyio
        async def test_anyio(aibridge_app, aibridge_client):
            with pytest.raises(MissingDelegatedAPIKeyError):
                await aibridge_client("openai").get("/v1/models")
            assert aibridge_app.requests == []

        @pytest.mark.asyncio
        async def test_asyncio(aibridge_app, aibridge_client):
            with pytest.raises(MissingDelegatedAPIKeyError):
                await aibridge_client("openai").get("/v1/models")
            assert aibridge_app.requests == []
        """,
    )
    result.assert_outcomes(passed=3)


# A response left open mid-stream is closed by the fixtures' teardown: the app is told and
# stops, and the clients are closed. Under pytest-asyncio that teardown runs in another task
# than the test that sent the request (recorded here), which the transport allows (behaviour §6).
OPEN_STREAM = """
import pytest

from aibridge_transport.testing import Reply, TokenGate

{prelude}

seen = []
clients = []
tasks = []

{fixture_decorator}
async def task_probe():
    tasks.append(current_task_id())
    yield
    tasks.append(current_task_id())

{marker}
async def test_leaves_a_stream_open(
    task_probe, aibridge_app, aibridge_client, aibridge_delegated_key
):
    aibridge_app.queue(Reply(text="never sent", gate=TokenGate()))
    client = aibridge_client("openai")
    clients.append(client)
    body = {{"model": "m", "messages": [{{"role": "user", "content": "hi"}}], "stream": True}}
    request = client.build_request("POST", "/v1/chat/completions", json=body)
    response = await client.send(request, stream=True)
    assert response.status_code == 200
    seen.append(aibridge_app.last_request)

{marker}
async def test_teardown_closed_it():
    record = seen.pop()
    assert record.ended
    assert record.outcome in ("disconnected", "cancelled")
    assert clients.pop().is_closed
    setup_task, teardown_task = tasks[-2:]
    print("probe tasks:", "same" if setup_task == teardown_task else "different")
"""


def test_teardown_closes_an_open_stream_under_anyio(pytester: pytest.Pytester) -> None:
    source = OPEN_STREAM.format(
        prelude=(
            "import anyio\n\ndef current_task_id():\n    return anyio.get_current_task().id\n"
        ),
        fixture_decorator="@pytest.fixture",
        marker="@pytest.mark.anyio",
    )
    result = run(pytester, source, "-s")
    result.assert_outcomes(passed=4)
    # anyio's plugin runs a test and its fixtures in one task.
    assert result.stdout.str().count("probe tasks: same") == 2


def test_teardown_in_another_task_closes_an_open_stream_under_pytest_asyncio(
    pytester: pytest.Pytester,
) -> None:
    source = OPEN_STREAM.format(
        prelude=(
            "import asyncio\n"
            "import pytest_asyncio\n\n"
            # The task itself, not its id: a finished task's id can be reused.
            "def current_task_id():\n"
            "    return asyncio.current_task()\n"
        ),
        fixture_decorator="@pytest_asyncio.fixture",
        marker="@pytest.mark.asyncio",
    )
    result = run(pytester, source, "-s")
    result.assert_outcomes(passed=2)
    assert "probe tasks: different" in result.stdout.str()


STRICT_SOURCE = (
    RAISING_APP
    + """
import pytest

@pytest.fixture
def aibridge_app():
    return raising_app

@pytest.mark.anyio
async def test_anyio(aibridge_client, aibridge_delegated_key):
    response = await aibridge_client("openai").get("/v1/models")
    assert response.status_code == 500

@pytest.mark.asyncio
async def test_asyncio(aibridge_client, aibridge_delegated_key):
    response = await aibridge_client("openai").get("/v1/models")
    assert response.status_code == 500
"""
)


def test_strict_mode_fails_the_test_at_teardown_with_the_app_exception(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, STRICT_SOURCE)

    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_anyio[[]asyncio[]]*",
            "*ERROR at teardown of test_anyio[[]trio[]]*",
            "*ERROR at teardown of test_asyncio*",
        ],
        consecutive=False,
    )
    # The original traceback: the raising line of the app, its exception and the hint.
    assert result.stdout.str().count('>       raise ValueError("boom from the bridge")') == 3
    assert result.stdout.str().count("E       ValueError: boom from the bridge") == 3
    assert result.stdout.str().count("@pytest.mark.aibridge_lenient") == 3


def test_strict_mode_sees_what_starlette_answered_with_a_500(pytester: pytest.Pytester) -> None:
    # Starlette's ServerErrorMiddleware sends its own 500, then re-raises (behaviour §7).
    result = run(
        pytester,
        """
        import pytest
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def broken(request):
            raise LookupError("no such model in the bridge")

        @pytest.fixture
        def aibridge_app():
            return Starlette(routes=[Route("/api/v2/aibridge/openai/v1/models", broken)])

        @pytest.mark.anyio
        async def test_gets_a_500(aibridge_client, aibridge_delegated_key):
            response = await aibridge_client("openai").get("/v1/models")
            assert response.status_code == 500
        """,
    )
    result.assert_outcomes(passed=2, errors=2)
    output = result.stdout.str()
    assert output.count('>       raise LookupError("no such model in the bridge")') == 2
    assert output.count("E       LookupError: no such model in the bridge") == 2


def test_lenient_marker_lets_the_app_raise(pytester: pytest.Pytester) -> None:
    source = STRICT_SOURCE.replace(
        "@pytest.mark.anyio\n", "@pytest.mark.anyio\n@pytest.mark.aibridge_lenient\n"
    )
    source = source.replace(
        "@pytest.mark.asyncio\n", "@pytest.mark.asyncio\n@pytest.mark.aibridge_lenient\n"
    )
    result = run(pytester, source)
    result.assert_outcomes(passed=3)


def test_lenient_module_wide_by_overriding_aibridge_strict(pytester: pytest.Pytester) -> None:
    source = STRICT_SOURCE + textwrap.dedent(
        """
        @pytest.fixture
        def aibridge_strict():
            return False
        """
    )
    result = run(pytester, source)
    result.assert_outcomes(passed=3)


def test_the_lenient_marker_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.aibridge_lenient:*"])


def test_factory_runs_the_app_lifespan(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from contextlib import asynccontextmanager

        events = []

        @asynccontextmanager
        async def lifespan(app):
            events.append("startup")
            yield {"greeting": "hello from lifespan"}
            events.append("shutdown")

        async def greet(request):
            return PlainTextResponse(request.state.greeting)

        @pytest.fixture
        def aibridge_app():
            return Starlette(
                routes=[Route("/api/v2/aibridge/openai/greet", greet)], lifespan=lifespan
            )

        @pytest.mark.anyio
        async def test_state_from_startup(aibridge_client, aibridge_delegated_key):
            assert events[-1:] == ["startup"]
            response = await aibridge_client("openai").get("/greet")
            assert response.text == "hello from lifespan"

        @pytest.mark.anyio
        async def test_shutdown_ran():
            assert events == ["startup", "shutdown"] * 2
        """,
    )
    result.assert_outcomes(passed=4)


MISUSED = """\
import pytest


def test_plain_def(aibridge_client, aibridge_delegated_key):
    aibridge_client("openai")


async def test_unmarked(aibridge_client, aibridge_delegated_key):
    await aibridge_client("openai").get("/v1/models")


@pytest.mark.anyio
async def test_after_them(aibridge_client, aibridge_delegated_key):
    assert (await aibridge_client("openai").get("/v1/models")).status_code == 200


def test_sync_after_them(aibridge_sync_client, aibridge_sync_delegated_key):
    assert aibridge_sync_client("openai").get("/v1/models").status_code == 200
"""

# The same options, for a run without pytest-asyncio (whose options would be unknown there).
INI_WITHOUT_PYTEST_ASYNCIO = "\n".join(
    line for line in INI.splitlines() if not line.startswith("asyncio_")
)


@pytest.mark.parametrize("pytest_asyncio", ["installed", "absent"])
def test_misused_fixtures_are_refused_with_what_to_use_and_nothing_cascades(
    pytester: pytest.Pytester, pytest_asyncio: str
) -> None:
    pytester.makeini(INI if pytest_asyncio == "installed" else INI_WITHOUT_PYTEST_ASYNCIO)
    pytester.makeconftest(BOTH_BACKENDS)
    pytester.makepyfile(test_inner=MISUSED)
    args = ["-p", "no:asyncio"] if pytest_asyncio == "absent" else []

    result = pytester.runpytest(*args)

    # The two misused tests fail at setup with the library's message; the three runs after
    # them pass (without the check, pytest's generic error left state behind that failed
    # every later fixture test with a bare AssertionError).
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_plain_def*",
            "test_plain_def is a plain `def` test, but `aibridge_factory`, `aibridge_client`, "
            "`aibridge_delegated_key` need an async test: use `aibridge_sync_factory`, "
            "`aibridge_sync_client`, `aibridge_sync_delegated_key` in a plain `def` test*",
            "*ERROR at setup of test_unmarked*",
            "test_unmarked is an `async def` test that no async plugin runs, * mark it "
            "`@pytest.mark.anyio`*",
        ]
    )
    assert "AssertionError" not in result.stdout.str()
