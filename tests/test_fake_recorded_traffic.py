"""The fake against real provider traffic: every recorded exchange, replayed through
`FakeAIBridge` with the real answer scripted, differs from it only as
`recorded_traffic_known.KNOWN_DIFFERENCES` says (theory in `recorded_traffic.py`)."""

from __future__ import annotations

import gzip
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from recorded_traffic import (
    API,
    SOURCES_FILE,
    Cassette,
    Difference,
    KnownDifference,
    RecordedExchange,
    answer_script,
    diff_exchange,
    load_all,
    load_cassette,
    observe,
    recorded_traffic_root,
    replay,
    run_exchange,
    stale,
)
from recorded_traffic_known import KNOWN_DIFFERENCES
from sdk_helpers import forbid_network

from aibridge_transport.testing import HTTPError, Reply, ToolCall

pytestmark = pytest.mark.anyio

ROOT = recorded_traffic_root()
EXCHANGES: list[RecordedExchange] = (
    [exchange for _, exchanges, _ in load_all(ROOT) for exchange in exchanges] if ROOT else []
)
needs_recordings = pytest.mark.skipif(
    ROOT is None,
    reason="no recorded traffic here (see tests/recorded_traffic_sources.toml for where it goes)",
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


# --- The recorded traffic -------------------------------------------------------------------


@needs_recordings
@pytest.mark.parametrize("exchange", EXCHANGES, ids=[e.name for e in EXCHANGES])
async def test_a_recorded_exchange_differs_from_the_fake_only_as_known(
    exchange: RecordedExchange,
) -> None:
    findings = await run_exchange(exchange, KNOWN_DIFFERENCES)
    unexplained = [str(finding.difference) for finding in findings if finding.known is None]
    assert not unexplained, f"{exchange.name}: differences not in recorded_traffic_known.py:\n" + (
        "\n".join(unexplained)
    )


@needs_recordings
async def test_every_known_difference_is_still_found() -> None:
    findings = [
        f for exchange in EXCHANGES for f in await run_exchange(exchange, KNOWN_DIFFERENCES)
    ]
    # Each pattern of an entry, and each exchange it is limited to, must still be needed.
    unneeded = [
        f"{k.kind} {k.where} on {k.exchanges}: {k.reason}"
        for k in stale(KNOWN_DIFFERENCES, findings)
    ]
    assert not unneeded, "known differences no longer found (delete them):\n" + "\n".join(unneeded)


@needs_recordings
def test_the_recordings_cover_each_api_streamed_and_not_with_tools_and_errors() -> None:
    def has(
        api: API, *, stream: bool | None = None, error: bool = False, tools: bool = False
    ) -> bool:
        for exchange in (e for e in EXCHANGES if e.api == api):
            body = exchange.request_body
            streamed = json.loads(body).get("stream") is True if body else False
            if stream is not None and streamed != stream:
                continue
            if (exchange.status >= 400) != error:
                continue
            if tools and b"tool" not in exchange.response_body:
                continue
            return True
        return False

    for api in ("openai-chat", "openai-responses", "anthropic-messages"):
        assert has(api, stream=True) and has(api, stream=False), api
        assert has(api, stream=True, tools=True) and has(api, stream=False, tools=True), api
        assert has(api, error=True), api
    assert has("anthropic-count") and has("anthropic-count", error=True)


def test_every_cassette_names_its_source_commit_and_licence() -> None:
    listed = tomllib.loads(SOURCES_FILE.read_text(encoding="utf-8"))["cassette"]
    cassettes = [Cassette(**entry) for entry in listed]
    assert 20 <= len(cassettes) <= 40
    for cassette in cassettes:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", cassette.repository)
        assert cassette.file == f"{cassette.repository.replace('/', '-')}/{cassette.path}"
        assert re.fullmatch(r"[0-9a-f]{40}", cassette.commit)
        assert re.fullmatch(r"[0-9a-f]{40} 202[4-6]-\d\d-\d\d", cassette.changed)
        assert cassette.licence in {"MIT", "Apache-2.0", "BSD-3-Clause"}
        assert re.fullmatch(r"[0-9a-f]{64}", cassette.sha256)


def test_every_known_difference_says_why_and_how_much_it_matters() -> None:
    for known in KNOWN_DIFFERENCES:
        assert known.severity in {"high", "low"}
        assert known.reason


# --- The machinery, on exchanges written here -----------------------------------------------

USER: list[Any] = [{"role": "user", "content": "hi"}]
WEATHER = {"name": "weather", "input_schema": {"type": "object", "properties": {}}}


def exchange(
    api: API, body: dict[str, Any], status: int, headers: dict[str, str], answer: bytes
) -> RecordedExchange:
    provider, path = {
        "openai-chat": ("openai", "/v1/chat/completions"),
        "openai-responses": ("openai", "/v1/responses"),
        "anthropic-messages": ("anthropic", "/v1/messages"),
        "anthropic-count": ("anthropic", "/v1/messages/count_tokens"),
    }[api]
    return RecordedExchange(
        name=f"here/{api}#0",
        api=api,
        provider=provider,
        method="POST",
        path=path,
        query="",
        request_headers={"content-type": "application/json"},
        request_body=json.dumps(body).encode(),
        status=status,
        response_headers=headers,
        response_body=answer,
    )


async def fake_recording(api: API, body: dict[str, Any], script: Reply) -> RecordedExchange:
    """The fake's own answer, as if it had been recorded from the real API."""
    template = exchange(api, body, 200, {}, b"")
    answered = await replay(template, script)
    raw: bytes
    if answered.events is not None:
        raw = b"".join(
            (f"event: {name}\n" if name else "").encode()
            + b"data: "
            + (data.encode() if isinstance(data, str) else json.dumps(data).encode())
            + b"\n\n"
            for name, data in answered.events
        )
    else:
        raw = json.dumps(answered.body).encode()
    return exchange(api, body, answered.status, dict(answered.headers), raw)


REQUESTS: dict[API, dict[str, Any]] = {
    "openai-chat": {"model": "gpt-x", "messages": USER},
    "openai-responses": {"model": "gpt-x", "input": "hi"},
    "anthropic-messages": {"model": "claude-x", "max_tokens": 64, "messages": USER},
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", list(REQUESTS))
async def test_the_fake_replayed_against_itself_differs_in_nothing(api: API, stream: bool) -> None:
    body = {**REQUESTS[api], "stream": stream}
    call = ToolCall("weather", pieces=['{"ci', 'ty":"Paris"}'], id="call_1")
    recorded = await fake_recording(api, body, Reply(["Hel", "lo"], tool_calls=[call]))
    assert [str(f.difference) for f in await run_exchange(recorded, ())] == []


@pytest.mark.parametrize("api", list(REQUESTS))
async def test_the_script_carries_the_real_answers_text_calls_and_model(api: API) -> None:
    body = {**REQUESTS[api], "stream": True}
    call = ToolCall("weather", pieces=['{"ci', 'ty":"Paris"}'], id="call_1")
    script = Reply([" Hel", "lo"], model="model-2026-01-01", tool_calls=[call])
    scripted = answer_script(await fake_recording(api, body, script))
    assert isinstance(scripted, Reply)
    assert scripted.tokens == (" Hel", "lo")
    assert scripted.model == "model-2026-01-01"
    assert [(c.name, c.id, c.argument_pieces) for c in scripted.tool_calls] == [
        ("weather", "call_1", ('{"ci', 'ty":"Paris"}'))
    ]


async def test_a_stopped_at_a_sequence_answer_is_scripted_so() -> None:
    body = {**REQUESTS["anthropic-messages"], "stop_sequences": ["END"]}
    recorded = await fake_recording(
        "anthropic-messages", body, Reply("a b", finish="stop_sequence")
    )
    scripted = answer_script(recorded)
    assert isinstance(scripted, Reply)
    assert (scripted.finish, scripted.stop_sequence) == ("stop_sequence", "END")


def test_an_error_is_scripted_with_the_real_status_and_body() -> None:
    error = {"error": {"type": "invalid_request_error", "message": "no", "param": "x", "code": "c"}}
    recorded = exchange("openai-chat", REQUESTS["openai-chat"], 400, {}, json.dumps(error).encode())
    assert answer_script(recorded) == HTTPError(
        400, "no", type="invalid_request_error", code="c", param="x"
    )


async def test_a_valid_request_the_fake_refuses_is_one_high_difference() -> None:
    body = {**REQUESTS["anthropic-messages"], "messages": [{"role": "robot", "content": "hi"}]}
    recorded = exchange("anthropic-messages", body, 200, {}, b"{}")
    [finding] = await run_exchange(recorded, ())
    assert finding.difference.kind == "refused"
    assert finding.difference.fake.startswith("400 ")
    assert finding.severity == "high"


async def test_a_refused_request_the_fake_accepts_is_found() -> None:
    error = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "no such model"},
        "request_id": "req_1",
    }
    refused = exchange(
        "anthropic-messages", REQUESTS["anthropic-messages"], 400, {}, json.dumps(error).encode()
    )
    kinds = [finding.difference.kind for finding in await run_exchange(refused, ())]
    assert kinds == ["accepted"]
    # One the fake refuses too (max_tokens is required) is no difference.
    missing = {k: v for k, v in REQUESTS["anthropic-messages"].items() if k != "max_tokens"}
    both = exchange("anthropic-messages", missing, 400, {}, json.dumps(error).encode())
    assert await run_exchange(both, ()) == []


