"""One conversation: the state and turn-taking of a session, independent of Ray and of the websocket.

It gets typed client messages in order through ``handle``, sends events through the injected ``emit`` and
reaches the models only through the injected ``Services``, so the same class runs in unit tests, a benchmark's
in-process baseline and a session host. Its rooms: History, Listener (audio in), BargeIn, TurnQueue, ReplyWriter
with the RunningReply (text out), Speaker (audio out), UserTranscript (the user's words as shown); they call
each other's methods and write only their own state. It owns the session's mode (``SessionMode``), tells the
Recorder what it sends and reports, and takes its time from its ``clock`` (common/clock.py)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from agents.agent import Agent
from agents.audio_input import AudioInput
from agents.barge_in import BargeIn
from agents.continuation import Continuation
from agents.greeting import choose_greeting, speak_greeting
from agents.history import History, StoredMessage, TranscriptMessages
from agents.invoke import prepare_invoke
from agents.listener import Listener
from agents.mode import SessionMode
from agents.recording import Recorder
from agents.replies import Reply, ReplyWriter, RunningReply
from agents.services import Emit, ReportTurn, Services, SessionPolicy
from agents.session_tools import SessionTools
from agents.speaker import Speaker
from agents.speculation import Speculator
from agents.timeline import TurnReport, TurnTimeline
from agents.tool_round import ServerTools
from agents.turn_queue import TurnQueue, TurnRequest
from agents.turns import TurnConfig
from agents.user_transcript import UserTranscript
from agents.user_turn import AudioOverflow, ListenerEvent, SpeechStarted, TranscriptUpdate, TurnEnded, UserTurn
from common.clock import MONOTONIC, Clock
from protocol import events as ev
from protocol import messages as m

log = logging.getLogger("voi.conversation")


class Conversation:
    def __init__(self, *, agent_name: str, agent: Agent, init: m.Init, services: Services, emit: Emit,
                 report_turn: ReportTurn | None = None, policy: SessionPolicy = SessionPolicy(),
                 listening: TurnConfig = TurnConfig(), greeting_dir: Path | None = None,
                 rng: random.Random | None = None, recorder: Recorder | None = None,
                 tools: ServerTools | None = None, clock: Clock = MONOTONIC) -> None:
        self.clock, self.agent_name, self.recorder = clock, agent_name, recorder
        self.agent, self._init, self.policy = agent, init, policy
        self.mode = SessionMode(init.mode)
        listening = (listening.for_phone() if init.narrowband else listening).with_agent(agent.turn_taking)  # phone line, agent
        self._listening = listening
        self._speculator = Speculator(services, agent.voices.for_role)  # the reply started before the turn is over
        self.history = History()
        self._services, self._send, self._report = services, emit, report_turn
        self._greeting_dir = greeting_dir
        self._rng = rng or random.Random()
        self._speaker = Speaker(agent_name=agent_name, mode=self.mode, agent=agent, history=self.history,
                                services=self._speculator.services, emit=self._emit, report_turn=self._report_turn,
                                stream_audio=init.stream_output_audio, recorder=recorder, clock=clock)
        self._replies = ReplyWriter(agent_name=agent_name, agent=agent, history=self.history,
                                    speaker=self._speaker, services=self._speculator.services, emit=self._emit, rng=self._rng, clock=clock)
        self._reply = RunningReply()
        self._listener = Listener(transcribe=services.transcribe, on_event=self._on_listener_event, mode=self.mode,
                                  config=listening, max_turn_s=policy.max_turn_seconds, stream_partials=init.stream_user_stt,
                                  predict_end=services.predict_end_of_turn, clock=clock)
        self._transcripts = TranscriptMessages(self.history)
        self._continuation = Continuation(agent_name=agent_name, config=listening, listener=self._listener,
                                          speaker=self._speaker, reply=self._reply, history=self.history,
                                          transcripts=self._transcripts, emit=self._emit, clock=clock)
        self._barge_in = BargeIn(agent_name=agent_name, config=listening, listener=self._listener, speaker=self._speaker,
                                 emit=self._emit, transcribe=services.transcribe, reply=self._reply,
                                 continuation=self._continuation, clock=clock)
        self._words = UserTranscript(agent_name=agent_name, mode=self.mode, messages=self._transcripts,
                                     barge_in=self._barge_in, continuation=self._continuation, emit=self._emit)
        self._input = AudioInput(init.input_audio_format, feed=self._listener.feed, stream_per_turn=init.mode == "chat",
                                 report=lambda exc: self._emit(ev.Error(str(exc), exc.code)), recorder=recorder)
        self.tools = SessionTools(tools, init.tools, init.tool_choice)
        self._turns = TurnQueue(self.history, self._emit, clock)
        self._worker: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()

    @property
    def init(self) -> m.Init:
        """The session's ``init``, with the mode it is in now."""
        return replace(self._init, mode=self.mode.value)

    @property
    def messages(self) -> list[StoredMessage]:
        return self.history.messages

    async def start(self) -> None:
        """Send ``init_done`` and the greeting; from then on ``handle`` takes client messages."""
        self._worker = asyncio.create_task(self._turns.serve(self._run_turn, self.agent_name), name=f"turns:{self.agent_name}")
        recording_id = self.recorder.id if self.recorder is not None else None  # (ext) the user may ask for its deletion
        await self._emit(ev.SessionReady(self.agent_name, recording_id))
        greeting = choose_greeting(self.agent.greetings, self.agent.greeting_tone, self._rng, self._greeting_dir)
        if self._init.init_greeting and greeting is not None:
            await speak_greeting(greeting, self.history, self._speaker, self._emit)

    async def close(self) -> None:
        tasks = [t for t in (*self._speaker.tasks(), self._worker, *self._reply.tasks(), *self._side_tasks) if t is not None]
        await self._input.close()
        await self._listener.close()
        self._speculator.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.recorder is not None:
            self.recorder.close()

    async def wait_idle(self) -> None:
        """Wait until queued turns are answered and all speech is sent (tests and benchmarks use this)."""
        await self._turns.join()
        await asyncio.gather(*self._speaker.tasks(), return_exceptions=True)
        await asyncio.gather(*self._side_tasks, return_exceptions=True)

    async def _emit(self, event: ev.ConversationEvent) -> None:
        if self.recorder is not None:
            self.recorder.sent(event)
        await self._send(event)

    async def _report_turn(self, report: TurnReport) -> None:
        if self.recorder is not None:
            self.recorder.turn_reported(report)
        if self._report is not None:
            await self._report(report)

    async def handle(self, msg: m.ClientMessage) -> None:
        try:
            await self._dispatch(msg)
        finally:
            self._turns.message_handled()

    async def _dispatch(self, msg: m.ClientMessage) -> None:
        if isinstance(msg, m.Audio):
            await self._input.write(msg.data)
        elif isinstance(msg, m.Text):
            if not msg.content.strip():
                await self._emit(ev.Error("'text' message has empty 'content'", "bad_field"))
                return
            self._continuation.forget()
            await self._turns.add_typed([m.text_part(msg.content)])
        elif isinstance(msg, m.ImageUrl):
            self._continuation.forget()
            await self._turns.add_typed([m.image_part(msg.url)])
        elif isinstance(msg, m.CreateResponse):
            await self._input.end_turn()  # a compressed turn's last samples reach the Listener first
            await self._queue_turn(self._listener.take_turn(), msg)
        elif isinstance(msg, m.ToolResult):
            if await self.tools.take_result(self.history, msg, self._emit):  # the reply goes on at once
                await self._queue_turn(self._listener.blank_turn(), goes_on=True)
        elif isinstance(msg, m.SetTools):
            self.tools.set_client(msg.tools, msg.tool_choice)
        elif isinstance(msg, m.Interrupt):
            await self._barge_in.client_interrupt(msg)
        elif isinstance(msg, m.InvokeLlm):  # a one-off completion for the client, beside the conversation
            work = await prepare_invoke(msg, self.agent_name, self.agent, self.policy.invoke_llm_models,
                                        self._services.complete_llm, self._emit)
            if work is not None:
                self._spawn(work, "invoke_llm")
        elif isinstance(msg, m.SetMode):  # a transport whose clients switch turn-taking (OpenAI's turn_detection)
            self.mode.value = msg.mode
        elif isinstance(msg, m.ClearAudio):
            self._listener.take_turn()  # the audio heard so far in this turn is dropped
        elif isinstance(msg, m.ForgetMessage):
            self.history.forget(msg.message_id)
        elif isinstance(msg, m.Played):
            await self._speaker.confirm_played(msg.speech_id, msg.played_s)
        elif isinstance(msg, m.Init):
            await self._emit(ev.Error("'init' was already received; ignoring the second one", "duplicate_init"))

    async def _on_listener_event(self, event: ListenerEvent) -> None:
        if isinstance(event, TranscriptUpdate):
            await self._words.show(event.turn, event.text, final=event.final)
            if event.final or event.at_silence:  # (at a silence: before the utterance is even called ended)
                self._speculate(event.turn, event.text)
        elif isinstance(event, SpeechStarted):
            self._speculator.cancel()  # the user goes on
            if self.mode.call:  # (over the agent, only once it is heard to be words)
                await self._barge_in.speech_started(self._spawn)
            else:
                await self._emit(ev.UserSpeechStarted())
        elif isinstance(event, TurnEnded):
            if self._barge_in.announced(event.turn):
                await self._emit(ev.UserSpeechStopped())
            queued = await self._queue_turn(event.turn)
            if not self._barge_in.judging(event.turn):  # a backchannel is no turn to go on with
                self._continuation.ended(queued)
        elif isinstance(event, AudioOverflow):
            await self._emit(ev.Error(f"this turn's audio passed {self.policy.max_turn_seconds:.0f} s; the rest of it "
                                     "is ignored (end the turn with create_response)", "audio_too_long"))

    def _speculate(self, turn: UserTurn, text: str) -> None:
        """Start the reply to what the user said so far, before the turn is over (agents/speculation.py): only
        while the agent is silent, so the history it answers is the one the reply will see."""
        quiet = not self._reply.running() and not self._speaker.speaking(self.clock.now()) and self._turns.idle
        if self._listening.speculate and quiet and turn is self._listener.turn and text.strip() and self._barge_in.announced(turn):
            self._speculator.start(text, self._replies.first_request(self.tools.for_reply()),
                                   echo_text=text if self.agent.is_echo else None)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` beside the conversation (closed with it)."""
        task = asyncio.create_task(work, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _queue_turn(self, turn: UserTurn, request: m.CreateResponse | None = None, goes_on: bool = False) -> TurnRequest:
        goes_on = self.tools.take_answered() or goes_on
        self._continuation.forget()
        queued = self._turns.put(turn, self.tools.for_reply(request), goes_on)
        if self.recorder is not None:
            self.recorder.end_user_turn()
        return queued

    async def _run_turn(self, request: TurnRequest) -> None:
        turn = request.turn
        timeline = TurnTimeline(self.agent_name, self.mode.value, clock=self.clock)
        call_speech_end = turn.speech_ended_at if self.mode.call and turn.speech_ended_at else None
        timeline.mark("speech_end", call_speech_end or request.requested_at)
        transcript: str | None = ""
        if turn.streamer.received_s:
            transcript = await self._words.settle(request)
            if transcript is None:
                return  # the user went on with it, or it was a backchannel or a noise: no reply
        elif not request.goes_on:  # the client's interrupt of a playing speech comes right after create_response
            await self._turns.after_next_message(request, self._speaker.any_playing)
        timeline.mark("transcript_final")
        inputs = [self.history[i].text for i in request.typed_ids] + ([transcript] if transcript else [])
        if not any(t.strip() for t in inputs) and not request.typed_ids and not request.goes_on:
            await self._emit(ev.ResponseCancelled("no_input"))
            log.info("turn %s audio_s=%.1f: no speech or text, response_cancelled", timeline.log_line(),
                     turn.streamer.received_s)
            return
        if request.abandoned:  # (the user went on while its transcript was shown: it keeps growing)
            self._transcripts.reopen(turn)
            return
        timeline.reopened = self._continuation.was_reopened(turn)
        self._speculator.reply_begins(" ".join(inputs), timeline)
        request.reply = reply = Reply()
        await self._reply.run(reply, self._replies.respond(reply, inputs, timeline, request.tools))
