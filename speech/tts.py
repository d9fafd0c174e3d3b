"""Text to speech backends: text + voice + speed in, 24 kHz float32 chunks out (one per sentence)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from speech.audio import OUTPUT_RATE, resample


class TextToSpeech(Protocol):
    def voices(self) -> list[str]: ...

    def synthesize(self, text: str, voice: str | None, speed: float) -> Iterator[np.ndarray]: ...


class PiperBackend:
    """Piper (ONNX). Every voice of the model is loaded once; output is resampled to 24 kHz with soxr."""

    def __init__(self, voice_files: dict[str, Path], default_voice: str, use_cuda: bool = False) -> None:
        from piper import PiperVoice

        self._voices = {name: PiperVoice.load(str(path), use_cuda=use_cuda) for name, path in voice_files.items()}
        self.default_voice = default_voice

    def voices(self) -> list[str]:
        return list(self._voices)

    def synthesize(self, text: str, voice: str | None, speed: float, deterministic: bool = False) -> Iterator[np.ndarray]:
        """``deterministic`` turns Piper's sampling noise off: the same text gives the same samples (test
        fixtures); otherwise every rendition differs a little, as the voice was trained to sound."""
        from piper import SynthesisConfig

        name = voice or self.default_voice
        if name not in self._voices:
            raise KeyError(f"unknown Piper voice {name!r} (have {sorted(self._voices)})")
        piper_voice = self._voices[name]
        config = SynthesisConfig(length_scale=1.0 / speed)
        if deterministic:
            config.noise_scale, config.noise_w_scale = 0.0, 0.0
        for chunk in piper_voice.synthesize(text, config):
            yield resample(chunk.audio_float_array, chunk.sample_rate, OUTPUT_RATE)
