"""The reply writer: one assistant reply per turn, its text shown as it streams and spoken as it comes.

The text comes from the LLM (with the control agent's retries at higher temperatures and its give-up
text), or from the echo agent. Each finished segment goes to the Speaker at once, so speech starts long
before the LLM is done. Every reply that started ends with ``response_done`` or ``response_cancelled``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from agents.agent import Agent
from agents.control import ControlAgentConfig, LlmControl, PatternControl, Verdict
from agents.history import History, StoredMessage, ToolStep
from agents.reply_parser import ReplyParser, Segment
from agents.services import Emit, Services
from agents.speaker import Speaker, Speech
from agents.timeline import TurnTimeline
from agents.tool_round import TurnTools, run_round
from common.clock import Clock
from llm.client import LlmError, LlmRequest
from llm.tool_calls import ToolCall, ToolCalls
from protocol import events as ev
from protocol import messages as m

log = logging.getLogger("voi.conversation")


@dataclass
class Reply:
    stored: StoredMessage | None = None
    speech: Speech | None = None
    sent_text: str = ""
    ended: bool = False  # response_done or response_cancelled was sent
    base_text: str = ""  # what the reply said before the current LLM round (earlier rounds, a filler)
    filler_said: bool = False


class RunningReply:
    """The reply being written now (at most one): the turn worker runs it; the client's interrupt or a barge-in
    stops it. Stopping it cancels the reply's task, never the worker that waits for it."""

    def __init__(self) -> None:
        self._reply: Reply | None = None
        self._task: asyncio.Task[None] | None = None

    def current(self) -> Reply | None:
        """The reply while it is being written, else None."""
        return self._reply if self.running() else None

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def stop_and_wait(self) -> None:
        """Stop the reply and wait until it has ended (its ``response_cancelled`` is sent)."""
        self.stop()
        if self._task is not None:
            await asyncio.wait({self._task})

    async def run(self, reply: Reply, work: Coroutine[Any, Any, None]) -> None:
        """Write ``reply`` with ``work``; returns when it ends or is stopped."""
        self._reply, self._task = reply, asyncio.create_task(work, name="reply")
        await asyncio.wait({self._task})

    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []


