"""A tool call as the LLM wrote it, and its result as the LLM is shown it: the two values the reply loop and the
executors exchange. Plain frozen dataclasses, so the loop, its tests and the transports can build and
read them without importing an executor. ``ToolCall`` is the LLM client's own (llm/tool_calls.py)."""

from __future__ import annotations

from dataclasses import dataclass

from llm.tool_calls import ToolCall

__all__ = ["TRUNCATION_MARKER", "ToolCall", "ToolResult", "clip"]


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
