"""Listening: voice activity, streaming transcription and (in call mode) the end of the user's turn.

The Listener gets the session's audio frames and reports typed events through one async callback: a
transcript update (partial, or the settled transcript of an utterance), the user starting to speak (what
barge-in needs), in call mode the end of the user's turn, and audio past the turn's limit. Whisper runs
through the injected ``transcribe`` callable, never on the caller's event loop; updates of one turn never
overlap. What the listener heard is its own state: how it is shown to the client is the Conversation's.
In call mode with ``turn_detection: model`` each utterance's end is put to the injected ``predict_end``
(the end-of-turn model, its answer in a background task) and the turn ends as soon as it is answered
"complete", not at the next audio frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.mode import SessionMode
from agents.services import SessionPolicy
from agents.turns import TurnConfig, VoiceActivity, end_of_turn
from common.clock import MONOTONIC, Clock
from protocol.pcm import INPUT_BYTES_PER_SECOND
from speech.audio import dbfs, pcm16_to_float
from speech.streaming import StreamingConfig, StreamingTranscriber, Transcribe
from speech.stt import Transcript
from speech.vad import WINDOW_SECONDS, StreamingVad

log = logging.getLogger("voi.listener")


@dataclass(eq=False)  # compared and hashed by identity: the Conversation keys what it showed of a turn by the turn
class UserTurn:
    """What the user said in one turn: its audio, its streaming transcript and when speech ended. Written only
    by the Listener; the other rooms read it."""

    streamer: StreamingTranscriber
    heard: str = ""  # the latest transcript reported for this turn (what the end-of-turn rule reads)
    speech_end_s: float | None = None  # turn audio time where the last utterance ended
    speaking: bool = False
    overflow_reported: bool = False
    ended_at: float = 0.0  # clock time when the turn was ended
    speech_ended_at: float = 0.0  # clock time when voice activity last ended
    recent: bytearray = field(default_factory=bytearray)  # the last MODEL_AUDIO_S of the turn's audio
    complete: float | None = None  # the end-of-turn model's answer for the latest utterance end
    predicting: bool = False  # ... still on its way
    utterances: int = 0  # utterance ends so far (a model answer for an older one is stale)
    settled: int = 0  # utterance ends whose transcript has settled into ``heard`` (or failed)
    speech_began_at: float | None = None  # clock time when voice activity first began in this turn
    loud_s: float = 0.0  # speech at barge-in level in this turn (the agent's own echo has none)
    voiced_s: float = 0.0  # speech (voice activity) in this turn, the silences between utterances left out

    async def settle(self) -> str:
        return await self.streamer.finish(None if self.speaking else self.speech_end_s)


@dataclass(frozen=True)
class TranscriptUpdate:
    turn: UserTurn
    text: str
    final: bool  # the settled transcript of an utterance (False: a partial while the user speaks)


@dataclass(frozen=True)
class SpeechStarted:
    """Sustained speech loud enough to be the user (not the agent's own voice leaking back): barge-in."""


@dataclass(frozen=True)
class TurnEnded:
    turn: UserTurn  # call mode only: the user is done


@dataclass(frozen=True)
class AudioOverflow:
    turn: UserTurn  # the turn's audio passed max_turn_s; the rest is ignored (reported once per turn)


ListenerEvent = TranscriptUpdate | SpeechStarted | TurnEnded | AudioOverflow
OnListenerEvent = Callable[[ListenerEvent], Awaitable[None]]
PredictEnd = Callable[[bytes], Awaitable[float]]  # 16 kHz PCM16 ending at an utterance's end -> P(turn complete)
MODEL_AUDIO_S = 8.0  # what the end-of-turn model hears: the last seconds of the turn


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
        self._whisper = asyncio.Lock()
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
        streaming = StreamingConfig(update_interval_s=self.config.update_interval_s, max_window_s=self.config.max_window_s)
        return UserTurn(StreamingTranscriber(self._transcribe_in_turn, streaming))

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
        started = ended = False
        samples = pcm16_to_float(pcm)
        loud = dbfs(samples) >= self.config.barge_in_min_dbfs
        # Off the event loop: a session host runs many conversations on one loop (ONNX releases the GIL).
        for probability in await asyncio.to_thread(self._vad.process, samples):
            event = self.activity.update(probability)
            ended |= event == "end"
            if event == "start" and turn.speech_began_at is None:
                turn.speech_began_at = self.clock.now()
            if event == "end":
                self._announced, self._loud_speech_s = False, 0.0
            speech = loud and probability >= self.config.speech_threshold
            self._loud_speech_s = self._loud_speech_s + WINDOW_SECONDS if speech else 0.0
            turn.loud_s += WINDOW_SECONDS if speech else 0.0
            turn.voiced_s += WINDOW_SECONDS if self.activity.speaking else 0.0
            if not self._announced and self._loud_speech_s >= self.config.barge_in_min_speech_s:
                self._announced = started = True
        if self.call_mode and turn.streamer.received_s == 0:
            # Between turns only the last moments are kept, so an utterance's first syllable is not lost.
            self._preroll += pcm
            keep = int(self.config.pre_roll_s * INPUT_BYTES_PER_SECOND) // 2 * 2 + len(pcm)
            del self._preroll[: max(0, len(self._preroll) - keep)]
            if not self.activity.heard_speech:
                return
            turn.streamer.add(bytes(self._preroll))
            self._remember(turn, bytes(self._preroll))
            self._preroll.clear()
        else:
            turn.streamer.add(pcm)
            self._remember(turn, pcm)
        turn.speaking = self.activity.speaking
        if turn.speaking:
            turn.complete, turn.predicting = None, False
        if started:
            await self.on_event(SpeechStarted())
        if ended:
            turn.speech_end_s = turn.streamer.received_s - self.activity.silence_s
            turn.speech_ended_at = self.clock.now()
            turn.utterances += 1
            if self._model_decides():
                turn.predicting = True
                self._spawn(self._predict(turn, turn.utterances))
            self._spawn(self._settle(turn, turn.utterances))
        elif self._update_wanted(turn):
            self._spawn(self._update(turn))
        elif not self.activity.heard_speech and self.activity.silence_s > 2 * self.config.pre_roll_s:
            turn.streamer.drop_silence()  # chat mode before anyone spoke: do not hoard silence
        await self._maybe_end(turn)

    def _model_decides(self) -> bool:
        return self.call_mode and self.config.turn_detection == "model" and self.predict_end is not None

    def _remember(self, turn: UserTurn, pcm: bytes) -> None:
        if self._model_decides():
            turn.recent += pcm
            del turn.recent[: max(0, len(turn.recent) - int(MODEL_AUDIO_S * INPUT_BYTES_PER_SECOND) // 2 * 2)]

    async def _maybe_end(self, turn: UserTurn) -> None:
        if self.call_mode and turn is self.turn and end_of_turn(self.activity, turn.heard, self.config, turn.complete,
                                                                turn.predicting, turn.settled >= turn.utterances):
            await self.on_event(TurnEnded(self.take_turn()))

    async def _predict(self, turn: UserTurn, utterance: int) -> None:
        """The model's answer for the utterance that just ended; the turn ends here when it is complete."""
        assert self.predict_end is not None
        try:
            complete = await self.predict_end(bytes(turn.recent))
        except Exception as exc:  # the timer decides instead
            log.warning("end-of-turn model failed (%s): the timer decides", exc)
            complete = None
        if turn.utterances != utterance or turn.speaking:
            return  # the user spoke again meanwhile: that utterance's end gets its own answer
        turn.complete, turn.predicting = complete, False
        await self._maybe_end(turn)

    def _update_wanted(self, turn: UserTurn) -> bool:
        if not self.activity.speaking:
            return False
        if turn.streamer.due():
            return True
        # Silence has begun: transcribe now, so the utterance's transcript is ready when the silence is long
        # enough to call it ended.
        silence_began = turn.streamer.received_s - self.activity.silence_s
        return self.activity.silence_s > 0 and not turn.streamer.busy and turn.streamer.last_update_s < silence_began

    async def _update(self, turn: UserTurn) -> None:
        try:
            hypothesis = await turn.streamer.update()
        except Exception as exc:  # a failed partial is not fatal: the final pass tries again
            log.warning("partial transcription failed: %s", exc)
            return
        if self.stream_partials and hypothesis.text and turn is self.turn:
            await self._report(turn, hypothesis.text, final=False)

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

    async def _report(self, turn: UserTurn, text: str, *, final: bool) -> None:
        if text.strip():
            turn.heard = text.strip()
        await self.on_event(TranscriptUpdate(turn, text, final))
