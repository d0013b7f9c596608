"""The providers' wire formats: SSE framing, event shapes, JSON bodies and error bodies.

The shapes follow what the openai and anthropic SDKs parse: OpenAI chat chunks as
`data: {...}` ending with `data: [DONE]`, Responses API events and Anthropic message events as
`event: <type>` + `data: {...}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from ._script import ToolCall

__all__ = ["AnthropicMessages", "Format", "OpenAIChat", "OpenAIResponses", "sse"]

_OPENAI_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}
_ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: `event: <name>` (when given) and `data: <json>`."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {payload}\n\n".encode()


class Format:
    """One provider API's answers for one request."""

    request_id_header = "x-request-id"

    def __init__(
        self,
        number: int,
        model: str,
        request_body: Any,
        *,
        has_text: bool = True,
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        self.number = number
        self.model = model
        self.request_body = request_body if isinstance(request_body, dict) else {}
        self.text = ""
        # A reply that only calls tools has no text part, as with the real APIs.
        self.has_text = has_text or not tool_calls
        self.tool_calls = tuple(tool_calls)

    def call_id(self, index: int, prefix: str) -> str:
        call = self.tool_calls[index]
        return call.id if call.id is not None else f"{prefix}_fake_{self.number}_{index}"

    def opening(self) -> list[bytes]:
        return []

    def token(self, text: str) -> bytes:
        raise NotImplementedError

    def closing(self) -> list[bytes]:
        return []

    def error_events(self, message: str) -> list[bytes]:
        raise NotImplementedError

    def whole(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError


class OpenAIChat(Format):
    """`POST /v1/chat/completions`."""

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return sse(
            {
                "id": f"chatcmpl-fake-{self.number}",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
        )

    def opening(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def token(self, text: str) -> bytes:
        self.text += text
        return self._chunk({"content": text})

    def _tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self.call_id(index, "call"),
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call)},
            }
            for index, call in enumerate(self.tool_calls)
        ]

    def _finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def closing(self) -> list[bytes]:
        events: list[bytes] = []
        for index, call in enumerate(self._tool_calls()):
            function = call["function"]
            start = {**call, "index": index, "function": {**function, "arguments": ""}}
            events.append(self._chunk({"tool_calls": [start]}))
            arguments = {"index": index, "function": {"arguments": function["arguments"]}}
            events.append(self._chunk({"tool_calls": [arguments]}))
        events.append(self._chunk({}, self._finish_reason()))
        options = self.request_body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            events.append(
                sse(
                    {
                        "id": f"chatcmpl-fake-{self.number}",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": self.model,
                        "choices": [],
                        "usage": _openai_usage(self.text),
                    }
                )
            )
        return [*events, sse("[DONE]")]

    def error_events(self, message: str) -> list[bytes]:
        # In-band, as the bridge does once the stream has started; `[DONE]` still follows.
        error = {"message": message, "type": "server_error", "param": None, "code": None}
        return [sse({"error": error}), sse("[DONE]")]

    def whole(self, text: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fake-{self.number}",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text if self.has_text else None,
                        "refusal": None,
                        **({"tool_calls": self._tool_calls()} if self.tool_calls else {}),
                    },
                    "logprobs": None,
                    "finish_reason": self._finish_reason(),
                }
            ],
            "usage": _openai_usage(text),
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        error_type = _OPENAI_ERROR_TYPES.get(status, "server_error")
        code = "rate_limit_exceeded" if status == 429 else None
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _arguments(call: ToolCall) -> str:
    return json.dumps(dict(call.arguments), separators=(",", ":"))


def _openai_usage(text: str) -> dict[str, int]:
    completion = len(text.split())
    return {"prompt_tokens": 1, "completion_tokens": completion, "total_tokens": 1 + completion}


