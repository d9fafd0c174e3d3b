"""PCM helpers: int16 <-> float conversion (with clipping), resampling with soxr, WAV files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

from protocol.pcm import BYTES_PER_SAMPLE as BYTES_PER_SAMPLE
from protocol.pcm import INPUT_RATE as INPUT_RATE
from protocol.pcm import OUTPUT_RATE as OUTPUT_RATE


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] to little-endian int16 bytes. Clips first: overshoot must not wrap around."""
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate or audio.size == 0:
        return np.asarray(audio, dtype=np.float32)
    return soxr.resample(np.asarray(audio, dtype=np.float32), from_rate, to_rate, quality="HQ").astype(np.float32)


def dbfs(audio: np.ndarray) -> float:
    """RMS level of float audio in dB below full scale (-inf-safe: silence is -120)."""
    if len(audio) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return max(20.0 * np.log10(rms), -120.0) if rms > 0 else -120.0


def silence_pcm16(seconds: float, rate: int = OUTPUT_RATE) -> bytes:
    return b"\x00\x00" * int(round(max(seconds, 0.0) * rate))


def pcm16_seconds(pcm: bytes | int, rate: int) -> float:
    n = pcm if isinstance(pcm, int) else len(pcm)
    return n / (BYTES_PER_SAMPLE * rate)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV (any rate, mono or multi-channel averaged to mono) as float32."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported (sample width {wav.getsampwidth()})")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data, rate


def write_wav(path: str | Path, pcm16: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(BYTES_PER_SAMPLE)
        wav.setframerate(rate)
        wav.writeframes(pcm16)


def split_pcm(pcm: bytes, max_bytes: int) -> list[bytes]:
    """Cut PCM into frames of at most ``max_bytes`` (rounded down to whole samples)."""
    step = max(BYTES_PER_SAMPLE, max_bytes - max_bytes % BYTES_PER_SAMPLE)
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


class PcmResampler:
    """A stream of PCM16 chunks resampled chunk by chunk (soxr keeps the filter state between chunks, so
    chunk edges add no clicks): a transport whose clients send 24 kHz audio feeds Whisper 16 kHz."""

    def __init__(self, from_rate: int, to_rate: int, quality: str = "HQ") -> None:
        self._rates = (from_rate, to_rate)
        self._quality = quality  # soxr's: "HQ" holds audio back in blocks of ~0.1 s, "QQ" (cubic) hands each chunk on
        self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        from_rate, to_rate = self._rates
        return soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32", quality=self._quality) if from_rate != to_rate else None

    def __call__(self, pcm: bytes) -> bytes:
        if self._stream is None or not pcm:
            return pcm
        return float_to_pcm16(self._stream.resample_chunk(pcm16_to_float(pcm)))

    def flush(self) -> bytes:
        """The end of the stream: the samples soxr still holds (it works in blocks of tens of milliseconds);
        the next chunk starts a new stream."""
        if self._stream is None:
            return b""
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream = self._new_stream()
        return float_to_pcm16(tail)