def test_the_diff_names_keys_types_values_ids_and_items() -> None:
    real = observe(
        200,
        {"content-type": "application/json", "request-id": "r"},
        json.dumps(
            {
                "id": "msg_1",
                "type": "message",
                "usage": {"input_tokens": 1, "cache_read_input_tokens": 0},
                "content": [{"type": "thinking", "thinking": ""}, {"type": "text", "text": "a"}],
            }
        ).encode(),
    )
    fake = observe(
        200,
        {"content-type": "application/json; charset=utf-8"},
        json.dumps(
            {
                "id": "x-1",
                "type": "msg",
                "usage": {"cache_read_input_tokens": None, "extra": 1},
                "content": [{"type": "text", "text": "a", "citations": None}],
            }
        ).encode(),
    )
    assert [str(d) for d in diff_exchange("anthropic-messages", real, fake)] == [
        "header-parameters content-type: real application/json, "
        "fake application/json;charset=utf-8",
        "header request-id: real present, fake absent",
        "extra content[text].citations: fake null",
        "item-missing content[thinking]",
        "id-prefix id: real msg_, fake x-",
        "value type: real message, fake msg",
        "type usage.cache_read_input_tokens: real int, fake null",
        "extra usage.extra: fake int",
        "missing usage.input_tokens: real int",
    ]


