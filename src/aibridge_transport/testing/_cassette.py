"""Cassettes: recorded exchanges in vcrpy's YAML format, with chunk boundaries and timing.

The file is a vcrpy cassette (format version 1): `interactions`, each a `request` (`method`,
`uri`, `body`, `headers` as name -> list of values) and a `response` (`status` `{code,
message}`, `headers`, `body: {string}`). What vcrpy has no place for sits in one extra key of
the response, `aibridge`, which vcrpy carries along untouched:

```yaml
aibridge:
  requested_at: 1.25        # when the request came, in seconds since the recording began
  started_at: 0.0021        # seconds from the request to the response start
  chunks: [[172, 0.0023], [171, 0.0025]]   # each body chunk: its size in bytes, when it went
  ending: complete          # or `truncated` (the app never ended the body), `disconnected`
```

Chunk sizes count bytes of the body as stored, so the boundaries survive any YAML quoting.
Cassettes written by pydantic-ai's serializer keep JSON bodies under `parsed_body`; they load
too (the body is the compact JSON of it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

__all__ = [
    "Cassette",
    "CassetteRequest",
    "CassetteResponse",
    "Ending",
    "Interaction",
    "RecordedChunk",
    "load_yaml",
]

CASSETTE_FORMAT_VERSION: Final = 1  # vcrpy's
EXTENSION_KEY: Final = "aibridge"

Ending = Literal["complete", "truncated", "disconnected"]
"""How a recorded response ended: its body completed; the app stopped without completing it
(a crash, a dropped upstream); the client left before the end."""

_ENDINGS: Final[frozenset[str]] = frozenset({"complete", "truncated", "disconnected"})


def load_yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the recording extra brings it
        raise ImportError(
            "cassettes need PyYAML: pip install 'aibridge-transport[recording]'"
        ) from exc
    return yaml


@dataclass(frozen=True)
class RecordedChunk:
    """One body chunk of a recorded response: its size in bytes and when it was sent
    (seconds since the request reached the recorder)."""

    size: int
    at: float


@dataclass(frozen=True, kw_only=True)
class CassetteRequest:
    """A recorded (or incoming) request: method, URI, headers in order, body bytes."""

    method: str
    uri: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    at: float | None = None
    """When the request reached the recorder, in seconds since the recording began (stored
    as the response's `requested_at`: vcrpy allows no extra key in a request)."""

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path or "/"

    @property
    def query(self) -> str:
        return urlsplit(self.uri).query

    @property
    def host(self) -> str:
        return urlsplit(self.uri).hostname or ""

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or `None` when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


@dataclass(frozen=True, kw_only=True)
class CassetteResponse:
    """A recorded response: status, headers in order, the body, and how it was sent."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reason: str | None = None
    chunks: list[RecordedChunk] | None = None
    """The body's chunks as sent; `None` for a cassette without them (plain vcrpy)."""
    started_at: float | None = None
    ending: Ending = "complete"

    def pieces(self) -> Iterator[tuple[bytes, float | None]]:
        """The body cut as it was sent, each piece with its time (one piece without chunks)."""
        if self.chunks is None:
            if self.body:
                yield self.body, None
            return
        offset = 0
        for chunk in self.chunks:
            yield self.body[offset : offset + chunk.size], chunk.at
            offset += chunk.size
        if offset < len(self.body):  # boundaries edited by hand: the rest goes whole
            yield self.body[offset:], None


@dataclass(frozen=True)
class Interaction:
    """One recorded exchange."""

    request: CassetteRequest
    response: CassetteResponse


class Cassette:
    """
    Recorded exchanges, in order, readable and writable as a vcrpy cassette.

    ```python
    cassette = Cassette.load("tests/cassettes/agent_loop.yaml")
    cassette.interactions[0].response.chunks  # sizes and times, as sent
    ```
    """

    def __init__(self, interactions: Iterable[Interaction] = ()) -> None:
        self.interactions: list[Interaction] = list(interactions)

    def __len__(self) -> int:
        return len(self.interactions)

    def __iter__(self) -> Iterator[Interaction]:
        return iter(self.interactions)

    def append(self, interaction: Interaction) -> None:
        self.interactions.append(interaction)

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        return cls.loads(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def loads(cls, text: str) -> Cassette:
        yaml = load_yaml()
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
            raise ValueError("not a vcrpy cassette: no 'interactions' list")
        return cls(_interaction_from(item) for item in data["interactions"])

    def dumps(self) -> str:
        yaml = load_yaml()
        data = {
            "interactions": [_interaction_to(item) for item in self.interactions],
            "version": CASSETTE_FORMAT_VERSION,
        }
        return str(yaml.dump(data, Dumper=_dumper(yaml), sort_keys=False, allow_unicode=True))

    def save(self, path: str | Path) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.dumps(), encoding="utf-8")


def _dumper(yaml: Any) -> Any:
    class Dumper(yaml.SafeDumper):  # type: ignore[misc]
        pass

    def text(dumper: Any, data: str) -> Any:
        # Streams read best as blocks; PyYAML falls back to quoting where a block cannot hold
        # the text exactly (trailing spaces, control characters).
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def _stored(body: bytes) -> str | bytes:
    """A body as vcrpy stores it: text when it is UTF-8, else bytes (YAML `!!binary`)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


def _loaded(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError(f"a cassette body must be text or bytes, not {type(value).__name__}")


def _compact(parsed: Any) -> bytes:
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _headers_to(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    return grouped


def _headers_from(value: Any) -> list[tuple[str, str]]:
    if not value:
        return []
    if not isinstance(value, Mapping):
        raise ValueError("cassette headers must be a mapping of names to values")
    pairs: list[tuple[str, str]] = []
    for name, values in value.items():
        for item in values if isinstance(values, list) else [values]:
            pairs.append((str(name), str(item)))
    return pairs


def _interaction_to(interaction: Interaction) -> dict[str, Any]:
    request, response = interaction.request, interaction.response
    reason = response.reason
    if reason is None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
    extension: dict[str, Any] = {"ending": response.ending}
    if request.at is not None:
        extension["requested_at"] = request.at
    if response.started_at is not None:
        extension["started_at"] = response.started_at
    if response.chunks is not None:
        extension["chunks"] = [[chunk.size, chunk.at] for chunk in response.chunks]
    return {
        "request": {
            "method": request.method,
            "uri": request.uri,
            "body": _stored(request.body) if request.body else None,
            "headers": _headers_to(request.headers),
        },
        "response": {
            "status": {"code": response.status, "message": reason},
            "headers": _headers_to(response.headers),
            "body": {"string": _stored(response.body)},
            EXTENSION_KEY: extension,
        },
    }


def _interaction_from(item: Any) -> Interaction:
    if not isinstance(item, Mapping) or "request" not in item or "response" not in item:
        raise ValueError("each cassette interaction needs a 'request' and a 'response'")
    raw_request, raw_response = item["request"], item["response"]
    extension = raw_response.get(EXTENSION_KEY) or {}
    if "parsed_body" in raw_request:
        request_body = _compact(raw_request["parsed_body"])
    else:
        request_body = _loaded(raw_request.get("body"))
    request = CassetteRequest(
        method=str(raw_request["method"]).upper(),
        uri=str(raw_request["uri"]),
        headers=_headers_from(raw_request.get("headers")),
        body=request_body,
        at=extension.get("requested_at"),
    )
    headers = _headers_from(raw_response.get("headers"))
    if "parsed_body" in raw_response:
        body = _compact(raw_response["parsed_body"])
    else:
        raw_body = raw_response.get("body")
        body = _loaded(raw_body.get("string") if isinstance(raw_body, Mapping) else raw_body)
    status = raw_response.get("status", {})
    chunks = extension.get("chunks")
    ending = str(extension.get("ending", "complete"))
    if ending not in _ENDINGS:
        raise ValueError(f"unknown cassette ending {ending!r}: one of {sorted(_ENDINGS)}")
    response = CassetteResponse(
        status=int(status["code"] if isinstance(status, Mapping) else status),
        reason=status.get("message") if isinstance(status, Mapping) else None,
        headers=headers,
        body=body,
        chunks=None
        if chunks is None
        else [RecordedChunk(int(size), float(at)) for size, at in chunks],
        started_at=extension.get("started_at"),
        ending=ending,  # type: ignore[arg-type]
    )
    return Interaction(request, response)
