"""Text to speech backends: text + voice + speed in, 24 kHz float32 chunks out as they are made.

Piper lives here; XTTS in speech/xtts.py (imported only when a model uses it, so Piper-only setups need no
torch). speech/synthesis.py turns either into PCM16 chunks.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from speech.audio import OUTPUT_RATE, resample
from speech.segmenter import first_clause_end


class TextToSpeech(Protocol):
    default_voice: str

    def voices(self) -> list[str]: ...

    def synthesize(self, text: str, voice: str | None, speed: float) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class PiperVoiceSettings:
    """A named Piper voice: an ONNX file and how to speak with it (None = the file's own setting)."""

    model: Path
    speaker_id: int | None = None
    length_scale: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None


# espeak-ng (Piper's phonemizer) keeps global state: one phonemization at a time per process. It takes well
# under a millisecond; the ONNX inference that follows runs outside the lock.
_ESPEAK_LOCK = threading.Lock()


def split_first_clause(text: str, min_chars: int) -> list[str]:
    """The text up to its first clause break at or after ``min_chars`` characters, then the rest: a long
    sentence's first audio then waits only for its first clause. A short tail is not split off."""
    end = first_clause_end(text, min_chars) if min_chars > 0 else None
    if end is None:
        return [text]
    head, tail = text[:end].strip(), text[end:].strip()
    return [head, tail] if len(tail) >= 8 else [text]


class RunGate:
    """At most ``slots`` inferences at once, and a stream's first chunk goes before any later one: later chunks
    only need to be ready before the audio ahead of them has played (Piper makes a second of speech in ~50 ms),
    while a first chunk is latency the listener hears. Without it, a new reply's first words wait behind the
    long sentences of replies already playing."""

    def __init__(self, slots: int) -> None:
        self._cond = threading.Condition()
        self._free = max(1, slots)
        self._first_waiting = 0

    @contextmanager
    def slot(self, first: bool) -> Iterator[None]:
        with self._cond:
            self._first_waiting += first
            try:
                self._cond.wait_for(lambda: self._free > 0 and (first or self._first_waiting == 0))
            finally:
                self._first_waiting -= first
            self._free -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()


class PiperBackend:
    """Piper (ONNX). Each ONNX file is loaded once, however many voices use it; output is resampled to 24 kHz
    with soxr, one chunk per sentence (a long first sentence: its first clause, then the rest)."""

    def __init__(
        self,
        voices: Mapping[str, Path | PiperVoiceSettings],
        default_voice: str,
        use_cuda: bool = False,
        cpu_threads: int = 1,
        first_clause_min_chars: int = 0,
        max_parallel_runs: int = 0,
    ) -> None:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        self._settings = {name: v if isinstance(v, PiperVoiceSettings) else PiperVoiceSettings(Path(v))
                          for name, v in voices.items()}
        if default_voice not in self._settings:
            raise KeyError(f"default Piper voice {default_voice!r} is not among {sorted(self._settings)}")
        self.default_voice = default_voice
        self.first_clause_min_chars = first_clause_min_chars
        self._gate = RunGate(max_parallel_runs or os.cpu_count() or 1)
        options = onnxruntime.SessionOptions()
        # One thread per synthesis: on a small CPU, parallel streams beat one stream on all cores (measured:
        # 55 ms instead of 100 ms for a short sentence on 2 busy cores).
        options.intra_op_num_threads = cpu_threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        self._files: dict[Path, PiperVoice] = {}
        for settings in self._settings.values():
            if settings.model in self._files:
                continue
            config = json.loads(Path(f"{settings.model}.json").read_text(encoding="utf-8"))
            session = onnxruntime.InferenceSession(str(settings.model), sess_options=options, providers=providers)
            self._files[settings.model] = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        for name, settings in self._settings.items():
            speakers = self._files[settings.model].config.num_speakers
            if settings.speaker_id is not None and settings.speaker_id >= speakers:
                raise ValueError(f"Piper voice {name!r}: speaker_id {settings.speaker_id} but {settings.model.name} "
                                 f"has {speakers} speaker(s)")

    def voices(self) -> list[str]:
        return list(self._settings)

    def settings(self, voice: str) -> PiperVoiceSettings:
        return self._settings[voice]

    def synthesize(self, text: str, voice: str | None, speed: float, deterministic: bool = False) -> Iterator[np.ndarray]:
        """``deterministic`` turns Piper's sampling noise off: the same text gives the same samples (test
        fixtures); otherwise every rendition differs a little, as the voice was trained to sound."""
        from piper import SynthesisConfig

        name = voice or self.default_voice
        if name not in self._settings:
            raise KeyError(f"unknown Piper voice {name!r} (have {sorted(self._settings)})")
        settings = self._settings[name]
        piper_voice = self._files[settings.model]
        length_scale = settings.length_scale if settings.length_scale is not None else piper_voice.config.length_scale
        config = SynthesisConfig(
            speaker_id=settings.speaker_id,
            length_scale=length_scale / speed,
            noise_scale=0.0 if deterministic else settings.noise_scale,
            noise_w_scale=0.0 if deterministic else settings.noise_w_scale,
        )
        rate = piper_voice.config.sample_rate
        first = True
        for part in split_first_clause(text, self.first_clause_min_chars):
            with _ESPEAK_LOCK:
                sentences = piper_voice.phonemize(part)
            for phonemes in sentences:
                if not phonemes:
                    continue
                with self._gate.slot(first):
                    audio = piper_voice.phoneme_ids_to_audio(piper_voice.phonemes_to_ids(phonemes), config)
                first = False
                audio = np.asarray(audio[0] if isinstance(audio, tuple) else audio, dtype=np.float32).reshape(-1)
                peak = float(np.max(np.abs(audio))) if audio.size else 0.0
                if peak > 1e-8:  # Piper's own loudness normalization (its synthesize() does the same)
                    audio = audio / peak
                yield resample(audio, rate, OUTPUT_RATE)
