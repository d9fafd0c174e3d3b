"""JSON from strangers: one parser that turns every hostile input into a ValueError with a plain reason.

``json.loads`` lets three things through that a server must not meet later: 100 000 ``[`` raise
``RecursionError`` (not a ValueError, so framing code that catches decode errors does not see it), an
integer of more than 4 300 digits raises a plain ``ValueError`` (not a ``JSONDecodeError``), and nesting
just under the interpreter's limit parses and then breaks whatever walks the value next (pydantic, Ray's
pickling, ``json.dumps``). Everything a client sends goes through ``parse_json``.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # no message of ours nests deeper than a handful of levels


class JsonRefused(ValueError):
    """Input that is not acceptable JSON; the message says why without quoting the input."""


def _depth(value: Any) -> int:
    """Nesting depth of a parsed value, without recursion (the value may be thousands of levels deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in items if isinstance(child, (dict, list)))
    return deepest


def parse_json(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text, raising JsonRefused (a ValueError) for invalid UTF-8 or JSON, nesting deeper than
    ``max_depth``, and numbers Python will not convert (integers of thousands of digits)."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
    except UnicodeDecodeError:
        raise JsonRefused("not valid UTF-8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonRefused(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    except ValueError:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise JsonRefused("a number in it is too long") from None
    if _depth(value) > max_depth:
        raise JsonRefused(f"nested deeper than {max_depth} levels")
    return value