class ReplyWriter:
    def __init__(self, *, agent_name: str, agent: Agent, history: History, speaker: Speaker, services: Services,
                 emit: Emit, rng: random.Random, clock: Clock) -> None:
        self._clock = clock
        self._agent_name = agent_name
        self._agent = agent
        self._persona = agent.persona
        self._history = history
        self._speaker = speaker
        self._services = services
        self._emit = emit
        self._rng = rng
        self._control = self._make_control(agent.control) if agent.control is not None else None

    def _make_control(self, config: ControlAgentConfig) -> Verdict:
        if config.is_pattern_matching:
            return PatternControl(config.denial_phrases)

        async def complete(messages: list[dict[str, Any]], model: str) -> str:
            if self._services.complete_llm is None:
                raise LlmError("no language model is available to the control agent")
            return await self._services.complete_llm(LlmRequest(model, messages, 0.0, 60, self._agent.llm_timeout_s))

        return LlmControl(config, complete)

    async def respond(self, reply: Reply, inputs: list[str], timeline: TurnTimeline,
                      tools: TurnTools = TurnTools()) -> None:
        """Create the reply: its text as it streams, each finished piece handed to speech at once."""
        await self._emit(ev.ResponseCreated())
        try:
            if self._agent.is_echo:
                said = " ".join(t.strip() for t in inputs if t.strip())
                await self._say_all(reply, ReplyParser(plain=True), said or "I received an image.", timeline)
            else:
                await self._llm_reply(reply, timeline, tools)
            await self._end(reply, ev.ResponseDone(), timeline)
        except asyncio.CancelledError:
            await self._end(reply, ev.ResponseCancelled("interrupted"), timeline)
            raise
        except LlmError as exc:
            await self._emit(ev.Error(str(exc), exc.code))
            await self._end(reply, ev.ResponseDone() if reply.stored is not None else ev.ResponseCancelled("error"), timeline)
        except Exception as exc:
            log.exception("reply of agent '%s' failed", self._agent_name)
            await self._emit(ev.Error(f"the reply failed: {type(exc).__name__}", "reply_failed"))
            await self._end(reply, ev.ResponseDone() if reply.stored else ev.ResponseCancelled("error"), timeline)

    async def _end(self, reply: Reply, ended: ev.ResponseDone | ev.ResponseCancelled, timeline: TurnTimeline) -> None:
        if reply.ended:
            return
        reply.ended = True
        if reply.speech is not None:
            reply.speech.end()
        interrupted = reply.speech is not None and reply.speech.interrupted
        if reply.stored is not None and not interrupted and reply.stored.text != reply.sent_text:
            reply.sent_text = reply.stored.text
            await self._emit(ev.Message("assistant", reply.stored.id, reply.stored.content, final=True))
        await self._emit(ended)
        timeline.mark("response_done")
        if reply.speech is None:
            log.info("turn %s: %s without speech", timeline.log_line(),
                     "response_done" if isinstance(ended, ev.ResponseDone) else "response_cancelled")

    async def _llm_reply(self, reply: Reply, timeline: TurnTimeline, tools: TurnTools) -> None:
        """Stream the LLM's reply; with a control agent, hold the first sentence back until it passes. When the
        LLM calls tools, run them and stream its next round, up to the agent's ``max_tool_rounds``."""
        if self._services.stream_llm is None:
            raise LlmError(f"no language model is configured for agent '{self._agent_name}'", "llm_unavailable")
        agent = self._agent
        config = agent.control
        temperatures = config.temperatures(agent.temperature) if config else [agent.temperature]
        giveup = config.giveup_text(self._rng) if config else None
        definitions = tools.definitions()
        for attempt, temperature in enumerate(temperatures, 1):
            check = self._control if (attempt < len(temperatures) or giveup) else None
            calls = await self._stream_attempt(reply, self._request(temperature, definitions, tools.choice), ReplyParser(),
                                               check, timeline)
            if calls is not None:
                break
            log.info("agent=%s control agent refused attempt %d/%d (temperature %.2f)", self._agent_name, attempt,
                     len(temperatures), temperature)
        else:
            await self._say_all(reply, ReplyParser(plain=True), giveup or "", timeline)
            return
        rounds = 1
        while calls:
            if not await self._tool_round(reply, calls, tools, timeline):
                return  # the client runs some of the calls: the reply ends here and goes on with their results
            rounds += 1
            choice = "none" if rounds >= agent.max_tool_rounds else None  # the last round must answer in words
            calls = await self._stream_attempt(reply, self._request(temperatures[0], definitions, choice), ReplyParser(),
                                               None, timeline)

    def first_request(self, tools: TurnTools) -> LlmRequest | None:
        """The LLM request a reply would begin with now (None: the echo agent, or no LLM): what speculation asks."""
        if self._agent.is_echo or self._services.stream_llm is None:
            return None
        config = self._agent.control
        temperature = config.temperatures(self._agent.temperature)[0] if config else self._agent.temperature
        return self._request(temperature, tools.definitions(), tools.choice)

    def _request(self, temperature: float, tools: tuple[dict[str, Any], ...], choice: str | None) -> LlmRequest:
        agent = self._agent
        messages = self._persona.messages(self._history.for_llm(self._persona.json_replies), agent.context_tokens)
        return LlmRequest(agent.llm_model, messages, temperature, agent.max_tokens, agent.llm_timeout_s,
                          tools=tools, tool_choice=choice if tools else None)

    async def _tool_round(self, reply: Reply, calls: tuple[ToolCall, ...], tools: TurnTools,
                          timeline: TurnTimeline) -> bool:
        """Run one round of calls; False when some are the client's (the reply waits for their results)."""
        if reply.stored is None:  # the LLM called tools before saying anything: the reply's message exists now
            reply.stored = self._history.add("assistant", [m.text_part("")])
        step = ToolStep(at=len(reply.stored.text), calls=list(calls))
        reply.stored.tool_steps.append(step)
        reply.base_text = reply.stored.text

        async def say_filler() -> None:
            if reply.filler_said or not self._agent.tool_fillers:
                return
            reply.filler_said = True
            await self._say_all(reply, ReplyParser(plain=True), self._rng.choice(self._agent.tool_fillers), timeline)
            if reply.stored is not None:  # said while the calls ran: the LLM is shown it before them, not after
                reply.base_text, step.at = reply.stored.text, len(reply.stored.text)

        outcome = await run_round(step, tools, self._emit, message_id=reply.stored.id,
                                  filler_after_s=self._agent.tool_filler_after_s, say_filler=say_filler,
                                  clock=self._clock)
        timeline.add_tool_time(outcome.elapsed_ms)
        log.info("agent=%s tool round: %s in %.0f ms", self._agent_name,
                 ", ".join(c.name for c in calls)[:200], outcome.elapsed_ms)
        return not outcome.client_calls

    async def _stream_attempt(self, reply: Reply, request: LlmRequest, parser: ReplyParser, check: Verdict | None,
                              timeline: TurnTimeline) -> tuple[ToolCall, ...] | None:
        """One LLM attempt: the tool calls it asked for (empty: none), None when the control agent refused its
        first sentence (nothing was said)."""
        assert self._services.stream_llm is not None
        held: list[Segment] = []
        calls: tuple[ToolCall, ...] = ()
        stream = self._services.stream_llm(request)
        try:
            async for delta in stream:
                if isinstance(delta, ToolCalls):
                    calls = delta.calls
                    continue
                timeline.mark("llm_first_token")
                segments = parser.feed(delta)
                if check is not None:
                    held += segments
                    if not held:
                        continue
                    if not await check(parser.text):
                        return None
                    check, segments, held = None, held, []
                await self._say(reply, parser, segments, timeline)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        tail = held + parser.finish()
        if check is not None and tail and not await check(parser.text):
            return None
        await self._say(reply, parser, tail, timeline)
        return calls

    async def _say_all(self, reply: Reply, parser: ReplyParser, text: str, timeline: TurnTimeline) -> None:
        timeline.mark("llm_first_token")
        await self._say(reply, parser, parser.parse(text), timeline)

    async def _say(self, reply: Reply, parser: ReplyParser, segments: list[Segment], timeline: TurnTimeline) -> None:
        """Show the reply's text so far and hand its finished segments to speech."""
        text = " ".join(t for t in (reply.base_text, parser.text) if t)
        if not parser.text or (not segments and text == reply.sent_text):
            return
        if reply.stored is None:
            reply.stored = self._history.add("assistant", [m.text_part(text)])
        if reply.speech is None:
            reply.speech = self._speaker.start(reply.stored, timeline)
        if reply.speech is not None and reply.speech.interrupted:
            return  # the stored text is what was heard: it must not grow again
        reply.stored.set_text(text)
        reply.stored.tone = parser.tone
        if segments:
            reply.sent_text = text
            await self._emit(ev.Message("assistant", reply.stored.id, reply.stored.content, final=False))
        for segment in segments:
            assert reply.speech is not None
            reply.speech.say(segment)
