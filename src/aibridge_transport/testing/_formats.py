"""The providers' wire formats: event shapes, JSON bodies and error bodies.

The shapes follow what the openai and anthropic SDKs parse: OpenAI chat chunks as
`data: {...}` ending with `data: [DONE]`, Responses API events and Anthropic message events as
`event: <type>` + `data: {...}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._models import chat_family
from ._script import Finish, Reply, ToolCall
from ._sse import sse
from ._tokens import input_tokens, tool_call_tokens

__all__ = [
    "AnthropicMessages",
    "Format",
    "OpenAIChat",
    "OpenAIResponses",
    "Plan",
    "anthropic_error",
    "openai_error",
    "plan_reply",
]

_ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error body: `invalid_request_error` for a 4xx, `requests` for a 429 and
    `server_error` for a 5xx."""
    if type is None:
        type = "requests" if status == 429 else "server_error" if status >= 500 else None
        type = type or "invalid_request_error"
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def anthropic_error(
    status: int, message: str, *, request_id: str, type: str | None = None
) -> dict[str, Any]:
    """Anthropic's error body; the type follows the status as its documentation lists."""
    if type is None:
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        type = _ANTHROPIC_ERROR_TYPES.get(status, fallback)
    return {
        "type": "error",
        "error": {"type": type, "message": message},
        "request_id": request_id,
    }


@dataclass(frozen=True)
class Plan:
    """What a reply sends for one request, once its limits and stop sequences are applied."""

    tokens: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    finish: Finish
    stop_sequence: str | None
    input_tokens: int
    choices: int = 1

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def output_tokens(self) -> int:
        """The tokens of one choice: one per text token, and each tool call's."""
        return len(self.tokens) + sum(tool_call_tokens(call) for call in self.tool_calls)


def _stop_sequences(body: Mapping[str, Any]) -> list[str]:
    stops = body.get("stop_sequences", body.get("stop"))
    if isinstance(stops, str):
        return [stops]
    if isinstance(stops, list):
        return [stop for stop in stops if isinstance(stop, str) and stop]
    return []


def _token_limit(body: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        limit = body.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool):
            return max(limit, 0)
    return None


def _cut(tokens: tuple[str, ...], length: int) -> tuple[str, ...]:
    """The tokens holding the first `length` characters (the last one cut short)."""
    kept: list[str] = []
    for token in tokens:
        if length <= 0:
            break
        kept.append(token[:length])
        length -= len(token)
    return tuple(kept)


def plan_reply(reply: Reply, body: Mapping[str, Any]) -> Plan:
    """
    Apply the request's limits to a reply. A stop sequence in the text ends it just before
    the sequence; a token limit (`max_tokens`, `max_completion_tokens`,
    `max_output_tokens`) ends it at that many tokens. Either way the answer stops there, so
    no tool call follows. A scripted `finish` is taken as it is.
    """
    tokens = reply.tokens
    calls = tuple(reply.tool_calls)
    stops = _stop_sequences(body)
    choices = body.get("n")
    # Unchecked requests (`validate=False`) may ask for anything; the API's range bounds it.
    count = choices if isinstance(choices, int) and 1 <= choices <= 128 else 1
    counted = input_tokens(dict(body))
    if reply.finish is not None:
        matched = reply.stop_sequence
        if reply.finish == "stop_sequence" and matched is None and stops:
            matched = stops[0]
        return Plan(tokens, calls, reply.finish, matched, counted, count)
    text = "".join(tokens)
    found = [(text.find(stop), order, stop) for order, stop in enumerate(stops) if stop in text]
    if found:
        position, _, matched = min(found)
        return Plan(_cut(tokens, position), (), "stop_sequence", matched, counted, count)
    limit = _token_limit(body)
    if limit is not None:
        if len(tokens) > limit:
            return Plan(tokens[:limit], (), "length", None, counted, count)
        plan = Plan(tokens, calls, "stop", None, counted, count)
        if plan.output_tokens > limit:
            return Plan(tokens, (), "length", None, counted, count)
        return plan
    return Plan(tokens, calls, "stop", None, counted, count)


