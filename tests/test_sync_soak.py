"""Behaviour §12 under a mixed load: many threads, every ending, nothing left behind."""

from __future__ import annotations

import gc
import random
import threading
from typing import Any

import anyio
import httpx
import pytest

from aibridge_transport import InProcessTransportFactory, Source, with_delegated_api_key_id
from aibridge_transport.testing import live_exchanges
from aibridge_transport.types import Receive, Scope, Send

THREADS = 8
PER_THREAD = 40
WAIT = 30.0


class Crash(Exception):
    pass


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    kind = scope["path"].rsplit("/", 1)[-1]
    if kind == "stall":
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    if kind == "crash-before":
        raise Crash
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(20):
        await send({"type": "http.response.body", "body": b"x" * 512, "more_body": True})
        if kind == "crash-after" and index == 3:
            raise Crash
        await anyio.lowlevel.checkpoint()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def one(client: httpx.Client, kind: str, rng: random.Random) -> None:
    if kind == "stall":
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v1/stall", timeout=httpx.Timeout(5.0, read=0.01))
    elif kind == "crash-before":
        assert client.get("/v1/crash-before").status_code == 500
    elif kind == "crash-after":
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", "/v1/crash-after") as r:
            r.read()
    elif kind == "early-close":
        with client.stream("GET", "/v1/stream") as response:
            for _ in zip(range(rng.randint(0, 5)), response.iter_raw(), strict=False):
                pass
    elif kind == "abandon":
        response = client.send(client.build_request("GET", "/v1/stream"), stream=True)
        next(response.iter_raw())
        del response
    else:
        assert len(client.get("/v1/stream").content) == 20 * 512


def test_mixed_sync_load_leaves_nothing_behind() -> None:
    kinds = ["stall", "crash-before", "crash-after", "early-close", "abandon", "complete"]
    before = set(threading.enumerate())
    errors: list[BaseException] = []
    factory = InProcessTransportFactory(app, disconnect_grace=0.01)
    transport: Any = factory.transport_for("openai", Source.AGENTS)
    client = httpx.Client(transport=transport, base_url="http://app")

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with with_delegated_api_key_id(f"key-{seed}"):
                for _ in range(PER_THREAD):
                    one(client, rng.choice(kinds), rng)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in workers)
    assert errors == []
    gc.collect()
    assert len(set(threading.enumerate()) - before) == 1  # the factory's loop thread
    client.close()
    factory.close()
    assert live_exchanges(transport) == 0
    assert set(threading.enumerate()) == before
