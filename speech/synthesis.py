"""The speech engine: every TTS model of models.yaml loaded once, text in, 24 kHz PCM16 chunks out.

Ray-free, so the Synthesizer deployment, the benchmarks and the tests all drive the same code. It picks the
voice (an explicit voice, or the model's ``voice_tone_map`` for a tone), streams the backend's audio as PCM16
(clipped first) in chunks whose first one is small, and serves fixed phrases from the on-disk TtsCache.

Streams are plain generators: closing one (``close()``, or dropping it) closes the backend's generator at
the chunk it is on, so nothing more is synthesized for a cancelled reply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config_errors import ConfigError
from speech.audio import BYTES_PER_SAMPLE, OUTPUT_RATE, float_to_pcm16, split_pcm
from speech.models_config import ModelsConfig, PiperModel, XttsModel, resolve_files
from speech.tts import PiperBackend, PiperVoiceSettings, TextToSpeech
from speech.tts_cache import TtsCache
from speech.xtts_speakers import xtts_speaker_names

log = logging.getLogger(__name__)

WARM_UP_TEXT = "Ready."


@dataclass
class LoadedModel:
    name: str
    spec: PiperModel | XttsModel
    backend: TextToSpeech
    default_voice: str
    fingerprints: dict[str, str]  # voice -> what of its files and settings shapes its audio


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def _use_cuda(device: str, backend: str) -> bool:
    if device == "cpu":
        return False
    if device == "cuda":
        return True
    if backend == "xtts":
        import torch

        return bool(torch.cuda.is_available())
    import onnxruntime

    from speech.stt import cuda_available

    return cuda_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _ms_bytes(ms: int) -> int:
    return ms * OUTPUT_RATE // 1000 * BYTES_PER_SAMPLE


def cut_pcm(pieces: Iterable[bytes], first_chunk_ms: int, chunk_ms: int) -> Iterator[bytes]:
    """PCM16 chunks of a stream of PCM16 pieces: the first chunk at most ``first_chunk_ms`` long, later ones
    at most ``chunk_ms``. Each piece is cut up as soon as it arrives: nothing waits to fill a chunk."""
    first = True
    for pcm in pieces:
        if first and pcm:
            head = _ms_bytes(first_chunk_ms)
            yield pcm[:head]
            pcm, first = pcm[head:], False
        yield from split_pcm(pcm, _ms_bytes(chunk_ms))


def pcm_chunks(audio: Iterable[np.ndarray], first_chunk_ms: int, chunk_ms: int) -> Iterator[bytes]:
    """A backend's float chunks as PCM16 chunks (see cut_pcm)."""
    return cut_pcm((float_to_pcm16(chunk) for chunk in audio), first_chunk_ms, chunk_ms)


def split_pcm_stream(pcm: bytes, first_chunk_ms: int, chunk_ms: int) -> Iterator[bytes]:
    """Stored PCM16 cut the same way as a live stream."""
    return cut_pcm([pcm], first_chunk_ms, chunk_ms)


class SpeechEngine:
    """All TTS models of a ModelsConfig, loaded once (``only`` limits which), checked and warmed up."""

    def __init__(
        self,
        models: ModelsConfig,
        base_dir: str | Path,
        cache_dir: str | Path | None = None,
        *,
        only: Iterable[str] | None = None,
        warm_up: bool = True,
    ) -> None:
        self.config = models
        self.base_dir = Path(base_dir)
        self.cache = TtsCache(cache_dir) if cache_dir is not None else None
        self._lock = threading.Lock()
        self._stats = {"streams": 0, "streams_completed": 0, "streams_closed_early": 0, "active_streams": 0,
                       "backend_chunks": 0}
        names = list(models.tts) if only is None else list(only)
        self._models: dict[str, LoadedModel] = {}
        for name in names:
            if name not in models.tts:
                raise ConfigError(f"TTS model {name!r} is not in models.yaml (it has {sorted(models.tts)})")
            spec = models.tts[name]
            started = time.perf_counter()
            self._models[name] = self._load_piper(name, spec) if isinstance(spec, PiperModel) else self._load_xtts(name, spec)
            log.info("TTS model %s (%s) loaded in %.1f s: voices %s", name, spec.backend,
                     time.perf_counter() - started, self._models[name].backend.voices()[:8])
        if warm_up:
            self.warm_up()

    # loading

    def _load_piper(self, name: str, spec: PiperModel) -> LoadedModel:
        settings = {}
        fingerprints = {}
        for voice, files in spec.voices.items():
            onnx = resolve_files(files, base_dir=self.base_dir)
            if not onnx.is_file() or not Path(f"{onnx}.json").is_file():
                raise ConfigError(f"TTS model '{name}': field 'voices.{voice}': {onnx} (and {onnx.name}.json "
                                  f"beside it) must exist")
            settings[voice] = PiperVoiceSettings(onnx, files.speaker_id, files.length_scale, files.noise_scale,
                                                 files.noise_w_scale)
            tuning = (files.speaker_id, files.length_scale, files.noise_scale, files.noise_w_scale)
            fingerprints[voice] = f"{_stamp(onnx)}|{_stamp(Path(f'{onnx}.json'))}|{tuning}"
        assert spec.default_voice is not None
        backend = PiperBackend(settings, spec.default_voice, use_cuda=_use_cuda(spec.device, "piper"),
                               cpu_threads=spec.cpu_threads, first_clause_min_chars=spec.first_clause_min_chars,
                               max_parallel_runs=spec.max_parallel_runs)
        return LoadedModel(name, spec, backend, spec.default_voice, fingerprints)

    def _load_xtts(self, name: str, spec: XttsModel) -> LoadedModel:
        files = {}
        for field in ("checkpoint", "config", "tokenizer", "voices"):
            path = Path(getattr(spec, field)).expanduser()
            path = path if path.is_absolute() else self.base_dir / path
            if not path.is_file():  # coqui-tts fails obscurely (or silently, for the tokenizer) on a missing file
                raise ConfigError(f"TTS model '{name}': field '{field}': file not found: {path}")
            files[field] = path
        known = xtts_speaker_names(files["voices"])
        if known is not None:  # read without torch: a bad tone map fails before the model loads
            self._check_speakers(name, spec, known, files["voices"])
        try:
            from speech.xtts import XttsBackend
        except ImportError as exc:
            raise ConfigError(f"TTS model '{name}': backend 'xtts' needs the coqui-tts package "
                              f"(scripts/setup.sh --with-xtts): {exc}") from None
        use_cuda = _use_cuda(spec.device, "xtts")
        backend = XttsBackend(files["checkpoint"], files["config"], files["tokenizer"], files["voices"],
                              language=spec.language, use_cuda=use_cuda, fp16=spec.fp16 and use_cuda,
                              stream_chunk_size=spec.stream_chunk_size, first_chunk_size=spec.first_chunk_size,
                              threads=spec.cpu_threads or None)
        speakers = backend.voices()
        default = self._check_speakers(name, spec, speakers, files["voices"])
        stamp = "|".join(_stamp(files[f]) for f in ("checkpoint", "config", "tokenizer", "voices"))
        fingerprints = {voice: f"{stamp}|{spec.language}" for voice in speakers}
        return LoadedModel(name, spec, backend, default, fingerprints)

    @staticmethod
    def _check_speakers(name: str, spec: XttsModel, speakers: list[str], voices_file: Path) -> str:
        """The default speaker; every tone-map target must be a speaker of the voices file."""
        have = f"{speakers[:20]}{' ...' if len(speakers) > 20 else ''}"
        default = spec.default_voice or speakers[0]
        if default not in speakers:
            raise ConfigError(f"TTS model '{name}': field 'default_voice': {default!r} is not a speaker of "
                              f"{voices_file} (it has {have})")
        for tone, voice in spec.voice_tone_map.items():
            if voice not in speakers:
                raise ConfigError(f"TTS model '{name}': field 'voice_tone_map.{tone}': tone {tone!r} names speaker "
                                  f"{voice!r}, which is not in {voices_file} (it has {have})")
        return default

    def warm_up(self) -> None:
        """One short synthesis per voice (XTTS: its default speaker only), so the first user does not pay for
        lazy initialization. Only the first chunk is made."""
        for loaded in self._models.values():
            voices = loaded.backend.voices() if isinstance(loaded.spec, PiperModel) else [loaded.default_voice]
            for voice in voices:
                stream = self.stream(WARM_UP_TEXT, loaded.name, voice, count=False)
                next(stream, None)
                stream.close()

    # voices

    def models(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> LoadedModel:
        try:
            return self._models[name]
        except KeyError:
            raise ValueError(f"unknown TTS model {name!r} (this synthesizer has {sorted(self._models)})") from None

    def voices(self, model: str) -> list[str]:
        return self.model(model).backend.voices()

    def resolve_voice(self, model: str, voice: str | None = None, tone: str | None = None) -> str:
        """The voice a tone maps to (``voice_tone_map``), else the given voice, else the model's default.
        An unknown tone is no error: it just does not change the voice."""
        loaded = self.model(model)
        if tone is not None and tone in loaded.spec.voice_tone_map:
            return loaded.spec.voice_tone_map[tone]
        if voice is None:
            return loaded.default_voice
        if voice not in loaded.fingerprints:
            raise ValueError(f"unknown voice {voice!r} of TTS model {model!r}")
        return voice

    # synthesis

    def stream(self, text: str, model: str, voice: str | None = None, speed: float = 1.0, tone: str | None = None,
               *, deterministic: bool = False, count: bool = True) -> Iterator[bytes]:
        """24 kHz mono PCM16 chunks of ``text`` as they are synthesized; the first one small."""
        loaded = self.model(model)
        name = self.resolve_voice(model, voice, tone)
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        return self._stream(loaded, text, name, speed * loaded.spec.speed, deterministic, count)

    def _stream(self, loaded: LoadedModel, text: str, voice: str, speed: float, deterministic: bool,
                count: bool) -> Iterator[bytes]:
        if deterministic:
            if not isinstance(loaded.backend, PiperBackend):
                raise ValueError("deterministic synthesis is a Piper option")
            audio = loaded.backend.synthesize(text, voice, speed, deterministic=True)
        else:
            audio = loaded.backend.synthesize(text, voice, speed)
        self._count("streams", "active_streams", on=count)
        completed = False
        try:
            yield from pcm_chunks(self._counted(audio, count), loaded.spec.stream_first_chunk_ms,
                                  loaded.spec.stream_chunk_ms)
            completed = True
        finally:
            close = getattr(audio, "close", None)
            if close is not None:
                close()  # stops the backend at the chunk it is on (XTTS: no more GPT steps)
            self._count("streams_completed" if completed else "streams_closed_early", on=count)
            self._count("active_streams", on=count, by=-1)

    def _counted(self, audio: Iterable[np.ndarray], count: bool) -> Iterator[np.ndarray]:
        for chunk in audio:
            self._count("backend_chunks", on=count)
            yield chunk

    def _count(self, *keys: str, on: bool = True, by: int = 1) -> None:
        if on:
            with self._lock:
                for key in keys:
                    self._stats[key] += by

    def stats(self) -> dict:
        with self._lock:
            return dict(self._stats)

    def render(self, text: str, model: str, voice: str | None = None, speed: float = 1.0, tone: str | None = None) -> bytes:
        return b"".join(self.stream(text, model, voice, speed, tone))

    # the greeting cache

    def cache_key(self, text: str, model: str, voice: str | None = None, tone: str | None = None,
                  speed: float = 1.0) -> str:
        loaded = self.model(model)
        name = self.resolve_voice(model, voice, tone)
        return TtsCache.key(text, model, name, tone, speed, loaded.fingerprints[name])

    def _require_cache(self) -> TtsCache:
        if self.cache is None:
            raise RuntimeError("this SpeechEngine has no cache directory")
        return self.cache

    def render_cached(self, text: str, model: str, voice: str | None = None, tone: str | None = None,
                      speed: float = 1.0) -> bytes:
        """The whole utterance, from the cache, or synthesized once and stored."""
        cache = self._require_cache()
        key = self.cache_key(text, model, voice, tone, speed)
        stored = cache.get(key)
        if stored is not None:
            return stored
        pcm = self.render(text, model, voice, speed, tone)
        cache.put(key, pcm)
        return pcm

    def stream_cached(self, text: str, model: str, voice: str | None = None, speed: float = 1.0,
                      tone: str | None = None) -> Iterator[bytes]:
        """Like ``stream``, served from the cache when the utterance is there; on a miss it streams as it is
        synthesized and stores the utterance once it is complete (a closed stream stores nothing)."""
        cache = self._require_cache()
        key = self.cache_key(text, model, voice, tone, speed)
        spec = self.model(model).spec
        stored = cache.get(key)
        if stored is not None:
            yield from split_pcm_stream(stored, spec.stream_first_chunk_ms, spec.stream_chunk_ms)
            return
        parts = []
        stream = self.stream(text, model, voice, speed, tone)
        try:
            for chunk in stream:
                parts.append(chunk)
                yield chunk
        finally:
            stream.close()
        cache.put(key, b"".join(parts))
