"""Who is calling: the request's source, the caller's delegated API key id, and the
optional attribution (the workspace the call is made for).

All live in context variables, so they follow a request into the app and into every task
the app starts, and concurrent requests never see each other's values (behaviour §4).
"""

from __future__ import annotations

import contextvars
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from ._errors import InvalidIdentityError
from ._rules import check_identity

__all__ = [
    "Source",
    "aibridge_extension",
    "attributed_workspace",
    "check_delegated_api_key_id",
    "check_source",
    "check_workspace_id",
    "delegated_api_key_id_from_context",
    "delegated_attribution_from_context",
    "identity_context",
    "source_from_context",
    "with_delegated_api_key_id",
    "with_delegated_attribution",
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
_workspace_id: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "aibridge_transport.workspace_id", default=None
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


_HEX_DIGITS = frozenset(string.hexdigits)
_HYPHENS_AT = (8, 13, 18, 23)  # xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx


def _uuid_hex(text: str) -> str | None:
    """The 32 hex digits of a UUID spelt as coder's gateway parses one, else `None`.

    The spellings are those of Go's `uuid.Parse`: `xxxxxxxx-xxxx-...`, the same in braces or
    after `urn:uuid:`, and 32 bare hex digits. Python's own `uuid.UUID(str)` is laxer (it
    drops hyphens anywhere and lets `int()` take spaces and underscores), so it does not
    judge what a header may hold.
    """
    if len(text) == 45 and text[:9].lower() == "urn:uuid:":
        text = text[9:]
    elif len(text) == 38 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    if len(text) == 36:
        if any(text[at] != "-" for at in _HYPHENS_AT):
            return None
        text = text.replace("-", "")
    if len(text) != 32 or not _HEX_DIGITS.issuperset(text):
        return None
    return text


def check_workspace_id(workspace_id: object) -> uuid.UUID:
    """Return `workspace_id` as a `uuid.UUID`, or raise `InvalidIdentityError`/`TypeError`
    saying why not, never quoting it (behaviour §4)."""
    if isinstance(workspace_id, uuid.UUID):
        return workspace_id
    if not isinstance(workspace_id, str):
        raise TypeError(
            f"workspace id must be a uuid.UUID or a str, not {type(workspace_id).__name__}"
        )
    digits = _uuid_hex(workspace_id)
    if digits is None:
        raise InvalidIdentityError("workspace id is not a UUID")
    return uuid.UUID(hex=digits)


@contextmanager
def with_delegated_attribution(workspace_id: uuid.UUID | str) -> Iterator[None]:
    """Attribute the calls of the block to a workspace (coder's `WithDelegatedAttribution`).

    Optional: a request without it carries no attribution. Raises `InvalidIdentityError`
    for a string that is not a UUID, before any request is made with it; the message does
    not quote it. The nil UUID means "no workspace", as in coder.
    """
    token = _workspace_id.set(check_workspace_id(workspace_id))
    try:
        yield
    finally:
        _workspace_id.reset(token)


def attributed_workspace(workspace_id: uuid.UUID | None) -> uuid.UUID | None:
    """`workspace_id`, or `None` for the nil UUID: coder's "no workspace bound"."""
    if workspace_id is None or workspace_id.int == 0:
        return None
    return workspace_id


def delegated_attribution_from_context() -> uuid.UUID | None:
    """The workspace id the calls are attributed to, or `None` when unset or nil."""
    return attributed_workspace(_workspace_id.get())


def aibridge_extension(
    provider: str, source: str | None, key_id: str, workspace_id: uuid.UUID | None
) -> dict[str, Any]:
    """`scope["extensions"]["aibridge"]`, the same in process and behind the gateway
    (behaviour §§3 and 11): `workspace_id` only when the call is attributed."""
    extension: dict[str, Any] = {
        "provider": provider,
        "source": source,
        "delegated_api_key_id": key_id,
    }
    if workspace_id is not None:
        extension["workspace_id"] = workspace_id
    return extension


def identity_context(
    source: str | None, key_id: str | None, workspace_id: uuid.UUID | None = None
) -> contextvars.Context:
    """A copy of the current context in which the identity variables hold `source`,
    `key_id` and `workspace_id`: what a request's app runs in."""
    context = contextvars.copy_context()
    context.run(_set_identity, source, key_id, workspace_id)
    return context


def _set_identity(source: str | None, key_id: str | None, workspace_id: uuid.UUID | None) -> None:
    _source.set(source)
    _delegated_api_key_id.set(key_id)
    _workspace_id.set(workspace_id)
