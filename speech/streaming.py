"""Streaming transcription with a confirmed prefix (LocalAgreement-2, as in whisper_streaming).

Each update re-transcribes the audio window since the last trim point, conditioned on the text confirmed
before it. A word is confirmed once two successive hypotheses agree on it; the window is cut after the last
confirmed word once it grows past ``max_window_s``, so the compute per second of speech stays bounded
however long the user talks. ``finish`` transcribes what is left and confirms everything.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from speech.stt import Transcript, Word

BYTES_PER_SECOND = 32_000  # 16 kHz PCM16
HARD_WINDOW_S = 25.0
Transcribe = Callable[[bytes, "str | None"], Awaitable[Transcript]]


@dataclass(frozen=True)
class StreamingConfig:
    update_interval_s: float = 0.5  # re-transcribe after this much new audio
    max_window_s: float = 12.0  # trim the window after the last confirmed word beyond this
    idle_keep_s: float = 1.0  # with nothing pending, older audio than this is dropped
    prompt_chars: int = 200  # confirmed text given to Whisper as the previous text
    edge_tolerance_s: float = 0.25  # a word starting this much before the last confirmed end is a repeat


def _norm(text: str) -> str:
    return re.sub(r"[^\w']+", "", text.lower())


@dataclass
class LocalAgreement:
    """The confirmed-prefix bookkeeping, with word times absolute from the start of the turn."""

    confirmed: list[Word] = field(default_factory=list)
    pending: list[Word] = field(default_factory=list)  # the last hypothesis beyond the confirmed words

    @property
    def confirmed_end(self) -> float:
        return self.confirmed[-1].end if self.confirmed else 0.0

    def _new_words(self, words: list[Word], tolerance: float) -> list[Word]:
        fresh = [w for w in words if w.start >= self.confirmed_end - tolerance and _norm(w.text)]
        # Whisper may repeat the last confirmed words at the start of the window: drop the longest such overlap.
        tail = [_norm(w.text) for w in self.confirmed[-5:]]
        for n in range(min(len(tail), len(fresh)), 0, -1):
            if [_norm(w.text) for w in fresh[:n]] == tail[-n:]:
                return fresh[n:]
        return fresh

    def insert(self, words: list[Word], tolerance: float) -> list[Word]:
        """Take a new hypothesis; confirm (and return) the words it shares with the previous one."""
        fresh = self._new_words(words, tolerance)
        agreed = 0
        for new, old in zip(fresh, self.pending):
            if _norm(new.text) != _norm(old.text):
                break
            agreed += 1
        newly = fresh[:agreed]
        self.confirmed.extend(newly)
        self.pending = fresh[agreed:]
        return newly

    def confirm_all(self, words: list[Word], tolerance: float) -> None:
        self.confirmed.extend(self._new_words(words, tolerance))
        self.pending = []

    @staticmethod
    def text(words: list[Word]) -> str:
        return "".join(w.text for w in words).strip()


@dataclass
class Hypothesis:
    confirmed: str
    pending: str

    @property
    def text(self) -> str:
        return f"{self.confirmed} {self.pending}".strip()


class StreamingTranscriber:
    """Audio of one user turn in, a growing transcript out. Updates never overlap; ``finish`` waits for one."""

    def __init__(self, transcribe: Transcribe, config: StreamingConfig = StreamingConfig()) -> None:
        self._transcribe = transcribe
        self.config = config
        self.agreement = LocalAgreement()
        self._window = bytearray()
        self._window_start_s = 0.0  # turn time of the window's first sample
        self._received_s = 0.0
        self._last_update_s = 0.0
        self._lock = asyncio.Lock()
        self.updates = 0

    @property
    def received_s(self) -> float:
        return self._received_s

    @property
    def window_s(self) -> float:
        return len(self._window) / BYTES_PER_SECOND

    def add(self, pcm: bytes) -> None:
        self._window += pcm
        self._received_s += len(pcm) / BYTES_PER_SECOND

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def last_update_s(self) -> float:
        """Turn audio time covered by the latest update (started or finished)."""
        return self._last_update_s

    def due(self) -> bool:
        return not self._lock.locked() and self._received_s - self._last_update_s >= self.config.update_interval_s

    def hypothesis(self) -> Hypothesis:
        return Hypothesis(LocalAgreement.text(self.agreement.confirmed), LocalAgreement.text(self.agreement.pending))

    def _prompt(self) -> str | None:
        text = LocalAgreement.text(self.agreement.confirmed)
        return text[-self.config.prompt_chars :] if text else None

    async def _run(self) -> tuple[Transcript, float, float]:
        """Transcribe the current window; returns the transcript, the window's start and its length."""
        start, audio = self._window_start_s, bytes(self._window)
        self._last_update_s = self._received_s
        transcript = await self._transcribe(audio, self._prompt())
        return transcript, start, len(audio) / BYTES_PER_SECOND

    @staticmethod
    def _absolute(transcript: Transcript, offset: float) -> list[Word]:
        return [Word(w.text, w.start + offset, w.end + offset, w.probability) for w in transcript.words]

    async def update(self) -> Hypothesis:
        async with self._lock:
            if not self._window:
                return self.hypothesis()
            transcript, start, _ = await self._run()
            self.updates += 1
            self.agreement.insert(self._absolute(transcript, start), self.config.edge_tolerance_s)
            self._trim(nothing_heard=not transcript.words)
            return self.hypothesis()

    async def finish(self, speech_end_s: float | None = None) -> str:
        """Confirm everything and return the settled transcript of the turn so far.

        When the last update already covered all the speech (it started after ``speech_end_s``, the turn
        time where voice activity last ended), its hypothesis is confirmed as is: no further Whisper pass.
        """
        async with self._lock:
            covered = speech_end_s is not None and self._last_update_s >= speech_end_s and self.updates > 0
            if self._window and self._received_s > self._last_update_s and not covered:
                transcript, start, _ = await self._run()
                self.updates += 1
                self.agreement.confirm_all(self._absolute(transcript, start), self.config.edge_tolerance_s)
            else:
                self.agreement.confirmed.extend(self.agreement.pending)
                self.agreement.pending = []
            self._trim(nothing_heard=False)
            return LocalAgreement.text(self.agreement.confirmed)

    def drop_silence(self) -> None:
        """Voice activity says nothing is being said: keep only the last ``idle_keep_s`` of the window."""
        if not self._lock.locked() and not self.agreement.pending:
            self._cut(self._window_start_s + self.window_s - self.config.idle_keep_s)

    def _cut(self, at_s: float) -> None:
        at_s = max(self._window_start_s, min(at_s, self._window_start_s + self.window_s))
        drop = int((at_s - self._window_start_s) * BYTES_PER_SECOND) // 2 * 2
        del self._window[:drop]
        self._window_start_s += drop / BYTES_PER_SECOND

    def _trim(self, nothing_heard: bool) -> None:
        if nothing_heard and not self.agreement.pending:
            # Silence or noise so far: keep only the recent audio (a word may be starting in it).
            self._cut(self._window_start_s + self.window_s - self.config.idle_keep_s)
        elif self.window_s > self.config.max_window_s and self.agreement.confirmed:
            self._cut(self.agreement.confirmed_end)
        if self.window_s > HARD_WINDOW_S:  # nothing confirmed in a very long window: settle it, never exceed Whisper's 30 s
            self.agreement.confirmed.extend(self.agreement.pending)
            self.agreement.pending = []
            self._cut(max(self.agreement.confirmed_end, self._window_start_s + self.window_s - self.config.idle_keep_s))
