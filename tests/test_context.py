from __future__ import annotations

import anyio
import pytest

from aibridge_transport import (
    Source,
    delegated_api_key_id_from_context,
    source_from_context,
    with_delegated_api_key_id,
    with_source,
)


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


@pytest.mark.parametrize("bad", ["", "a\nb"])
def test_with_source_refuses_empty_or_control(bad: str) -> None:
    with pytest.raises(ValueError), with_source(bad):
        pass


def test_delegated_key_unset_or_empty_is_none() -> None:
    assert delegated_api_key_id_from_context() is None
    with with_delegated_api_key_id(""):
        assert delegated_api_key_id_from_context() is None
    with with_delegated_api_key_id("key-1"):
        assert delegated_api_key_id_from_context() == "key-1"
    assert delegated_api_key_id_from_context() is None


def test_delegated_key_with_control_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="control character"), with_delegated_api_key_id("k\r\n"):
        pass


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
