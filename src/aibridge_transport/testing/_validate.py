"""The request checks the real APIs make before answering, with their own messages.

Each check raises `Invalid`, which the bridge answers with a 400 in the provider's error
shape (`invalid_request_error`). The messages follow the real ones: OpenAI names the
parameter in quotes and sets `param` and `code`; Anthropic prefixes the path of the field
(`messages.1.content.0: ...`), as its validation does. A `null` counts as absent, for required
fields too. Anthropic's rules follow the request's `anthropic-version` (`_versions.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._versions import anthropic_rules

__all__ = [
    "ANTHROPIC_MAX_REQUEST_BYTES",
    "Invalid",
    "validate_anthropic_messages",
    "validate_openai_chat",
    "validate_openai_responses",
]

ANTHROPIC_MAX_REQUEST_BYTES: Final = 32 * 1024 * 1024
"""Anthropic's limit on a Messages or token count request (its documented 32 MB): larger
ones get a 413 `request_too_large` before any other check."""

Kind = Literal["number", "integer", "string", "boolean", "array", "object", "stop"]


@dataclass(frozen=True)
class _Field:
    kind: Kind
    minimum: float | None = None
    maximum: float | None = None


class Invalid(Exception):
    """A request the real API refuses (HTTP 400 unless `status` says otherwise)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


_OPENAI_COMMON: Final = {
    "model": _Field("string"),
    "temperature": _Field("number", 0, 2),
    "top_p": _Field("number", 0, 1),
    "stream": _Field("boolean"),
    "tools": _Field("array"),
    "metadata": _Field("object"),
    "parallel_tool_calls": _Field("boolean"),
}
_OPENAI_CHAT: Final = {
    **_OPENAI_COMMON,
    "messages": _Field("array"),
    "n": _Field("integer", 1, 128),
    "max_tokens": _Field("integer", 1),
    "max_completion_tokens": _Field("integer", 1),
    "stop": _Field("stop"),
    "presence_penalty": _Field("number", -2, 2),
    "frequency_penalty": _Field("number", -2, 2),
    "seed": _Field("integer"),
    "stream_options": _Field("object"),
}
_OPENAI_RESPONSES: Final = {
    **_OPENAI_COMMON,
    "instructions": _Field("string"),
    "max_output_tokens": _Field("integer", 16),
    "previous_response_id": _Field("string"),
}
_ANTHROPIC: Final = {
    "model": _Field("string"),
    "messages": _Field("array"),
    "max_tokens": _Field("integer", 1),
    "temperature": _Field("number", 0, 1),
    "top_p": _Field("number", 0, 1),
    "top_k": _Field("integer", 0),
    "stop_sequences": _Field("array"),
    "stream": _Field("boolean"),
    "tools": _Field("array"),
    "metadata": _Field("object"),
}

_OPENAI_ROLES: Final = ("system", "assistant", "user", "function", "tool", "developer")

