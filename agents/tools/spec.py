"""PLACEHOLDER until the tools branch lands: the real module checks http tools and MCP servers."""

from __future__ import annotations

from typing import Any


def check_tools(raw_tools: list[Any], raw_mcp: list[Any], where: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    return tuple(raw_tools), tuple(raw_mcp)
