"""Provider names and the path rewrite (behaviour §§2 and 3).

A provider name is exactly one path segment. A request path is placed under
`/api/v2/aibridge/<provider>/`, with dot segments resolved and containment judged on the
decoded path, so that no spelling of `..` (plain, `%2e%2e`, or hidden behind `%2f`) can
leave the provider's subtree.
"""

from __future__ import annotations

import functools
import unicodedata
from urllib.parse import quote, unquote

from ._errors import InvalidProviderNameError, PathOutsideProviderError
from ._rules import has_control_character, path_without_query

__all__ = [
    "AIBRIDGE_ROOT_PATH",
    "BridgePath",
    "bridge_path",
    "place_request_path",
    "validate_provider_name",
]

AIBRIDGE_ROOT_PATH = "/api/v2/aibridge"
_ROOT_SEGMENTS = ("api", "v2", "aibridge")
_FORBIDDEN_IN_NAME = {"/": "a slash", "\\": "a backslash", "%": "a percent sign"}
_FORBIDDEN_IN_NAME |= {"?": "a question mark", "#": "a hash sign"}
_MAX_PROVIDER_NAME_LENGTH = 255
# Characters a path segment may carry unencoded (RFC 3986 pchar, minus what quote() keeps).
_SEGMENT_SAFE = "!$&'()*+,;=:@"


def _is_invisible(char: str) -> bool:
    # Format characters (bidi overrides, zero-width) make a name print as another one in logs;
    # a lone surrogate cannot be percent-encoded at all.
    return unicodedata.category(char) in ("Cf", "Cs")


def validate_provider_name(name: object) -> str:
    """Return `name` if it is one valid path segment, else raise `InvalidProviderNameError`."""
    if not isinstance(name, str):
        raise TypeError(f"provider name must be a str, not {type(name).__name__}")
    if name == "":
        raise InvalidProviderNameError("provider name is required")
    if name in (".", ".."):
        raise InvalidProviderNameError(f"provider name {name!r} is a dot segment, not a name")
    if len(name) > _MAX_PROVIDER_NAME_LENGTH:
        raise InvalidProviderNameError(
            f"provider name is {len(name)} characters long; at most "
            f"{_MAX_PROVIDER_NAME_LENGTH} are allowed"
        )
    if has_control_character(name):
        raise InvalidProviderNameError(f"provider name {name!r} holds a control character")
    for char in name:
        if char in _FORBIDDEN_IN_NAME:
            raise InvalidProviderNameError(
                f"provider name {name!r} holds {_FORBIDDEN_IN_NAME[char]} ({char!r}); "
                "it must be a single path segment"
            )
        if char.isspace():
            raise InvalidProviderNameError(f"provider name {name!r} holds whitespace")
        if _is_invisible(char):
            raise InvalidProviderNameError(
                f"provider name {name!r} holds an invisible character (U+{ord(char):04X})"
            )
    return name


class BridgePath:
    """A request path placed under the provider's subtree: `path` decoded, `raw_path` encoded."""

    __slots__ = ("path", "raw_path")

    def __init__(self, path: str, raw_path: bytes) -> None:
        self.path = path
        self.raw_path = raw_path

    def __repr__(self) -> str:
        return f"BridgePath(path={self.path!r}, raw_path={self.raw_path!r})"


def _refuse(provider: str, raw_path: str, why: str) -> PathOutsideProviderError:
    return PathOutsideProviderError(
        f"request path {raw_path!r} refused for provider {provider!r}: {why}; "
        f"requests stay under {AIBRIDGE_ROOT_PATH}/{provider}/"
    )


def bridge_path(provider: str, raw_path: str) -> BridgePath:
    """Place `raw_path` (percent-encoded, no query) under `/api/v2/aibridge/<provider>/`.

    Repeated slashes collapse, a trailing slash is kept, an already prefixed path is not
    prefixed again, and dot segments are resolved; a path that would leave the provider's
    subtree raises `PathOutsideProviderError`.
    """
    segments = [segment for segment in raw_path.split("/") if segment]
    decoded = [unquote(segment) for segment in segments]
    for segment in decoded:
        if has_control_character(segment):
            raise _refuse(provider, raw_path, "it holds a control character")

    start = 0
    if tuple(decoded[:4]) == (*_ROOT_SEGMENTS, provider):
        start = 4  # SDK base URLs often hold the prefix already
    trailing_slash = raw_path.endswith("/") or not segments

    kept: list[str] = []
    kept_decoded: list[str] = []
    for segment, plain in zip(segments[start:], decoded[start:], strict=True):
        if plain == ".":
            continue
        if plain == "..":
            if not kept:
                raise _refuse(provider, raw_path, "'..' climbs above the provider")
            kept.pop()
            kept_decoded.pop()
            continue
        kept.append(segment)
        kept_decoded.append(plain)
    if segments and unquote(segments[-1]) in (".", ".."):
        trailing_slash = True

    # An encoded slash is a separator for containment: `a%2f..%2f..` climbs too.
    depth = 0
    for part in "/".join(kept_decoded).split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise _refuse(provider, raw_path, "an encoded '..' climbs above the provider")
        elif part not in ("", "."):
            depth += 1

    prefix_raw = [*_ROOT_SEGMENTS, quote(provider, safe=_SEGMENT_SAFE)]
    prefix_plain = [*_ROOT_SEGMENTS, provider]
    suffix = "/" if trailing_slash else ""
    if start and not kept and not raw_path.endswith("/") and segments[-1:] == segments[3:4]:
        suffix = ""  # exactly `/api/v2/aibridge/<provider>`: left as it is
    raw = "/" + "/".join(prefix_raw + kept) + suffix
    plain_path = "/" + "/".join(prefix_plain + kept_decoded) + suffix
    return BridgePath(plain_path, raw.encode("ascii"))


# SDKs call a handful of paths over and over, and the rewrite is pure: it is cached. The cache
# is keyed by request data, so it is bounded in bytes as well as in entries: a path longer
# than this is rewritten each time and never kept (behaviour §6).
_CACHED_PATH_MAX_LENGTH = 256
_CACHED_PATHS_MAX = 1024


@functools.lru_cache(maxsize=_CACHED_PATHS_MAX)
def _placed(provider: str, raw_path: bytes) -> BridgePath:
    return bridge_path(provider, raw_path.decode("ascii"))


def place_request_path(provider: str, raw_path: bytes) -> BridgePath:
    """`bridge_path` for an httpx `raw_path` (percent-encoded, the query after `?`)."""
    path = path_without_query(raw_path)
    if len(path) <= _CACHED_PATH_MAX_LENGTH:
        return _placed(provider, path)
    return bridge_path(provider, path.decode("ascii"))
