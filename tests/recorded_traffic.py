"""Real provider traffic, replayed through `FakeAIBridge` and diffed (contract: the fake is
kept honest).

Theory of operation. A cassette is a VCR recording (vcrpy's YAML, or pydantic-ai's variant
of it with `parsed_body`) of exchanges with the real OpenAI and Anthropic APIs. For each
exchange on a route the fake serves:

1. `answer_script` reads the real answer in neutral terms (the text as the stream cut it,
   the tool calls with their ids and argument pieces, how it stopped, the model it named, or
   the error) and writes it as a script with the fake's public API (`Reply`, `ToolCall`,
   `HTTPError`);
2. `replay` sends the recorded request to a fresh `FakeAIBridge` holding that script, in
   process (`InProcessTransportFactory`, an `httpx2` client; no network);
3. `diff_exchange` compares the two answers: status, the headers the SDKs read, JSON key sets
   and value types (recursively), discriminating values (`type`, `object`, `role`,
   `status`, `finish_reason`, `stop_reason`, `model`), id prefixes, and for a stream the
   sequence of event kinds and each kind's shape.

Every difference is then looked up in `recorded_traffic_known.KNOWN_DIFFERENCES`; one not
listed there fails `tests/test_fake_recorded_traffic.py`. `scripts/drift_fake.py` prints them all.

The cassettes themselves are data from other projects; `recorded_traffic_sources.toml` names
each one (repository, path, commit, licence, SHA-256). They are kept outside the repository,
as the outside data set `recorded-traffic` (tests/outside_data.py says where it is looked for).
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx2
import yaml
from outside_data import outside_data

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import FakeAIBridge, Finish, HTTPError, Reply, Script, ToolCall

__all__ = [
    "API",
    "SOURCES_FILE",
    "Answer",
    "Cassette",
    "Difference",
    "Finding",
    "KnownDifference",
    "RecordedExchange",
    "Severity",
    "answer_script",
    "diff_exchange",
    "explain",
    "find_cassettes",
    "load_all",
    "load_cassette",
    "observe",
    "parse_events",
    "recorded_traffic_root",
    "replay",
    "run_exchange",
    "stale",
]

API: TypeAlias = Literal["openai-chat", "openai-responses", "anthropic-messages", "anthropic-count"]
Severity: TypeAlias = Literal["high", "low"]

_TESTS: Final = Path(__file__).resolve().parent
SOURCES_FILE: Final = _TESTS / "recorded_traffic_sources.toml"

# The real hosts, and the routes of theirs the fake serves (the fake's own route table is
# private; these are the provider paths a client asks for).
_HOSTS: Final[Mapping[str, str]] = {"api.openai.com": "openai", "api.anthropic.com": "anthropic"}
_ROUTES: Final[Mapping[tuple[str, str], API]] = {
    ("openai", "/v1/chat/completions"): "openai-chat",
    ("openai", "/v1/responses"): "openai-responses",
    ("anthropic", "/v1/messages"): "anthropic-messages",
    ("anthropic", "/v1/messages/count_tokens"): "anthropic-count",
}
# Request headers that change what the API does; the rest (transport, SDK telemetry) stay.
_REQUEST_HEADERS: Final = ("content-type", "anthropic-version", "anthropic-beta", "openai-beta")
# anthropic-version is required by the real API; pydantic-ai's cassettes drop request headers,
# and the SDKs that recorded them sent this version.
_DEFAULT_ANTHROPIC_VERSION: Final = "2023-06-01"
# Response headers the SDKs read: the request id in errors and logs, retry hints.
_SDK_HEADERS: Final = ("x-request-id", "request-id", "retry-after", "x-should-retry")
# Keys whose values name a kind of thing rather than carry content: their values are compared.
_DISCRIMINATORS: Final = frozenset(
    {"type", "object", "role", "status", "finish_reason", "stop_reason", "model"}
)
_ID_KEYS: Final = frozenset({"id", "call_id", "item_id", "tool_use_id"})
_KEY_ID: Final = "key-recorded-traffic"
_ID_PREFIX: Final = re.compile(r"^([A-Za-z]+[_-])")


def _glob(name: str, pattern: str) -> bool:
    """Whether `name` matches `pattern`, where only `*` is special (paths hold brackets)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), name) is not None


