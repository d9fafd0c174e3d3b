"""The real Listener and the real Whisper, paced on a virtual clock: which windows Whisper sees, decided by
the test instead of by the machine's load.

In the running graph the windows of a streamed turn depend on timing: how much audio arrives while a
Whisper pass runs decides where the next window ends. A test over websockets samples one timing per run,
so a bug that needs an unlucky timing shows up once in many runs. Here time is counted in audio frames:
a pass "takes" a given number of frames (drawn from a seeded generator), the frames that arrive meanwhile
go into the next window, and the run is the same on every machine. Everything else is the real thing: the
session's Listener (VAD, streaming transcription, local agreement, loop repair) and Whisper in-process.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agents.listener import Listener
from agents.mode import SessionMode
from agents.turns import TurnConfig
from agents.user_turn import ListenerEvent, TranscriptUpdate, TurnEnded
from speech.audio import pcm16_to_float
from speech.stt import SpeechToText, Transcript
from speech.turn_model import SmartTurn


@dataclass(frozen=True)
class Pacing:
    """Frames of ``frame_bytes``; each Whisper pass lasts ``latency_frames`` frames plus up to ``jitter_frames``."""

    frame_bytes: int
    latency_frames: int
    jitter_frames: int = 0
    seed: int = 0

    def __str__(self) -> str:
        return f"{self.frame_bytes} B frames, passes of {self.latency_frames}+{self.jitter_frames} frames (seed {self.seed})"


@dataclass
class _Clock:
    frame: int = 0
    computing: int = 0  # passes whose Whisper call has not returned yet
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    finished: bool = False

    async def wait_until(self, frame: int) -> None:
        if self.finished or frame <= self.frame:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((frame, future))
        await future

    def advance(self) -> None:
        self.frame += 1
        self._release()

    def finish(self) -> None:
        self.finished = True
        self._release()

    def _release(self) -> None:
        for item in [w for w in self.waiters if self.finished or w[0] <= self.frame]:
            self.waiters.remove(item)
            item[1].set_result(None)

    async def quiesce(self) -> None:
        """Until every pass released so far has been taken in by the listener."""
        while self.computing:
            await asyncio.sleep(0.001)
        for _ in range(50):
            await asyncio.sleep(0)


@dataclass
class PacedResult:
    final: str
    partials: list[str]
    passes: int
    turn_ended_at_frame: int | None = None  # call mode: the frame after which the listener ended the turn
    turns: int = 0  # call mode: how many turns it ended


async def listen_paced(stt: SpeechToText, pcm: bytes, pacing: Pacing, *, call_mode: bool = False,
                       config: TurnConfig | None = None, turn_model: SmartTurn | None = None,
                       on_frame: Callable[[int], None] | None = None) -> PacedResult:
    """Stream ``pcm`` through a Listener at ``pacing``; chat mode ends the turn after the last frame (as
    ``create_response`` does), call mode lets the listener end it (with ``turn_model`` as its end-of-turn
    model, answering within the same pass latency). Returns the settled transcript of the first turn."""
    clock = _Clock()
    rng = random.Random(pacing.seed)
    partials: list[str] = []
    passes = 0
    ended: list[int] = []

    async def transcribe(audio: bytes, prompt: str | None) -> Transcript:
        nonlocal passes
        passes += 1
        due = clock.frame + pacing.latency_frames + (rng.randint(0, pacing.jitter_frames) if pacing.jitter_frames else 0)
        clock.computing += 1
        try:
            result = await asyncio.to_thread(stt.transcribe_batch, [(pcm16_to_float(audio).astype(np.float32), prompt)])
        finally:
            clock.computing -= 1
        await clock.wait_until(due)
        return result[0]

    async def predict_end(audio: bytes) -> float:
        assert turn_model is not None
        due = clock.frame + pacing.latency_frames
        clock.computing += 1
        try:
            complete = await asyncio.to_thread(turn_model.predict, pcm16_to_float(audio))
        finally:
            clock.computing -= 1
        await clock.wait_until(due)
        return complete

    async def on_event(event: ListenerEvent) -> None:
        if isinstance(event, TranscriptUpdate) and not event.final:
            partials.append(event.text)
        elif isinstance(event, TurnEnded):
            ended.append(clock.frame)
            finals.append(event.turn)

    finals: list = []
    listener = Listener(transcribe=transcribe, on_event=on_event, mode=SessionMode("call" if call_mode else "chat"), config=config or TurnConfig(),
                        predict_end=predict_end if turn_model is not None else None)
    try:
        for index, offset in enumerate(range(0, len(pcm), pacing.frame_bytes)):
            await listener.feed(pcm[offset : offset + pacing.frame_bytes])
            clock.advance()
            await clock.quiesce()
            if on_frame is not None:
                on_frame(index)
        clock.finish()
        turn = finals[0] if finals else listener.take_turn()
        final = await turn.settle()
        await clock.quiesce()
    finally:
        clock.finish()
        await listener.close()
    return PacedResult(final, partials, passes, ended[0] if ended else None, len(ended))
