"""The pytest plugin's cassettes: the marker, the record modes of `--aibridge-record-mode`,
and strict scripts, run in inner pytest sessions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# Inner runs are in process: pytester drops the modules they import when they end, while the
# factory keeps the flavour classes it built. Importing the flavours here keeps both alive.
from aibridge_transport import pytest_plugin
from aibridge_transport.testing import RECORD_MODES, Cassette

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

CONFTEST = """\
import pytest

from aibridge_transport.testing import FakeAIBridge, Reply


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
def aibridge_record_upstream():
    {upstream}
"""

RECORDS = "return FakeAIBridge(default=Reply('recorded answer'))"
NEVER = "raise AssertionError('the upstream was reached')"

TEST = """\
import openai
import pytest

pytestmark = pytest.mark.anyio


async def ask(aibridge_client, question):
    client = openai.AsyncOpenAI(
        api_key="sk-inner-secret",
        base_url="http://aibridge/v1",
        max_retries=0,
        http_client=aibridge_client("openai", flavor="httpx2"),
    )
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
    )
    await client.close()
    return completion.choices[0].message.content


@pytest.mark.aibridge_cassette
async def test_loop(aibridge_client, aibridge_delegated_key):
    assert await ask(aibridge_client, "first question") == "recorded answer"
"""

SECOND_REQUEST = """
    assert await ask(aibridge_client, "second question") == "recorded answer"
"""


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under CI, pytest prints whole messages in its short summary: keep inner runs alike.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


def run(
    pytester: pytest.Pytester, *args: str, upstream: str = RECORDS, test: str = TEST
) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST.format(upstream=upstream))
    pytester.makepyfile(test_inner=textwrap.dedent(test))
    return pytester.runpytest(*args)


def cassette_at(pytester: pytest.Pytester) -> Path:
    return pytester.path / "cassettes" / "test_inner" / "test_loop.yaml"


def test_the_plugin_offers_the_record_modes_the_testing_package_knows() -> None:
    assert pytest_plugin._RECORD_MODES == RECORD_MODES


def test_mode_none_fails_clearly_without_a_cassette_and_never_builds_the_upstream(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, upstream=NEVER)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*test_loop.yaml does not exist and record mode 'none' replays only*"]
    )
    result.stdout.no_fnmatch_line("*the upstream was reached*")
    assert not cassette_at(pytester).exists()


def test_mode_once_records_then_none_replays_without_the_upstream(
    pytester: pytest.Pytester,
) -> None:
    run(pytester, "--aibridge-record-mode=once").assert_outcomes(passed=2)
    cassette = Cassette.load(cassette_at(pytester))
    assert len(cassette) == 1  # asyncio recorded it; trio replayed it
    assert b"sk-inner-secret" not in cassette_at(pytester).read_bytes()
    run(pytester, upstream=NEVER).assert_outcomes(passed=2)


def test_a_request_the_cassette_lacks_fails_with_a_diff(pytester: pytest.Pytester) -> None:
    run(pytester, "--aibridge-record-mode=once").assert_outcomes(passed=2)
    changed = TEST.replace('"first question"', '"another question"')
    result = run(pytester, upstream=NEVER, test=changed)
    result.assert_outcomes(failed=2, errors=2)  # the SDK's error, then the teardown's
    result.stdout.fnmatch_lines(
        [
            "*No recorded interaction matches POST /api/v2/aibridge/openai/v1/chat/completions*",
            '*-*"content": "first question",',
            '*+*"content": "another question",',
        ]
    )


def test_new_episodes_adds_what_is_missing_and_all_records_again(
    pytester: pytest.Pytester,
) -> None:
    run(pytester, "--aibridge-record-mode=once").assert_outcomes(passed=2)
    longer = TEST + SECOND_REQUEST
    run(pytester, "--aibridge-record-mode=new_episodes", test=longer).assert_outcomes(passed=2)
    assert len(Cassette.load(cassette_at(pytester))) == 2
    run(pytester, upstream=NEVER, test=longer).assert_outcomes(passed=2)
    run(pytester, "--aibridge-record-mode=all").assert_outcomes(passed=2)
    assert len(Cassette.load(cassette_at(pytester))) == 1


def test_the_marker_names_the_cassette_and_passes_options(pytester: pytest.Pytester) -> None:
    named = TEST.replace(
        "@pytest.mark.aibridge_cassette",
        '@pytest.mark.aibridge_cassette("shared/loop.yaml", allow_repeats=True)',
    )
    run(pytester, "--aibridge-record-mode=once", test=named).assert_outcomes(passed=2)
    path = pytester.path / "cassettes" / "test_inner" / "shared" / "loop.yaml"
    assert len(Cassette.load(path)) == 1
    twice = named + SECOND_REQUEST.replace("second question", "first question")
    run(pytester, upstream=NEVER, test=twice).assert_outcomes(passed=2)


def test_an_unknown_record_mode_is_refused(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--aibridge-record-mode=sometimes")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*invalid choice: 'sometimes'*"])


STRICT_TEST = """\
import openai
import pytest

from aibridge_transport.testing import FakeAIBridge, Reply, When

pytestmark = pytest.mark.anyio


@pytest.fixture
def aibridge_app():
    bridge = FakeAIBridge(strict_scripts=True)
    bridge.on(When(model="gpt-4o-mini"), Reply("used"))
    bridge.on(When(model="never-asked"), Reply("unused"))
    return bridge


async def test_scripts(aibridge_client, aibridge_delegated_key):
    client = openai.AsyncOpenAI(
        api_key="k", base_url="http://aibridge/v1", max_retries=0,
        http_client=aibridge_client("openai", flavor="httpx2"),
    )
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    await client.close()
    assert completion.choices[0].message.content == "used"
"""


def test_strict_scripts_fail_the_test_for_a_reply_never_used(pytester: pytest.Pytester) -> None:
    result = run(pytester, test=STRICT_TEST)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        ["*scripted replies never used: When(model='never-asked') (replies left: 1, used: 0)*"]
    )


def test_strict_scripts_pass_when_every_reply_was_used(pytester: pytest.Pytester) -> None:
    used = STRICT_TEST.replace('    bridge.on(When(model="never-asked"), Reply("unused"))\n', "")
    run(pytester, test=used).assert_outcomes(passed=2)


SYNC_TEST = """\
import openai
import pytest


@pytest.mark.aibridge_cassette
def test_loop(aibridge_sync_client, aibridge_sync_delegated_key):
    client = openai.OpenAI(
        api_key="sk-inner-secret",
        base_url="http://aibridge/v1",
        max_retries=0,
        http_client=aibridge_sync_client("openai", flavor="httpx2"),
    )
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "first question"}]
    )
    client.close()
    assert completion.choices[0].message.content == "recorded answer"
"""


def test_sync_tests_record_and_replay_the_same_way(pytester: pytest.Pytester) -> None:
    run(pytester, "--aibridge-record-mode=once", test=SYNC_TEST).assert_outcomes(passed=1)
    assert len(Cassette.load(cassette_at(pytester))) == 1
    run(pytester, upstream=NEVER, test=SYNC_TEST).assert_outcomes(passed=1)
