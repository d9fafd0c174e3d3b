"""Cutting text to be spoken into sentences and first clauses, so each piece is synthesized (and can be cut
off) on its own, and a long sentence's first audio waits only for its first clause. The reply writer cuts
streamed replies with it; the TTS backends cut a long sentence they are given once more.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "approx"}
_BOUNDARY = re.compile(r"([.!?…]+[\"')\]]*)(\s+|$)|\n+")
_CLAUSE_BREAK = re.compile(r"[,;:\u2013\u2014](?=\s)|\s-(?=\s)")  # a comma, colon, semicolon or dash, then a space


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


def first_clause_end(text: str, min_chars: int) -> int | None:
    """Where the first clause of ``text`` that is at least ``min_chars`` long ends (after its break), or None."""
    for match in _CLAUSE_BREAK.finditer(text):
        if match.end() >= min_chars:
            return match.end()
    return None
