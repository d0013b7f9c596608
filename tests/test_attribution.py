"""Attribution: the optional workspace a call is made for (behaviour §4).

Set by the caller with `with_delegated_attribution`, it reaches the app as a context variable
and in `scope["extensions"]["aibridge"]` on all four paths: in process and over HTTP, async
and sync, under both mounts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from _uvicorn import running_server

from aibridge_transport import (
    AI_GATEWAY_ROOT_PATH,
    AIBRIDGE_ROOT_PATH,
    GatewayAuthMiddleware,
    HTTPTransportFactory,
    InProcessTransportFactory,
    InvalidIdentityError,
    Source,
    delegated_attribution_from_context,
    with_delegated_api_key_id,
    with_delegated_attribution,
)
from aibridge_transport.types import Receive, Scope, Send

KEY = "gateway-secret-for-attribution"
WORKSPACE_ID = uuid.UUID("6f1c2a9e-3b7d-4e8f-a1c2-5d6e7f8091a2")
MOUNTS = pytest.mark.parametrize("mount", [AIBRIDGE_ROOT_PATH, AI_GATEWAY_ROOT_PATH])
FLAVOURS = pytest.mark.parametrize("flavour", ["httpx", "httpx2"])


# -- the context manager and the getter ----------------------------------------------------


def test_unset_means_none() -> None:
    assert delegated_attribution_from_context() is None


@pytest.mark.parametrize(
    "given",
    [
        WORKSPACE_ID,
        str(WORKSPACE_ID),
        str(WORKSPACE_ID).upper(),
        "{" + str(WORKSPACE_ID) + "}",
        "urn:uuid:" + str(WORKSPACE_ID),
        WORKSPACE_ID.hex,
    ],
)
def test_a_uuid_or_its_string_is_taken(given: uuid.UUID | str) -> None:
    with with_delegated_attribution(given):
        assert delegated_attribution_from_context() == WORKSPACE_ID
    assert delegated_attribution_from_context() is None


def test_the_nil_uuid_means_no_workspace() -> None:
    with with_delegated_attribution(uuid.UUID(int=0)):
        assert delegated_attribution_from_context() is None


def test_nested_blocks_restore_the_outer_value() -> None:
    inner = uuid.uuid4()
    with with_delegated_attribution(WORKSPACE_ID):
        with with_delegated_attribution(inner):
            assert delegated_attribution_from_context() == inner
        assert delegated_attribution_from_context() == WORKSPACE_ID


@pytest.mark.parametrize(
    "given",
    [
        "",
        "workspace-7f3a",
        " " + str(WORKSPACE_ID),
        str(WORKSPACE_ID) + "\n",
        str(WORKSPACE_ID)[:-1],
        str(WORKSPACE_ID).replace("-", "_"),
        WORKSPACE_ID.hex[:8] + "-" + WORKSPACE_ID.hex[8:],  # a hyphen where none belongs
        "+" + WORKSPACE_ID.hex[1:],
        "0x" + WORKSPACE_ID.hex[2:],
    ],
)
def test_a_string_that_is_not_a_uuid_is_refused_without_quoting_it(given: str) -> None:
    with pytest.raises(InvalidIdentityError, match="workspace id is not a UUID") as caught:
        with with_delegated_attribution(given):
            pass
    assert isinstance(caught.value, ValueError)
    if given.strip():
        assert given.strip() not in str(caught.value)


def test_a_value_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"uuid\.UUID or a str, not int"):
        with with_delegated_attribution(WORKSPACE_ID.int):  # type: ignore[arg-type]
            pass


# -- the four paths --------------------------------------------------------------------------


async def report(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    seen_in_task: list[Any] = []

    async def read_in_task() -> None:
        seen_in_task.append(str(delegated_attribution_from_context()))

    async with anyio.create_task_group() as group:
        group.start_soon(read_in_task)
    extension = dict(scope.get("extensions", {}).get("aibridge") or {})
    body = {
        "path": scope["path"],
        "attribution": str(delegated_attribution_from_context()),
        "in_task": seen_in_task[0],
        "extension": str(extension.get("workspace_id", "absent")),
    }
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@pytest.fixture(scope="module")
def bridge_url() -> Iterator[str]:
    with running_server(GatewayAuthMiddleware(report, KEY)) as url:
        yield url


def attributed(mount: str, workspace_id: uuid.UUID | None) -> dict[str, str]:
    shown = str(workspace_id) if workspace_id is not None else "None"
    extension = str(workspace_id) if workspace_id is not None else "absent"
    return {
        "path": f"{mount}/openai/v1/models",
        "attribution": shown,
        "in_task": shown,
        "extension": extension,
    }


def module_of(flavour: str) -> Any:
    return httpx if flavour == "httpx" else httpx2


async def call_async(factory: Any, flavour: str, workspace_id: uuid.UUID | None) -> Any:
    module = module_of(flavour)
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)
    async with module.AsyncClient(transport=transport, base_url="http://bridge") as client:
        with with_delegated_api_key_id("key-1"):
            if workspace_id is None:
                response = await client.get("/v1/models")
            else:
                with with_delegated_attribution(workspace_id):
                    response = await client.get("/v1/models")
    return response.json()


def call_sync(factory: Any, flavour: str, workspace_id: uuid.UUID | None) -> Any:
    module = module_of(flavour)
    transport = factory.transport_for("openai", Source.AGENTS, flavor=flavour)
    with module.Client(transport=transport, base_url="http://bridge") as client:
        with with_delegated_api_key_id("key-1"):
            if workspace_id is None:
                response = client.get("/v1/models")
            else:
                with with_delegated_attribution(workspace_id):
                    response = client.get("/v1/models")
    return response.json()


@pytest.mark.anyio
@MOUNTS
@FLAVOURS
@pytest.mark.parametrize("workspace_id", [WORKSPACE_ID, None], ids=["attributed", "unset"])
async def test_in_process_async(mount: str, flavour: str, workspace_id: uuid.UUID | None) -> None:
    async with InProcessTransportFactory(report, root_path=mount) as factory:
        seen = await call_async(factory, flavour, workspace_id)
    assert seen == attributed(mount, workspace_id)


@MOUNTS
@FLAVOURS
@pytest.mark.parametrize("workspace_id", [WORKSPACE_ID, None], ids=["attributed", "unset"])
def test_in_process_sync(mount: str, flavour: str, workspace_id: uuid.UUID | None) -> None:
    with InProcessTransportFactory(report, root_path=mount) as factory:
        seen = call_sync(factory, flavour, workspace_id)
    assert seen == attributed(mount, workspace_id)


@pytest.mark.anyio
@MOUNTS
@FLAVOURS
@pytest.mark.parametrize("workspace_id", [WORKSPACE_ID, None], ids=["attributed", "unset"])
async def test_over_http_async(
    bridge_url: str, mount: str, flavour: str, workspace_id: uuid.UUID | None
) -> None:
    async with HTTPTransportFactory(bridge_url, KEY, root_path=mount) as factory:
        seen = await call_async(factory, flavour, workspace_id)
    assert seen == attributed(mount, workspace_id)


@MOUNTS
@FLAVOURS
@pytest.mark.parametrize("workspace_id", [WORKSPACE_ID, None], ids=["attributed", "unset"])
def test_over_http_sync(
    bridge_url: str, mount: str, flavour: str, workspace_id: uuid.UUID | None
) -> None:
    with HTTPTransportFactory(bridge_url, KEY, root_path=mount) as factory:
        seen = call_sync(factory, flavour, workspace_id)
    assert seen == attributed(mount, workspace_id)


@pytest.mark.anyio
async def test_concurrent_requests_keep_their_own_attribution(bridge_url: str) -> None:
    workspaces = [uuid.uuid4() for _ in range(8)]
    seen: dict[int, Any] = {}

    async def call(factory: Any, number: int) -> None:
        seen[number] = (await call_async(factory, "httpx", workspaces[number]))["attribution"]

    async with (
        InProcessTransportFactory(report) as in_process,
        HTTPTransportFactory(bridge_url, KEY) as over_http,
    ):
        for factory in (in_process, over_http):
            seen.clear()
            async with anyio.create_task_group() as group:
                for number in range(len(workspaces)):
                    group.start_soon(call, factory, number)
            assert seen == {number: str(workspaces[number]) for number in range(len(workspaces))}
