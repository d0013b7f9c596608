"""The differences between the fake and real provider traffic that the suite accepts, and why.

Each entry is found by `tests/test_fake_recorded_traffic.py` on the recorded traffic, and each must
still be found: an entry that matches nothing fails the suite as stale, so a fix to the fake
shows here as an entry to delete. Entries with `fixed_by_pending_change=True` are being
removed from the fake by a change under way; delete them once it is in.

Severity: `high` when a test could pass on the fake and fail against the real API (or the
other way round), `low` when cosmetic (the SDKs ignore it, or type it as optional).
"""

from __future__ import annotations

from typing import Final

from recorded_traffic import API, KnownDifference

__all__ = ["KNOWN_DIFFERENCES"]

_CHAT: Final[tuple[API, ...]] = ("openai-chat",)
_RESPONSES: Final[tuple[API, ...]] = ("openai-responses",)
_MESSAGES: Final[tuple[API, ...]] = ("anthropic-messages",)
_COUNT: Final[tuple[API, ...]] = ("anthropic-count",)
_ALL: Final[tuple[API, ...]] = (*_CHAT, *_RESPONSES, *_MESSAGES, *_COUNT)

_PENDING: Final = "being fixed: "
_PING: Final = (
    _PENDING + "the real stream pings after the first content_block_start, the fake right "
    "after message_start; the SDKs skip pings"
)
_ROLE_CHUNK: Final = (
    _PENDING + "a stream that only calls tools: the real API puts the role in the first "
    "tool-call chunk, the fake sends a role chunk first"
)

