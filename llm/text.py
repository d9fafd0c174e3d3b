"""Cleaning up what chat models answer: they often fence the JSON they were asked for in Markdown.

Shared by the two readers of JSON answers, the reply decoder (agents/reply_parser.py) and the control agents'
classifier (agents/control.py).
"""

from __future__ import annotations


def strip_code_fence(text: str) -> str:
    """``text`` without the Markdown code fence around it (```json ... ``` or ``` ... ```), whitespace stripped."""
    return text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
