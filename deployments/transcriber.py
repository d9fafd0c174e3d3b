"""Transcriber deployment: Whisper behind a stateless call (16 kHz PCM16 + prompt in, words out).

Windows of up to 30 s from every session are batched with ``@serve.batch`` into one Whisper pass (with the
faster-whisper backend; openai-whisper decodes a batch window by window); longer audio takes the long-form
path. Batch size and wait come from models.yaml and can be changed
live through ``user_config`` (``batch_max_size``, ``batch_wait_s``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from speech.audio import pcm16_to_float
from speech.models_config import load_models_config, resolve_files
from speech.stt import MAX_WINDOW_SECONDS, Transcript, load_stt_backend

log = logging.getLogger("ray.serve")


@serve.deployment(name="Transcriber", max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class Transcriber:
    def __init__(self, models_path: str) -> None:
        models = load_models_config(models_path)
        spec = models.stt.models[models.stt.default]
        model_dir = resolve_files(spec, base_dir=Path(models_path).parent)
        self.backend = load_stt_backend(spec, model_dir, cache_dir=Path(models_path).parent / ".cache" / "stt")
        self.reconfigure({"batch_max_size": spec.batch_max_size, "batch_wait_s": spec.batch_wait_s})
        self.backend.warm_up()  # so the first user does not pay for it
        log.info("Transcriber ready: %s on %s", models.stt.default, self.backend.device)

    def reconfigure(self, config: dict[str, Any]) -> None:
        if "batch_max_size" in config:
            self._window_batch.set_max_batch_size(int(config["batch_max_size"]))
        if "batch_wait_s" in config:
            self._window_batch.set_batch_wait_timeout_s(float(config["batch_wait_s"]))

    async def transcribe(self, pcm16: bytes, prompt: str | None = None) -> Transcript:
        audio = pcm16_to_float(pcm16)
        if len(audio) > MAX_WINDOW_SECONDS * 16_000:
            return await asyncio.to_thread(self.backend.transcribe, audio, prompt)
        return await self._window_batch((audio, prompt))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.002)
    async def _window_batch(self, items: list[tuple[np.ndarray, str | None]]) -> list[Transcript]:
        return await asyncio.to_thread(self.backend.transcribe_batch, items)
