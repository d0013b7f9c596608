"""Provider names, the two mounts and the path rewrite (behaviour §§2 and 3).

A provider name is exactly one path segment. A request path is placed under
`<mount>/<provider>/`, the mount being `/api/v2/aibridge` (the default) or coder's canonical
`/api/v2/ai-gateway`, with dot segments resolved and containment judged on the decoded path,
so that no spelling of `..` (plain, `%2e%2e`, or hidden behind `%2f`) can leave the
provider's subtree. Both mounts are aliases: a path already under either one is placed under
the chosen one, never prefixed twice, and the bridge side answers under both.
"""

from __future__ import annotations

import functools
import unicodedata
from urllib.parse import quote, unquote

from ._errors import InvalidProviderNameError, PathOutsideProviderError
from ._rules import has_control_character, path_without_query

__all__ = [
    "AIBRIDGE_ROOT_PATH",
    "AI_GATEWAY_ROOT_PATH",
    "BRIDGE_ROOT_PATHS",
    "BridgePath",
    "bridge_path",
    "check_root_path",
    "place_request_path",
    "split_bridge_path",
    "validate_provider_name",
]

AIBRIDGE_ROOT_PATH = "/api/v2/aibridge"
AI_GATEWAY_ROOT_PATH = "/api/v2/ai-gateway"
# Every mount the bridge answers under, coder's canonical one first (behaviour §2).
BRIDGE_ROOT_PATHS = (AI_GATEWAY_ROOT_PATH, AIBRIDGE_ROOT_PATH)
_ROOT_SEGMENTS = {root: tuple(root.strip("/").split("/")) for root in BRIDGE_ROOT_PATHS}
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


def check_root_path(root_path: object) -> str:
    """Return `root_path` if it is one of the bridge's mounts, else raise saying which are."""
    if not isinstance(root_path, str):
        raise TypeError(f"root_path must be a str, not {type(root_path).__name__}")
    if root_path not in BRIDGE_ROOT_PATHS:
        raise ValueError(
            f"root_path must be AI_GATEWAY_ROOT_PATH ({AI_GATEWAY_ROOT_PATH!r}) or "
            f"AIBRIDGE_ROOT_PATH ({AIBRIDGE_ROOT_PATH!r}), got {root_path!r}"
        )
    return root_path


def split_bridge_path(path: str) -> tuple[str, str, str] | None:
    """`(mount, provider segment, rest)` of a decoded path under either mount, else `None`.

    `rest` starts with `/` (or is empty); the provider segment is not validated here.
    """
    for root in BRIDGE_ROOT_PATHS:
        if path.startswith(root + "/"):
            provider, slash, rest = path[len(root) + 1 :].partition("/")
            return root, provider, slash + rest
    return None


class BridgePath:
    """A request path placed under the provider's subtree: `path` decoded, `raw_path` encoded."""

    __slots__ = ("path", "raw_path")

    def __init__(self, path: str, raw_path: bytes) -> None:
        self.path = path
        self.raw_path = raw_path

    def __repr__(self) -> str:
        return f"BridgePath(path={self.path!r}, raw_path={self.raw_path!r})"


def _refuse(provider: str, raw_path: str, why: str, root: str) -> PathOutsideProviderError:
    return PathOutsideProviderError(
        f"request path {raw_path!r} refused for provider {provider!r}: {why}; "
        f"requests stay under {root}/{provider}/"
    )


def bridge_path(provider: str, raw_path: str, root: str = AIBRIDGE_ROOT_PATH) -> BridgePath:
    """Place `raw_path` (percent-encoded, no query) under `<root>/<provider>/`.

    `root` is one of `BRIDGE_ROOT_PATHS`. Repeated slashes collapse, a trailing slash is
    kept, a path already under either mount for this provider is not prefixed again (it is
    placed under `root`), and dot segments are resolved; a path that would leave the
    provider's subtree raises `PathOutsideProviderError`.
    """
    segments = [segment for segment in raw_path.split("/") if segment]
    decoded = [unquote(segment) for segment in segments]
    for segment in decoded:
        if has_control_character(segment):
            raise _refuse(provider, raw_path, "it holds a control character", root)

    start = 0
    for segments_of_a_mount in _ROOT_SEGMENTS.values():
        if tuple(decoded[:4]) == (*segments_of_a_mount, provider):
            start = 4  # SDK base URLs often hold a prefix already, either mount's
            break
    trailing_slash = raw_path.endswith("/") or not segments

    kept: list[str] = []
    kept_decoded: list[str] = []
    for segment, plain in zip(segments[start:], decoded[start:], strict=True):
        if plain == ".":
            continue
        if plain == "..":
            if not kept:
                raise _refuse(provider, raw_path, "'..' climbs above the provider", root)
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
                raise _refuse(provider, raw_path, "an encoded '..' climbs above the provider", root)
        elif part not in ("", "."):
            depth += 1

    root_segments = _ROOT_SEGMENTS[root]
    prefix_raw = [*root_segments, quote(provider, safe=_SEGMENT_SAFE)]
    prefix_plain = [*root_segments, provider]
    suffix = "/" if trailing_slash else ""
    if start and not kept and not raw_path.endswith("/") and segments[-1:] == segments[3:4]:
        suffix = ""  # exactly `<mount>/<provider>`: no slash added
    raw = "/" + "/".join(prefix_raw + kept) + suffix
    plain_path = "/" + "/".join(prefix_plain + kept_decoded) + suffix
    return BridgePath(plain_path, raw.encode("ascii"))


# SDKs call a handful of paths over and over, and the rewrite is pure: it is cached. The cache
# is keyed by request data, so it is bounded in bytes as well as in entries: a path longer
# than this is rewritten each time and never kept (behaviour §6).
_CACHED_PATH_MAX_LENGTH = 256
_CACHED_PATHS_MAX = 1024


@functools.lru_cache(maxsize=_CACHED_PATHS_MAX)
def _placed(provider: str, raw_path: bytes, root: str) -> BridgePath:
    return bridge_path(provider, raw_path.decode("ascii"), root)


def place_request_path(provider: str, raw_path: bytes, root: str) -> BridgePath:
    """`bridge_path` for an httpx `raw_path` (percent-encoded, the query after `?`)."""
    path = path_without_query(raw_path)
    if len(path) <= _CACHED_PATH_MAX_LENGTH:
        return _placed(provider, path, root)
    return bridge_path(provider, path.decode("ascii"), root)
