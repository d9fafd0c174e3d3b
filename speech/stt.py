"""Speech to text backends behind one small interface: float32 16 kHz audio + prompt in, words out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from speech.models_config import SttModel


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    audio_seconds: float = 0.0


class SpeechToText(Protocol):
    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> Transcript: ...


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # no CUDA runtime at all
        return False


class FasterWhisperBackend:
    """faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA unless the config says otherwise."""

    def __init__(self, model_dir: Path, spec: SttModel) -> None:
        from faster_whisper import WhisperModel

        device = spec.device if spec.device != "auto" else ("cuda" if cuda_available() else "cpu")
        compute_type = spec.compute_type if spec.compute_type != "auto" else ("float16" if device == "cuda" else "int8")
        threads = spec.cpu_threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        self.device = device
        self.spec = spec
        self.model = WhisperModel(str(model_dir), device=device, compute_type=compute_type, cpu_threads=threads)

    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> Transcript:
        segments, _info = self.model.transcribe(
            np.asarray(audio, dtype=np.float32),
            language=self.spec.language,
            beam_size=self.spec.beam_size,
            initial_prompt=prompt or None,
            condition_on_previous_text=False,
            word_timestamps=True,
            vad_filter=True,  # Silero VAD drops silence and noise: no "Thank you for watching" on an empty turn
        )
        words: list[Word] = []
        texts: list[str] = []
        for segment in segments:
            texts.append(segment.text.strip())
            for w in segment.words or []:
                words.append(Word(text=w.word, start=float(w.start), end=float(w.end), probability=float(w.probability)))
        return Transcript(text=" ".join(t for t in texts if t), words=words, audio_seconds=len(audio) / 16_000)
