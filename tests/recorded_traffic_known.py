"""The differences between the fake and real provider traffic that the suite accepts, and why.

Each entry is found by `tests/test_fake_recorded_traffic.py` on the recorded traffic, and each must
still be found: an entry that matches nothing fails the suite as stale, so a fix to the fake
shows here as an entry to delete.

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

_REASONING: Final = (
    "reasoning models (the gpt-5 family, the default today) send a reasoning output item "
    "before the answer; no script gives one, so code that keeps or sends back reasoning "
    "items is not exercised. Worth a follow-up: a Reply option for a reasoning item (its "
    "events, and its summary when asked for) is small"
)

KNOWN_DIFFERENCES: Final[tuple[KnownDifference, ...]] = (
    # --- What the fake cannot know -----------------------------------------------------------
    # High, and standing: each says why, and whether it is worth a change to the fake.
    KnownDifference(
        "accepted",
        "request",
        _ALL,
        "high",
        "the fake keeps no per-model capability table or model catalogue: what one model "
        "refuses (a role, an option, an effort level, an unknown model name) it accepts; "
        "script the error with HTTPError to test the refusal. No follow-up: such a table "
        "would be stale with each model release, and a scripted HTTPError is exact",
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
        _REASONING,
    ),
    KnownDifference(
        "item-missing",
        "*output[reasoning]",
        _RESPONSES,
        "high",
        _REASONING,
    ),
    KnownDifference(
        "item-missing",
        ("*output[tool_search_call]", "*output[tool_search_output]"),
        _RESPONSES,
        "high",
        "no script gives hosted-tool output items (tool_search_call, tool_search_output): "
        "the fake runs no hosted tool. A follow-up only when a test needs them: one recording "
        "has them, and a test can queue the call the model makes after the search",
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
            "*billing",
            "*frequency_penalty",
            "*presence_penalty",
            "*moderation",
            "*prompt_cache_retention",
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
        "extra",
        "*completed_at",
        _RESPONSES,
        "low",
        "a Response names completed_at (null until it completes); the 2026 recordings have "
        "it, these (March to November 2025) predate it",
        exchanges=(
            "pydantic-ai/test_openai_responses_model_simple_response*",
            "pydantic-ai/test_openai_responses_stream#*",
            "pydantic-ai/test_openai_responses_streaming_usage#*",
            "pydantic-ai/test_openai_responses_runs_with_instructions_only#*",
        ),
    ),
    KnownDifference(
        "extra",
        "*usage.input_tokens_details.cache_write_tokens",
        _RESPONSES,
        "low",
        "the SDK's ResponseUsage (generated from the OpenAPI spec) requires "
        "input_tokens_details.cache_write_tokens, so the fake sends it (0); no recording (the "
        "latest are from May 2026) has it yet",
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
            "event[message_delta].delta.container",
            "event[message_delta].delta.stop_details",
        ),
        _MESSAGES,
        "low",
        "message_delta fields the fake sends as null that the real API leaves out when unused",
    ),
    KnownDifference(
        "missing",
        (
            "*stop_details",
            "*usage.inference_geo",
            "*usage.output_tokens_details",
            "*content_block.caller",
        ),
        _MESSAGES,
        "low",
        "newer Message fields (stop_details on the message, inference_geo, "
        "output_tokens_details, a tool_use block's caller) the fake leaves out",
    ),
)
