"""The factory slot: one place per process where callers find the bridge (behaviour §10)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._bridge_factory import InProcessTransportFactory, TransportFactory
from .types import ASGIApp

__all__ = ["TransportFactorySlot"]

logger = logging.getLogger("aibridge_transport")


class TransportFactorySlot:
    """
    Holds the process's transport factory: empty until a bridge registers, then loaded by
    every caller. Thread-safe.

    ```python
    slot = TransportFactorySlot()
    slot.register_in_memory_app(bridge_app)  # the in-process bridge, or:
    slot.store(HTTPTransportFactory("http://bridge:8080", gateway_key))  # a standalone one
    factory = slot.load()  # None until one of the above ran
    ```

    `register_in_memory_app` fills an empty slot or replaces an in-process factory. It never
    replaces any other factory (an `HTTPTransportFactory`, or one of your own) that was
    stored explicitly: the configured standalone bridge stays in place, the call returns it
    and logs that the in-memory app was not registered. Nothing ever falls back from a
    stored factory to another one: a standalone bridge that fails makes requests fail.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._factory: TransportFactory | None = None

    def store(self, factory: TransportFactory | None) -> None:
        """Put `factory` in the slot, replacing whatever was there (`None` empties it)."""
        with self._lock:
            self._factory = factory

    def load(self) -> TransportFactory | None:
        """The factory in the slot, or `None` while no bridge is registered."""
        with self._lock:
            return self._factory

    def register_in_memory_app(self, app: ASGIApp | None, **options: Any) -> TransportFactory:
        """Store an `InProcessTransportFactory(app, **options)` and return it.

        If the slot holds a factory that is not in-process (a standalone bridge), that one is
        kept and returned instead: the in-memory app never displaces it (behaviour §10).
        Raises `ValueError` when `app` is `None`.
        """
        if app is None:
            raise ValueError("the aibridge app to register must not be None")
        with self._lock:
            current = self._factory
            if current is not None and not isinstance(current, InProcessTransportFactory):
                logger.info(
                    "a standalone bridge factory (%s) is configured; "
                    "the in-memory bridge app is not registered",
                    type(current).__name__,
                )
                return current
            factory = InProcessTransportFactory(app, **options)
            self._factory = factory
            return factory