_OPENAI_TYPE_NAMES: Final = {
    "number": "a decimal",
    "integer": "an integer",
    "string": "a string",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "stop": "a string or an array",
}
_ANTHROPIC_TYPE_NAMES: Final = {
    "number": "a valid number",
    "integer": "a valid integer",
    "string": "a valid string",
    "boolean": "a valid boolean",
    "array": "a valid list",
    "object": "a valid dictionary",
    "stop": "a valid list",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _fits(kind: Kind, value: Any) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


def _check_openai_fields(body: Mapping[str, Any], fields: Mapping[str, _Field]) -> None:
    for name, spec in fields.items():
        value = body.get(name)
        if value is None:
            continue
        if not _fits(spec.kind, value):
            raise Invalid(
                f"Invalid type for '{name}': expected {_OPENAI_TYPE_NAMES[spec.kind]}, "
                f"but got {_json_type(value)} instead.",
                param=name,
                code="invalid_type",
            )
        word = "integer" if spec.kind == "integer" else "decimal"
        if spec.minimum is not None and value < spec.minimum:
            raise Invalid(
                f"Invalid '{name}': {word} below minimum value. Expected a value >= "
                f"{spec.minimum:g}, but got {value} instead.",
                param=name,
                code=f"{word}_below_min_value",
            )
        if spec.maximum is not None and value > spec.maximum:
            raise Invalid(
                f"Invalid '{name}': {word} above maximum value. Expected a value <= "
                f"{spec.maximum:g}, but got {value} instead.",
                param=name,
                code=f"{word}_above_max_value",
            )


def _require_openai(body: Mapping[str, Any], name: str) -> None:
    # A null is no value: the API refuses `"model": null` as it refuses no model.
    if body.get(name) is None:
        if name == "model":
            raise Invalid("you must provide a model parameter")
        raise Invalid(
            f"Missing required parameter: '{name}'.",
            param=name,
            code="missing_required_parameter",
        )


def _check_openai_parts(content: Any, where: str) -> None:
    """Content parts are tagged unions: a part without `type` is refused."""
    if not isinstance(content, list):
        return
    for position, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") is None:
            param = f"{where}[{position}].type"
            raise Invalid(
                f"Missing required parameter: '{param}'.",
                param=param,
                code="missing_required_parameter",
            )


def validate_openai_chat(body: Mapping[str, Any]) -> None:
    """Chat completions: types, ranges, roles, and each tool call answered exactly once."""
    _require_openai(body, "model")
    _require_openai(body, "messages")
    _check_openai_fields(body, _OPENAI_CHAT)
    messages: list[Any] = body["messages"]
    if not messages:
        raise Invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    if body.get("stream_options") is not None and not body.get("stream"):
        raise Invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:
        raise Invalid(
            f"Invalid 'stop': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    pending: list[str] = []
    asked_at = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Invalid(
                f"Invalid type for 'messages[{index}]': expected an object, but got "
                f"{_json_type(message)} instead.",
                param=f"messages[{index}]",
                code="invalid_type",
            )
        role = message.get("role")
        if role not in _OPENAI_ROLES:
            supported = ", ".join(f"'{name}'" for name in _OPENAI_ROLES[:-1])
            raise Invalid(
                f"Invalid value: '{role}'. Supported values are: {supported}, and "
                f"'{_OPENAI_ROLES[-1]}'.",
                param=f"messages[{index}].role",
                code="invalid_value",
            )
        _check_openai_parts(message.get("content"), f"messages[{index}].content")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise Invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            pending.remove(call_id)
            continue
        if pending:
            break
        calls = message.get("tool_calls") if role == "assistant" else None
        if calls:
            pending = [str(call.get("id")) for call in calls if isinstance(call, dict)]
            asked_at = index
    if pending:
        raise Invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(map(str, pending))}",
            param=f"messages.[{asked_at}].role",
        )


# The input items whose `call_id` a `function_call_output` may answer.
_RESPONSES_CALLS: Final = ("function_call", "tool_search_call")


def validate_openai_responses(body: Mapping[str, Any]) -> None:
    """Responses: types, ranges, and function call outputs matched to calls in the input.

    A stored prompt (`prompt: {"id": "pmpt_..."}`) may stand in for `model`: the prompt
    names one.
    """
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, dict):
        raise Invalid(
            f"Invalid type for 'prompt': expected an object, but got {_json_type(prompt)} instead.",
            param="prompt",
            code="invalid_type",
        )
    if not (isinstance(prompt, dict) and isinstance(prompt.get("id"), str)):
        _require_openai(body, "model")
    _check_openai_fields(body, _OPENAI_RESPONSES)
    items = body.get("input")
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        if isinstance(item, dict):
            _check_openai_parts(item.get("content"), f"input[{index}].content")
    if body.get("previous_response_id") or body.get("conversation"):
        return
    calls: list[str] = []
    answerable: set[str] = set()
    answered: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind in _RESPONSES_CALLS and item.get("call_id") is not None:
            answerable.add(str(item.get("call_id")))
            # A tool search the server ran needs no output; a function call always does.
            if kind == "function_call":
                calls.append(str(item.get("call_id")))
        elif kind == "function_call_output":
            call_id = str(item.get("call_id"))
            if call_id not in answerable:
                raise Invalid(
                    f"No tool call found for function call output with call_id {call_id}.",
                    param="input",
                )
            answered.add(call_id)
    for call_id in calls:
        if call_id not in answered:
            raise Invalid(f"No tool output found for function call {call_id}.", param="input")


_SAMPLING: Final = ("temperature", "top_p", "top_k")