def recorded_traffic_root() -> Path | None:
    """The folder holding the cassettes, or `None` when it is nowhere to be found."""
    return outside_data("recorded-traffic")


@dataclass(frozen=True)
class Cassette:
    """One vendored cassette and where it comes from."""

    file: str
    repository: str
    path: str
    commit: str
    changed: str
    licence: str
    sha256: str


def find_cassettes(root: Path) -> list[Cassette]:
    """The cassettes `recorded_traffic_sources.toml` lists; each must be there, unchanged."""
    listed = tomllib.loads(SOURCES_FILE.read_text(encoding="utf-8"))["cassette"]
    cassettes = [Cassette(**entry) for entry in listed]
    for cassette in cassettes:
        data = (root / cassette.file).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != cassette.sha256:
            raise ValueError(f"{cassette.file} is not the recorded original (sha256 {digest})")
    return cassettes


@dataclass(frozen=True)
class RecordedExchange:
    """One request and its real answer, from a cassette."""

    name: str
    api: API
    provider: str
    method: str
    path: str
    query: str
    request_headers: Mapping[str, str]
    request_body: bytes
    status: int
    response_headers: Mapping[str, str]
    response_body: bytes


def _headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """vcrpy keeps each header as a list of values; names keep the recording's case."""
    headers: dict[str, str] = {}
    for name, values in (raw or {}).items():
        value = values[0] if isinstance(values, list) else values
        headers[name.lower()] = str(value)
    return headers


def _body(part: Mapping[str, Any], headers: Mapping[str, str]) -> bytes:
    """A recorded body as bytes: pydantic-ai's `parsed_body`, or vcrpy's `body.string`."""
    if "parsed_body" in part:
        return json.dumps(part["parsed_body"]).encode()
    body = part.get("body")
    raw = body.get("string", b"") if isinstance(body, Mapping) else body
    data = raw.encode() if isinstance(raw, str) else bytes(raw or b"")
    if headers.get("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return data


def load_cassette(root: Path, cassette: Cassette) -> tuple[list[RecordedExchange], int]:
    """The exchanges on routes the fake serves, and how many others the cassette holds."""
    document = yaml.safe_load((root / cassette.file).read_bytes())
    stem = f"{cassette.repository.split('/')[1]}/{Path(cassette.path).stem}"
    exchanges: list[RecordedExchange] = []
    others = 0
    for index, interaction in enumerate(document["interactions"]):
        request, response = interaction["request"], interaction["response"]
        url = urlsplit(request["uri"])
        provider = _HOSTS.get(url.hostname or "")
        api = _ROUTES.get((provider or "", url.path))
        if provider is None or api is None:
            others += 1
            continue
        request_headers = _headers(request.get("headers"))
        response_headers = _headers(response.get("headers"))
        exchanges.append(
            RecordedExchange(
                name=f"{stem}#{index}",
                api=api,
                provider=provider,
                method=request["method"],
                path=url.path,
                query=url.query,
                request_headers=request_headers,
                request_body=_body(request, request_headers),
                status=int(response["status"]["code"]),
                response_headers=response_headers,
                response_body=_body(response, response_headers),
            )
        )
    return exchanges, others


# --- What an answer looks like, real or fake ------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """An answer as the diff sees it: status, headers, and a JSON body or SSE events."""

    status: int
    headers: Mapping[str, str]
    body: Any = None
    events: Sequence[tuple[str, Any]] | None = None


def parse_events(text: str) -> list[tuple[str, Any]]:
    """Server-sent events as (event name or `""`, data parsed as JSON or kept as text)."""
    events: list[tuple[str, Any]] = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = "", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if not data:
            continue
        joined = "\n".join(data)
        try:
            events.append((name, json.loads(joined)))
        except ValueError:
            events.append((name, joined))
    return events


def observe(status: int, headers: Mapping[str, str], body: bytes) -> Observed:
    content_type = headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        return Observed(status, headers, events=parse_events(body.decode()))
    try:
        return Observed(status, headers, body=json.loads(body) if body else None)
    except ValueError:
        return Observed(status, headers, body=body.decode(errors="replace"))


# --- From the real answer to a script ------------------------------------------------------


@dataclass
class Answer:
    """The real answer in neutral terms: what a script for the fake needs."""

    pieces: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)  # id, name, pieces or arguments
    finish: Finish | None = None
    stop_sequence: str | None = None
    model: str | None = None

    def script(self) -> Reply:
        tool_calls = [
            ToolCall(call["name"], id=call["id"], pieces=call["pieces"])
            if call.get("pieces")
            else ToolCall(call["name"], call.get("arguments") or {}, id=call["id"])
            for call in self.calls
        ]
        return Reply(
            list(self.pieces),
            model=self.model,
            tool_calls=tool_calls,
            finish=self.finish,
            stop_sequence=self.stop_sequence,
        )


