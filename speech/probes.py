"""The tiny probes that say a speech model can serve (common/health.py runs them, off the event loop)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from protocol.pcm import INPUT_RATE
from speech.stt import Transcript
from speech.synthesis import SpeechEngine

PROBE_AUDIO_S = 0.5
PROBE_TEXT = "Hello."


class _Transcribes(Protocol):
    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> Transcript: ...


def probe_transcriber(backend: _Transcribes) -> None:
    """Whisper transcribes half a second of silence (an answer of any words, or none, is an answer)."""
    result = backend.transcribe(np.zeros(int(INPUT_RATE * PROBE_AUDIO_S), dtype=np.float32), None)
    if not isinstance(result, Transcript):
        raise TypeError(f"the STT backend answered {type(result).__name__}, not a Transcript")


def probe_synthesizer(engine: SpeechEngine) -> None:
    """Each loaded TTS model speaks the first chunk of a short word, with its default voice."""
    for model in engine.models():
        chunks = engine.stream(PROBE_TEXT, model, count=False)
        try:
            first = next(iter(chunks), b"")
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not first:
            raise RuntimeError(f"TTS model {model!r} made no audio for {PROBE_TEXT!r}")
