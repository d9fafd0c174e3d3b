"""Whisper repetition loops: find them in a hypothesis and cut them out (pure, Ray-free, model-free).

Greedy decoding of a short window sometimes falls into a loop, "ancient coins an an an an an an and a
garden", and whether it does depends on where the window happens to start and end, so on timing. Whisper's
own guard (the compression ratio of a 30 s segment) misses a loop of a few short words in a long window, and
the local agreement confirms a loop that two successive passes share. People do repeat a word ("very very",
"had had"), but hardly ever three times in a row, and not a phrase three times: a run of the same n-gram
(n = 1..``max_n``) repeated ``min_repeats`` or more times in a row is taken as a loop and kept once. The cost
is that a real "no no no" becomes "no". The compression ratio of the text also flags a loop the runs miss.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

from speech.stt import Word

MIN_REPEATS = 3  # "very very" is speech, "very very very" a loop
MAX_NGRAM = 8  # "thank you for watching" x3 is a loop of a 4-word phrase; longer ones are rarer still
COMPRESSION_RATIO_LIMIT = 2.4  # Whisper's own threshold for a looping segment


def normalize(text: str) -> str:
    """A word as compared: lower case, without punctuation ("An," and " an" are the same word)."""
    return re.sub(r"[^\w']+", "", text.lower())


def repeated_runs(keys: Sequence[str], min_repeats: int = MIN_REPEATS, max_n: int = MAX_NGRAM) -> list[tuple[int, int, int]]:
    """Runs of one n-gram repeated at least ``min_repeats`` times in a row, as ``(start, n, count)``.

    Scanning left to right, at each position the n covering the most words wins (the smallest n on a tie,
    so "an an an an" is four "an", not two "an an"); the scan resumes after the run.
    """
    runs: list[tuple[int, int, int]] = []
    i = 0
    while i < len(keys):
        best: tuple[int, int] | None = None  # (n, count)
        for n in range(1, max_n + 1):
            gram = list(keys[i : i + n])
            if len(gram) < n:
                break
            count = 1
            while list(keys[i + count * n : i + (count + 1) * n]) == gram:
                count += 1
            if count >= min_repeats and (best is None or count * n > best[0] * best[1]):
                best = (n, count)
        if best is None:
            i += 1
            continue
        runs.append((i, best[0], best[1]))
        i += best[0] * best[1]
    return runs


def drop_repeats(words: Sequence[Word], min_repeats: int = MIN_REPEATS, max_n: int = MAX_NGRAM) -> list[Word]:
    """The words with every repetition loop kept once (its first occurrence, with its own times).

    Words without letters or digits (stray punctuation) are dropped too: they are never compared anyway.
    """
    words = [w for w in words if normalize(w.text)]
    keep = [True] * len(words)
    for start, n, count in repeated_runs([normalize(w.text) for w in words], min_repeats, max_n):
        for index in range(start + n, start + n * count):
            keep[index] = False
    return [w for w, kept in zip(words, keep) if kept]


def compression_ratio(text: str) -> float:
    """How well zlib packs the text: natural speech is near 1.5-2, a loop well above 2.4."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def has_loop(words: Sequence[Word], min_repeats: int = MIN_REPEATS, max_n: int = MAX_NGRAM) -> bool:
    """Whether a hypothesis loops: a repeated run of words, or text that compresses like a loop.

    The ratio catches loops of phrases longer than ``max_n`` words; below ~50 bytes zlib's overhead makes
    it meaningless, so short texts are judged by the runs alone.
    """
    keys = [normalize(w.text) for w in words if normalize(w.text)]
    if repeated_runs(keys, min_repeats, max_n):
        return True
    text = " ".join(keys)
    return len(text) >= 50 and compression_ratio(text) > COMPRESSION_RATIO_LIMIT
