from __future__ import annotations

import gc
import tracemalloc
import uuid
from pathlib import Path

import httpx
import pytest
from asgi import chunk, start

import aibridge_transport
from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    HTTPTransportFactory,
    InProcessTransportFactory,
    InvalidProviderNameError,
    PathOutsideProviderError,
    Source,
    with_delegated_api_key_id,
)
from aibridge_transport._bridge_paths import bridge_path, split_bridge_path, validate_provider_name
from aibridge_transport.types import Receive, Scope, Send


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
    ("raw", "path"),
    [
        ("/v1/chat/completions", "/api/v2/ai-gateway/openai/v1/chat/completions"),
        ("", "/api/v2/ai-gateway/openai/"),
        # Either mount already in the path (an SDK base URL): placed under the chosen one.
        ("/api/v2/ai-gateway/openai/v1/x", "/api/v2/ai-gateway/openai/v1/x"),
        ("/api/v2/aibridge/openai/v1/x", "/api/v2/ai-gateway/openai/v1/x"),
        ("/api/v2/ai-gateway/openai", "/api/v2/ai-gateway/openai"),
        ("/api/v2/aibridge/openai/", "/api/v2/ai-gateway/openai/"),
        ("/api/v2/ai-gateway/other/v1", "/api/v2/ai-gateway/openai/api/v2/ai-gateway/other/v1"),
        ("/v1/%2e%2E/v2", "/api/v2/ai-gateway/openai/v2"),
    ],
)
def test_path_rewrite_under_the_ai_gateway_mount(raw: str, path: str) -> None:
    placed = bridge_path("openai", raw, AI_GATEWAY_ROOT_PATH)
    assert (placed.path, placed.raw_path) == (path, path.encode())


def test_the_legacy_mount_takes_a_path_under_coders_mount_too() -> None:
    placed = bridge_path("openai", "/api/v2/ai-gateway/openai/v1/models")
    assert placed.path == "/api/v2/aibridge/openai/v1/models"


MOUNTS = pytest.mark.parametrize("mount", [AIBRIDGE_ROOT_PATH, AI_GATEWAY_ROOT_PATH])


@MOUNTS
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
        "/api/v2/ai-gateway/openai/../anthropic",
        "/api/v2/ai-gateway/openai/%2e%2e",
        "/v1/%00",
        "/v1/%0d%0a",
    ],
)
def test_paths_leaving_the_provider_are_refused(raw: str, mount: str) -> None:
    with pytest.raises(PathOutsideProviderError, match=f"stay under {mount}/openai/"):
        bridge_path("openai", raw, mount)
    assert issubclass(PathOutsideProviderError, ValueError)


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("/api/v2/ai-gateway/openai/v1/x", ("/api/v2/ai-gateway", "openai", "/v1/x")),
        ("/api/v2/aibridge/openai", ("/api/v2/aibridge", "openai", "")),
        ("/api/v2/aibridge/", ("/api/v2/aibridge", "", "")),
        ("/api/v2/ai-gatewayx/openai", None),
        ("/api/v2/aibridge", None),
        ("/health", None),
    ],
)
def test_split_bridge_path(path: str, split: tuple[str, str, str] | None) -> None:
    assert split_bridge_path(path) == split


@pytest.mark.parametrize("root_path", ["/api/v2/other", "/api/v2/aibridge/", "", "api/v2/aibridge"])
def test_a_factory_mount_must_be_one_of_the_two(root_path: str) -> None:
    for make in (
        lambda: InProcessTransportFactory(no_content, root_path=root_path),
        lambda: HTTPTransportFactory("http://bridge", "key", root_path=root_path),
    ):
        with pytest.raises(ValueError, match=r"AI_GATEWAY_ROOT_PATH .* or AIBRIDGE_ROOT_PATH"):
            make()


def test_provider_with_reserved_characters_is_encoded_in_raw_path() -> None:
    placed = bridge_path("ü", "/x")
    assert placed.path == "/api/v2/aibridge/ü/x"
    assert placed.raw_path == b"/api/v2/aibridge/%C3%BC/x"


async def no_content(scope: Scope, receive: Receive, send: Send) -> None:
    await send(start(status=204))
    await send(chunk(b"", more_body=False))


async def _requests_with_long_paths(count: int, length: int) -> None:
    factory = InProcessTransportFactory(no_content)
    transport = factory.transport_for("openai", Source.AGENTS)
    run = uuid.uuid4().hex  # paths no earlier test has cached
    with with_delegated_api_key_id("key-1"):
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            for number in range(count):
                response = await client.get(f"/v1/{run}/{number:06d}/" + "a" * length)
                assert response.status_code == 204
    await factory.aclose()


@pytest.mark.anyio
async def test_long_paths_are_not_kept_once_client_and_factory_are_gone() -> None:
    # Behaviour §6: caches keyed by request data are bounded in bytes, not only in entries.
    # Only what the library allocated counts: the standard library keeps a bounded cache of
    # its own (urllib.parse, through httpx's cookie handling).
    library = tracemalloc.Filter(True, str(Path(aibridge_transport.__file__).parent / "*"))
    count, length = 300, 60 * 1024
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces([library])
        await _requests_with_long_paths(count, length)
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces([library])
    finally:
        tracemalloc.stop()
    kept = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # Requested: 300 paths of 60 KiB (18 MiB); kept must stay far below even one copy.
    assert kept < 1024 * 1024, f"{kept} bytes kept after {count} requests"
