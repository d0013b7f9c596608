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

__all__ = ["ServerThread", "running_server"]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()  # also on failure, so the test never waits for nothing


class ServerThread:
    """uvicorn serving `app` on a free port of 127.0.0.1, from `start()` until `join()`.

    `root_path` is uvicorn's `--root-path`: the app is told it is mounted there. Several
    servers stop faster together: `stop()` each, then `join()` each.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: Literal["on", "off", "auto"] = "auto",
        root_path: str = "",
    ) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
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
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])),
            name="uvicorn",
            daemon=True,
        )

    def start(self) -> str:
        """Start serving; return the base URL (`http://127.0.0.1:<port>`) once it listens."""
        self._thread.start()
        if not self._server.ready.wait(timeout=10) or not self._server.started:
            self.stop()
            self.join()
            raise RuntimeError("uvicorn did not start")
        return self.url

    def stop(self) -> None:
        """Ask the server to shut down (lifespan shutdown included); returns at once."""
        self._server.should_exit = True

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()


@contextmanager
def running_server(
    app: ASGIApp, *, lifespan: Literal["on", "off", "auto"] = "auto", root_path: str = ""
) -> Iterator[str]:
    """Serve `app` on a free port; yield its base URL (`http://127.0.0.1:<port>`)."""
    server = ServerThread(app, lifespan=lifespan, root_path=root_path)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
        server.join()
