"""Who is calling: the request's source and the caller's delegated API key id.

Both live in context variables, so they follow a request into the app and into every task
the app starts, and concurrent requests never see each other's values (behaviour §4).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from ._errors import InvalidIdentityError
from ._rules import check_identity

__all__ = [
    "Source",
    "check_delegated_api_key_id",
    "check_source",
    "delegated_api_key_id_from_context",
    "source_from_context",
    "with_delegated_api_key_id",
    "with_source",
]


class Source(StrEnum):
    """Where a request comes from. Informational only: nothing behaves differently by it.

    A Source is a `str`; any non-empty string without control characters or surrounding
    whitespace is accepted wherever a Source is.
    """

    AGENTS = "agents"


_source: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aibridge_transport.source", default=None
)
_delegated_api_key_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "aibridge_transport.delegated_api_key_id", default=None
)


def check_source(source: object) -> str:
    """Return `source` as a plain `str`, or raise `InvalidIdentityError`/`TypeError` saying
    why not (behaviour §4)."""
    if source == "":
        raise InvalidIdentityError("source is required (a non-empty string)")
    return check_identity(source, "source")


def check_delegated_api_key_id(key_id: object) -> str:
    """Return `key_id` as a plain `str`, or raise `InvalidIdentityError`/`TypeError` saying
    why not, never quoting it (behaviour §4).

    The empty string is accepted here and means "no key" to the getter.
    """
    return check_identity(key_id, "delegated API key id")


@contextmanager
def with_source(source: Source | str) -> Iterator[None]:
    """Set the current source for the block.

    Raises `InvalidIdentityError` for an empty source, or one with a control character or
    surrounding whitespace.
    """
    token = _source.set(check_source(source))
    try:
        yield
    finally:
        _source.reset(token)


def source_from_context() -> str | None:
    """The current source, or `None` when unset."""
    return _source.get()


@contextmanager
def with_delegated_api_key_id(key_id: str) -> Iterator[None]:
    """Set the caller's delegated API key id for the block.

    Raises `InvalidIdentityError` for a key id with a control character or surrounding
    whitespace, before any request is made with it; the message does not quote it.
    """
    token = _delegated_api_key_id.set(check_delegated_api_key_id(key_id))
    try:
        yield
    finally:
        _delegated_api_key_id.reset(token)


def delegated_api_key_id_from_context() -> str | None:
    """The caller's delegated API key id, or `None` when unset or empty."""
    return _delegated_api_key_id.get() or None


def identity_context(source: str | None, key_id: str | None) -> contextvars.Context:
    """A copy of the current context in which the identity variables hold `source` and
    `key_id`: what a request's app runs in."""
    context = contextvars.copy_context()
    context.run(_set_identity, source, key_id)
    return context


def _set_identity(source: str | None, key_id: str | None) -> None:
    _source.set(source)
    _delegated_api_key_id.set(key_id)
