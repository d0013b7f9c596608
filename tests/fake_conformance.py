"""Checks a JSON object as a provider sends it against the SDK's own pydantic type.

`check_against_sdk_type(obj, sdk_type)` walks the SDK model (openai's and anthropic's types
are pydantic models, unions discriminated by `type`, literals, lists and maps) beside the
object and lists every difference, strictly both ways:

- a key the SDK model does not have (the SDKs would keep it as an "extra"; the real API
  never sends one);
- a key the SDK model requires, missing; and a key the real API always sends although the
  SDK types it as optional (`ALWAYS_SENT`), missing, or null where the API never sends null;
- a value of the wrong JSON type, a literal the SDK does not list, a union no member of
  which fits.

The SDKs themselves validate nothing (`construct()`), so without this a shape that only the
fake sends passes every test. It is shared by the fake's conformance tests and by the
recorded-traffic suite, which runs it over real provider answers.
"""

from __future__ import annotations

import datetime
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, Union

import anthropic.types as anthropic_types
import pydantic
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat import chat_completion as chat_completion_types
from openai.types.chat import chat_completion_chunk as chunk_types
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails
from openai.types.responses import Response

__all__ = ["ALWAYS_SENT", "SENT_BEYOND_THE_SDK", "check_against_sdk_type"]

# Keys the real API sends in every object of a type although the SDK types them optional,
# and whether the value may be null there (True: it may). Sourced from the providers' API
# references (OpenAI's chat completion example in openai/openai-openapi f85dbe2, 2026-08-21:
# `service_tier`, the usage detail objects, `refusal`, `annotations`, `logprobs`; the
# `required` lists of its Response schema) and from recorded answers (Anthropic's integer
# cache counts and `service_tier`; the Responses fields added since the reference's
# example). Keys sent only sometimes are not listed: `usage` of a chat chunk without
# `include_usage`, `tool_calls` of a message without any, `system_fingerprint` (the
# reference's example for a current model has none). docs/testing.md, "What the fake
# validates", says how the table is kept current.
ALWAYS_SENT: Final[Mapping[type[pydantic.BaseModel], Mapping[str, bool]]] = {
    ChatCompletion: {"service_tier": True, "usage": False},
    ChatCompletionChunk: {"service_tier": True},
    chat_completion_types.Choice: {"logprobs": True},
    chunk_types.Choice: {"logprobs": True},
    ChatCompletionMessage: {"content": True, "refusal": True, "annotations": False},
    CompletionUsage: {"prompt_tokens_details": False, "completion_tokens_details": False},
    PromptTokensDetails: {"cached_tokens": False, "audio_tokens": False},
    CompletionTokensDetails: {
        "reasoning_tokens": False,
        "audio_tokens": False,
        "accepted_prediction_tokens": False,
        "rejected_prediction_tokens": False,
    },
    Response: {
        "status": False,
        "error": True,
        "incomplete_details": True,
        "instructions": True,
        "max_output_tokens": True,
        "max_tool_calls": True,
        "metadata": False,
        "temperature": True,
        "top_p": True,
        "background": False,
        "previous_response_id": True,
        "prompt_cache_key": True,
        "reasoning": True,
        "safety_identifier": True,
        "service_tier": True,
        "store": False,
        "text": False,
        "top_logprobs": True,
        "truncation": True,
        "usage": True,
        "user": True,
    },
    anthropic_types.Message: {"stop_reason": True, "stop_sequence": True},
    anthropic_types.Usage: {
        "cache_creation_input_tokens": False,
        "cache_read_input_tokens": False,
        "service_tier": True,
    },
    anthropic_types.MessageDeltaUsage: {
        "input_tokens": False,
        "cache_creation_input_tokens": False,
        "cache_read_input_tokens": False,
    },
}

# Keys real answers carry that the SDK's model of them lacks: not extras of the fake's making.
# A Responses answer echoes `store` (recorded answers, and the Response example of the API
# reference, openai/openai-openapi f85dbe2), which neither the reference's Response schema
# nor the Response model of openai 3.x declares.
SENT_BEYOND_THE_SDK: Final[Mapping[type[pydantic.BaseModel], frozenset[str]]] = {
    Response: frozenset({"store"}),
}


