"""Client-given strings in log lines: escaped and cut, so a newline in an app name or an agent name
cannot forge a line of the server log, and a megabyte of text cannot fill it."""

from __future__ import annotations


def printable(value: object, limit: int = 80) -> str:
    """``value`` as one line of printable text: control characters (and backslashes) escaped, at most
    ``limit`` characters, marked with ``...`` when cut."""
    text = str(value)
    cut = len(text) > limit
    text = "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
                   for c in text[:limit])
    return text + "..." if cut else text


def has_control_characters(text: str) -> bool:
    """Any C0/C1 control character or a Unicode line/paragraph separator: not allowed in names."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text)
