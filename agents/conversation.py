"""One conversation: the state and turn-taking of a session, independent of Ray and of the websocket.

A Conversation gets typed client messages in order through ``handle`` and sends server messages through
the injected ``emit``; it reaches the models only through the injected ``Services`` callables, so the same
class runs in unit tests, in a benchmark's in-process baseline and inside the SessionActor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from agents.config import AgentConfig, GreetingFile, VoiceSpec
from agents.listener import Listener, ListenerEvents, UserTurn
from agents.segmenter import split_sentences
from agents.speech_timeline import SpeechTimeline, truncated
from protocol import messages as m
from speech.audio import OUTPUT_RATE, pcm16_seconds, silence_pcm16, split_pcm
from speech.stt import Transcript
from agents.timeline import INTERNAL_METRICS_TYPE, TurnTimeline
from agents.turns import TurnConfig

log = logging.getLogger("voi.conversation")

Emit = Callable[[m.ServerMessage], Awaitable[None]]


@dataclass
class Services:
    """The model calls a conversation makes; each is an async callable so backends and transports swap."""

    transcribe: Callable[[bytes, str | None], Awaitable[Transcript]]  # 16 kHz PCM16 -> transcript
    synthesize: Callable[[str, VoiceSpec], AsyncIterator[bytes]]  # sentence -> 24 kHz PCM16 chunks
    load_greeting_audio: Callable[[Path], Awaitable[bytes]] | None = None  # server file -> 24 kHz PCM16


@dataclass(frozen=True)
class Limits:
    max_turn_seconds: float = 120.0  # audio taken per user turn; the rest is refused with an error
    audio_frame_bytes: int = 24_000  # 0.5 s of 24 kHz PCM per outgoing audio frame
    turn: TurnConfig = field(default_factory=TurnConfig)  # listening: voice activity, partials, end of turn


@dataclass
class StoredMessage:
    id: int
    role: str
    content: list[dict[str, Any]]

    @property
    def text(self) -> str:
        return " ".join(p["text"] for p in self.content if p.get("type") == "text")


@dataclass
class _TurnRequest:
    turn: UserTurn
    typed_ids: list[int]
    requested_at: float


@dataclass
class _Speech:
    speech_id: str
    message_id: int
    timeline: SpeechTimeline = field(default_factory=SpeechTimeline)
    task: asyncio.Task[None] | None = None
    interrupted: bool = False


class Conversation:
    def __init__(
        self,
        *,
        agent_name: str,
        agent: AgentConfig,
        options: m.Init,
        services: Services,
        emit: Emit,
        limits: Limits = Limits(),
        greeting_dir: Path | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.agent_name = agent_name
        self.agent = agent
        self.options = options
        self.services = services
        self.limits = limits
        self.messages: list[StoredMessage] = []
        self._emit = emit
        self._greeting_dir = greeting_dir
        self._rng = rng or random.Random()
        self._listener = Listener(
            transcribe=services.transcribe,
            events=ListenerEvents(
                partial=lambda turn, text: self._publish_transcript(turn, text, final=False),
                settled=lambda turn, text: self._publish_transcript(turn, text, final=True),
                speech_started=self._user_started_speaking,
                turn_ended=self._queue_turn,
                overflow=self._audio_overflow,
            ),
            call_mode=options.mode == "call",
            config=limits.turn,
            max_turn_s=limits.max_turn_seconds,
            stream_partials=options.stream_user_stt,
        )
        self._typed_ids: list[int] = []
        self._turns: asyncio.Queue[_TurnRequest] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._speeches: dict[str, _Speech] = {}
        self._speech_lock = asyncio.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Send ``init_done`` and the greeting; from then on ``handle`` takes client messages."""
        self._worker = asyncio.create_task(self._turn_worker(), name=f"turns:{self.agent_name}")
        await self._emit(m.status("init_done", agent_name=self.agent_name))
        if self.options.init_greeting:
            await self._greet()

    async def close(self) -> None:
        tasks = [s.task for s in self._speeches.values() if s.task and not s.task.done()]
        if self._worker:
            tasks.append(self._worker)
        await self._listener.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until queued turns are answered and all speech is sent (tests and benchmarks use this)."""
        await self._turns.join()
        for speech in list(self._speeches.values()):
            if speech.task:
                await asyncio.gather(speech.task, return_exceptions=True)

    # ---- client messages ---------------------------------------------------------------------------------

    async def handle(self, msg: m.ClientMessage) -> None:
        if isinstance(msg, m.Audio):
            await self._on_audio(msg.pcm)
        elif isinstance(msg, m.Text):
            await self._on_text(msg.content)
        elif isinstance(msg, m.ImageUrl):
            await self._add_typed([m.image_part(msg.url)])
        elif isinstance(msg, m.CreateResponse):
            await self._queue_turn(self._listener.take_turn())
        elif isinstance(msg, m.Interrupt):
            await self._on_interrupt(msg)
        elif isinstance(msg, m.InvokeLlm):
            await self._emit(m.error(f"agent '{self.agent_name}' has no LLM to invoke", "unsupported"))
        elif isinstance(msg, m.Init):
            await self._emit(m.error("'init' was already received; ignoring the second one", "duplicate_init"))

    async def _on_audio(self, pcm: bytes) -> None:
        await self._listener.feed(pcm)

    async def _audio_overflow(self, turn: UserTurn) -> None:
        await self._emit(
            m.error(
                f"this turn's audio passed {self.limits.max_turn_seconds:.0f} s; the rest of it is ignored "
                "(end the turn with create_response)",
                "audio_too_long",
            )
        )

    async def _user_started_speaking(self) -> None:
        """The user really started to speak (voice activity, not one noisy window): barge-in starts here."""
        log.debug("agent=%s user started speaking", self.agent_name)

    async def _publish_transcript(self, turn: UserTurn, text: str, *, final: bool) -> None:
        """Send the user's growing transcript as one message with a stable id (``final`` once settled)."""
        text = text.strip()
        if not text:
            if final and turn.message_id is not None and not turn.sent_final:
                text = turn.sent_text  # the final pass heard nothing new: keep what was shown
            else:
                return
        if text == turn.sent_text and (turn.sent_final or not final):
            return
        if turn.message_id is None:
            turn.message_id = self._add_message("user", [m.text_part(text)]).id
        else:
            self.messages[turn.message_id].content = [m.text_part(text)]
        turn.sent_text, turn.sent_final = text, final
        await self._emit(m.message("user", turn.message_id, self.messages[turn.message_id].content, final=final))

    async def _on_text(self, content: str) -> None:
        if not content.strip():
            await self._emit(m.error("'text' message has empty 'content'", "bad_field"))
            return
        await self._add_typed([m.text_part(content)])

    async def _add_typed(self, content: list[dict[str, Any]]) -> None:
        stored = self._add_message("user", content)
        self._typed_ids.append(stored.id)
        await self._emit(m.message("user", stored.id, stored.content))

    async def _queue_turn(self, turn: UserTurn) -> None:
        self._turns.put_nowait(_TurnRequest(turn, self._typed_ids, turn.ended_at or time.monotonic()))
        self._typed_ids = []

    # ---- turns -------------------------------------------------------------------------------------------

    async def _turn_worker(self) -> None:
        while True:
            request = await self._turns.get()
            try:
                await self._run_turn(request)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the session: the turn is already closed by _run_turn
                log.exception("turn of agent '%s' failed", self.agent_name)
            finally:
                self._turns.task_done()

    async def _run_turn(self, request: _TurnRequest) -> None:
        turn = request.turn
        timeline = TurnTimeline(self.agent_name, self.options.mode)
        call_speech_end = turn.speech_ended_at if self.options.mode == "call" and turn.speech_ended_at else None
        timeline.mark("speech_end", call_speech_end or request.requested_at)
        transcript = ""
        if turn.streamer.received_s:
            try:
                transcript = (await turn.settle()).strip()
            except Exception as exc:
                log.warning("transcription failed for agent '%s': %s", self.agent_name, exc)
                await self._emit(m.error("speech recognition failed for this turn; please try again", "stt_failed"))
            await self._publish_transcript(turn, transcript, final=True)
            transcript = turn.sent_text
        timeline.mark("transcript_final")
        inputs = [self.messages[i].text for i in request.typed_ids] + ([transcript] if transcript else [])
        if not any(t.strip() for t in inputs) and not request.typed_ids:
            await self._emit(m.status("response_cancelled", reason="no_input"))
            log.info("turn %s audio_s=%.1f: no speech or text, response_cancelled", timeline.log_line(), turn.streamer.received_s)
            return
        await self._emit(m.status("response_created"))
        try:
            reply = self._echo_reply(inputs)
            timeline.mark("llm_first_token")
            stored = self._add_message("assistant", [m.text_part(reply)])
            await self._emit(m.message("assistant", stored.id, stored.content))
        except Exception as exc:
            log.exception("reply of agent '%s' failed", self.agent_name)
            await self._emit(m.error(f"the reply failed: {type(exc).__name__}", "reply_failed"))
            await self._emit(m.status("response_cancelled", reason="error"))
            return
        await self._emit(m.status("response_done"))
        timeline.mark("response_done")
        self._start_speech(stored, reply, timeline)

    def _echo_reply(self, inputs: list[str]) -> str:
        said = " ".join(t.strip() for t in inputs if t.strip())
        return said or "I received an image."

    # ---- greeting and speech -----------------------------------------------------------------------------

    async def _greet(self) -> None:
        greetings = self.agent.greetings
        if greetings is None or not greetings.choices:
            return
        choice = self._rng.choice(greetings.choices)
        text = choice.content if isinstance(choice, GreetingFile) else choice
        stored = self._add_message("assistant", [m.text_part(text)])
        await self._emit(m.message("assistant", stored.id, stored.content))
        file = None
        if isinstance(choice, GreetingFile) and choice.file and self._greeting_dir is not None:
            file = (self._greeting_dir / choice.file).resolve()
        self._start_speech(stored, text, None, file=file)

    def _start_speech(self, stored: StoredMessage, text: str, timeline: TurnTimeline | None, file: Path | None = None) -> None:
        speech = _Speech(speech_id=str(stored.id), message_id=stored.id)
        self._speeches[speech.speech_id] = speech
        speech.task = asyncio.create_task(self._play(speech, text, timeline, file), name=f"speech:{stored.id}")

    async def _play(self, speech: _Speech, text: str, timeline: TurnTimeline | None, file: Path | None) -> None:
        """Speak ``text`` as ``speech``; a reply's ``timeline`` gets its TTS and first-audio marks."""
        timeline = timeline or TurnTimeline(self.agent_name, self.options.mode)
        voice = self.agent.voices.character
        async with self._speech_lock:  # one speech at a time: frames of two replies must never interleave
            if speech.interrupted:
                return

            async def send(pcm: bytes) -> None:
                for frame in split_pcm(pcm, self.limits.audio_frame_bytes):
                    await self._emit(m.audio(speech.speech_id, frame))
                    speech.timeline.extend_last(pcm16_seconds(frame, OUTPUT_RATE))
                    timeline.mark("first_audio_sent")

            try:
                if voice and voice.leading_silence:
                    speech.timeline.add("", 0.0)
                    await send(silence_pcm16(voice.leading_silence))
                if file is not None and self.services.load_greeting_audio is not None:
                    speech.timeline.add(text, 0.0)
                    await send(await self.services.load_greeting_audio(file))
                elif voice is not None:
                    for sentence in split_sentences(text):
                        speech.timeline.add(sentence, 0.0)
                        timeline.mark("first_text_to_tts")
                        async for chunk in self.services.synthesize(sentence, voice):
                            timeline.mark("first_tts_chunk")
                            await send(chunk)
                if voice and voice.trailing_silence:
                    speech.timeline.add("", 0.0)
                    await send(silence_pcm16(voice.trailing_silence))
                speech.timeline.complete = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("speech %s of agent '%s' failed: %s", speech.speech_id, self.agent_name, exc)
                await self._emit(m.error(f"speech synthesis failed for message {speech.message_id}", "tts_failed"))
            finally:
                if "speech_end" in timeline.marks:  # a reply, not the greeting
                    log.info("turn speech=%s %s speech_s=%.2f", speech.speech_id, timeline.log_line(), speech.timeline.seconds)
                    await self._emit(m.ServerMessage({"type": INTERNAL_METRICS_TYPE, "agent": self.agent_name,
                                                      "mode": self.options.mode, "stages_ms": timeline.ms(),
                                                      **timeline.durations()}))

    async def _on_interrupt(self, msg: m.Interrupt) -> None:
        speech_id = msg.speech_id
        if speech_id is None:
            speech_id = next(reversed(self._speeches), None) if self._speeches else None
        speech = self._speeches.get(speech_id) if speech_id is not None else None
        if speech is None:
            await self._emit(m.error(f"interrupt names no speech of this session ({str(speech_id)[:20]!r})", "unknown_speech"))
            return
        if speech.interrupted:
            return
        heard, all_heard = speech.timeline.heard_text(msg.interrupted_at or 0.0)
        if all_heard:
            return  # the whole reply was played: nothing to cut
        speech.interrupted = True
        if speech.task and not speech.task.done():
            speech.task.cancel()
        stored = self.messages[speech.message_id]
        stored.content = [m.text_part(truncated(heard))] + [p for p in stored.content if p.get("type") != "text"]
        await self._emit(m.message(stored.role, stored.id, stored.content))

    def _add_message(self, role: str, content: list[dict[str, Any]]) -> StoredMessage:
        stored = StoredMessage(id=len(self.messages), role=role, content=content)
        self.messages.append(stored)
        return stored
