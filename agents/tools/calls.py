"""A tool call and its result, as the reply writer and the tool executors pass them."""

from __future__ import annotations

from dataclasses import dataclass

from llm.tool_calls import ToolCall

__all__ = ["ToolCall", "ToolResult"]


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str  # what the LLM is shown: the result, or an error text it can react to (already truncated)
    ok: bool
    elapsed_ms: float
    error: str | None = None  # short and safe to show a client or an operator; None when ok
