"""What never reaches a cassette: credentials in headers, query strings and anywhere a user says.

Scrubbing happens once, when an exchange is recorded, so nothing written to disk (or kept in
memory by the recorder) holds a secret; replay never needs one, because matching ignores the
headers (docs/testing.md, "Recording and replaying").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from ._cassette import Interaction

__all__ = [
    "DEFAULT_SCRUBBED_HEADERS",
    "DEFAULT_SCRUBBED_HEADER_PREFIXES",
    "DEFAULT_SCRUBBED_QUERY_PARAMETERS",
    "SCRUBBED",
    "Scrubber",
]

SCRUBBED: Final = "[scrubbed]"

DEFAULT_SCRUBBED_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",  # Azure OpenAI
        "cookie",
        "set-cookie",
    }
)
"""Header names whose values are replaced by `[scrubbed]`, in requests and responses."""

DEFAULT_SCRUBBED_HEADER_PREFIXES: Final = ("x-coder-ai-gateway-", "x-aibridge-")
"""The standalone gateway's identity headers (behaviour §11) and their older names: never
recorded, and never forwarded to a provider."""

DEFAULT_SCRUBBED_QUERY_PARAMETERS: Final = frozenset(
    {"key", "api_key", "api-key", "apikey", "access_token", "token", "sig", "signature"}
)
"""Query parameters whose values are replaced (Gemini-style `?key=`, signed URLs)."""


@dataclass(frozen=True, kw_only=True)
class Scrubber:
    """
    Removes secrets from an exchange before it is recorded.

    The defaults scrub `authorization`, `proxy-authorization`, `x-api-key`, `api-key`,
    cookies, every `X-Coder-AI-Gateway-*` and `X-AIBridge-*` header, and API keys in query
    strings. Add rules rather than replacing them:

    ```python
    Scrubber(headers={"openai-organization"}, secrets=["sk-live-..."])
    ```

    Arguments:
        headers: More header names to scrub (any case).
        header_prefixes: More header name prefixes to scrub.
        query_parameters: More query parameter names to scrub.
        secrets: Literal strings replaced by `[scrubbed]` wherever they occur: headers,
            URI, request and response bodies.
        before_record: A last function given each interaction after the rules above; it
            returns the interaction to record, or `None` to record nothing.
        keep_defaults: `False` drops the default rules (for a test of the scrubber itself).
    """

    headers: Iterable[str] = ()
    header_prefixes: Sequence[str] = ()
    query_parameters: Iterable[str] = ()
    secrets: Sequence[str] = ()
    before_record: Callable[[Interaction], Interaction | None] | None = None
    keep_defaults: bool = True
    _names: frozenset[str] = field(init=False, repr=False)
    _prefixes: tuple[str, ...] = field(init=False, repr=False)
    _parameters: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = {name.lower() for name in self.headers}
        prefixes = [prefix.lower() for prefix in self.header_prefixes]
        parameters = {name.lower() for name in self.query_parameters}
        if self.keep_defaults:
            names |= DEFAULT_SCRUBBED_HEADERS
            prefixes += DEFAULT_SCRUBBED_HEADER_PREFIXES
            parameters |= DEFAULT_SCRUBBED_QUERY_PARAMETERS
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_prefixes", tuple(prefixes))
        object.__setattr__(self, "_parameters", frozenset(parameters))

    def secret_header(self, name: str) -> bool:
        lowered = name.lower()
        return lowered in self._names or lowered.startswith(self._prefixes)

    def headers_of(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            (name, SCRUBBED if self.secret_header(name) else self.text(value))
            for name, value in headers
        ]

    def uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.query:
            pairs = [
                (name, SCRUBBED if name.lower() in self._parameters else value)
                for name, value in parse_qsl(parts.query, keep_blank_values=True)
            ]
            parts = parts._replace(query=urlencode(pairs, safe="[]"))
        if parts.username or parts.password:
            parts = parts._replace(netloc=parts.hostname or "")
        return self.text(urlunsplit(parts))

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret:
                value = value.replace(secret, SCRUBBED)
        return value

    def body(self, body: bytes) -> bytes:
        for secret in self.secrets:
            if secret:
                body = body.replace(secret.encode(), SCRUBBED.encode())
        return body

    def interaction(self, interaction: Interaction) -> Interaction | None:
        """The interaction as it may be recorded (`None`: record nothing)."""
        request, response = interaction.request, interaction.response
        request = replace(
            request,
            uri=self.uri(request.uri),
            headers=self.headers_of(request.headers),
            body=self.body(request.body),
        )
        response = replace(
            response,
            headers=self.headers_of(response.headers),
            body=self.body(response.body),
        )
        if response.body != interaction.response.body:
            # A secret replaced inside the body changes its length: the recorded boundaries
            # no longer fit it, so it replays as one chunk, with its length as it now is.
            length = str(len(response.body))
            headers = [
                (name, length if name.lower() == "content-length" else value)
                for name, value in response.headers
            ]
            response = replace(response, headers=headers, chunks=None)
        scrubbed = replace(interaction, request=request, response=response)
        if self.before_record is not None:
            return self.before_record(scrubbed)
        return scrubbed
