"""G.711, the telephone network's codecs: mu-law (PCMU, North America and Japan) and A-law (PCMA, elsewhere),
8 kHz, one byte per sample. The conversion is CPython's C ``audioop`` (the maintained ``audioop-lts`` port from
Python 3.13 on, which has the same API); resampling to the pipeline's rates is ``speech.audio.PcmResampler``."""

from __future__ import annotations

import warnings
from typing import Literal

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.11/3.12 warn that the stdlib module moves to audioop-lts
    import audioop

from speech.audio import BYTES_PER_SAMPLE

G711_RATE = 8_000
Law = Literal["pcmu", "pcma"]
LAWS: tuple[Law, ...] = ("pcmu", "pcma")


def decode(data: bytes, law: Law) -> bytes:
    """G.711 bytes -> little-endian PCM16 at 8 kHz (two bytes per input byte)."""
    if law == "pcmu":
        return audioop.ulaw2lin(data, BYTES_PER_SAMPLE)
    if law == "pcma":
        return audioop.alaw2lin(data, BYTES_PER_SAMPLE)
    raise ValueError(f"unknown G.711 law {law!r} (expected one of {LAWS})")


def encode(pcm16: bytes, law: Law) -> bytes:
    """Little-endian PCM16 at 8 kHz -> G.711 bytes (a trailing odd byte is dropped)."""
    pcm16 = pcm16[: len(pcm16) - len(pcm16) % BYTES_PER_SAMPLE]
    if law == "pcmu":
        return audioop.lin2ulaw(pcm16, BYTES_PER_SAMPLE)
    if law == "pcma":
        return audioop.lin2alaw(pcm16, BYTES_PER_SAMPLE)
    raise ValueError(f"unknown G.711 law {law!r} (expected one of {LAWS})")