_CHAT_FINISH: Final[Mapping[str, Finish]] = {"length": "length", "content_filter": "content_filter"}
_ANTHROPIC_FINISH: Final[Mapping[str, Finish]] = {
    "max_tokens": "length",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
}


def _chat_answer(observed: Observed) -> Answer:
    answer = Answer()
    if observed.events is None:
        body = observed.body
        choice = body["choices"][0]
        message = choice["message"]
        answer.model = body.get("model")
        if message.get("content"):
            answer.pieces = [message["content"]]
        for call in message.get("tool_calls") or []:
            function = call["function"]
            answer.calls.append(
                {"id": call["id"], "name": function["name"], "arguments": function["arguments"]}
            )
        answer.finish = _CHAT_FINISH.get(choice.get("finish_reason") or "")
        return answer
    for _, chunk in observed.events:
        if not isinstance(chunk, dict):
            continue
        answer.model = answer.model or chunk.get("model")
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                answer.pieces.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                function = call.get("function") or {}
                if call.get("id"):
                    answer.calls.append({"id": call["id"], "name": function["name"], "pieces": []})
                if function.get("arguments"):
                    answer.calls[-1]["pieces"].append(function["arguments"])
            if choice.get("finish_reason"):
                answer.finish = _CHAT_FINISH.get(choice["finish_reason"])
    return answer


def _responses_answer(observed: Observed) -> Answer:
    answer = Answer()
    response = observed.body
    deltas: dict[str, list[str]] = {}
    for name, event in observed.events or ():
        if name == "response.output_text.delta":
            answer.pieces.append(event["delta"])
        elif name == "response.function_call_arguments.delta":
            deltas.setdefault(event["item_id"], []).append(event["delta"])
        elif name in {"response.completed", "response.incomplete", "response.failed"}:
            response = event["response"]
    answer.model = response.get("model")
    for item in response.get("output") or []:
        if item.get("type") == "message" and observed.events is None:
            for part in item.get("content") or []:
                if part.get("type") == "output_text" and part.get("text"):
                    answer.pieces.append(part["text"])
        elif item.get("type") == "function_call":
            call = {"id": item["call_id"], "name": item["name"]}
            pieces = deltas.get(item.get("id", ""))
            answer.calls.append(
                {**call, "pieces": pieces} if pieces else {**call, "arguments": item["arguments"]}
            )
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        answer.finish = "content_filter" if reason == "content_filter" else "length"
    return answer


def _anthropic_answer(observed: Observed) -> Answer:
    answer = Answer()
    if observed.events is None:
        message = observed.body
        stop = message.get("stop_reason")
        for block in message.get("content") or []:
            if block.get("type") == "text" and block.get("text"):
                answer.pieces.append(block["text"])
            elif block.get("type") == "tool_use":
                answer.calls.append(
                    {"id": block["id"], "name": block["name"], "arguments": block["input"]}
                )
        answer.model = message.get("model")
        answer.stop_sequence = message.get("stop_sequence")
    else:
        stop = None
        for name, event in observed.events:
            if name == "message_start":
                answer.model = event["message"].get("model")
            elif name == "content_block_start" and event["content_block"]["type"] == "tool_use":
                block = event["content_block"]
                answer.calls.append({"id": block["id"], "name": block["name"], "pieces": []})
            elif name == "content_block_delta":
                delta = event["delta"]
                if delta["type"] == "text_delta" and delta["text"]:
                    answer.pieces.append(delta["text"])
                elif delta["type"] == "input_json_delta" and delta["partial_json"]:
                    answer.calls[-1]["pieces"].append(delta["partial_json"])
            elif name == "message_delta":
                stop = event["delta"].get("stop_reason")
                answer.stop_sequence = event["delta"].get("stop_sequence")
    answer.finish = _ANTHROPIC_FINISH.get(stop or "")
    if answer.finish != "stop_sequence":
        answer.stop_sequence = None
    return answer


