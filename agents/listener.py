"""Listening: voice activity, streaming transcription and (in call mode) the end of the user's turn.

The Listener gets the session's audio frames and reports typed events through one async callback: a
transcript update (partial, or the settled transcript of an utterance), the user starting to speak (what
barge-in needs), in call mode the end of the user's turn, and audio past the turn's limit. Whisper runs
through the injected ``transcribe`` callable, never on the caller's event loop; updates of one turn never
overlap. What the listener heard is its own state (the ``UserTurn``, agents/user_turn.py, with the events):
how it is shown to the client is agents/user_transcript.py's.
In call mode with ``turn_detection: model`` each utterance's end is put to the injected ``predict_end``
(the end-of-turn model, its answer in a background task) and the turn ends as soon as it is answered
"complete", not at the next audio frame.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.mode import SessionMode
from agents.services import SessionPolicy
from agents.turns import TurnConfig, VoiceActivity, end_of_turn
from agents.user_turn import AudioOverflow, OnListenerEvent, SpeechStarted, TranscriptUpdate, TurnEnded, UserTurn
from common.clock import MONOTONIC, Clock
from protocol.pcm import BYTES_PER_SAMPLE, INPUT_BYTES_PER_SECOND
from speech.audio import INPUT_RATE, dbfs, pcm16_to_float
from speech.streaming import StreamingConfig, StreamingTranscriber, Transcribe
from speech.stt import Transcript
from speech.vad import WINDOW, WINDOW_SECONDS, StreamingVad

log = logging.getLogger("voi.listener")


PredictEnd = Callable[[bytes], Awaitable[float]]  # 16 kHz PCM16 ending at an utterance's end -> P(turn complete)
MODEL_AUDIO_S = 8.0  # what the end-of-turn model hears: the last seconds of the turn
MODEL_AUDIO_BYTES = int(MODEL_AUDIO_S * INPUT_BYTES_PER_SECOND) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE
SETTLE_TAIL_S = 0.1  # quiet audio after an utterance kept in its transcript window (a word's soft end)


def _windows(seconds: float) -> int:
    """Seconds counted in VAD windows (VoiceActivity adds WINDOW_SECONDS per window) as a whole number of them."""
    return int(round(seconds / WINDOW_SECONDS))


@dataclass
class Listener:
    transcribe: Transcribe
    on_event: OnListenerEvent
    mode: SessionMode
    config: TurnConfig = field(default_factory=TurnConfig)
    max_turn_s: float = SessionPolicy.max_turn_seconds
    stream_partials: bool = True
    predict_end: PredictEnd | None = None
    clock: Clock = MONOTONIC

    def __post_init__(self) -> None:
        self._vad = StreamingVad()
        self.activity = VoiceActivity(self.config)
        self._preroll = bytearray()
        self._loud_speech_s = 0.0  # consecutive speech at barge-in level
        self._announced = False  # speech_started was reported for the current utterance
        self._tasks: set[asyncio.Task[None]] = set()
        self._fed = 0  # samples of the stream so far: the clock of stream positions
        self._judged = 0  # samples of the stream the VAD has judged (whole windows)
        self._whisper = asyncio.Lock()
        self._end_held: weakref.WeakSet[UserTurn] = weakref.WeakSet()  # turns that may not end yet (``hold_end``)
        self._partials_held: weakref.WeakSet[UserTurn] = weakref.WeakSet()  # ... not transcribed as they grow (``hold_partials``)
        self.turn = self._new_turn()

    async def _transcribe_in_turn(self, pcm16: bytes, prompt: str | None) -> Transcript:
        """At most one Whisper call of this conversation is in flight (a turn's final pass and the next turn's
        first partial take turns): the Transcriber's queue then holds one window per session, so a client that
        ends turns in quick succession cannot push ahead of everyone else."""
        async with self._whisper:
            return await self.transcribe(pcm16, prompt)

    @property
    def call_mode(self) -> bool:
        return self.mode.call

    def _new_turn(self) -> UserTurn:
        return UserTurn(self._new_streamer())

    def _new_streamer(self) -> StreamingTranscriber:
        streaming = StreamingConfig(update_interval_s=self.config.update_interval_s, max_window_s=self.config.max_window_s)
        return StreamingTranscriber(self._transcribe_in_turn, streaming)

    def blank_turn(self) -> UserTurn:
        """A turn without audio, ended now (a reply that goes on from tool results leaves the user's turn be)."""
        turn = self._new_turn()
        turn.ended_at = self.clock.now()
        return turn

    def take_turn(self) -> UserTurn:
        """End the current turn (``create_response``, or the end of turn in call mode) and start a new one."""
        turn, self.turn = self.turn, self._new_turn()
        turn.ended_at = self.clock.now()
        self.activity.reset()
        self._preroll.clear()
        return turn

    def reopen(self, turn: UserTurn) -> None:
        """Make the ended ``turn`` the current one again (the user went on with it): the audio of the current turn
        (what they said since, its pre-roll included) goes on in it, and its transcript grows from where it was."""
        since = self.turn
        audio = since.streamer.window_audio()
        if turn.streamer.window_s >= turn.streamer.received_s:
            # Its whole audio is still in the window: heard again afresh with what follows, so the words at the
            # pause are judged anew (tiny.en often heard "for" before a pause as "for four."), without the
            # silence that ended the turn (the new audio's pre-roll is pause enough; more made Whisper fill it in).
            heard_before = turn.streamer.window_audio()
            if turn.speech_end_s is not None:
                heard_before = heard_before[: int(turn.speech_end_s * INPUT_RATE) * BYTES_PER_SAMPLE]
            turn.streamer = self._new_streamer()
            turn.streamer.add(heard_before)
        self._add(turn, audio)
        turn.origin = self._fed - int(round(turn.streamer.received_s * INPUT_RATE))  # the stream goes on from here
        turn.ended_at, turn.speech_end_s = 0.0, None
        turn.speaking, turn.complete, turn.predicting = since.speaking, None, False
        turn.utterances += since.utterances
        turn.settled += since.settled
        turn.loud_s += since.loud_s
        turn.voiced_s += since.voiced_s
        self.turn = turn

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def feed(self, pcm: bytes) -> None:
        turn = self.turn
        if turn.streamer.received_s + len(pcm) / INPUT_BYTES_PER_SECOND > self.max_turn_s:
            if not turn.overflow_reported:
                turn.overflow_reported = True
                await self.on_event(AudioOverflow(turn))
            return
        started = False
        ends: list[int] = []  # stream positions (samples) where utterances' speech ended
        onset: int | None = None  # stream position where this frame's first utterance began
        samples = pcm16_to_float(pcm)
        self._fed += len(samples)
        loud = dbfs(samples) >= self.config.barge_in_min_dbfs
        # Off the event loop: a session host runs many conversations on one loop (ONNX releases the GIL).
        for probability in await asyncio.to_thread(self._vad.process, samples):
            self._judged += WINDOW
            event = self.activity.update(probability)
            if event == "start":
                if onset is None:
                    onset = self._judged - _windows(self.activity.speech_run_s) * WINDOW
                if turn.speech_began_at is None:
                    turn.speech_began_at = self.clock.now()
            if event == "end":
                ends.append(self._judged - _windows(self.activity.silence_s) * WINDOW)
                self._announced, self._loud_speech_s = False, 0.0
            speech = loud and probability >= self.config.speech_threshold
            self._loud_speech_s = self._loud_speech_s + WINDOW_SECONDS if speech else 0.0
            turn.loud_s += WINDOW_SECONDS if speech else 0.0
            turn.voiced_s += WINDOW_SECONDS if self.activity.speaking else 0.0
            # (Once an utterance has started: a turn that has not begun drops its frame's events.)
            if not self._announced and self.activity.heard_speech and self._loud_speech_s >= self.config.barge_in_min_speech_s:
                self._announced = started = True
        if self.call_mode and turn.streamer.received_s == 0:
            # Between turns only the last moments are kept, so an utterance's first syllable is not lost. The
            # turn's audio starts pre_roll_s before the utterance's onset as the VAD placed it, wherever the
            # client's frames happened to begin.
            self._preroll += pcm
            keep = int((self.config.pre_roll_s + self.config.min_speech_s) * INPUT_BYTES_PER_SECOND + BYTES_PER_SAMPLE * WINDOW)
            keep = keep // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE + len(pcm)  # whole samples
            del self._preroll[: max(0, len(self._preroll) - keep)]
            if not self.activity.heard_speech:
                return
            kept_from = self._fed - len(self._preroll) // BYTES_PER_SAMPLE
            first = kept_from if onset is None else max(kept_from, onset - int(self.config.pre_roll_s * INPUT_RATE))
            self._start_turn_audio(turn, bytes(self._preroll[(first - kept_from) * BYTES_PER_SAMPLE :]))
            self._preroll.clear()
        else:
            self._start_turn_audio(turn, pcm) if turn.streamer.received_s == 0 else self._add(turn, pcm)
        turn.speaking = self.activity.speaking
        if turn.speaking:
            turn.complete, turn.predicting = None, False
        if started:
            await self.on_event(SpeechStarted())
        if ends:
            turn.speech_end_s = self._turn_time(turn, ends[-1] + self._tail_samples())
            turn.speech_ended_at = self.clock.now()
            turn.utterances += len(ends)
            if self._model_decides():
                turn.predicting = True
                # The model hears the turn up to where the utterance was called ended, not to the frame's end.
                called = ends[-1] + _windows(self.config.utterance_end_s) * WINDOW
                cut = max(0, self._fed - called) * BYTES_PER_SAMPLE
                self._spawn(self._predict(turn, turn.utterances, bytes(turn.recent[: len(turn.recent) - cut])))
            self._spawn(self._settle(turn, turn.utterances))
        elif self._update_wanted(turn):
            self._spawn(self._update(turn, self._silence_cut(turn)))
        elif not self.activity.heard_speech and self.activity.silence_s > 2 * self.config.pre_roll_s:
            turn.streamer.drop_silence()  # chat mode before anyone spoke: do not hoard silence
        await self._maybe_end(turn)

    def _start_turn_audio(self, turn: UserTurn, pcm: bytes) -> None:
        turn.origin = self._fed - len(pcm) // BYTES_PER_SAMPLE
        self._add(turn, pcm)

    def _add(self, turn: UserTurn, pcm: bytes) -> None:
        turn.streamer.add(pcm)
        self._remember(turn, pcm)

    def _turn_time(self, turn: UserTurn, position: int) -> float:
        """A stream position (samples) as the turn's audio time."""
        return (position - turn.origin) / INPUT_RATE

    def _tail_samples(self) -> int:
        """The quiet audio after the speech that its transcript window keeps (no more than an utterance's
        end waits for, so the pass can start before the utterance is called ended)."""
        return min(_windows(SETTLE_TAIL_S), _windows(self.config.utterance_end_s)) * WINDOW

    def _silence_cut(self, turn: UserTurn) -> float | None:
        """While the user is silent (after speaking): the turn time where this silence's transcript window ends,
        once that much audio has been judged; None otherwise."""
        silent = _windows(self.activity.silence_s) * WINDOW
        if not self.activity.heard_speech or silent < self._tail_samples():
            return None
        return self._turn_time(turn, self._judged - silent + self._tail_samples())

    def _model_decides(self) -> bool:
        return self.call_mode and self.config.turn_detection == "model" and self.predict_end is not None

    def _remember(self, turn: UserTurn, pcm: bytes) -> None:
        if self._model_decides():
            turn.recent += pcm
            del turn.recent[: max(0, len(turn.recent) - MODEL_AUDIO_BYTES)]

    def hold_end(self, turn: UserTurn) -> None:
        """``turn`` may not end until ``release_end``: whether its words go on the turn before is being judged."""
        self._end_held.add(turn)

    async def release_end(self, turn: UserTurn) -> None:
        self._end_held.discard(turn)
        await self._maybe_end(turn)

    def hold_partials(self, turn: UserTurn) -> None:
        """No partial transcripts of ``turn`` until ``release_partials``: its words are being judged by passes of
        their own (a barge-in), which a partial pass of the same audio beside them would only slow down."""
        self._partials_held.add(turn)

    def release_partials(self, turn: UserTurn) -> None:
        self._partials_held.discard(turn)

    async def _maybe_end(self, turn: UserTurn) -> None:
        if turn in self._end_held:
            return
        if self.call_mode and turn is self.turn and end_of_turn(self.activity, turn.heard, self.config, turn.complete,
                                                                turn.predicting, turn.settled >= turn.utterances):
            await self.on_event(TurnEnded(self.take_turn()))

    async def _predict(self, turn: UserTurn, utterance: int, audio: bytes) -> None:
        """The model's answer for the utterance that just ended; the turn ends here when it is complete."""
        assert self.predict_end is not None
        try:
            complete = await self.predict_end(audio)
        except Exception as exc:  # the timer decides instead
            log.warning("end-of-turn model failed (%s): the timer decides", exc)
            complete = None
        if turn.utterances != utterance or turn.speaking:
            return  # the user spoke again meanwhile: that utterance's end gets its own answer
        turn.complete, turn.predicting = complete, False
        await self._maybe_end(turn)

    def _update_wanted(self, turn: UserTurn) -> bool:
        if not self.activity.speaking or turn in self._partials_held:
            return False
        cut = self._silence_cut(turn)
        if cut is None:
            return turn.streamer.due()
        # Silence has begun: transcribe now, up to where it began, so the utterance's transcript is ready (and
        # is the one its end would settle) when the silence is long enough to call it ended.
        return not turn.streamer.busy and turn.streamer.last_update_s < cut

    async def _update(self, turn: UserTurn, until_s: float | None) -> None:
        try:
            hypothesis = await turn.streamer.update(until_s)
        except Exception as exc:  # a failed partial is not fatal: the final pass tries again
            log.warning("partial transcription failed: %s", exc)
            return
        if self.stream_partials and hypothesis.text and turn is self.turn:
            await self._report(turn, hypothesis.text, final=False, at_silence=until_s is not None)

    async def _settle(self, turn: UserTurn, utterance: int) -> None:
        text: str | None = None
        try:
            text = await turn.settle()
        except Exception as exc:
            log.warning("transcription failed: %s", exc)
        turn.settled = max(turn.settled, utterance)
        if turn is self.turn:
            if text is not None:
                await self._report(turn, text, final=True)
            await self._maybe_end(turn)  # the settled words and punctuation may decide what the model left open

    async def _report(self, turn: UserTurn, text: str, *, final: bool, at_silence: bool = False) -> None:
        if text.strip():
            turn.heard = text.strip()
        await self.on_event(TranscriptUpdate(turn, text, final, at_silence))