class Format:
    """One provider API's answers for one request."""

    request_id_header = "x-request-id"

    def __init__(self, number: int, model: str, request_body: Any, plan: Plan) -> None:
        self.number = number
        self.model = model
        self.request_body: dict[str, Any] = request_body if isinstance(request_body, dict) else {}
        self.plan = plan
        self.created = int(time.time())
        self.text = ""
        self.tool_calls = plan.tool_calls
        self.refusal = plan.finish == "refusal"
        # A reply that only calls tools has no text part, as with the real APIs.
        self.has_text = bool(plan.tokens) or not plan.tool_calls

    @property
    def request_id(self) -> str:
        return f"req_fake_{self.number}"

    def call_id(self, index: int, prefix: str) -> str:
        call = self.tool_calls[index]
        return call.id if call.id is not None else f"{prefix}_fake_{self.number}_{index}"

    def opening(self) -> list[bytes]:
        return []

    def token(self, text: str) -> list[bytes]:
        raise NotImplementedError

    def closing(self) -> list[bytes]:
        return []

    def error_events(self, message: str) -> list[bytes]:
        raise NotImplementedError

    def whole(self) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> dict[str, Any]:
        return openai_error(status, message, type=type, code=code, param=param)


# What every chat answer and chunk names beside its choices, as the API sends them.
_SYSTEM_FINGERPRINT: Final = "fp_fakebridge"
_CHAT_SERVICE_TIER: Final = "default"


class OpenAIChat(Format):
    """`POST /v1/chat/completions`."""

    def _head(self, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fake-{self.number}",
            "object": kind,
            "created": self.created,
            "model": self.model,
            "service_tier": _CHAT_SERVICE_TIER,
            "system_fingerprint": (
                _SYSTEM_FINGERPRINT if chat_family(self.model).system_fingerprint else None
            ),
        }

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        chunk = {**self._head("chat.completion.chunk"), "choices": choices}
        if self._include_usage:
            chunk["usage"] = None
        return sse(chunk)

    @property
    def _include_usage(self) -> bool:
        options = self.request_body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def _deltas(self, delta: dict[str, Any], finish_reason: str | None = None) -> list[bytes]:
        """One chunk per choice, as the API streams `n` choices."""
        return [
            self._chunk(
                [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
            )
            for index in range(self.plan.choices)
        ]

    def _role_delta(self) -> dict[str, Any]:
        # No text to come (tool calls only, or a refusal) leaves `content` null, as the
        # SDKs' accumulated message then shows it.
        content = "" if self.has_text and not self.refusal else None
        refusal = "" if self.refusal else None
        return {"role": "assistant", "content": content, "refusal": refusal}

    def opening(self) -> list[bytes]:
        if not self.has_text:
            # A tool-only answer names the role in the chunk of its first tool call.
            return []
        return self._deltas(self._role_delta())

    def token(self, text: str) -> list[bytes]:
        self.text += text
        return self._deltas({"refusal" if self.refusal else "content": text})

    def _tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self.call_id(index, "call"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_text},
            }
            for index, call in enumerate(self.tool_calls)
        ]

    def _finish_reason(self) -> str:
        finish = self.plan.finish
        if finish in ("length", "content_filter"):
            return finish
        if not self.tool_calls:
            return "stop"
        # A `tool_choice` forcing a named function: the answer's model family decides.
        choice = self.request_body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            return chat_family(self.model).forced_function_finish
        return "tool_calls"

    def _usage(self) -> dict[str, Any]:
        prompt = self.plan.input_tokens
        completion = self.plan.output_tokens * self.plan.choices
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def closing(self) -> list[bytes]:
        events: list[bytes] = []
        for index, call in enumerate(self._tool_calls()):
            function = call["function"]
            start = {**call, "index": index, "function": {**function, "arguments": ""}}
            role = self._role_delta() if index == 0 and not self.has_text else {}
            events += self._deltas({**role, "tool_calls": [start]})
            for piece in self.tool_calls[index].argument_pieces:
                events += self._deltas(
                    {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                )
        events += self._deltas({}, self._finish_reason())
        if self._include_usage:
            head = self._head("chat.completion.chunk")
            events.append(sse({**head, "choices": [], "usage": self._usage()}))
        return [*events, sse("[DONE]")]

    def error_events(self, message: str) -> list[bytes]:
        # In-band, as the bridge does once the stream has started; `[DONE]` still follows.
        return [sse(openai_error(500, message)), sse("[DONE]")]

    def whole(self) -> dict[str, Any]:
        text = self.plan.text
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if self.has_text and not self.refusal else None,
            "refusal": text if self.refusal else None,
            "annotations": [],
        }
        if self.tool_calls:
            message["tool_calls"] = self._tool_calls()
        return {
            **self._head("chat.completion"),
            "choices": [
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish_reason(),
                }
                for index in range(self.plan.choices)
            ],
            "usage": self._usage(),
        }


