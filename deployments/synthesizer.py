"""Synthesizer deployment: a streaming call, text + voice in, 24 kHz PCM16 chunks out as they are made."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import AsyncGenerator

from ray import serve

from speech.audio import float_to_pcm16
from speech.models_config import load_models_config, resolve_files
from speech.stt import cuda_available
from speech.tts import PiperBackend, TextToSpeech

log = logging.getLogger("ray.serve")
_DONE = object()


@serve.deployment(name="Synthesizer", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.5})
class Synthesizer:
    def __init__(self, models_path: str) -> None:
        models = load_models_config(models_path)
        base = Path(models_path).parent
        self.backends: dict[str, TextToSpeech] = {}
        for name, spec in models.tts.items():
            files = {voice: resolve_files(f, base_dir=base) for voice, f in spec.voices.items()}
            use_cuda = spec.device == "cuda" or (spec.device == "auto" and cuda_available())
            assert spec.default_voice is not None
            self.backends[name] = PiperBackend(files, spec.default_voice, use_cuda=use_cuda)
        for name, backend in self.backends.items():  # warm every voice up once
            for voice in backend.voices():
                list(backend.synthesize("Ready.", voice, 1.0))
        log.info("Synthesizer ready: %s", {n: b.voices() for n, b in self.backends.items()})

    async def synthesize(self, text: str, model: str, voice: str | None, speed: float) -> AsyncGenerator[bytes, None]:
        backend = self.backends.get(model)
        if backend is None:
            raise ValueError(f"unknown TTS model {model!r}")
        chunks = iter(backend.synthesize(text, voice, speed))
        while True:
            chunk = await asyncio.to_thread(next, chunks, _DONE)
            if chunk is _DONE:
                return
            yield float_to_pcm16(chunk)
