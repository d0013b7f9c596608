"""Which recorded interaction answers a request, and why none does.

Requests are compared on what decides the answer: the method, the route under the provider
(a bridge path and a provider's own path compare equal), the query, and the JSON body less
the fields that identify the caller rather than the question (`DEFAULT_IGNORED_FIELDS`).
Headers never count: they carry keys, versions and user agents that change between a
recording and its replay.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl

from ._bridge_route import split_bridge_path
from ._cassette import CassetteRequest
from ._scrub import SCRUBBED

__all__ = [
    "DEFAULT_IGNORED_FIELDS",
    "DEFAULT_IGNORED_QUERY",
    "DEFAULT_MATCH_ON",
    "CassetteMismatchError",
    "Matcher",
    "RequestMatcher",
]

Matcher: TypeAlias = Callable[[CassetteRequest, CassetteRequest], bool]
"""A custom matcher: `(incoming, recorded) -> bool`."""

DEFAULT_MATCH_ON: Final = ("method", "route", "query", "body")

DEFAULT_IGNORED_FIELDS: Final = frozenset(
    {"user", "metadata", "safety_identifier", "prompt_cache_key"}
)
"""Top-level body fields left out of the comparison: they name the end user (`user`,
`safety_identifier`, Anthropic's `metadata.user_id`), tag the request (`metadata`) or steer a
cache (`prompt_cache_key`), and never change what the answer looks like. `stream_options` is
compared: `include_usage` adds a chunk to the stream."""

DEFAULT_IGNORED_QUERY: Final = frozenset({"beta"})
"""Query parameters left out: the anthropic SDK before 1.0 flagged beta calls `?beta=true`
(public cassettes hold it), current ones do not; the answer is the same."""


class CassetteMismatchError(AssertionError):
    """No recorded interaction answers a request (the message holds the nearest's diff)."""


def _provider_route(request: CassetteRequest) -> tuple[str | None, str]:
    return split_bridge_path(request.path)


def _route(incoming: CassetteRequest, recorded: CassetteRequest) -> bool:
    provider, route = _provider_route(incoming)
    recorded_provider, recorded_route = _provider_route(recorded)
    if provider is not None and recorded_provider is not None and provider != recorded_provider:
        return False
    return route == recorded_route


def _query_pairs(request: CassetteRequest, ignored: frozenset[str]) -> list[tuple[str, str]]:
    pairs = parse_qsl(request.query, keep_blank_values=True)
    return sorted((name, value) for name, value in pairs if name not in ignored)


def _query(incoming: CassetteRequest, recorded: CassetteRequest, ignored: frozenset[str]) -> bool:
    mine = _query_pairs(incoming, ignored)
    theirs = _query_pairs(recorded, ignored)
    if len(mine) != len(theirs):
        return False
    # A scrubbed value (an API key) stands for any value.
    return all(
        name == other and (value == other_value or other_value == SCRUBBED)
        for (name, value), (other, other_value) in zip(mine, theirs, strict=True)
    )


def _method(incoming: CassetteRequest, recorded: CassetteRequest) -> bool:
    return incoming.method.upper() == recorded.method.upper()


class RequestMatcher:
    """
    Decides whether a recorded request answers an incoming one.

    ```python
    RequestMatcher()  # method, route, query and JSON body, less DEFAULT_IGNORED_FIELDS
    RequestMatcher(ignore_fields={"user", "temperature"})
    RequestMatcher(on=("method", "route", same_model))  # same_model(incoming, recorded)
    ```

    Arguments:
        on: Built-in matchers by name (`"method"`, `"route"`, `"query"`, `"body"`) and
            custom ones: functions `(incoming, recorded) -> bool`. All must agree.
        ignore_fields: Top-level JSON body fields the `"body"` matcher leaves out.
        ignore_query: Query parameters the `"query"` matcher leaves out.
    """

    def __init__(
        self,
        on: Sequence[str | Matcher] = DEFAULT_MATCH_ON,
        *,
        ignore_fields: Iterable[str] = DEFAULT_IGNORED_FIELDS,
        ignore_query: Iterable[str] = DEFAULT_IGNORED_QUERY,
    ) -> None:
        self.ignore_fields = frozenset(ignore_fields)
        self.ignore_query = frozenset(ignore_query)
        builtins: Mapping[str, Matcher] = {
            "method": _method,
            "route": _route,
            "query": self._query,
            "body": self._body,
        }
        self.matchers: list[Matcher] = []
        for item in on:
            if isinstance(item, str):
                if item not in builtins:
                    raise ValueError(f"unknown matcher {item!r}: one of {sorted(builtins)}")
                self.matchers.append(builtins[item])
            else:
                self.matchers.append(item)

    def matches(self, incoming: CassetteRequest, recorded: CassetteRequest) -> bool:
        return all(matcher(incoming, recorded) for matcher in self.matchers)

    def comparable_body(self, request: CassetteRequest) -> Any:
        """The body as compared: parsed JSON less the ignored fields, else the raw bytes."""
        parsed = request.json
        if parsed is None:
            return request.body
        if isinstance(parsed, dict):
            return {key: value for key, value in parsed.items() if key not in self.ignore_fields}
        return parsed

    def _query(self, incoming: CassetteRequest, recorded: CassetteRequest) -> bool:
        return _query(incoming, recorded, self.ignore_query)

    def _body(self, incoming: CassetteRequest, recorded: CassetteRequest) -> bool:
        return bool(self.comparable_body(incoming) == self.comparable_body(recorded))

    def describe(self, request: CassetteRequest) -> list[str]:
        """The request as compared, one line per item, for a diff."""
        _, route = _provider_route(request)
        query = "&".join(
            f"{name}={value}" for name, value in _query_pairs(request, self.ignore_query)
        )
        lines = [f"{request.method} {route}" + (f"?{query}" if query else "")]
        body = self.comparable_body(request)
        if isinstance(body, bytes):
            lines.extend(body.decode("utf-8", "replace").splitlines())
        else:
            lines.extend(json.dumps(body, indent=2, sort_keys=True).splitlines())
        return lines

    def mismatch(
        self, incoming: CassetteRequest, candidates: Sequence[CassetteRequest], *, played: int
    ) -> CassetteMismatchError:
        """The error for a request no candidate matched: a diff against the nearest."""
        described = self.describe(incoming)
        head = (
            f"No recorded interaction matches {incoming.method} {incoming.path} "
            f"({len(candidates)} recorded, {played} already played)."
        )
        if not candidates:
            return CassetteMismatchError(head + " The cassette is empty.")

        def nearness(candidate: CassetteRequest) -> tuple[int, float]:
            agreeing = sum(matcher(incoming, candidate) for matcher in self.matchers)
            ratio = difflib.SequenceMatcher(None, described, self.describe(candidate)).ratio()
            return agreeing, ratio

        nearest = max(candidates, key=nearness)
        diff = difflib.unified_diff(
            self.describe(nearest),
            described,
            fromfile="nearest recorded request",
            tofile="this request",
            lineterm="",
        )
        return CassetteMismatchError(head + "\n" + "\n".join(diff))