def _error_script(observed: Observed) -> HTTPError:
    body = observed.body if isinstance(observed.body, dict) else {}
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    return HTTPError(
        observed.status,
        str(error.get("message", "")),
        type=error.get("type"),
        code=error.get("code"),
        param=error.get("param"),
    )


def answer_script(exchange: RecordedExchange) -> Script | None:
    """The script that makes the fake give the real answer's content (`None`: not scripted)."""
    real = observe(exchange.status, exchange.response_headers, exchange.response_body)
    if exchange.status >= 400:
        return _error_script(real)
    if exchange.api == "openai-chat":
        return _chat_answer(real).script()
    if exchange.api == "openai-responses":
        return _responses_answer(real).script()
    if exchange.api == "anthropic-messages":
        return _anthropic_answer(real).script()
    return None  # count_tokens answers from the request


# --- Replaying through the fake -------------------------------------------------------------


async def replay(exchange: RecordedExchange, script: Script | None) -> Observed:
    """Send the recorded request to a fresh fake holding `script`; no network."""
    bridge = FakeAIBridge()
    if script is not None:
        bridge.queue(script)
    headers = {
        name: value for name, value in exchange.request_headers.items() if name in _REQUEST_HEADERS
    }
    if exchange.provider == "anthropic":
        headers.setdefault("anthropic-version", _DEFAULT_ANTHROPIC_VERSION)
    headers.setdefault("content-type", "application/json")
    factory = InProcessTransportFactory(bridge)
    transport = factory.transport_for(exchange.provider, Source.AGENTS, flavor="httpx2")
    async with factory, httpx2.AsyncClient(transport=transport, base_url="http://bridge") as client:
        url = exchange.path + (f"?{exchange.query}" if exchange.query else "")
        with with_delegated_api_key_id(_KEY_ID):
            response = await client.request(
                exchange.method, url, content=exchange.request_body, headers=headers
            )
        return observe(response.status_code, dict(response.headers), response.content)


