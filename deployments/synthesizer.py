"""Synthesizer deployment: a streaming call, text + voice + tone in, 24 kHz PCM16 chunks out as they are made.

Models in replicas: every replica loads ALL TTS models of models.yaml once, at start (all voices of a model
share its loaded weights), warms them up and pre-renders the greetings; it does not use @serve.multiplexed.
Why:
- A tone switch happens mid-reply (one sentence warm, the next excited) and a reply may mix two models
  (character and narrator). With every model resident, switching is a dictionary lookup; with an LRU of
  multiplexed models a miss would load an XTTS model (seconds) in the middle of a sentence.
- Multiplexing routes each request by one model id to a replica that has it. That pays off when there are far
  more models than fit in one replica (hundreds of per-customer fine-tunes). models.yaml is a short, static
  registry known at deploy time (Piper voices of ~60 MB; an XTTS-v2 model ~2 GB in fp16, its voices are
  speaker latents of a few KB), so every replica holding everything keeps routing trivial and replicas
  interchangeable: any replica can serve any sentence, which is also what lets a lost replica's call be
  retried anywhere.
- Memory is bounded by configuration instead of an LRU: if the registry outgrows a replica, deploy a second
  Synthesizer with its own models.yaml (a model group per deployment) and give its replicas their own
  num_gpus share (synthesizer.num_gpus, device per model).

Model work runs in a worker-thread pool, never on the replica's event loop. A caller's ``stream.cancel()``
(barge-in) cancels this generator: the chunk being synthesized finishes in its thread and the backend's
generator is closed right after it, so nothing more is synthesized (XTTS: no further GPT steps).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ray import serve

from common.config_errors import ConfigError
from common.health import HealthProbe
from common.threads import iterate_in_thread
from speech.models_config import load_models_config
from speech.probes import probe_synthesizer
from speech.synthesis import SpeechEngine

log = logging.getLogger("ray.serve")
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "tts"
PRERENDER_FIELDS = {"text", "model", "voice", "tone", "speed"}


@serve.deployment(name="Synthesizer", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.5})
class Synthesizer:
    def __init__(self, models_path: str, prerender: list[dict] | None = None, cache_dir: str | None = None) -> None:
        models = load_models_config(models_path)
        self.engine = SpeechEngine(models, base_dir=Path(models_path).parent,
                                   cache_dir=Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR)
        self._pool = ThreadPoolExecutor(models.synthesizer.worker_threads, thread_name_prefix="tts")
        for index, item in enumerate(prerender or []):
            self._prerender(index, item)
        self.health = HealthProbe("Synthesizer", lambda: asyncio.get_running_loop().run_in_executor(
            self._pool, probe_synthesizer, self.engine))
        log.info("Synthesizer ready: %s; cache %s", {m: self.engine.voices(m) for m in self.engine.models()},
                 self.engine.cache.stats() if self.engine.cache else None)

    def _prerender(self, index: int, item: dict[str, Any]) -> None:
        unknown = set(item) - PRERENDER_FIELDS
        if unknown or "text" not in item or "model" not in item:
            raise ConfigError(f"prerender item {index}: needs 'text' and 'model', may have {sorted(PRERENDER_FIELDS)}"
                              f"{f'; unknown {sorted(unknown)}' if unknown else ''}")
        try:
            self.engine.render_cached(item["text"], item["model"], item.get("voice"), item.get("tone"),
                                      float(item.get("speed", 1.0)))
        except ValueError as exc:
            raise ConfigError(f"prerender item {index} ({item['text'][:40]!r}): {exc}") from None

    async def prerender(self, items: list[dict[str, Any]]) -> int:
        """Render greetings into the cache (an agents update added or changed them), in the worker pool; a bad
        item is logged and skipped, the rest are rendered. Returns how many were rendered."""
        done = 0
        for index, item in enumerate(items):
            try:
                await asyncio.get_running_loop().run_in_executor(self._pool, self._prerender, index, item)
                done += 1
            except ConfigError as exc:
                log.warning("greeting not rendered: %s", exc)
        return done

    async def synthesize(
        self,
        text: str,
        model: str,
        voice: str | None = None,
        speed: float = 1.0,
        tone: str | None = None,
        cache: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        """Stream 24 kHz PCM16 chunks of ``text``. ``cache=True`` serves a pre-rendered utterance from the
        cache (a miss is synthesized, streamed and stored): for greetings and other fixed phrases."""
        # Checked here, so a bad model or voice fails the call before any audio.
        self.engine.resolve_voice(model, voice, tone)
        if cache:
            chunks = self.engine.stream_cached(text, model, voice, speed, tone)
        else:
            chunks = self.engine.stream(text, model, voice, speed, tone)
        # Chunk by chunk in the pool; cancelled, the chunk under way finishes and the generator is closed after it.
        async with aclosing(iterate_in_thread(chunks, self._pool)) as pieces:
            async for chunk in pieces:
                self.health.served()
                yield chunk

    async def check_health(self) -> None:
        """The TTS models spoke lately or speak a probe now (common/health.py); Serve replaces the replica if not."""
        await self.health.check()

    def cache_stats(self) -> dict:
        """Cache hits/misses/writes and stream counters of this replica."""
        stats = self.engine.cache.stats() if self.engine.cache else {}
        return {**stats, **self.engine.stats()}
