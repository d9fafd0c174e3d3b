"""G.711, the telephone network's codecs: mu-law (PCMU, North America and Japan) and A-law (PCMA, elsewhere),
8 kHz, one byte per sample. The conversion is CPython's C ``audioop`` (the maintained ``audioop-lts`` port from
Python 3.13 on, which has the same API); resampling to the pipeline's rates is ``speech.audio.PcmResampler``.
``G711Decoder`` / ``G711Encoder`` convert one stream chunk by chunk (8 kHz G.711 <-> PCM16 at 16 or 24 kHz);
``stream_decoder`` / ``stream_encoder`` pick the converter for a transport's audio format."""

from __future__ import annotations

import warnings
from typing import Literal, Protocol

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.11/3.12 warn that the stdlib module moves to audioop-lts
    import audioop

from speech.audio import BYTES_PER_SAMPLE, PcmResampler

G711_RATE = 8_000
# Narrowband speech upsampled for the Listener needs no steep filter, but it needs to arrive: soxr's "HQ" stream
# hands 8 kHz audio on in blocks of ~0.1 s (a caller's word reached the VAD 83 ms late on average, up to 132 ms),
# its cubic "QQ" after each 20 ms frame (11 ms, at most 20); Whisper heard the same words either way
# (docs/benchmarks.md, the phone's barge-in).
DECODE_QUALITY = "QQ"
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


AudioFormat = Literal["pcm16", "pcmu", "pcma"]  # PCM16 at the transport's own rate, or G.711 at 8 kHz


class Convert(Protocol):
    """One stream's converter: chunks in order, ``flush`` at its end."""

    def __call__(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class G711Decoder:
    """A stream of G.711 chunks as PCM16 at ``to_rate`` (the resampler keeps its state across chunks)."""

    def __init__(self, law: Law, to_rate: int) -> None:
        decode(b"", law)  # an unknown law fails here, not at the first chunk
        self.law = law
        self._resample = PcmResampler(G711_RATE, to_rate, DECODE_QUALITY)

    def __call__(self, data: bytes) -> bytes:
        return self._resample(decode(data, self.law)) if data else b""

    def flush(self) -> bytes:
        return self._resample.flush()


class G711Encoder:
    """A stream of PCM16 chunks at ``from_rate`` as G.711 (8 kHz, one byte a sample)."""

    def __init__(self, law: Law, from_rate: int) -> None:
        encode(b"", law)
        self.law = law
        self._resample = PcmResampler(from_rate, G711_RATE)

    def __call__(self, pcm16: bytes) -> bytes:
        return encode(self._resample(pcm16), self.law) if pcm16 else b""

    def flush(self) -> bytes:
        """The last samples of the stream (the resampler holds up to a block): send them at the stream's end."""
        return encode(self._resample.flush(), self.law)


def stream_decoder(audio_format: AudioFormat, *, pcm_rate: int, to_rate: int) -> Convert:
    """One stream's converter from ``audio_format`` (PCM16 at ``pcm_rate``, or G.711) to PCM16 at ``to_rate``."""
    if audio_format == "pcm16":
        return PcmResampler(pcm_rate, to_rate)
    return G711Decoder(audio_format, to_rate)


def stream_encoder(audio_format: AudioFormat, *, from_rate: int, pcm_rate: int) -> Convert:
    """One stream's converter from PCM16 at ``from_rate`` to ``audio_format`` (PCM16 at ``pcm_rate``, or G.711)."""
    if audio_format == "pcm16":
        return PcmResampler(from_rate, pcm_rate)
    return G711Encoder(audio_format, from_rate)
