"""A tool call as the LLM wrote it, and its result as the LLM is shown it: the two values the reply loop and the
executors exchange. Plain frozen dataclasses (stdlib only), so the loop, its tests and the transports can build and
read them without importing an executor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolCall:
    id: str  # the LLM's tool_call id
    name: str
    arguments: str  # the JSON text the LLM wrote (may be invalid JSON)


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str  # what the LLM is shown: the result, or an error text it can react to; already truncated
    ok: bool
    elapsed_ms: float
    error: str | None = None  # short, safe to show a client or an operator (no secrets, no tracebacks); None when ok


TRUNCATION_MARKER = "\n[truncated: the result was longer than {limit} characters]"


def clip(text: str, limit: int, *, cut: bool = False) -> str:
    """``text`` cut to ``limit`` characters, followed by a marker when anything was cut (``cut``: the text is
    already a prefix of a longer result, so it is marked even when it fits)."""
    if len(text) <= limit and not cut:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(limit=limit)