KNOWN_DIFFERENCES: Final[tuple[KnownDifference, ...]] = (
    # --- Being fixed by a change under way ---------------------------------------------------
    KnownDifference(
        "refused",
        "request",
        _MESSAGES,
        "high",
        _PENDING + "Anthropic accepts `system` turns inside `messages` for current models; "
        "the fake refuses them",
        fixed_by_pending_change=True,
        exchanges=("*mid_conversation_system_prompt*",),
    ),
    KnownDifference(
        "missing",
        ("*usage.prompt_tokens_details", "*usage.completion_tokens_details"),
        _CHAT,
        "high",
        _PENDING + "chat usage has no detail objects on the fake",
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "type",
        ("*usage.cache_creation_input_tokens", "*usage.cache_read_input_tokens"),
        _MESSAGES,
        "high",
        _PENDING + "Anthropic cache token counts are integers (0 when unused); the fake sends null",
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "type",
        "*usage.service_tier",
        _MESSAGES,
        "low",
        _PENDING + "Anthropic usage names its service_tier; the fake sends null",
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "missing",
        "*service_tier",
        _CHAT,
        "low",
        _PENDING + "chat completions and chunks carry service_tier; the fake leaves it out",
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "type",
        "*system_fingerprint",
        _CHAT,
        "low",
        _PENDING + "system_fingerprint is a string for most models; the fake sends null",
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "id-prefix",
        ("*[function_call].id", "*(function_call)].item.id", "*item_id"),
        _RESPONSES,
        "high",
        _PENDING + "function_call item ids start with fc_ (the API refuses other ids sent "
        "back as input); the fake uses the call_ id scripted for the call",
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "extra",
        "event[response.function_call_arguments.done].name",
        _RESPONSES,
        "low",
        _PENDING + "response.function_call_arguments.done carries no `name` on the real API",
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "status",
        "status",
        _COUNT,
        "high",
        _PENDING + "count_tokens takes no script, so a queued error cannot answer it",
        fixed_by_pending_change=True,
        exchanges=("*count_tokens_error*",),
    ),
    KnownDifference(
        "missing",
        ("error", "type", "request_id"),
        _COUNT,
        "high",
        _PENDING + "count_tokens takes no script: the fake counts where the real API erred",
        fixed_by_pending_change=True,
        exchanges=("*count_tokens_error*",),
    ),
    KnownDifference(
        "extra",
        "input_tokens",
        _COUNT,
        "high",
        _PENDING + "count_tokens takes no script: the fake counts where the real API erred",
        fixed_by_pending_change=True,
        exchanges=("*count_tokens_error*",),
    ),
    KnownDifference(
        "event-missing",
        "ping",
        _MESSAGES,
        "low",
        _PING,
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "event-extra",
        "ping",
        _MESSAGES,
        "low",
        _PING,
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "event-extra",
        "chunk(role)",
        _CHAT,
        "low",
        _ROLE_CHUNK,
        fixed_by_pending_change=True,
    ),
    KnownDifference(
        "missing",
        (
            "event[chunk(tool_call)].choices[].delta.content",
            "event[chunk(tool_call)].choices[].delta.refusal",
            "event[chunk(tool_call)].choices[].delta.role",
        ),
        _CHAT,
        "low",
        _ROLE_CHUNK,
        fixed_by_pending_change=True,
    ),
    # --- What the fake cannot know -----------------------------------------------------------
    KnownDifference(
        "accepted",
        "request",
        _ALL,
        "high",
        "the fake keeps no per-model capability table or model catalogue: what one model "
        "refuses (a role, an option, an effort level, an unknown model name) it accepts; "
        "script the error with HTTPError to test the refusal",
        exchanges=(
            "*o1_mini_system_role*",
            "*web_search_tool_model_not_supported*",
            "*effort_xhigh_unsupported_model*",
            "*count_tokens_error*",
        ),
    ),
    KnownDifference(
        "event-missing",
        "*(reasoning)",
        _RESPONSES,
        "high",
        "reasoning models send reasoning items before the answer; no script gives them",
    ),
    KnownDifference(
        "item-missing",
        ("*output[reasoning]", "*output[tool_search_call]", "*output[tool_search_output]"),
        _RESPONSES,
        "high",
        "no script gives reasoning or hosted-tool (tool_search) output items",
    ),
    KnownDifference(
        "type",
        "*reasoning.effort",
        _RESPONSES,
        "low",
        "a reasoning model reports the effort it used; the fake echoes the request's (none)",
    ),
    # --- Cosmetic: framing and fields the SDKs ignore or type as optional ---------------------
    KnownDifference(
        "event-missing",
        "chunk(empty)",
        _CHAT,
        "low",
        "the request asked for moderation: the real stream ends with a moderation chunk",
        exchanges=("*moderation*",),
    ),
    KnownDifference(
        "missing",
        "*.obfuscation",
        (*_CHAT, *_RESPONSES),
        "low",
        "stream deltas carry random `obfuscation` padding (stream_options.include_obfuscation); "
        "the SDKs ignore it",
    ),
    KnownDifference(
        "extra",
        "*choices[].logprobs",
        _CHAT,
        "low",
        "the fake always sends `logprobs: null`; for these models the real API leaves it out",
    ),
    KnownDifference(
        "missing",
        (
            "*background",
            "*billing",
            "*completed_at",
            "*frequency_penalty",
            "*presence_penalty",
            "*moderation",
            "*prompt_cache_key",
            "*prompt_cache_retention",
            "*safety_identifier",
            "*text.verbosity",
            "*top_logprobs",
            "*reasoning.summary",
            "*reasoning.generate_summary",
            "*.phase",
            "*output[function_call].namespace",
        ),
        _RESPONSES,
        "low",
        "Response fields the real API sends (the SDK types them as optional) that the fake "
        "leaves out",
    ),
    KnownDifference(
        "extra",
        (
            "*.sequence_number",
            "*.logprobs",
            "*.max_tool_calls",
            "*reasoning.summary",
            "*.service_tier",
            "*.background",
            "*.prompt_cache_key",
            "*.safety_identifier",
            "*text.verbosity",
            "*.top_logprobs",
        ),
        _RESPONSES,
        "low",
        "fields the Responses API added after this recording (March 2025); later recordings "
        "have them",
        exchanges=("pydantic-ai/test_openai_responses_stream#*",),
    ),
    KnownDifference(
        "type",
        "*tools[function].description",
        _RESPONSES,
        "low",
        "the real API echoes an empty tool description as null; the fake echoes it as sent",
    ),
    KnownDifference(
        "missing",
        (
            "*tools[function].strict",
            "*tools[function].parameters.additionalProperties",
            "*tools[tool_search].description",
            "*tools[tool_search].parameters",
        ),
        _RESPONSES,
        "low",
        "the real API echoes tools with its defaults filled in; the fake echoes them as sent",
    ),
    KnownDifference(
        "extra",
        (
            "*content[text].citations",
            "*content_block.citations",
            "*usage.server_tool_use",
            "event[message_delta].delta.container",
            "event[message_delta].delta.stop_details",
        ),
        _MESSAGES,
        "low",
        "fields the fake sends as null that the real API leaves out when unused",
    ),
    KnownDifference(
        "missing",
        (
            "*stop_details",
            "*usage.cache_creation",
            "*usage.inference_geo",
            "*usage.output_tokens_details",
            "*content_block.caller",
        ),
        _MESSAGES,
        "low",
        "newer Message fields (stop_details on the message, the cache_creation breakdown by "
        "TTL, inference_geo, output_tokens_details, a tool_use block's caller) the fake "
        "leaves out",
    ),
)
