"""The agent's voice: each speech's segments synthesized and sent as wire frames, one speech at a time.

A speech belongs to one assistant message (``speech_id`` is the message id). The reply writer hands it its
segments as they are parsed (``Speech.say``) and then ``Speech.end``; the Speaker synthesizes them in order, adds the
voices' silences and narrator asides, estimates how much the client has played (playback starts with the
first frame and runs in real time), and cuts a speech on interrupt: its stored message becomes what was
heard plus "... (interrupted)". A speech's state is written here only: the reply writer and the greeting hand
it segments, barge-in asks the Speaker whether the agent speaks and to cut it (``barge_in``).

With ``stream_output_audio: false`` (the init flag of the original Voi) a speech is sent as ONE ``audio``
frame holding an Ogg/Opus file once it is complete, instead of PCM frames while it is made; the played-time
estimate then starts when that file is sent.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from agents.agent import Agent
from agents.history import History, StoredMessage
from agents.mode import SessionMode
from agents.recording import Recorder
from agents.reply_parser import Segment
from agents.services import Emit, ReportTurn, Services
from agents.speech_timeline import SpeechTimeline, truncated
from agents.timeline import TurnTimeline
from common.clock import MONOTONIC, Clock
from protocol import events as ev
from protocol import messages as m
from speech.audio import OUTPUT_RATE, pcm16_seconds, silence_pcm16, split_pcm
from speech.codecs import encode_ogg_opus

log = logging.getLogger("voi.conversation")


@dataclass(eq=False)
class Speech:
    speech_id: str
    message_id: int
    _segments: asyncio.Queue[Segment | None] = field(default_factory=asyncio.Queue, repr=False)
    timeline: SpeechTimeline = field(default_factory=SpeechTimeline)
    task: asyncio.Task[None] | None = None
    interrupted: bool = False
    barged_in: bool = False  # cut by the server's barge-in (an estimate the client's interrupt may refine)
    first_audio_at: float | None = None  # clock time of its first audio frame
    confirmed_s: float | None = None  # what the transport confirmed was played (m.Played), over the estimate
    unsent: bytearray = field(default_factory=bytearray, repr=False)  # whole-file mode: the audio made so far

    def say(self, segment: Segment) -> None:
        """Queue ``segment``: it is spoken after the ones before it."""
        self._segments.put_nowait(segment)

    def end(self) -> None:
        """No more segments: the speech ends when the queued ones are spoken."""
        self._segments.put_nowait(None)

    async def next_segment(self) -> Segment | None:
        """The next segment to speak, when it comes; None after ``end``."""
        return await self._segments.get()

    def played_s(self, now: float) -> float:
        """Seconds the client has played: as its transport confirmed, else estimated (playback starts with the
        first frame and runs in real time)."""
        if self.confirmed_s is not None:
            return self.confirmed_s
        if self.first_audio_at is None:
            return 0.0
        return min(now - self.first_audio_at, self.timeline.seconds)

    def playing(self, now: float) -> bool:
        """Still being made, or (by the estimate above) still being played by the client."""
        if self.interrupted:
            return False
        if self.first_audio_at is None:
            return not self.timeline.complete
        return not self.timeline.complete or now < self.first_audio_at + self.timeline.seconds


class Speaker:
    def __init__(self, *, agent_name: str, mode: SessionMode, agent: Agent, history: History, services: Services,
                 emit: Emit, report_turn: ReportTurn | None = None, stream_audio: bool = True,
                 recorder: Recorder | None = None, clock: Clock = MONOTONIC) -> None:
        self.clock = clock
        self._agent_name = agent_name
        self._mode = mode  # the label of turn reports
        self._character = agent.character
        self._voices = agent.voices
        self._history = history
        self._services = services
        self._emit = emit
        self._report_turn = report_turn
        self._stream_audio = stream_audio  # False: one Ogg/Opus file per speech
        self._recorder = recorder
        self._speeches: dict[str, Speech] = {}
        self._lock = asyncio.Lock()  # one speech at a time: frames of two replies must never interleave
        self._open = asyncio.Event()  # cleared while the user may be going on with their turn (``hold``)
        self._open.set()

    def get(self, speech_id: str | None) -> Speech | None:
        """The speech named ``speech_id``; None names the latest one."""
        if speech_id is None:
            return next(reversed(self._speeches.values()), None)
        return self._speeches.get(speech_id)

    def any_playing(self, now: float) -> bool:
        return any(s.playing(now) for s in self._speeches.values())

    def speaking(self, now: float) -> bool:
        """The latest speech is still being made or played."""
        speech = self.get(None)
        return speech is not None and speech.playing(now)

    def was_playing_at(self, at: float) -> bool:
        """The latest speech had reached the client by ``at`` and was still playing then."""
        speech = self.get(None)
        return (speech is not None and speech.first_audio_at is not None and speech.first_audio_at <= at
                and speech.playing(at))

    async def barge_in(self, now: float) -> None:
        """The user spoke over the agent: cut the latest speech where the client is estimated to be (an
        estimate that the client's own ``interrupt`` may refine)."""
        speech = self.get(None)
        if speech is not None and not speech.interrupted:
            speech.barged_in = True
            await self.cut(speech, speech.played_s(now))

    def hold(self) -> None:
        """Send no more audio until ``release``: the user may be going on with the turn this speech answers, and
        what is not sent is not heard."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def start(self, stored: StoredMessage, timeline: TurnTimeline | None, *, file: Path | None = None,
              cached: bool = False) -> Speech:
        """A new speech of ``stored``; ``timeline`` is the reply's (None for the greeting: no turn to report)."""
        speech = Speech(speech_id=str(stored.id), message_id=stored.id)
        self._speeches[speech.speech_id] = speech
        speech.task = asyncio.create_task(self._play(speech, timeline, file, cached), name=f"speech:{stored.id}")
        return speech

    async def client_cut(self, speech: Speech, interrupted_at: float | None) -> None:
        """The client's ``interrupt``: cut where it says it stopped playing, or where the server estimates."""
        played = interrupted_at if interrupted_at is not None else speech.played_s(self.clock.now())
        if speech.interrupted and not (speech.barged_in and interrupted_at is not None):
            return
        speech.barged_in = interrupted_at is None  # an estimate, which a later interrupt with the client's number refines
        await self.cut(speech, played)

    async def confirm_played(self, speech_id: str, played_s: float) -> None:
        """The transport knows how much of ``speech_id`` was played (a phone's marks): a speech already cut by
        the barge-in's estimate is cut again where the listener really stopped hearing it."""
        speech = self._speeches.get(speech_id)
        if speech is None:
            return
        speech.confirmed_s = max(0.0, played_s)
        if speech.interrupted:
            await self.cut(speech, speech.confirmed_s)

    async def cut(self, speech: Speech, played_s: float) -> None:
        """Stop ``speech`` and cut its stored message to what was heard plus "... (interrupted)"."""
        heard, all_heard = speech.timeline.heard_text(played_s)
        if all_heard:
            return  # the whole reply was played: nothing to cut
        speech.interrupted = True
        if self._recorder is not None:
            self._recorder.cut(speech.speech_id, played_s)
        if speech.task and not speech.task.done():
            speech.task.cancel()
        stored = self._history[speech.message_id]
        stored.set_text(truncated(heard))
        await self._emit(ev.Message(stored.role, stored.id, stored.content))

    def tasks(self) -> list[asyncio.Task[None]]:
        return [s.task for s in self._speeches.values() if s.task is not None]

    async def _play(self, speech: Speech, timeline: TurnTimeline | None, file: Path | None, cached: bool) -> None:
        """Speak the segments queued for ``speech`` as they come; a reply's ``timeline`` gets its TTS marks."""
        marks = timeline or TurnTimeline(self._agent_name, self._mode.value, clock=self.clock)
        character = self._character
        async with self._lock:
            if speech.interrupted:
                return
            try:
                await self._silence(speech, marks, character.leading_silence)
                if file is not None and self._services.load_greeting_audio is not None:
                    speech.timeline.add(self._history[speech.message_id].text, 0.0)
                    await self._send(speech, marks, await self._services.load_greeting_audio(file))
                    while await speech.next_segment() is not None:
                        pass
                else:
                    failed = False
                    while (segment := await speech.next_segment()) is not None:
                        failed = await self._speak(speech, marks, segment, cached, failed)
                await self._silence(speech, marks, character.trailing_silence)
                await self._send_file(speech, marks)
                speech.timeline.complete = True
            finally:
                if self._recorder is not None:
                    self._recorder.end_speech(speech.speech_id)
                await self._emit(ev.SpeechDone(speech.speech_id, speech.interrupted))
                if timeline is not None:
                    log.info("turn speech=%s %s speech_s=%.2f", speech.speech_id, timeline.log_line(),
                             speech.timeline.seconds)
                    if self._report_turn is not None:
                        await self._report_turn(replace(timeline.report(), speech_id=speech.speech_id))

    async def _speak(self, speech: Speech, marks: TurnTimeline, segment: Segment, cached: bool, failed: bool) -> bool:
        """One segment in its role's voice; a synthesis failure is told once and the next segment goes on.
        Returns whether synthesis has failed in this speech."""
        voice = self._voices.for_role(segment.role)
        if voice is None:
            return failed
        aside = segment.role == "narrator" and voice is self._voices.narrator
        await self._silence(speech, marks, voice.leading_silence if aside else 0.0)
        speech.timeline.add(segment.text, 0.0)
        marks.mark("first_text_to_tts")
        try:
            async for chunk in self._services.speak(segment.spoken, voice, segment.tone, cached):
                marks.mark("first_tts_chunk")
                await self._send(speech, marks, chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # say so once, and go on with the next piece
            log.warning("speech %s of agent '%s' failed: %s", speech.speech_id, self._agent_name, exc)
            if not failed:
                await self._emit(ev.Error(f"speech synthesis failed for message {speech.message_id}", "tts_failed"))
            return True
        await self._silence(speech, marks, voice.trailing_silence if aside else 0.0)
        return failed

    async def _send(self, speech: Speech, marks: TurnTimeline, pcm: bytes) -> None:
        if not self._stream_audio:
            speech.unsent += pcm
            speech.timeline.extend_last(pcm16_seconds(pcm, OUTPUT_RATE))
            return
        for frame in split_pcm(pcm, m.AUDIO_FRAME_BYTES):
            await self._open.wait()
            now = self.clock.now()
            if speech.first_audio_at is None:
                speech.first_audio_at = now
            elif (dry := now - speech.first_audio_at - speech.timeline.seconds) > 0:
                speech.first_audio_at += dry  # the client played all it had and waited: its playback resumes now
            await self._emit(ev.AudioChunk(speech.speech_id, frame))
            speech.timeline.extend_last(pcm16_seconds(frame, OUTPUT_RATE))
            marks.mark("first_audio_sent")

    async def _send_file(self, speech: Speech, marks: TurnTimeline) -> None:
        """Whole-file mode: the complete speech as one Ogg/Opus file (encoded off the loop)."""
        if self._stream_audio or not speech.unsent:
            return
        data = await asyncio.to_thread(encode_ogg_opus, bytes(speech.unsent), OUTPUT_RATE)
        speech.unsent.clear()
        await self._emit(ev.AudioFile(speech.speech_id, data))
        speech.first_audio_at = self.clock.now()
        marks.mark("first_audio_sent")

    async def _silence(self, speech: Speech, marks: TurnTimeline, seconds: float) -> None:
        if seconds > 0:
            speech.timeline.add("", 0.0)
            await self._send(speech, marks, silence_pcm16(seconds))
