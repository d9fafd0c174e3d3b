"""One conversation: the state and turn-taking of a session, independent of Ray and of the websocket.

A Conversation gets typed client messages in order through ``handle`` and sends server messages through
the injected ``emit``; it reaches the models only through the injected ``Services`` callables, so the same
class runs in unit tests, in a benchmark's in-process baseline and inside the SessionActor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from agents.config import AgentConfig, GreetingFile, VoiceSpec
from agents.control import ControlAgentConfig, LlmControl, PatternControl, Verdict
from agents.listener import Listener, ListenerEvents, UserTurn
from llm.client import LlmError, LlmRequest
from agents.prompts import Persona, example_messages, join_prompt, wants_json
from agents.reply_parser import ReplyParser, Segment
from agents.speech_timeline import SpeechTimeline, truncated
from agents.timeline import INTERNAL_METRICS_TYPE, TurnTimeline
from agents.turns import TurnConfig
from protocol import messages as m
from speech.audio import OUTPUT_RATE, pcm16_seconds, silence_pcm16, split_pcm
from speech.stt import Transcript

log = logging.getLogger("voi.conversation")

Emit = Callable[[m.ServerMessage], Awaitable[None]]


Synthesize = Callable[[str, VoiceSpec, "str | None", bool], AsyncIterator[bytes]]  # text, voice, tone, cached


@dataclass
class Services:
    """The model calls a conversation makes; each is an async callable so backends and transports swap."""

    transcribe: Callable[[bytes, str | None], Awaitable[Transcript]]  # 16 kHz PCM16 -> transcript
    synthesize: Synthesize  # one piece of text -> 24 kHz PCM16 chunks (cached: from the greeting cache)
    load_greeting_audio: Callable[[Path], Awaitable[bytes]] | None = None  # server file -> 24 kHz PCM16
    stream_llm: Callable[[LlmRequest], AsyncIterator[str]] | None = None  # a reply's text as it is generated
    complete_llm: Callable[[LlmRequest], Awaitable[str]] | None = None  # a whole completion (classifier, invoke_llm)


@dataclass(frozen=True)
class Limits:
    max_turn_seconds: float = 120.0  # audio taken per user turn; the rest is refused with an error
    audio_frame_bytes: int = 24_000  # 0.5 s of 24 kHz PCM per outgoing audio frame
    turn: TurnConfig = field(default_factory=TurnConfig)  # listening: voice activity, partials, end of turn
    invoke_llm_models: tuple[str, ...] = ()  # models invoke_llm may name besides the agent's own


@dataclass
class StoredMessage:
    id: int
    role: str
    content: list[dict[str, Any]]
    tone: str | None = None  # an assistant message's voice tone

    @property
    def text(self) -> str:
        return " ".join(p["text"] for p in self.content if p.get("type") == "text")

    def set_text(self, text: str) -> None:
        self.content = [m.text_part(text)] + [p for p in self.content if p.get("type") != "text"]


@dataclass
class _TurnRequest:
    turn: UserTurn
    typed_ids: list[int]
    requested_at: float


@dataclass
class _Speech:
    speech_id: str
    message_id: int
    segments: "asyncio.Queue[Segment | None]" = field(default_factory=asyncio.Queue)
    timeline: SpeechTimeline = field(default_factory=SpeechTimeline)
    task: asyncio.Task[None] | None = None
    interrupted: bool = False
    barged_in: bool = False  # cut by the server's barge-in (an estimate the client's interrupt may refine)
    first_audio_at: float | None = None  # time.monotonic() of its first audio frame

    def played_s(self, now: float) -> float:
        """Seconds the client has played, estimated: playback starts with the first frame, in real time."""
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


@dataclass
class _Reply:
    stored: StoredMessage | None = None
    speech: _Speech | None = None
    sent_text: str = ""
    ended: bool = False  # response_done or response_cancelled was sent


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
        system_prompt = join_prompt(agent.system_prompt)
        self.persona = Persona(system_prompt, tuple(example_messages(agent.examples)), wants_json(system_prompt))
        self._control, self._control_config = self._make_control(agent.control_agent)
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
        self._reply: _Reply | None = None
        self._reply_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._speeches: dict[str, _Speech] = {}
        self._speech_lock = asyncio.Lock()

    def _make_control(self, config: ControlAgentConfig | str | None) -> tuple[Verdict | None, ControlAgentConfig | None]:
        if not isinstance(config, ControlAgentConfig):
            return None, None
        if config.is_pattern_matching:
            return PatternControl(config.denial_phrases), config

        async def complete(messages: list[dict[str, Any]], model: str) -> str:
            if self.services.complete_llm is None:
                raise LlmError("no language model is available to the control agent")
            return await self.services.complete_llm(LlmRequest(model, messages, 0.0, 60, self.agent.llm_timeout_s))

        return LlmControl(config, join_prompt(config.system_prompt), example_messages(config.examples), complete), config

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Send ``init_done`` and the greeting; from then on ``handle`` takes client messages."""
        self._worker = asyncio.create_task(self._turn_worker(), name=f"turns:{self.agent_name}")
        await self._emit(m.status("init_done", agent_name=self.agent_name))
        if self.options.init_greeting:
            await self._greet()

    async def close(self) -> None:
        tasks = [s.task for s in self._speeches.values() if s.task and not s.task.done()]
        tasks += [t for t in (self._worker, self._reply_task) if t is not None]
        tasks += list(self._side_tasks)
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
        await asyncio.gather(*self._side_tasks, return_exceptions=True)

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
            await self._on_invoke_llm(msg)
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
        """The user really started to speak (sustained, loud enough): in call mode, that is a barge-in."""
        if self.options.mode != "call":
            return
        now = time.monotonic()
        reply_running = self._reply_task is not None and not self._reply_task.done()
        speech = next(reversed(self._speeches.values()), None)
        if not reply_running and (speech is None or not speech.playing(now)):
            return
        log.info("agent=%s barge-in: the user speaks over the reply", self.agent_name)
        await self._emit(m.status("user_interrupt"))
        if reply_running and self._reply_task is not None:
            self._reply_task.cancel()
        if speech is not None and not speech.interrupted:
            speech.barged_in = True
            await self._cut(speech, speech.played_s(now))

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

    async def _on_invoke_llm(self, msg: m.InvokeLlm) -> None:
        """A one-off completion for the client (``llm_response``); it runs beside the conversation."""
        model = msg.model or self.agent.llm_model
        if self.agent.is_echo and msg.model is None or self.services.complete_llm is None:
            await self._emit(m.error(f"agent '{self.agent_name}' has no LLM to invoke", "unsupported"))
            return
        if model != self.agent.llm_model and model not in self.limits.invoke_llm_models:
            await self._emit(m.error(f"invoke_llm: model {model[:60]!r} is not allowed", "model_not_allowed"))
            return
        messages = [{"role": "system", "content": msg.prompt}] if msg.prompt else []
        for index, item in enumerate(msg.messages):
            role, content = item.get("role"), item.get("content")
            if role not in ("system", "user", "assistant") or not isinstance(content, (str, list)):
                await self._emit(m.error(f"invoke_llm: messages[{index}] needs a role and a string or list content", "bad_field"))
                return
            messages.append({"role": role, "content": content})
        if not messages:
            await self._emit(m.error("invoke_llm: no prompt and no messages", "bad_field"))
            return
        complete = self.services.complete_llm
        request = LlmRequest(model, messages, self.agent.temperature, self.agent.max_tokens, self.agent.llm_timeout_s)

        async def run() -> None:
            try:
                await self._emit(m.llm_response(await complete(request)))
            except LlmError as exc:
                await self._emit(m.error(f"invoke_llm: {exc}", exc.code))

        task = asyncio.create_task(run(), name="invoke_llm")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

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
        elif any(s.playing(time.monotonic()) for s in self._speeches.values()):
            await asyncio.sleep(0.02)  # the client sends an interrupt for the playing reply right after this turn
        timeline.mark("transcript_final")
        inputs = [self.messages[i].text for i in request.typed_ids] + ([transcript] if transcript else [])
        if not any(t.strip() for t in inputs) and not request.typed_ids:
            await self._emit(m.status("response_cancelled", reason="no_input"))
            log.info("turn %s audio_s=%.1f: no speech or text, response_cancelled", timeline.log_line(), turn.streamer.received_s)
            return
        reply = self._reply = _Reply()
        self._reply_task = asyncio.create_task(self._respond(reply, inputs, timeline), name="reply")
        await asyncio.wait({self._reply_task})  # a barge-in cancels the reply, not this worker

    async def _respond(self, reply: _Reply, inputs: list[str], timeline: TurnTimeline) -> None:
        """Create the reply: its text as it streams, each finished piece handed to speech at once."""
        await self._emit(m.status("response_created"))
        try:
            if self.agent.is_echo:
                await self._say_all(reply, ReplyParser(plain=True), self._echo_reply(inputs), timeline)
            else:
                await self._llm_reply(reply, timeline)
            await self._end_reply(reply, "response_done", timeline)
        except asyncio.CancelledError:
            await self._end_reply(reply, "response_cancelled", timeline, reason="interrupted")
            raise
        except LlmError as exc:
            await self._emit(m.error(str(exc), exc.code))
            ended = "response_done" if reply.stored is not None else "response_cancelled"
            await self._end_reply(reply, ended, timeline, reason="error")
        except Exception as exc:
            log.exception("reply of agent '%s' failed", self.agent_name)
            await self._emit(m.error(f"the reply failed: {type(exc).__name__}", "reply_failed"))
            await self._end_reply(reply, "response_done" if reply.stored else "response_cancelled", timeline, reason="error")

    async def _end_reply(self, reply: _Reply, status: str, timeline: TurnTimeline, reason: str | None = None) -> None:
        if reply.ended:
            return
        reply.ended = True
        if reply.speech is not None:
            reply.speech.segments.put_nowait(None)
        interrupted = reply.speech is not None and reply.speech.interrupted
        if reply.stored is not None and not interrupted and reply.stored.text != reply.sent_text:
            reply.sent_text = reply.stored.text
            await self._emit(m.message("assistant", reply.stored.id, reply.stored.content, final=True))
        extra = {"reason": reason} if status == "response_cancelled" and reason else {}
        await self._emit(m.status(status, **extra))
        timeline.mark("response_done")
        if reply.speech is None:
            log.info("turn %s: %s without speech", timeline.log_line(), status)

    def _echo_reply(self, inputs: list[str]) -> str:
        said = " ".join(t.strip() for t in inputs if t.strip())
        return said or "I received an image."

    async def _llm_reply(self, reply: _Reply, timeline: TurnTimeline) -> None:
        """Stream the LLM's reply; with a control agent, hold the first sentence back until it passes."""
        if self.services.stream_llm is None:
            raise LlmError(f"no language model is configured for agent '{self.agent_name}'", "llm_unavailable")
        messages = self.persona.messages(self._history(), self.agent.context_tokens)
        config = self._control_config
        temperatures = config.temperatures(self.agent.temperature) if config else [self.agent.temperature]
        giveup = config.giveup_text(self._rng) if config else None
        for attempt, temperature in enumerate(temperatures, 1):
            check = self._control if (attempt < len(temperatures) or giveup) else None
            request = LlmRequest(self.agent.llm_model, messages, temperature, self.agent.max_tokens, self.agent.llm_timeout_s)
            if await self._stream_attempt(reply, request, ReplyParser(), check, timeline):
                return
            log.info("agent=%s control agent refused attempt %d/%d (temperature %.2f)", self.agent_name, attempt,
                     len(temperatures), temperature)
        await self._say_all(reply, ReplyParser(plain=True), giveup or "", timeline)

    async def _stream_attempt(self, reply: _Reply, request: LlmRequest, parser: ReplyParser, check: Verdict | None,
                              timeline: TurnTimeline) -> bool:
        """One LLM attempt; False when the control agent refused its first sentence (nothing was said)."""
        assert self.services.stream_llm is not None
        held: list[Segment] = []
        stream = self.services.stream_llm(request)
        try:
            async for delta in stream:
                timeline.mark("llm_first_token")
                segments = parser.feed(delta)
                if check is not None:
                    held += segments
                    if not held:
                        continue
                    if not await check(parser.text):
                        return False
                    check, segments, held = None, held, []
                await self._say(reply, parser, segments, timeline)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        tail = held + parser.finish()
        if check is not None and tail and not await check(parser.text):
            return False
        await self._say(reply, parser, tail, timeline)
        return True

    async def _say_all(self, reply: _Reply, parser: ReplyParser, text: str, timeline: TurnTimeline) -> None:
        timeline.mark("llm_first_token")
        await self._say(reply, parser, parser.parse(text), timeline)

    async def _say(self, reply: _Reply, parser: ReplyParser, segments: list[Segment], timeline: TurnTimeline) -> None:
        """Show the reply's text so far and hand its finished segments to speech."""
        text = parser.text
        if not text or (not segments and text == reply.sent_text):
            return
        if reply.stored is None:
            reply.stored = self._add_message("assistant", [m.text_part(text)])
            reply.speech = self._start_speech(reply.stored, timeline)
        if reply.speech is not None and reply.speech.interrupted:
            return  # the stored text is what was heard: it must not grow again
        reply.stored.set_text(text)
        reply.stored.tone = parser.tone
        if segments:
            reply.sent_text = text
            await self._emit(m.message("assistant", reply.stored.id, reply.stored.content, final=False))
        for segment in segments:
            assert reply.speech is not None
            reply.speech.segments.put_nowait(segment)

    def _history(self) -> list[dict[str, Any]]:
        """The conversation as LLM messages: consecutive user messages merged, image parts kept."""
        out: list[dict[str, Any]] = []
        for stored in self.messages:
            if stored.role == "assistant":
                if not stored.text:
                    continue
                content: Any = stored.text
                if self.persona.json_replies:  # keep showing the model its own format
                    content = json.dumps({"voice_tone": stored.tone or "neutral", "text": stored.text})
                out.append({"role": "assistant", "content": content})
                continue
            parts = [p for p in stored.content if p.get("type") in ("text", "image_url")]
            if out and out[-1]["role"] == "user":
                out[-1]["content"] = out[-1]["content"] + parts
            else:
                out.append({"role": "user", "content": list(parts)})
        for message in out:
            content = message["content"]
            if isinstance(content, list) and all(p.get("type") == "text" for p in content):
                message["content"] = "\n".join(p["text"] for p in content)
        return out

    # ---- greeting and speech -----------------------------------------------------------------------------

    async def _greet(self) -> None:
        greetings = self.agent.greetings
        if greetings is None or not greetings.choices:
            return
        choice = self._rng.choice(greetings.choices)
        text = choice.content if isinstance(choice, GreetingFile) else choice
        parser = ReplyParser(greetings.voice_tone, plain=True)
        segments = parser.parse(text)
        stored = self._add_message("assistant", [m.text_part(parser.text or text)])
        stored.tone = greetings.voice_tone
        await self._emit(m.message("assistant", stored.id, stored.content))
        file = None
        if isinstance(choice, GreetingFile) and choice.file and self._greeting_dir is not None:
            file = (self._greeting_dir / choice.file).resolve()
        speech = self._start_speech(stored, None, file=file, cached=True)
        for segment in segments:
            speech.segments.put_nowait(segment)
        speech.segments.put_nowait(None)

    def _start_speech(self, stored: StoredMessage, timeline: TurnTimeline | None, file: Path | None = None,
                      cached: bool = False) -> _Speech:
        speech = _Speech(speech_id=str(stored.id), message_id=stored.id)
        self._speeches[speech.speech_id] = speech
        speech.task = asyncio.create_task(self._play(speech, timeline, file, cached), name=f"speech:{stored.id}")
        return speech

    async def _play(self, speech: _Speech, timeline: TurnTimeline | None, file: Path | None, cached: bool) -> None:
        """Speak the segments queued for ``speech`` as they come; a reply's ``timeline`` gets its TTS marks."""
        timeline = timeline or TurnTimeline(self.agent_name, self.options.mode)
        character = self.agent.voices.character
        failed = False
        async with self._speech_lock:  # one speech at a time: frames of two replies must never interleave
            if speech.interrupted:
                return

            async def send(pcm: bytes) -> None:
                for frame in split_pcm(pcm, self.limits.audio_frame_bytes):
                    await self._emit(m.audio(speech.speech_id, frame))
                    if speech.first_audio_at is None:
                        speech.first_audio_at = time.monotonic()
                    speech.timeline.extend_last(pcm16_seconds(frame, OUTPUT_RATE))
                    timeline.mark("first_audio_sent")

            async def silence(seconds: float) -> None:
                if seconds > 0:
                    speech.timeline.add("", 0.0)
                    await send(silence_pcm16(seconds))

            try:
                await silence(character.leading_silence if character else 0.0)
                if file is not None and self.services.load_greeting_audio is not None:
                    speech.timeline.add(self.messages[speech.message_id].text, 0.0)
                    await send(await self.services.load_greeting_audio(file))
                    while await speech.segments.get() is not None:
                        pass
                else:
                    while (segment := await speech.segments.get()) is not None:
                        voice = self.agent.voices.for_role(segment.role)
                        if voice is None:
                            continue
                        aside = segment.role == "narrator" and voice is self.agent.voices.narrator
                        await silence(voice.leading_silence if aside else 0.0)
                        speech.timeline.add(segment.text, 0.0)
                        timeline.mark("first_text_to_tts")
                        try:
                            async for chunk in self.services.synthesize(segment.spoken, voice, segment.tone, cached):
                                timeline.mark("first_tts_chunk")
                                await send(chunk)
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:  # say so once, and go on with the next piece
                            log.warning("speech %s of agent '%s' failed: %s", speech.speech_id, self.agent_name, exc)
                            if not failed:
                                await self._emit(m.error(f"speech synthesis failed for message {speech.message_id}", "tts_failed"))
                            failed = True
                            continue
                        await silence(voice.trailing_silence if aside else 0.0)
                await silence(character.trailing_silence if character else 0.0)
                speech.timeline.complete = True
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
        reply = self._reply
        if reply is not None and reply.speech is speech and self._reply_task is not None and not self._reply_task.done():
            self._reply_task.cancel()  # the text is still streaming: stop the LLM too
        played = msg.interrupted_at if msg.interrupted_at is not None else speech.played_s(time.monotonic())
        if speech.interrupted and not (speech.barged_in and msg.interrupted_at is not None):
            return
        speech.barged_in = False  # the client's own number is better than the server's estimate
        await self._cut(speech, played)

    async def _cut(self, speech: _Speech, played_s: float) -> None:
        """Stop ``speech`` and cut its stored message to what was heard plus "... (interrupted)"."""
        heard, all_heard = speech.timeline.heard_text(played_s)
        if all_heard:
            return  # the whole reply was played: nothing to cut
        speech.interrupted = True
        if speech.task and not speech.task.done():
            speech.task.cancel()
        stored = self.messages[speech.message_id]
        stored.set_text(truncated(heard))
        await self._emit(m.message(stored.role, stored.id, stored.content))

    def _add_message(self, role: str, content: list[dict[str, Any]]) -> StoredMessage:
        stored = StoredMessage(id=len(self.messages), role=role, content=content)
        self.messages.append(stored)
        return stored