def check_against_sdk_type(obj: Any, sdk_type: Any) -> list[str]:
    """The differences between `obj` (parsed JSON) and `sdk_type` (an SDK pydantic model, or
    a union, list or literal of them); an empty list when it conforms."""
    return _check(obj, sdk_type, "$")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)


def _unwrap(annotation: Any) -> Any:
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, "__value__"):  # a `type X = ...` alias
            annotation = annotation.__value__
        else:
            return annotation


def _check(value: Any, annotation: Any, path: str) -> list[str]:
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is object:
        return []
    if annotation is None or annotation is type(None):
        return [] if value is None else [f"{path}: expected null, got {value!r}"]
    if origin is Union or origin is types.UnionType:
        return _check_union(value, typing.get_args(annotation), path)
    if origin is Literal:
        allowed = typing.get_args(annotation)
        return [] if value in allowed else [f"{path}: {value!r} is none of {list(allowed)}"]
    if origin in (list, Sequence, typing.List) or annotation in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        return [
            diff
            for index, entry in enumerate(value)
            for diff in _check(entry, item, f"{path}[{index}]")
        ]
    if origin in (dict, Mapping, typing.Dict) or annotation in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        args = typing.get_args(annotation)
        item = args[1] if len(args) == 2 else Any
        return [
            diff for key, entry in value.items() for diff in _check(entry, item, f"{path}.{key}")
        ]
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _check_model(value, annotation, path)
    return _check_scalar(value, annotation, path)


def _check_scalar(value: Any, annotation: Any, path: str) -> list[str]:
    fits: bool
    if annotation is bool:
        fits = isinstance(value, bool)
    elif annotation is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    elif annotation is str:
        fits = isinstance(value, str)
    elif annotation in (datetime.datetime, datetime.date):
        fits = isinstance(value, str) and _is_iso(value)
    else:
        return [f"{path}: the checker does not know the type {_type_name(annotation)}"]
    if fits:
        return []
    return [f"{path}: expected {_type_name(annotation)}, got {value!r}"]


def _is_iso(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _literal_type(model: type[pydantic.BaseModel]) -> tuple[Any, ...]:
    field = model.model_fields.get("type")
    if field is None:
        return ()
    annotation = _unwrap(field.annotation)
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def _check_union(value: Any, members: tuple[Any, ...], path: str) -> list[str]:
    if value is None:
        if any(member is type(None) for member in members):
            return []
        return [f"{path}: null where the SDK allows no null"]
    candidates = [member for member in members if member is not type(None)]
    # A union tagged by `type`: the member whose literal names the value's type.
    if isinstance(value, dict) and "type" in value:
        tagged = [
            member
            for member in candidates
            if isinstance(_unwrap(member), type)
            and issubclass(_unwrap(member), pydantic.BaseModel)
            and value["type"] in _literal_type(_unwrap(member))
        ]
        if tagged:
            candidates = tagged
    results = [_check(value, member, path) for member in candidates]
    if not results:
        return [f"{path}: no union member for {value!r}"]
    best = min(results, key=len)
    if best and len(candidates) > 1 and not (isinstance(value, dict) and "type" in value):
        names = ", ".join(_type_name(_unwrap(member)) for member in candidates)
        return [f"{path}: fits none of {names}; closest: {best}"]
    return best


def _check_model(value: Any, model: type[pydantic.BaseModel], path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({model.__name__}), got {type(value).__name__}"]
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    always = ALWAYS_SENT.get(model, {})
    differences: list[str] = []
    beyond = SENT_BEYOND_THE_SDK.get(model, frozenset())
    for key in value:
        if key not in fields and key not in beyond:
            differences.append(f"{path}.{key}: a key {model.__name__} does not have")
    for key, field in fields.items():
        if key not in value:
            if field.is_required():
                differences.append(f"{path}.{key}: missing, required by {model.__name__}")
            elif key in always:
                differences.append(f"{path}.{key}: missing, the API always sends it")
            continue
        if value[key] is None and key in always and not always[key]:
            differences.append(f"{path}.{key}: null, the API always sends a value")
            continue
        differences += _check(value[key], field.annotation, f"{path}.{key}")
    return differences
