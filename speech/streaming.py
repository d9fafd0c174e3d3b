"""Streaming transcription with a confirmed prefix (LocalAgreement-2, as in whisper_streaming).

Each update re-transcribes the audio window since the last trim point, conditioned on the text confirmed
before it. A word is confirmed once two successive hypotheses agree on it; the window is cut after the last
confirmed word once it grows past ``max_window_s``, so the compute per second of speech stays bounded
however long the user talks. ``finish`` transcribes what is left and confirms everything.

Every pass is checked for a Whisper repetition loop (speech.repetition): a looping pass is run again
without the prompt, and if that loops too the repeated run is kept once, so no timing of the windows can
put "an an an an" in the transcript.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher

from protocol.pcm import BYTES_PER_SAMPLE, INPUT_BYTES_PER_SECOND
from speech.repetition import drop_repeats, has_loop, normalize, repeated_runs
from speech.stt import Transcript, Word

log = logging.getLogger("voi.streaming")

HARD_WINDOW_S = 25.0
Transcribe = Callable[[bytes, "str | None"], Awaitable[Transcript]]


@dataclass(frozen=True)
class StreamingConfig:
    update_interval_s: float = 0.5  # re-transcribe after this much new audio
    max_window_s: float = 12.0  # trim the window after the last confirmed word beyond this
    idle_keep_s: float = 1.0  # with nothing pending, older audio than this is dropped
    prompt_chars: int = 200  # confirmed text given to Whisper as the previous text



@dataclass
class LocalAgreement:
    """The confirmed-prefix bookkeeping, with word times absolute from the start of the turn.

    Every hypothesis covers the whole current window, so it is lined up with the words already confirmed
    inside that window by their text (a sequence match), not by Whisper's word times, which stretch at
    window edges. Words confirmed before the window are only guarded against being heard twice.
    """

    confirmed: list[Word] = field(default_factory=list)
    pending: list[Word] = field(default_factory=list)  # the last hypothesis beyond the confirmed words
    in_window: int = 0  # how many of the last confirmed words lie inside the current window
    window_hypothesis: list[Word] = field(default_factory=list)  # the latest hypothesis of the whole window

    @property
    def confirmed_end(self) -> float:
        return self.confirmed[-1].end if self.confirmed else 0.0

    def _new_words(self, words: list[Word]) -> list[Word]:
        words = [w for w in words if normalize(w.text)]
        heard = [normalize(w.text) for w in words]
        if self.in_window:
            known = [normalize(w.text) for w in self.confirmed[-self.in_window :]]
            blocks = [b for b in SequenceMatcher(a=known, b=heard, autojunk=False).get_matching_blocks() if b.size]
            self._refresh(blocks, words)
            if blocks:
                return words[blocks[-1].b + blocks[-1].size :]
            return words[len(known) :] if len(words) > len(known) else []
        return self._without_repeat(words)

    def _refresh(self, blocks: list, words: list[Word]) -> None:
        """Confirmed words take the punctuation and case of the newer pass that heard them again: a word
        confirmed at the end of a window often carries the period Whisper puts where the audio stopped, and
        the newer pass, which heard what followed, writes "coins, and" instead of "coins. And"."""
        first = len(self.confirmed) - self.in_window
        for block in blocks:
            for k in range(block.size):
                old, new = self.confirmed[first + block.a + k], words[block.b + k]
                if old.text != new.text:
                    self.confirmed[first + block.a + k] = replace(old, text=new.text)

    def _without_repeat(self, words: list[Word]) -> list[Word]:
        """A window starts right after confirmed words: Whisper may still repeat the last few of them."""
        words = [w for w in words if normalize(w.text)]
        heard = [normalize(w.text) for w in words]
        tail = [normalize(w.text) for w in self.confirmed[len(self.confirmed) - self.in_window - 5 : len(self.confirmed) - self.in_window]]
        for n in range(min(len(tail), len(words)), 0, -1):
            if heard[:n] == tail[-n:]:
                return words[n:]
        return words

    def _confirm(self, words: list[Word]) -> None:
        self.confirmed.extend(words)
        self.in_window += len(words)
        self._drop_loops()

    def _drop_loops(self) -> None:
        """Each pass is already free of loops, but a hypothesis lined up with the words confirmed before it
        can still complete a run with them: the confirmed text keeps such a run once too."""
        runs = repeated_runs([normalize(w.text) for w in self.confirmed])
        if not runs:
            return
        dropped = {i for start, n, count in runs for i in range(start + n, start + n * count)}
        first_in_window = len(self.confirmed) - self.in_window
        self.in_window -= sum(1 for i in dropped if i >= first_in_window)
        self.confirmed = [w for i, w in enumerate(self.confirmed) if i not in dropped]

    def insert(self, words: list[Word]) -> list[Word]:
        """Take a new hypothesis; confirm (and return) the words it shares with the previous one."""
        self.window_hypothesis = list(words)
        fresh = self._new_words(words)
        agreed = 0
        for new, old in zip(fresh, self.pending):
            if normalize(new.text) != normalize(old.text):
                break
            agreed += 1
        newly = fresh[:agreed]
        self._confirm(newly)
        self.pending = fresh[agreed:]
        return newly

    def confirm_all(self, words: list[Word] | None = None) -> None:
        self._confirm(self._new_words(words) if words is not None else self.pending)
        self.pending = []

    def settle(self, window_words: list[Word] | None = None) -> None:
        """End of an utterance: the full-window hypothesis (the final pass, or else the latest one) replaces
        the window's words, so the early guesses made on a second of audio are corrected with the full
        context. A final pass that left out a phrase already heard is not trusted over it."""
        words = self.window_hypothesis if window_words is None else window_words
        window = self._without_repeat(words)
        if window and not self._drops_a_phrase(window):
            self.confirmed = self.confirmed[: len(self.confirmed) - self.in_window] + window
            self.in_window = len(window)
            self.pending = []
            self._drop_loops()
        else:
            self.confirm_all(window_words)
        self.window_hypothesis = []

    def _drops_a_phrase(self, window: list[Word]) -> bool:
        """Whether the full-window pass leaves out two or more words in a row of what this window had heard.
        One word fewer is a correction: the last words of a short window are the least reliable, and two
        passes cut mid-word can agree on a wrong one ("like in this" before "Lisbon" was heard whole)."""
        heard = [normalize(w.text) for w in self.confirmed[len(self.confirmed) - self.in_window :] + self.pending]
        final = [normalize(w.text) for w in window]
        opcodes = SequenceMatcher(a=heard, b=final, autojunk=False).get_opcodes()
        return any((i2 - i1) - (j2 - j1) >= 2 for tag, i1, i2, j1, j2 in opcodes if tag in ("delete", "replace"))

    def window_moved(self) -> None:
        """The window now starts after every confirmed word."""
        self.in_window = 0
        self.window_hypothesis = []

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
        self._last_cut_s: float | None = None  # where the latest update's window was cut (None: at what had arrived)
        self._lock = asyncio.Lock()
        self.updates = 0
        self.loops = 0  # passes that fell into a repetition loop (each was repaired)

    @property
    def received_s(self) -> float:
        return self._received_s

    def window_audio(self) -> bytes:
        """The audio of the current window (the turn's recent audio)."""
        return bytes(self._window)

    @property
    def window_s(self) -> float:
        return len(self._window) / INPUT_BYTES_PER_SECOND

    def add(self, pcm: bytes) -> None:
        self._window += pcm
        self._received_s += len(pcm) / INPUT_BYTES_PER_SECOND

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
        """What is shown while the user speaks. The pending words come from one loop-free pass, but they can
        complete a run with the confirmed words before them ("coins an an" + "an an and"): such repeats are
        left out of the partial, as the agreement leaves them out of the confirmed text."""
        confirmed, pending = self.agreement.confirmed, self.agreement.pending
        runs = repeated_runs([normalize(w.text) for w in confirmed + pending])
        dropped = {i - len(confirmed) for start, n, count in runs for i in range(start + n, start + n * count)}
        shown = [w for i, w in enumerate(pending) if i not in dropped]
        return Hypothesis(LocalAgreement.text(confirmed), LocalAgreement.text(shown))

    def _prompt(self) -> str | None:
        """The confirmed text before the window. Never words inside it: Whisper would skip them in the audio."""
        agreement = self.agreement
        before = agreement.confirmed[: len(agreement.confirmed) - agreement.in_window]
        text = LocalAgreement.text(before)
        return text[-self.config.prompt_chars :] if text else None

    def _audio_until(self, until_s: float | None) -> bytes:
        if until_s is None:
            return bytes(self._window)
        end = int(round((until_s - self._window_start_s) * INPUT_BYTES_PER_SECOND)) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE
        return bytes(self._window[: max(0, end)])

    async def _run(self, until_s: float | None = None) -> tuple[Transcript, float, float]:
        """Transcribe the current window (up to turn time ``until_s`` when given); returns the transcript,
        the window's start and its length."""
        start, audio = self._window_start_s, self._audio_until(until_s)
        self._last_update_s = self._received_s if until_s is None else min(until_s, self._received_s)
        self._last_cut_s = until_s
        transcript = await self._without_loop(audio, self._prompt())
        return transcript, start, len(audio) / INPUT_BYTES_PER_SECOND

    async def _without_loop(self, audio: bytes, prompt: str | None) -> Transcript:
        """One windowed pass, free of repetition loops.

        A loop depends on the decoder's context, so a looping pass is first run again without the prompt
        (the confirmed text, which often primes the loop); should that loop as well (or there was no
        prompt), the repeated runs of the first pass are kept once. Loops are rare: the extra pass is too.
        """
        transcript = await self._transcribe(audio, prompt)
        if not has_loop(transcript.words):
            return transcript
        self.loops += 1
        words = drop_repeats(transcript.words)
        if prompt is not None:
            retry = await self._transcribe(audio, None)
            # Trusted only if it heard about as much: an empty retry would read as silence and cut the window.
            if retry.words and len(retry.words) >= len(words) - 1 and not has_loop(retry.words):
                log.info("repetition loop in a %.1f s window, fixed without the prompt: %r -> %r",
                         len(audio) / INPUT_BYTES_PER_SECOND, transcript.text[-120:], retry.text[-120:])
                return retry
        log.info("repetition loop in a %.1f s window, repeated words dropped: %r", len(audio) / INPUT_BYTES_PER_SECOND,
                 transcript.text[-120:])
        return replace(transcript, text=LocalAgreement.text(words), words=words)

    @staticmethod
    def _absolute(transcript: Transcript, offset: float) -> list[Word]:
        return [Word(w.text, w.start + offset, w.end + offset, w.probability) for w in transcript.words]

    async def update(self, until_s: float | None = None) -> Hypothesis:
        """Transcribe the window so far, or up to turn time ``until_s`` (where the user fell silent: a window
        whose end does not depend on how the audio was cut into frames)."""
        async with self._lock:
            if not self._window:
                return self.hypothesis()
            transcript, start, seconds = await self._run(until_s)
            self.updates += 1
            self.agreement.insert(self._absolute(transcript, start))
            self._trim(nothing_heard=not transcript.words, analyzed_end_s=start + seconds)
            return self.hypothesis()

    async def finish(self, speech_end_s: float | None = None) -> str:
        """Confirm everything and return the settled transcript of the turn so far.

        ``speech_end_s`` (the turn time where the user's speech ended, its short tail included) is where the
        last pass cuts the window: the settled words then depend on the audio, not on how it arrived in
        frames (a window ending 0.5 s later once made Whisper hear "in Lisbon" as "and listen"). When the last
        update was already cut there, its hypothesis is confirmed as is: no further Whisper pass.
        """
        async with self._lock:
            covered = speech_end_s is not None and self._last_cut_s == speech_end_s and self.updates > 0
            analyzed_end_s = self._last_update_s
            if self._window and not covered and (speech_end_s is not None or self._received_s > self._last_update_s):
                transcript, start, seconds = await self._run(speech_end_s)
                self.updates += 1
                self.agreement.settle(self._absolute(transcript, start))
                analyzed_end_s = start + seconds
            else:
                self.agreement.settle()
            self._trim(nothing_heard=False, analyzed_end_s=analyzed_end_s)
            return LocalAgreement.text(self.agreement.confirmed)

    def drop_silence(self) -> None:
        """Voice activity says nothing is being said: keep only the last ``idle_keep_s`` of the window."""
        if not self._lock.locked() and not self.agreement.pending and not self.agreement.in_window:
            self._cut(self._window_start_s + self.window_s - self.config.idle_keep_s)

    def _cut(self, at_s: float) -> None:
        at_s = max(self._window_start_s, min(at_s, self._window_start_s + self.window_s))
        drop = int((at_s - self._window_start_s) * INPUT_BYTES_PER_SECOND) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE
        del self._window[:drop]
        self._window_start_s += drop / INPUT_BYTES_PER_SECOND

    def _trim(self, nothing_heard: bool, analyzed_end_s: float) -> None:
        """Cut the window after an update. Only audio the update analyzed may go: more may have arrived
        while Whisper ran (``analyzed_end_s`` is the turn time where the analyzed audio ended)."""
        agreement = self.agreement
        if nothing_heard and not agreement.pending and not agreement.in_window:
            # Silence or noise so far: keep only the recent audio (a word may be starting in it).
            self._cut(analyzed_end_s - self.config.idle_keep_s)
        elif self.window_s > self.config.max_window_s and agreement.in_window and agreement.pending:
            # Cut between the last confirmed word and the first pending one: a word followed by another has
            # a trustworthy end, unlike the last word of a window.
            self._cut(min(agreement.confirmed_end, agreement.pending[0].start))
            agreement.window_moved()
        elif self.window_s > HARD_WINDOW_S:  # nothing to cut at in a very long window: settle it
            agreement.confirm_all()
            self._cut(analyzed_end_s - self.config.idle_keep_s)
            agreement.window_moved()
