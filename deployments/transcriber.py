"""Transcriber deployment: Whisper behind a stateless call (16 kHz PCM16 + prompt in, words out).

Windows of up to 30 s from every session are batched with ``@serve.batch`` into one Whisper pass (with the
faster-whisper backend; openai-whisper decodes a batch window by window); longer audio takes the long-form
path. Batch size and wait (``Batching``) come in as ``user_config`` (the builder args
``stt_batch_max_size`` / ``stt_batch_wait_s``), so a change is applied live through ``reconfigure``.

The end-of-turn model (Smart Turn v3.2, speech/turn_model.py) runs here too: it is a Whisper-tiny encoder
with a classifier, so it belongs where Whisper runs (the same replica, CPU threads or GPU fraction), its
calls from every session are batched the same way, and no process of its own (about 300 MB for a Ray
actor) is started for a 9 MB model. A session host never runs it on its own event loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from common.health import HealthProbe
from speech.audio import INPUT_RATE, pcm16_to_float
from speech.models_config import load_models_config, resolve_files
from speech.probes import probe_transcriber
from speech.stt import MAX_WINDOW_SECONDS, Transcript, load_stt_backend
from speech.turn_model import SmartTurn, TurnModelMissing

log = logging.getLogger("ray.serve")


class Batching(BaseModel):
    """The Transcriber's ``@serve.batch`` settings, its ``user_config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_max_size: int = Field(default=4, ge=1, le=64)  # windows of different sessions in one Whisper pass (1: off)
    batch_wait_s: float = Field(default=0.002, ge=0.0, le=1.0)  # how long a pass waits to fill a batch


@serve.deployment(name="Transcriber", max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class Transcriber:
    def __init__(self, models_path: str) -> None:
        models = load_models_config(models_path)
        spec = models.stt.models[models.stt.default]
        model_dir = resolve_files(spec, base_dir=Path(models_path).parent)
        self.backend = load_stt_backend(spec, model_dir, cache_dir=Path(models_path).parent / ".cache" / "stt")
        self.reconfigure(Batching().model_dump())  # Serve then calls reconfigure with the user_config
        self.backend.warm_up()  # so the first user does not pay for it
        self.turn_model: SmartTurn | None = None
        try:
            self.turn_model = SmartTurn(threads=spec.cpu_threads or None)
            self.turn_model.predict(np.zeros(INPUT_RATE, dtype=np.float32))  # warm-up
        except TurnModelMissing as exc:
            log.warning("%s", exc)
        self.health = HealthProbe("Transcriber", lambda: asyncio.to_thread(probe_transcriber, self.backend))
        log.info("Transcriber ready: %s on %s", models.stt.default, self.backend.device)

    async def check_health(self) -> None:
        """Whisper answered a request or a probe lately (common/health.py); Serve replaces the replica if not."""
        await self.health.check()

    def reconfigure(self, config: dict[str, Any]) -> None:
        batching = Batching.model_validate(config or {})
        self._window_batch.set_max_batch_size(batching.batch_max_size)
        self._window_batch.set_batch_wait_timeout_s(batching.batch_wait_s)

    async def transcribe(self, pcm16: bytes, prompt: str | None = None) -> Transcript:
        audio = pcm16_to_float(pcm16)
        if len(audio) > MAX_WINDOW_SECONDS * INPUT_RATE:
            result = await asyncio.to_thread(self.backend.transcribe, audio, prompt)
        else:
            result = await self._window_batch((audio, prompt))
        self.health.served()
        return result

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.002)
    async def _window_batch(self, items: list[tuple[np.ndarray, str | None]]) -> list[Transcript]:
        return await asyncio.to_thread(self.backend.transcribe_batch, items)

    async def end_of_turn(self, pcm16: bytes) -> float:
        """The probability that the user's turn is complete, for audio ending where their speech ended."""
        if self.turn_model is None:
            raise TurnModelMissing("no end-of-turn model on this Transcriber (pipecat-ai is not installed)")
        return await self._turn_batch(pcm16_to_float(pcm16))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def _turn_batch(self, audios: list[np.ndarray]) -> list[float]:
        assert self.turn_model is not None
        return await asyncio.to_thread(self.turn_model.predict_batch, audios)