# The request settings a Responses answer echoes, with the API's defaults.
_RESPONSES_ECHO: Final[Mapping[str, Any]] = {
    "background": False,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


class OpenAIResponses(Format):
    """`POST /v1/responses` (the Responses API); errors as in chat completions."""

    def __init__(self, number: int, model: str, request_body: Any, plan: Plan) -> None:
        super().__init__(number, model, request_body, plan)
        self.sequence = 0
        self.response_id = f"resp_fake_{number}"
        self.item_id = f"msg_fake_{number}"

    def _event(self, event_type: str, **fields: Any) -> bytes:
        data = {"type": event_type, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(data, event=event_type)

    @property
    def _incomplete(self) -> bool:
        return self.plan.finish in ("length", "content_filter")

    def _part(self) -> dict[str, Any]:
        if self.refusal:
            return {"type": "refusal", "refusal": self.text}
        return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}

    def _message(self, status: str) -> dict[str, Any]:
        done = status != "in_progress"
        return {
            "id": self.item_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [self._part()] if done else [],
        }

    def _message_status(self) -> str:
        return "incomplete" if self._incomplete else "completed"

    def _item_id(self, index: int) -> str:
        """A function call item's own id (`fc_...`), never its `call_id` (`call_...`)."""
        return f"fc_fake_{self.number}_{index}"

    def _function_call(self, index: int, status: str) -> dict[str, Any]:
        call = self.tool_calls[index]
        return {
            "type": "function_call",
            "id": self._item_id(index),
            "call_id": self.call_id(index, "call"),
            "name": call.name,
            "arguments": call.arguments_text if status == "completed" else "",
            "status": status,
        }

    def _output(self) -> list[dict[str, Any]]:
        messages = [self._message(self._message_status())] if self.has_text else []
        calls = [self._function_call(index, "completed") for index in range(len(self.tool_calls))]
        return messages + calls

    def _response(self, status: str) -> dict[str, Any]:
        done = status in ("completed", "incomplete")
        reason = {"length": "max_output_tokens", "content_filter": "content_filter"}
        echo = {
            name: _given(self.request_body.get(name), default)
            for name, default in _RESPONSES_ECHO.items()
        }
        if echo["service_tier"] == "auto":
            # The answer names the tier that served it.
            echo["service_tier"] = "default"
        if isinstance(self.request_body.get("prompt"), dict):
            echo["prompt"] = self.request_body["prompt"]
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created,
            "completed_at": self.created if status == "completed" else None,
            "status": status,
            "model": self.model,
            "output": self._output() if done else [],
            "error": None,
            "incomplete_details": (
                {"reason": reason[self.plan.finish]} if status == "incomplete" else None
            ),
            **echo,
            "usage": self._usage() if done else None,
        }

    def _usage(self) -> dict[str, Any]:
        prompt, output = self.plan.input_tokens, self.plan.output_tokens
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + output,
        }

    def opening(self) -> list[bytes]:
        events = [
            self._event("response.created", response=self._response("in_progress")),
            self._event("response.in_progress", response=self._response("in_progress")),
        ]
        if not self.has_text:
            return events
        return [
            *events,
            self._event(
                "response.output_item.added", output_index=0, item=self._message("in_progress")
            ),
            self._event(
                "response.content_part.added",
                item_id=self.item_id,
                output_index=0,
                content_index=0,
                part=self._part(),
            ),
        ]

    def token(self, text: str) -> list[bytes]:
        self.text += text
        place = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        if self.refusal:
            return [self._event("response.refusal.delta", **place, delta=text)]
        return [self._event("response.output_text.delta", **place, delta=text, logprobs=[])]

    def closing(self) -> list[bytes]:
        events = self._text_closing() if self.has_text else []
        first = 1 if self.has_text else 0
        for index, call in enumerate(self.tool_calls):
            item_id = self._item_id(index)
            output_index = first + index
            events.append(
                self._event(
                    "response.output_item.added",
                    output_index=output_index,
                    item=self._function_call(index, "in_progress"),
                )
            )
            events += [
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=output_index,
                    delta=piece,
                )
                for piece in call.argument_pieces
            ]
            events += [
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=output_index,
                    arguments=call.arguments_text,
                ),
                self._event(
                    "response.output_item.done",
                    output_index=output_index,
                    item=self._function_call(index, "completed"),
                ),
            ]
        status = "incomplete" if self._incomplete else "completed"
        return [*events, self._event(f"response.{status}", response=self._response(status))]

    def _text_closing(self) -> list[bytes]:
        place = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        if self.refusal:
            done = self._event("response.refusal.done", **place, refusal=self.text)
        else:
            done = self._event("response.output_text.done", **place, text=self.text, logprobs=[])
        return [
            done,
            self._event("response.content_part.done", **place, part=self._part()),
            self._event(
                "response.output_item.done",
                output_index=0,
                item=self._message(self._message_status()),
            ),
        ]

    def error_events(self, message: str) -> list[bytes]:
        return [self._event("error", code="server_error", message=message, param=None)]

    def whole(self) -> dict[str, Any]:
        self.text = self.plan.text
        return self._response("incomplete" if self._incomplete else "completed")


