"""The two client libraries (behaviour §2): one flavour per client, and a clear error for a mix."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from asgi import start

from aibridge_transport import (
    HTTPTransportFactory,
    InProcessTransportFactory,
    Source,
    StreamingASGITransport,
    with_delegated_api_key_id,
)
from aibridge_transport._flavors import (
    HTTPX2_MISSING,
    flavor_module,
    flavored_class,
    streaming_transport_class,
)
from aibridge_transport.httpx2 import StreamingASGITransport as StreamingASGITransport2
from aibridge_transport.testing import FakeAIBridge
from aibridge_transport.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

CALLED: list[str] = []


async def counting_app(scope: Scope, receive: Receive, send: Send) -> None:
    CALLED.append(scope["path"])
    await send(start())
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture(autouse=True)
def _forget_calls() -> None:
    CALLED.clear()


def transport_of(kind: str, flavor: str) -> Any:
    if kind == "generic":
        return (
            StreamingASGITransport2(counting_app)
            if flavor == "httpx2"
            else (StreamingASGITransport(counting_app))
        )
    if kind == "in-process":
        factory: Any = InProcessTransportFactory(counting_app)
    else:
        factory = HTTPTransportFactory("http://127.0.0.1:9", "gateway-key")
    return factory.transport_for("openai", Source.AGENTS, flavor=flavor)


def assert_names_the_fix(error: BaseException, wanted: str) -> None:
    message = str(error)
    assert f'flavor="{wanted}"' in message
    assert "openai 3.x and anthropic 2.x use httpx2.AsyncClient" in message
    assert 'plain httpx users use flavor="httpx"' in message
    if wanted == "httpx2":
        assert "from aibridge_transport.httpx2 import StreamingASGITransport" in message


KINDS = pytest.mark.parametrize("kind", ["generic", "in-process", "http"])


@KINDS
async def test_an_httpx_transport_in_an_httpx2_client_says_which_flavour_to_use(kind: str) -> None:
    transport = transport_of(kind, "httpx")
    async with httpx2.AsyncClient(transport=transport, base_url="http://bridge") as client:
        with with_delegated_api_key_id("key-1"), pytest.raises(TypeError) as caught:
            await client.get("/v1/models")
    assert_names_the_fix(caught.value, "httpx2")
    assert CALLED == []  # refused before the app runs


@KINDS
async def test_an_httpx2_transport_in_an_httpx_client_says_which_flavour_to_use(kind: str) -> None:
    transport = transport_of(kind, "httpx2")
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        with with_delegated_api_key_id("key-1"), pytest.raises(TypeError) as caught:
            await client.get("/v1/models")
    assert_names_the_fix(caught.value, "httpx")
    assert CALLED == []


async def test_anthropic_wraps_the_flavour_error_and_keeps_it_as_the_cause() -> None:
    # anthropic retries any exception from a transport and raises "Connection error."; the
    # fix is then one `__cause__` away.
    factory = InProcessTransportFactory(FakeAIBridge())
    transport = factory.transport_for("anthropic", Source.AGENTS)  # the httpx flavour
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-test",
        base_url="http://bridge.invalid",
        max_retries=0,
        # The mistake under test, which a type checker refuses.
        http_client=httpx2.AsyncClient(transport=transport),  # type: ignore[arg-type]
    )
    with with_delegated_api_key_id("key-1"), pytest.raises(anthropic.APIConnectionError) as caught:
        await client.messages.create(
            model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert isinstance(caught.value.__cause__, TypeError)
    assert_names_the_fix(caught.value.__cause__, "httpx2")
    await client.close()


async def test_openai_passes_the_flavour_error_through() -> None:
    factory = InProcessTransportFactory(FakeAIBridge())
    transport = factory.transport_for("openai", Source.AGENTS)  # the httpx flavour
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://bridge.invalid/v1",
        max_retries=0,
        # The mistake under test, which a type checker refuses.
        http_client=httpx2.AsyncClient(transport=transport),  # type: ignore[arg-type]
    )
    with with_delegated_api_key_id("key-1"), pytest.raises(TypeError) as caught:
        await client.models.list()
    assert_names_the_fix(caught.value, "httpx2")
    await client.close()


async def test_the_right_flavour_is_served() -> None:
    for flavor, module in (("httpx", httpx), ("httpx2", httpx2)):
        client: Any = module.AsyncClient(transport=transport_of("generic", flavor))
        async with client:
            response = await client.get("http://app/json")
        assert isinstance(response, module.Response)
    assert CALLED == ["/json", "/json"]


def test_flavor_module_names_the_two_libraries() -> None:
    assert flavor_module("httpx") is httpx
    assert flavor_module("httpx2") is httpx2
    with pytest.raises(ValueError, match="flavor must be 'httpx' or 'httpx2', got 'requests'"):
        flavor_module("requests")


def test_the_install_hint_names_the_extra() -> None:
    assert "(the httpx2 extra): pip install httpx2" in HTTPX2_MISSING


def test_streaming_transport_class_per_flavour() -> None:
    assert streaming_transport_class("httpx") is StreamingASGITransport
    assert streaming_transport_class("httpx2") is StreamingASGITransport2


class Mixin:
    pass


def test_flavoured_classes_are_built_once_per_base() -> None:
    first = flavored_class(Mixin, httpx2.AsyncBaseTransport, "Example")
    assert flavored_class(Mixin, httpx2.AsyncBaseTransport, "Example") is first
    assert first.__name__ == "Example[httpx2]"
    assert first.__mro__[1:3] == (Mixin, httpx2.AsyncBaseTransport)
    other = flavored_class(Mixin, httpx.AsyncBaseTransport, "Example")
    assert other is not first
    assert other.__name__ == "Example[httpx]"


def test_both_factories_hand_out_classes_of_the_flavour() -> None:
    for factory in (
        InProcessTransportFactory(counting_app),
        HTTPTransportFactory("http://127.0.0.1:9", "gateway-key"),
    ):
        plain: Any = factory.transport_for("openai", "agents")
        forked: Any = factory.transport_for("openai", "agents", flavor="httpx2")
        assert isinstance(plain, httpx.AsyncBaseTransport)
        assert isinstance(forked, httpx2.AsyncBaseTransport)
        assert not [c for c in type(forked).__mro__ if c.__module__.partition(".")[0] == "httpx"]
        assert type(factory.transport_for("anthropic", "agents")) is type(plain)
