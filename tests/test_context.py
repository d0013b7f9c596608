from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import httpx2
import pytest

from aibridge_transport import (
    HTTPTransportFactory,
    InProcessTransportFactory,
    InvalidIdentityError,
    Source,
    delegated_api_key_id_from_context,
    source_from_context,
    with_delegated_api_key_id,
    with_source,
)
from aibridge_transport.types import Receive, Scope, Send


def test_source_is_a_string() -> None:
    agents: str = Source.AGENTS
    assert agents == "agents"
    assert isinstance(agents, str)


def test_source_unset_is_none() -> None:
    assert source_from_context() is None


def test_with_source_sets_and_resets() -> None:
    with with_source(Source.AGENTS):
        assert source_from_context() == "agents"
        with with_source("batch-jobs"):
            assert source_from_context() == "batch-jobs"
        assert source_from_context() == "agents"
    assert source_from_context() is None


@pytest.mark.parametrize("bad", ["", "a\nb", " agents", "agents\t", "a\x85b"])
def test_with_source_refuses_empty_control_or_surrounding_whitespace(bad: str) -> None:
    with pytest.raises(InvalidIdentityError), with_source(bad):
        pass


def test_delegated_key_unset_or_empty_is_none() -> None:
    assert delegated_api_key_id_from_context() is None
    with with_delegated_api_key_id(""):
        assert delegated_api_key_id_from_context() is None
    with with_delegated_api_key_id("key-1"):
        assert delegated_api_key_id_from_context() == "key-1"
    assert delegated_api_key_id_from_context() is None


def test_delegated_key_with_control_characters_is_refused() -> None:
    with (
        pytest.raises(InvalidIdentityError, match="control character"),
        with_delegated_api_key_id("k\r\n"),
    ):
        pass


async def never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the app was called")


def in_process(flavor: str) -> Any:
    return InProcessTransportFactory(never_called)


def over_http(flavor: str) -> Any:
    # A port nobody listens on: a request that got as far as sending fails with ConnectError.
    return HTTPTransportFactory("http://127.0.0.1:9", "gateway-key")


FACTORIES = pytest.mark.parametrize("make_factory", [in_process, over_http])
FLAVORS = pytest.mark.parametrize("flavor", ["httpx", "httpx2"])
KEY_IDS = pytest.mark.parametrize(
    "key_id",
    [" key-7f3a", "key-7f3a ", "\tkey-7f3a", "key-7f3a\n", "key\x00-7f3a", "key-7f3a\u2028"],
    ids=["leading-space", "trailing-space", "tab", "newline", "nul", "line-separator"],
)


@pytest.mark.anyio
@FACTORIES
@FLAVORS
@KEY_IDS
async def test_a_bad_delegated_key_id_is_refused_alike_in_both_factories(
    make_factory: Callable[[str], Any], flavor: str, key_id: str
) -> None:
    # One rule for both factories, before anything is sent; the message names the fault,
    # never the key id (behaviour §4).
    factory = make_factory(flavor)
    module: Any = httpx2 if flavor == "httpx2" else httpx
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavor)
    async with module.AsyncClient(transport=transport, base_url="http://bridge") as client:
        with pytest.raises(InvalidIdentityError) as caught, with_delegated_api_key_id(key_id):
            await client.get("/v1/models")
    message = str(caught.value)
    assert "7f3a" not in message
    assert "delegated API key id" in message
    assert "whitespace" in message or "control character" in message
    await factory.aclose()


@FACTORIES
@pytest.mark.parametrize("source", [" agents", "agents ", "age\nnts", "agents\x9b"])
def test_a_bad_source_is_refused_alike_in_both_factories(
    make_factory: Callable[[str], Any], source: str
) -> None:
    with pytest.raises(InvalidIdentityError) as caught:
        make_factory("httpx").transport_for("openai", source)
    assert "source" in str(caught.value)
    assert "agents" not in str(caught.value).replace("source", "")


@pytest.mark.anyio
async def test_concurrent_tasks_see_their_own_values() -> None:
    seen: dict[str, str | None] = {}

    async def worker(key: str, ready: anyio.Event, go: anyio.Event) -> None:
        with with_delegated_api_key_id(key):
            ready.set()
            await go.wait()
            seen[key] = delegated_api_key_id_from_context()

    go = anyio.Event()
    async with anyio.create_task_group() as group:
        readies = []
        for key in ("a", "b", "c"):
            ready = anyio.Event()
            readies.append(ready)
            group.start_soon(worker, key, ready, go)
        for ready in readies:
            await ready.wait()
        go.set()
    assert seen == {"a": "a", "b": "b", "c": "c"}
