"""Cutting reply text into sentences, so each one is synthesized (and can be cut off) on its own."""

from __future__ import annotations

import re

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "approx"}
_BOUNDARY = re.compile(r"([.!?…]+[\"')\]]*)(\s+|$)|\n+")


def split_sentences(text: str) -> list[str]:
    """Split at sentence ends (., !, ?, … and newlines) but not after common abbreviations or inside numbers."""
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end(1) if match.group(1) else match.start()
        candidate = text[start:end].strip()
        last_word = candidate.rsplit(None, 1)[-1].rstrip(".").lower() if candidate else ""
        if match.group(1) and match.group(1).startswith(".") and last_word in _ABBREVIATIONS:
            continue
        if candidate:
            sentences.append(candidate)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences
