"""Health that means something (common/health.py, speech/probes.py, llm/local_model.py): a probe fails when its
model is broken or hangs, and a recent answer spares the model a probe."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from common.clock import VirtualClock
from common.health import HealthProbe, Unhealthy
from llm.local_model import check_probe_answer
from speech.probes import probe_synthesizer, probe_transcriber
from speech.stt import Transcript


class Whisper:
    def __init__(self, answer: object = None, error: Exception | None = None) -> None:
        self.answer, self.error, self.calls = answer, error, 0

    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> Transcript:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.answer  # type: ignore[return-value]


class Voices:
    """A speech engine whose models make ``chunks`` (or raise ``error``)."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks, self.error, self.closed = chunks, error, 0

    def models(self) -> list[str]:
        return ["piper-joe"]

    def stream(self, text: str, model: str, voice: str | None = None, speed: float = 1.0, tone: str | None = None,
               *, count: bool = True):
        if self.error is not None:
            raise self.error

        def chunks():
            try:
                yield from self.chunks
            finally:
                self.closed += 1

        return chunks()


def test_the_stt_probe_passes_on_an_answer_and_fails_on_a_broken_model():
    probe_transcriber(Whisper(Transcript(text="", words=[])))
    with pytest.raises(RuntimeError, match="CUDA"):
        probe_transcriber(Whisper(error=RuntimeError("CUDA error: device lost")))
    with pytest.raises(TypeError, match="not a Transcript"):
        probe_transcriber(Whisper(answer=None))


def test_the_tts_probe_needs_audio_and_closes_the_stream():
    good = Voices([b"\x00\x01" * 100, b"more"])
    probe_synthesizer(good)  # type: ignore[arg-type]
    assert good.closed == 1  # only the first chunk was made
    with pytest.raises(RuntimeError, match="made no audio"):
        probe_synthesizer(Voices([]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="voice"):
        probe_synthesizer(Voices([], error=ValueError("no voice files")))  # type: ignore[arg-type]


def test_the_local_llm_probe_needs_a_chat_completion():
    check_probe_answer({"choices": [{"message": {"role": "assistant", "content": "Hi"}}]})
    for broken in ({}, {"choices": []}, {"error": "model not loaded"}, None):
        with pytest.raises(RuntimeError, match="no chat completion"):
            check_probe_answer(broken)  # type: ignore[arg-type]


async def test_a_broken_model_fails_the_check_naming_the_deployment():
    whisper = Whisper(error=RuntimeError("model.bin is truncated"))
    health = HealthProbe("Transcriber", lambda: asyncio.to_thread(probe_transcriber, whisper))
    with pytest.raises(Unhealthy, match=r"Transcriber: the model failed a probe \(RuntimeError: model.bin is truncated"):
        await health.check()
    whisper.error, whisper.answer = None, Transcript(text="", words=[])  # repaired: the next check probes again
    await health.check()
    assert whisper.calls == 2


async def test_a_hung_model_fails_the_check_in_time_and_is_not_probed_again_while_it_hangs():
    release, finished = threading.Event(), threading.Event()
    started = []

    def hang() -> None:
        started.append(1)
        release.wait(5)
        finished.set()

    health = HealthProbe("Synthesizer", lambda: asyncio.to_thread(hang), timeout_s=0.05)
    for _ in range(3):
        with pytest.raises(Unhealthy, match="Synthesizer: the model did not answer a probe within"):
            await health.check()
    assert len(started) == 1 and health.probes == 1  # the stuck probe is awaited again, not a new one started
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)  # the model thread ends before the test does


async def test_a_recent_answer_or_probe_spares_the_model_a_probe():
    clock = VirtualClock()
    whisper = Whisper(Transcript(text="", words=[]))

    async def probe() -> None:
        probe_transcriber(whisper)

    health = HealthProbe("Transcriber", probe, fresh_s=30, clock=clock)
    await health.check()
    await clock.advance(29)
    await health.check()
    assert whisper.calls == 1  # the probe 29 s ago still counts
    await clock.advance(2)
    health.served()  # a real request was answered
    await clock.advance(29)
    await health.check()
    assert whisper.calls == 1
    await clock.advance(2)
    await health.check()
    assert whisper.calls == 2 and health.probes == 2