# --- The diff -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One way the fake's answer differs from the real one.

    `kind` is one of: `refused` (a request the real API answered, refused by the fake),
    `accepted` (a request the real API refused with a 4xx, answered by the unscripted fake),
    `status`, `header`, `header-parameters` (the same media type, other parameters),
    `missing` / `extra` (a key), `type` (a value's JSON type), `value` (a
    discriminating value), `id-prefix`, `item-missing` / `item-extra` (a kind of list item, by
    its `type`), `event-missing` / `event-extra` (a kind of stream event).
    """

    kind: str
    where: str
    real: str = ""
    fake: str = ""

    def __str__(self) -> str:
        sides = (f"real {self.real}" if self.real else "", f"fake {self.fake}" if self.fake else "")
        detail = ", ".join(side for side in sides if side)
        return f"{self.kind} {self.where}: {detail}" if detail else f"{self.kind} {self.where}"


_DEFAULT_SEVERITY: Final[Mapping[str, Severity]] = {
    "extra": "low",
    "id-prefix": "low",
    "header-parameters": "low",
}


@dataclass(frozen=True)
class KnownDifference:
    """A difference the suite accepts, and why.

    Arguments:
        kind: The `Difference.kind` it matches.
        where: A pattern over `Difference.where` where only `*` is special (it matches
            anything, dots and brackets included), or several.
        apis: The APIs it applies to.
        severity: `high` when a test could pass on the fake and fail against the real API, or
            the other way round; `low` when cosmetic.
        reason: Why the fake differs.
        exchanges: Patterns over exchange names it is limited to (default: any).
    """

    kind: str
    where: str | tuple[str, ...]
    apis: tuple[API, ...]
    severity: Severity
    reason: str
    exchanges: tuple[str, ...] = ()

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self.where,) if isinstance(self.where, str) else self.where

    def matches(self, exchange: RecordedExchange, difference: Difference) -> bool:
        return (
            difference.kind == self.kind
            and exchange.api in self.apis
            and any(_glob(difference.where, where) for where in self.patterns)
            and (not self.exchanges or any(_glob(exchange.name, e) for e in self.exchanges))
        )


@dataclass(frozen=True)
class Finding:
    """A difference found on one exchange, with the known-difference entry that explains it."""

    exchange: RecordedExchange
    difference: Difference
    known: KnownDifference | None

    @property
    def severity(self) -> Severity:
        if self.known is not None:
            return self.known.severity
        return _DEFAULT_SEVERITY.get(self.difference.kind, "high")


def explain(
    exchange: RecordedExchange,
    differences: Sequence[Difference],
    known: Sequence[KnownDifference],
) -> list[Finding]:
    return [
        Finding(
            exchange,
            difference,
            next((entry for entry in known if entry.matches(exchange, difference)), None),
        )
        for difference in differences
    ]


def stale(known: Sequence[KnownDifference], findings: Sequence[Finding]) -> list[KnownDifference]:
    """The parts of `known` no finding needs: each entry narrowed to one of its patterns, or to
    one of the exchanges it is limited to, that explains none of `findings`."""
    out: list[KnownDifference] = []
    for entry in known:
        parts = [replace(entry, where=where) for where in entry.patterns]
        parts += [replace(entry, exchanges=(name,)) for name in entry.exchanges]
        seen = [(f.exchange, f.difference) for f in findings if f.known is entry]
        out += [part for part in parts if not any(part.matches(*pair) for pair in seen)]
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "object"


def _id_prefix(value: str) -> str:
    match = _ID_PREFIX.match(value)
    return match.group(1) if match else "(none)"


def _typed_items(items: list[Any]) -> dict[str, Any] | None:
    """A list of objects with a `type`, as the first item of each type; else `None`."""
    if not items or not all(isinstance(i, dict) and isinstance(i.get("type"), str) for i in items):
        return None
    first: dict[str, Any] = {}
    for item in items:
        first.setdefault(item["type"], item)
    return first


def _diff_value(where: str, real: Any, fake: Any, out: list[Difference]) -> None:
    real_type, fake_type = _json_type(real), _json_type(fake)
    if real_type != fake_type:
        out.append(Difference("type", where, real_type, fake_type))
        return
    if isinstance(real, dict):
        for key in sorted(real.keys() | fake.keys()):
            path = f"{where}.{key}" if where else key
            if key not in fake:
                out.append(Difference("missing", path, _json_type(real[key])))
            elif key not in real:
                out.append(Difference("extra", path, fake=_json_type(fake[key])))
            else:
                if key in _DISCRIMINATORS and isinstance(real[key], str) and real[key] != fake[key]:
                    out.append(Difference("value", path, str(real[key]), str(fake[key])))
                if key in _ID_KEYS and isinstance(real[key], str) and isinstance(fake[key], str):
                    real_prefix, fake_prefix = _id_prefix(real[key]), _id_prefix(fake[key])
                    if real_prefix != fake_prefix:
                        out.append(Difference("id-prefix", path, real_prefix, fake_prefix))
                _diff_value(path, real[key], fake[key], out)
    elif isinstance(real, list):
        real_items, fake_items = _typed_items(real), _typed_items(fake)
        if real_items is not None and (fake_items is not None or not fake):
            fake_items = fake_items or {}
            for kind in sorted(real_items.keys() | fake_items.keys()):
                path = f"{where}[{kind}]"
                if kind not in fake_items:
                    out.append(Difference("item-missing", path))
                elif kind not in real_items:
                    out.append(Difference("item-extra", path))
                else:
                    _diff_value(path, real_items[kind], fake_items[kind], out)
        elif real and fake:
            _diff_value(f"{where}[]", real[0], fake[0], out)


def _event_label(api: API, name: str, data: Any) -> str:
    """What kind of event this is, finer than its SSE name where the name says little."""
    if not isinstance(data, dict):
        return str(data)  # "[DONE]"
    if api == "openai-chat":
        choices = data.get("choices") or []
        if not choices:
            return "chunk(usage)" if data.get("usage") else "chunk(empty)"
        choice = choices[0]
        delta = choice.get("delta") or {}
        if choice.get("finish_reason"):
            return "chunk(finish)"
        if delta.get("tool_calls"):
            return "chunk(tool_call)" if delta["tool_calls"][0].get("id") else "chunk(arguments)"
        if delta.get("content"):
            return "chunk(content)"
        if delta.get("refusal"):
            return "chunk(refusal)"
        return "chunk(role)" if delta.get("role") else "chunk(empty)"
    label = name or str(data.get("type", ""))
    for key in ("content_block", "delta", "item", "part"):
        inner = data.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return f"{label}({inner['type']})"
    return label


def _runs(labels: Sequence[str]) -> list[str]:
    """Consecutive repeats collapsed: token counts differ, the structure must not."""
    collapsed: list[str] = []
    for label in labels:
        if not collapsed or collapsed[-1] != label:
            collapsed.append(label)
    return collapsed


def _diff_events(
    api: API, real: Sequence[tuple[str, Any]], fake: Sequence[tuple[str, Any]]
) -> list[Difference]:
    out: list[Difference] = []
    real_labels = [_event_label(api, name, data) for name, data in real]
    fake_labels = [_event_label(api, name, data) for name, data in fake]
    real_runs, fake_runs = _runs(real_labels), _runs(fake_labels)
    matcher = difflib.SequenceMatcher(a=real_runs, b=fake_runs, autojunk=False)
    for tag, a_start, a_end, b_start, b_end in matcher.get_opcodes():
        if tag in {"delete", "replace"}:
            for label in real_runs[a_start:a_end]:
                out.append(
                    Difference("event-missing", label, " ".join(real_runs), " ".join(fake_runs))
                )
        if tag in {"insert", "replace"}:
            for label in fake_runs[b_start:b_end]:
                out.append(
                    Difference("event-extra", label, " ".join(real_runs), " ".join(fake_runs))
                )
    first_real = dict(reversed(list(zip(real_labels, (data for _, data in real), strict=True))))
    first_fake = dict(reversed(list(zip(fake_labels, (data for _, data in fake), strict=True))))
    for label, data in first_real.items():
        if label in first_fake:
            _diff_value(f"event[{label}]", data, first_fake[label], out)
    return out


def _media_type(value: str) -> str:
    return value.replace(" ", "").lower()


def diff_exchange(api: API, real: Observed, fake: Observed) -> list[Difference]:
    """Every difference between the real answer and the fake's, in a stable order."""
    out: list[Difference] = []
    if real.status < 400 <= fake.status:
        message = ""
        if isinstance(fake.body, dict) and isinstance(fake.body.get("error"), dict):
            message = str(fake.body["error"].get("message", ""))
        return [Difference("refused", "request", str(real.status), f"{fake.status} {message}")]
    if real.status != fake.status:
        out.append(Difference("status", "status", str(real.status), str(fake.status)))
    real_type = _media_type(real.headers.get("content-type", ""))
    fake_type = _media_type(fake.headers.get("content-type", ""))
    same_media = real_type.partition(";")[0] == fake_type.partition(";")[0]
    if real_type and not same_media:
        out.append(Difference("header", "content-type", real_type, fake_type))
    elif real_type and real_type != fake_type:
        # The same media type with other parameters (a charset): the SDKs parse it alike.
        out.append(Difference("header-parameters", "content-type", real_type, fake_type))
    for name in _SDK_HEADERS:
        if name in real.headers and name not in fake.headers:
            out.append(Difference("header", name, "present", "absent"))
    if real.events is not None and fake.events is not None:
        out += _diff_events(api, real.events, fake.events)
    elif (real.events is None) != (fake.events is None):
        real_kind = "events" if real.events is not None else "json"
        fake_kind = "events" if fake.events is not None else "json"
        out.append(Difference("type", "body", real_kind, fake_kind))
    else:
        _diff_value("", real.body, fake.body, out)
    return out


async def run_exchange(
    exchange: RecordedExchange, known: Sequence[KnownDifference]
) -> list[Finding]:
    """Script the fake from the real answer, replay the request, diff, explain."""
    real = observe(exchange.status, exchange.response_headers, exchange.response_body)
    fake = await replay(exchange, answer_script(exchange))
    differences = diff_exchange(exchange.api, real, fake)
    if 400 <= exchange.status < 500:
        # The real API refused this request: the fake, left to its own checks, must too.
        unscripted = await replay(exchange, None)
        if unscripted.status < 400:
            message = _error_script(real).message
            differences.append(
                Difference(
                    "accepted", "request", f"{exchange.status} {message}", str(unscripted.status)
                )
            )
    return explain(exchange, differences, known)


def load_all(root: Path) -> Iterator[tuple[Cassette, list[RecordedExchange], int]]:
    for cassette in find_cassettes(root):
        exchanges, others = load_cassette(root, cassette)
        yield cassette, exchanges, others