class AnthropicMessages(Format):
    """`POST /v1/messages` (also `?beta=true`)."""

    request_id_header = "request-id"

    def _event(self, event_type: str, **fields: Any) -> bytes:
        return sse({"type": event_type, **fields}, event=event_type)

    def _stop_reason(self) -> str:
        finish = self.plan.finish
        if finish == "length":
            return "max_tokens"
        if finish in ("refusal", "content_filter"):
            return "refusal"
        if finish == "stop_sequence":
            return "stop_sequence"
        return "tool_use" if self.tool_calls else "end_turn"

    def _tool_use(self, index: int, complete: bool) -> dict[str, Any]:
        call = self.tool_calls[index]
        arguments = call.arguments_text
        return {
            "type": "tool_use",
            "id": self.call_id(index, "toolu"),
            "name": call.name,
            "input": _json_object(arguments) if complete else {},
        }

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.plan.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _message(self, done: bool) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if done:
            if self.has_text:
                content.append({"type": "text", "text": self.plan.text})
            content += [self._tool_use(index, True) for index in range(len(self.tool_calls))]
        return {
            "id": f"msg_fake_{self.number}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self._stop_reason() if done else None,
            "stop_sequence": self.plan.stop_sequence if done else None,
            "usage": self._usage(self.plan.output_tokens if done else 1),
        }

    def opening(self) -> list[bytes]:
        events = [self._event("message_start", message=self._message(False))]
        if not self.has_text:
            # The ping follows the first block's start: here, the first tool use's.
            return events
        text_block = {"type": "text", "text": ""}
        events.append(self._event("content_block_start", index=0, content_block=text_block))
        return [*events, self._event("ping")]

    def token(self, text: str) -> list[bytes]:
        self.text += text
        delta = {"type": "text_delta", "text": text}
        return [self._event("content_block_delta", index=0, delta=delta)]

    def closing(self) -> list[bytes]:
        events = [self._event("content_block_stop", index=0)] if self.has_text else []
        first = 1 if self.has_text else 0
        for index, call in enumerate(self.tool_calls):
            block = first + index
            events.append(
                self._event(
                    "content_block_start", index=block, content_block=self._tool_use(index, False)
                )
            )
            if block == 0:
                events.append(self._event("ping"))
            # The API opens every tool input with an empty piece before the JSON text.
            for piece in ("", *call.argument_pieces):
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(self._event("content_block_delta", index=block, delta=delta))
            events.append(self._event("content_block_stop", index=block))
        usage = self._usage(self.plan.output_tokens)
        return [
            *events,
            self._event(
                "message_delta",
                delta={
                    "stop_reason": self._stop_reason(),
                    "stop_sequence": self.plan.stop_sequence,
                    "stop_details": None,
                    "container": None,
                },
                usage={key: usage[key] for key in _DELTA_USAGE},
            ),
            self._event("message_stop"),
        ]

    def error_events(self, message: str) -> list[bytes]:
        return [sse(self.error_body(529, message), event="error")]

    def whole(self) -> dict[str, Any]:
        return self._message(True)

    def error_body(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> dict[str, Any]:
        return anthropic_error(status, message, request_id=self.request_id, type=type)


# The usage a `message_delta` repeats: the counts, not the tier or the cache breakdown.
_DELTA_USAGE: Final = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def _given(value: Any, default: Any) -> Any:
    """A request's setting, or the API's default when it is absent or null."""
    return default if value is None else value


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {}
