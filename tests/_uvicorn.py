"""A real uvicorn on 127.0.0.1, in a thread of its own, for the tests that need a socket."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn

from aibridge_transport.types import ASGIApp

__all__ = ["running_server"]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()  # also on failure, so the test never waits for nothing


@contextmanager
def running_server(
    app: ASGIApp, *, lifespan: Literal["on", "off", "auto"] = "auto", root_path: str = ""
) -> Iterator[str]:
    """Serve `app` on a free port; yield its base URL (`http://127.0.0.1:<port>`).

    `root_path` is uvicorn's `--root-path`: the app is told it is mounted there.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        root_path=root_path,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        http="h11",
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="uvicorn", daemon=True
    )
    thread.start()
    try:
        if not server.ready.wait(timeout=10) or not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
