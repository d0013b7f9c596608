from __future__ import annotations

import pytest

from aibridge_transport import InvalidProviderNameError, PathOutsideProviderError
from aibridge_transport._paths import bridge_path, validate_provider_name


@pytest.mark.parametrize("name", ["openai", "anthropic", "my-provider_2", "azure.openai", "ü"])
def test_valid_provider_names(name: str) -> None:
    assert validate_provider_name(name) == name


def test_empty_provider_name_is_required() -> None:
    with pytest.raises(ValueError, match=r"^provider name is required$"):
        validate_provider_name("")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (".", "dot segment"),
        ("..", "dot segment"),
        ("a/b", "slash"),
        ("a\\b", "backslash"),
        ("a%2e", "percent"),
        ("a?b", "question mark"),
        ("a#b", "hash"),
        ("a b", "whitespace"),
        ("a\tb", "control character"),
        ("a\nb", "control character"),
        ("a\x00b", "control character"),
        ("a\u2003b", "whitespace"),
        ("x" * 256, "at most 255"),
    ],
)
def test_invalid_provider_names_say_why(name: str, why: str) -> None:
    with pytest.raises(InvalidProviderNameError, match=why):
        validate_provider_name(name)
    assert issubclass(InvalidProviderNameError, ValueError)


def test_provider_name_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        validate_provider_name(None)


@pytest.mark.parametrize(
    ("raw", "path", "raw_path"),
    [
        ("/v1/chat/completions", "/api/v2/aibridge/openai/v1/chat/completions", None),
        ("", "/api/v2/aibridge/openai/", None),
        ("/", "/api/v2/aibridge/openai/", None),
        ("/v1/models/", "/api/v2/aibridge/openai/v1/models/", None),
        ("//v1///models", "/api/v2/aibridge/openai/v1/models", None),
        # Already prefixed (SDK base URLs often hold the prefix): not prefixed twice.
        ("/api/v2/aibridge/openai/v1/x", "/api/v2/aibridge/openai/v1/x", None),
        ("/api/v2/aibridge/openai", "/api/v2/aibridge/openai", None),
        ("/api/v2/aibridge/openai/", "/api/v2/aibridge/openai/", None),
        # Another provider's prefix is just a path under this one.
        ("/api/v2/aibridge/other/v1", "/api/v2/aibridge/openai/api/v2/aibridge/other/v1", None),
        # Dot segments resolved, plain and encoded, in any case.
        ("/v1/../v2", "/api/v2/aibridge/openai/v2", None),
        ("/v1/%2e%2E/v2", "/api/v2/aibridge/openai/v2", None),
        ("/v1/./x", "/api/v2/aibridge/openai/v1/x", None),
        ("/v1/.", "/api/v2/aibridge/openai/v1/", None),
        # Percent-encoding kept in raw_path, decoded in path.
        ("/a%20b/c%2fd", "/api/v2/aibridge/openai/a b/c/d", b"/api/v2/aibridge/openai/a%20b/c%2fd"),
        ("/a%2f..%2fb", "/api/v2/aibridge/openai/a/../b", b"/api/v2/aibridge/openai/a%2f..%2fb"),
    ],
)
def test_path_rewrite(raw: str, path: str, raw_path: bytes | None) -> None:
    placed = bridge_path("openai", raw)
    assert placed.path == path
    assert placed.raw_path == (raw_path if raw_path is not None else path.encode())


@pytest.mark.parametrize(
    "raw",
    [
        "/..",
        "/../anthropic/v1/messages",
        "/v1/../../x",
        "/%2e%2e",
        "/%2E%2e/x",
        "/..%2fx",
        "/a%2f..%2f..%2fb",
        "/api/v2/aibridge/openai/../anthropic",
        "/api/v2/aibridge/openai/..",
        "/v1/%00",
        "/v1/%0d%0a",
    ],
)
def test_paths_leaving_the_provider_are_refused(raw: str) -> None:
    with pytest.raises(PathOutsideProviderError, match="openai"):
        bridge_path("openai", raw)
    assert issubclass(PathOutsideProviderError, ValueError)


def test_provider_with_reserved_characters_is_encoded_in_raw_path() -> None:
    placed = bridge_path("ü", "/x")
    assert placed.path == "/api/v2/aibridge/ü/x"
    assert placed.raw_path == b"/api/v2/aibridge/%C3%BC/x"