def test_the_diff_compares_stream_structure_not_token_counts() -> None:
    def stream(*names: str) -> bytes:
        return b"".join(f'event: {name}\ndata: {{"type": "{name}"}}\n\n'.encode() for name in names)

    sse = {"content-type": "text/event-stream"}
    real = observe(200, sse, stream("message_start", "delta", "delta", "delta", "message_stop"))
    same = observe(200, sse, stream("message_start", "delta", "message_stop"))
    other = observe(200, sse, stream("message_start", "ping", "delta", "message_stop", "extra"))
    assert diff_exchange("anthropic-messages", real, same) == []
    assert [(d.kind, d.where) for d in diff_exchange("anthropic-messages", real, other)] == [
        ("event-extra", "ping"),
        ("event-extra", "extra"),
    ]


def test_a_known_difference_matches_by_kind_api_pattern_and_exchange() -> None:
    recorded = exchange("openai-chat", REQUESTS["openai-chat"], 200, {}, b"{}")
    known = KnownDifference("missing", "*usage.*_details", ("openai-chat",), "low", "why")
    assert known.matches(recorded, Difference("missing", "event[chunk(usage)].usage.x_details"))
    assert not known.matches(recorded, Difference("extra", "usage.x_details"))
    limited = KnownDifference("missing", "a[b]", ("openai-chat",), "low", "why", exchanges=("o*",))
    assert not limited.matches(recorded, Difference("missing", "a[b]"))
    assert not limited.matches(recorded, Difference("missing", "ab"))


def test_both_cassette_formats_load(tmp_path: Path) -> None:
    answer = json.dumps({"id": "chatcmpl-1"}).encode()
    interactions = [
        {  # vcrpy: the body as text, a gzipped answer kept as bytes
            "request": {
                "method": "POST",
                "uri": "https://api.openai.com/v1/chat/completions",
                "body": json.dumps(REQUESTS["openai-chat"]),
                "headers": {"Content-Type": ["application/json"]},
            },
            "response": {
                "status": {"code": 200, "message": "OK"},
                "headers": {"Content-Encoding": ["gzip"], "Content-Type": ["application/json"]},
                "body": {"string": gzip.compress(answer)},
            },
        },
        {  # pydantic-ai: parsed bodies
            "request": {
                "method": "POST",
                "uri": "https://api.anthropic.com/v1/messages?beta=true",
                "parsed_body": REQUESTS["anthropic-messages"],
                "headers": {},
            },
            "response": {
                "status": {"code": 200, "message": "OK"},
                "headers": {"content-type": ["application/json"]},
                "parsed_body": {"id": "msg_1"},
            },
        },
        {  # a route the fake does not serve
            "request": {"method": "GET", "uri": "https://example.org/x", "headers": {}},
            "response": {"status": {"code": 200}, "headers": {}, "body": {"string": ""}},
        },
    ]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"interactions": interactions, "version": 1}))
    cassette = Cassette("c.yaml", "o/r", "c.yaml", "0" * 40, "", "MIT", "")
    exchanges, others = load_cassette(tmp_path, cassette)
    assert others == 1
    chat, messages = exchanges
    assert (chat.api, chat.response_body, chat.request_headers["content-type"]) == (
        "openai-chat",
        answer,
        "application/json",
    )
    assert (messages.api, messages.query, json.loads(messages.request_body)) == (
        "anthropic-messages",
        "beta=true",
        REQUESTS["anthropic-messages"],
    )