def _check_anthropic_fields(
    body: Mapping[str, Any], headers: Mapping[str, str], *, count_tokens: bool
) -> None:
    required = ("model", "messages") if count_tokens else ("model", "messages", "max_tokens")
    for name in required:
        # A null is no value: `"max_tokens": null` is refused as a missing `max_tokens`.
        if body.get(name) is None:
            raise Invalid(f"{name}: Field required")
    system = body.get("system")
    if isinstance(system, list):
        for position, block in enumerate(system):
            if isinstance(block, dict) and block.get("type") is None:
                raise Invalid(f"system.{position}.type: Field required")
    rules = anthropic_rules(headers)
    if not rules.sampling:
        for name in _SAMPLING:
            if body.get(name) is not None:
                raise Invalid(
                    f"{name}: is not supported with anthropic-version {rules.version} (send "
                    "anthropic-version 2023-06-01 to set it)"
                )
    for name, spec in _ANTHROPIC.items():
        value = body.get(name)
        if value is None:
            continue
        if not _fits(spec.kind, value):
            raise Invalid(f"{name}: Input should be {_ANTHROPIC_TYPE_NAMES[spec.kind]}")
        if spec.minimum is not None and value < spec.minimum:
            raise Invalid(f"{name}: Input should be greater than or equal to {spec.minimum:g}")
        if spec.maximum is not None and value > spec.maximum:
            raise Invalid(f"{name}: Input should be less than or equal to {spec.maximum:g}")


def _check_anthropic_blocks(
    index: int, message: Mapping[str, Any], headers: Mapping[str, str]
) -> None:
    """Blocks are tagged by `type`; some kinds depend on the role and the API version."""
    rules = anthropic_rules(headers)
    role = message.get("role")
    for position, block in _blocks(message):
        where = f"messages.{index}.content.{position}"
        if block.get("type") is None:
            raise Invalid(f"{where}.type: Field required")
        if role == "assistant" and block["type"] == "document" and not rules.assistant_documents:
            raise Invalid(
                f"{where}: document blocks are not supported in assistant messages with "
                f"anthropic-version {rules.version}"
            )
        nested = block.get("content") if block["type"] == "tool_result" else None
        if isinstance(nested, list):
            for inner, part in enumerate(nested):
                if isinstance(part, dict) and part.get("type") is None:
                    raise Invalid(f"{where}.content.{inner}.type: Field required")
        if role == "user" and block.get("citations") and not rules.user_citations:
            raise Invalid(
                f"{where}.citations: citations are not supported in user messages with "
                f"anthropic-version {rules.version}"
            )


def _blocks(message: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [(index, block) for index, block in enumerate(content) if isinstance(block, dict)]


def validate_anthropic_messages(
    body: Mapping[str, Any], headers: Mapping[str, str], *, count_tokens: bool = False
) -> None:
    """
    Messages: types, ranges, roles, and tool results paired with the tool uses before them,
    by the rules of the request's `anthropic-version` (`_versions.py`).

    Consecutive messages of one role are accepted: the API combines them into one turn (as
    its reference says), so the pairing is checked between turns, not single messages. The
    first message may be an assistant's, and so may the last (a prefill). A `system` turn
    inside `messages` is accepted, as current models take them; it stands between turns
    without ending the pairing of a tool use with its result.
    """
    _check_anthropic_fields(body, headers, count_tokens=count_tokens)
    messages: list[Any] = body["messages"]
    if not messages:
        raise Invalid("messages: at least one message is required")
    turns: list[tuple[str, list[int]]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Invalid(f"messages.{index}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise Invalid(f"messages.{index}.role: Input should be 'user', 'assistant' or 'system'")
        if not isinstance(message.get("content"), str | list):
            raise Invalid(f"messages.{index}.content: Field required")
        _check_anthropic_blocks(index, message, headers)
        if role == "system":
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].append(index)
        else:
            turns.append((role, [index]))
    uses: dict[str, int] = {}
    for role, indices in turns:
        if role == "assistant":
            uses = {
                str(block.get("id")): index
                for index in indices
                for _, block in _blocks(messages[index])
                if block.get("type") == "tool_use"
            }
            continue
        answered: set[str] = set()
        for index in indices:
            for position, block in _blocks(messages[index]):
                if block.get("type") != "tool_result":
                    continue
                use_id = str(block.get("tool_use_id"))
                if use_id not in uses:
                    raise Invalid(
                        f"messages.{index}.content.{position}: unexpected `tool_use_id` found "
                        f"in `tool_result` blocks: {use_id}. Each `tool_result` block must "
                        "have a corresponding `tool_use` block in the previous message."
                    )
                answered.add(use_id)
        missing = [use_id for use_id in uses if use_id not in answered]
        if missing:
            raise Invalid(
                f"messages.{uses[missing[0]]}: `tool_use` ids were found without "
                f"`tool_result` blocks immediately after: {', '.join(missing)}. Each "
                "`tool_use` block must have a corresponding `tool_result` block in the next "
                "message."
            )
        uses = {}
