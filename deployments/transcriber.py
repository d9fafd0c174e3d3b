"""Transcriber deployment: Whisper behind a stateless call (16 kHz PCM16 + prompt in, transcript out)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
from ray import serve

from speech.audio import pcm16_to_float
from speech.models_config import load_models_config, resolve_files
from speech.stt import FasterWhisperBackend, Transcript

log = logging.getLogger("ray.serve")


@serve.deployment(name="Transcriber", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.5})
class Transcriber:
    def __init__(self, models_path: str) -> None:
        models = load_models_config(models_path)
        spec = models.stt.models[models.stt.default]
        model_dir = resolve_files(spec, base_dir=Path(models_path).parent)
        self.backend = FasterWhisperBackend(model_dir, spec)
        # One pass on a short tone warms CTranslate2 up, so the first user does not pay for it.
        tone = 0.1 * np.sin(np.linspace(0, 2 * np.pi * 220, 16_000)).astype(np.float32)
        self.backend.transcribe(tone)
        log.info("Transcriber ready: %s on %s", models.stt.default, self.backend.device)

    async def transcribe(self, pcm16: bytes, prompt: str | None = None) -> Transcript:
        audio = pcm16_to_float(pcm16)
        return await asyncio.to_thread(self.backend.transcribe, audio, prompt)