class OpenAIResponses(OpenAIChat):
    """`POST /v1/responses` (the Responses API); errors as in chat completions."""

    def __init__(
        self,
        number: int,
        model: str,
        request_body: Any,
        *,
        has_text: bool = True,
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        super().__init__(number, model, request_body, has_text=has_text, tool_calls=tool_calls)
        self.sequence = 0
        self.response_id = f"resp_fake_{number}"
        self.item_id = f"msg_fake_{number}"

    def _event(self, event_type: str, **fields: Any) -> bytes:
        data = {"type": event_type, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(data, event=event_type)

    def _part(self) -> dict[str, Any]:
        return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}

    def _message(self, status: str) -> dict[str, Any]:
        content = [self._part()] if status == "completed" else []
        return {
            "id": self.item_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def _function_call(self, index: int, status: str) -> dict[str, Any]:
        call = self.tool_calls[index]
        return {
            "type": "function_call",
            "id": self.call_id(index, "fc"),
            "call_id": self.call_id(index, "call"),
            "name": call.name,
            "arguments": _arguments(call) if status == "completed" else "",
            "status": status,
        }

    def _output(self) -> list[dict[str, Any]]:
        messages = [self._message("completed")] if self.has_text else []
        calls = [self._function_call(index, "completed") for index in range(len(self.tool_calls))]
        return messages + calls

    def _response(self, status: str) -> dict[str, Any]:
        completed = status == "completed"
        words = len(self.text.split())
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": 0,
            "status": status,
            "model": self.model,
            "output": self._output() if completed else [],
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "parallel_tool_calls": True,
            "temperature": None,
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 1,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": words,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 1 + words,
            }
            if completed
            else None,
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

    def token(self, text: str) -> bytes:
        self.text += text
        return self._event(
            "response.output_text.delta",
            item_id=self.item_id,
            output_index=0,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def closing(self) -> list[bytes]:
        events = self._text_closing() if self.has_text else []
        first = 1 if self.has_text else 0
        for index, call in enumerate(self.tool_calls):
            item_id = self.call_id(index, "fc")
            output_index = first + index
            events += [
                self._event(
                    "response.output_item.added",
                    output_index=output_index,
                    item=self._function_call(index, "in_progress"),
                ),
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=output_index,
                    delta=_arguments(call),
                ),
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=output_index,
                    name=call.name,
                    arguments=_arguments(call),
                ),
                self._event(
                    "response.output_item.done",
                    output_index=output_index,
                    item=self._function_call(index, "completed"),
                ),
            ]
        return [*events, self._event("response.completed", response=self._response("completed"))]

    def _text_closing(self) -> list[bytes]:
        return [
            self._event(
                "response.output_text.done",
                item_id=self.item_id,
                output_index=0,
                content_index=0,
                text=self.text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done",
                item_id=self.item_id,
                output_index=0,
                content_index=0,
                part=self._part(),
            ),
            self._event(
                "response.output_item.done", output_index=0, item=self._message("completed")
            ),
        ]

    def error_events(self, message: str) -> list[bytes]:
        return [self._event("error", code="server_error", message=message, param=None)]

    def whole(self, text: str) -> dict[str, Any]:
        self.text = text
        return self._response("completed")


class AnthropicMessages(Format):
    """`POST /v1/messages` (also `?beta=true`)."""

    request_id_header = "request-id"

    def _event(self, event_type: str, **fields: Any) -> bytes:
        return sse({"type": event_type, **fields}, event=event_type)

    def _stop_reason(self) -> str:
        return "tool_use" if self.tool_calls else "end_turn"

    def _tool_use(self, index: int, complete: bool) -> dict[str, Any]:
        call = self.tool_calls[index]
        return {
            "type": "tool_use",
            "id": self.call_id(index, "toolu"),
            "name": call.name,
            "input": dict(call.arguments) if complete else {},
        }

    def _message(self, text: str | None) -> dict[str, Any]:
        done = text is not None
        content: list[dict[str, Any]] = []
        if done:
            if self.has_text:
                content.append({"type": "text", "text": text, "citations": None})
            content += [self._tool_use(index, True) for index in range(len(self.tool_calls))]
        return {
            "id": f"msg_fake_{self.number}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self._stop_reason() if done else None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 1,
                "output_tokens": len(text.split()) if text is not None else 1,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": None,
                "server_tool_use": None,
                "service_tier": None,
            },
        }

    def opening(self) -> list[bytes]:
        events = [self._event("message_start", message=self._message(None))]
        if self.has_text:
            text_block = {"type": "text", "text": "", "citations": None}
            events.append(self._event("content_block_start", index=0, content_block=text_block))
        return [*events, self._event("ping")]

    def token(self, text: str) -> bytes:
        self.text += text
        return self._event(
            "content_block_delta", index=0, delta={"type": "text_delta", "text": text}
        )

    def closing(self) -> list[bytes]:
        events = [self._event("content_block_stop", index=0)] if self.has_text else []
        first = 1 if self.has_text else 0
        for index, call in enumerate(self.tool_calls):
            block = first + index
            events += [
                self._event(
                    "content_block_start", index=block, content_block=self._tool_use(index, False)
                ),
                self._event(
                    "content_block_delta",
                    index=block,
                    delta={"type": "input_json_delta", "partial_json": _arguments(call)},
                ),
                self._event("content_block_stop", index=block),
            ]
        return [
            *events,
            self._event(
                "message_delta",
                delta={
                    "stop_reason": self._stop_reason(),
                    "stop_sequence": None,
                    "stop_details": None,
                    "container": None,
                },
                usage={
                    "output_tokens": len(self.text.split()),
                    "input_tokens": None,
                    "cache_creation_input_tokens": None,
                    "cache_read_input_tokens": None,
                    "server_tool_use": None,
                },
            ),
            self._event("message_stop"),
        ]

    def error_events(self, message: str) -> list[bytes]:
        return [sse(self.error_body(529, message), event="error")]

    def whole(self, text: str) -> dict[str, Any]:
        return self._message(text)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        error_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": f"req_fake_{self.number}",
        }
