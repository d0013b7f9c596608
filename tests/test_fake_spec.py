"""The fake bridge's OpenAI request checks agree with OpenAI's official OpenAPI spec: an
excerpt written by scripts/openapi_excerpt.py, kept outside the repository with its source and
commit (the outside data set `openai-openapi`, tests/outside_data.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from outside_data import require_outside_data

from aibridge_transport.testing._validate import _OPENAI_CHAT, _OPENAI_RESPONSES, _Field


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    excerpt = require_outside_data("openai-openapi") / "excerpt.json"
    schemas: dict[str, Any] = json.loads(excerpt.read_text())["schemas"]
    return schemas


TABLES = {"CreateChatCompletionRequest": _OPENAI_CHAT, "CreateResponse": _OPENAI_RESPONSES}

# The JSON types each kind of check takes.
KIND_TYPES = {
    "number": {"number"},
    "integer": {"integer"},
    "string": {"string"},
    "boolean": {"boolean"},
    "array": {"array"},
    "object": {"object"},
    "stop": {"array", "string"},
}

# Where the fake is stricter than the spec says, and why: a token limit of 0 is refused by
# the API (it answers nothing), though the spec gives no minimum.
STRICTER = {
    ("CreateChatCompletionRequest", "max_tokens"),
    ("CreateChatCompletionRequest", "max_completion_tokens"),
}

# Where the fake checks less: `seed`'s bounds are those of a 64-bit integer.
LOOSER = {("CreateChatCompletionRequest", "seed")}

CHECKED = [(schema, name) for schema, table in TABLES.items() for name in table]


@pytest.mark.parametrize(("schema", "name"), CHECKED, ids=lambda value: str(value))
def test_each_checked_field_has_the_specs_type_and_bounds(
    spec: dict[str, Any], schema: str, name: str
) -> None:
    field: _Field = TABLES[schema][name]
    declared = spec[schema]["properties"][name]
    types = set(declared["types"]) - {"null"}
    if types:  # a `$ref` to a shared schema of ids (`model`) names no type here
        assert KIND_TYPES[field.kind] == types
    if (schema, name) in STRICTER:
        assert "minimum" not in declared
        return
    if (schema, name) in LOOSER:
        assert (field.minimum, field.maximum) == (None, None)
        assert declared["maximum"] >= 2**63 - 1
        return
    assert (field.minimum, field.maximum) == (declared.get("minimum"), declared.get("maximum"))


def test_the_required_fields_are_the_specs(spec: dict[str, Any]) -> None:
    # Chat needs both; Responses needs neither in the spec's terms, since a stored `prompt`
    # may name the model: the fake refuses a request with neither
    # (test_fake_fidelity_requests.py).
    assert spec["CreateChatCompletionRequest"]["required"] == ["messages", "model"]
    assert spec["CreateResponse"]["required"] == []
    assert "prompt" in spec["CreateResponse"]["properties"]


def test_the_list_bounds_the_fake_checks_are_the_specs(spec: dict[str, Any]) -> None:
    chat = spec["CreateChatCompletionRequest"]["properties"]
    assert chat["messages"]["minItems"] == 1  # `messages: []` is refused
    assert chat["stop"]["maxItems"] == 4  # more than 4 stop sequences are refused
