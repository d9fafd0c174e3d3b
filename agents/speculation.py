"""Answering early: a reply started before the user's turn is known to be over (``speculate``).

When the user stops speaking (the transcript up to the silence, then the utterance's settled one; in chat mode
before the button is let go),
the Conversation starts the reply it would give now in the background: the LLM's stream (the request the reply
writer would make with this transcript) and the synthesis of its first sentence. Nothing of it is sent: it
only fills buffers. When the turn does end and the reply asks for the same LLM request (the user's words
normalized) and the same first sentence, it gets the buffers and the live rest: a hit, and the LLM's and the
synthesizer's first latencies are already spent. When the user goes on, or the words or the history differ,
the speculation is cancelled: a miss, whose cost (LLM calls, streamed pieces, synthesized seconds) is
counted for the turn's report. At most one speculation is in flight.

``Speculator.services`` wraps the conversation's Services: the reply writer and the Speaker call
``stream_llm`` and ``speak`` as always and never know whether they were answered from a speculation.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from agents.agent import VoiceSpec
from agents.reply_parser import ReplyParser, Segment
from agents.services import Services
from agents.timeline import TurnTimeline
from llm.client import LlmRequest
from llm.tool_calls import ToolCalls
from protocol.pcm import OUTPUT_BYTES_PER_SECOND

log = logging.getLogger("voi.conversation")
Delta = str | ToolCalls
T = TypeVar("T")


def normalized(text: str) -> str:
    """Words as compared for a hit: lower case, no punctuation, single spaces."""
    return " ".join(re.sub(r"[^\w'\s]+", " ", text.lower()).split())


def _same_request(a: LlmRequest, b: LlmRequest) -> bool:
    """The same LLM request but for the punctuation and case of the user's words."""
    def key(request: LlmRequest) -> tuple[Any, ...]:
        messages = [{**m, "content": normalized(m["content"])} if m.get("role") == "user" and isinstance(m.get("content"), str)
                    else m for m in request.messages]
        return (request.model, messages, request.temperature, request.max_tokens, request.tools, request.tool_choice)

    return key(a) == key(b)


Cost = tuple[int, int, float]  # LLM calls, streamed pieces (about tokens), synthesized seconds
NOTHING: Cost = (0, 0, 0.0)


def _add(a: Cost, b: Cost) -> Cost:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


@dataclass(eq=False)
class _Ahead:
    """One speculation: what it asked, and what it got so far."""

    words: str  # the user's words it answers (normalized)
    request: LlmRequest | None  # None: the echo agent (no LLM)
    deltas: list[Delta] = field(default_factory=list)
    llm_done: bool = False
    llm_failed: BaseException | None = None  # a hit re-raises it where the reply reads the stream
    first: tuple[str, VoiceSpec, str | None] | None = None  # the first sentence's synthesis: spoken text, voice, tone
    chunks: list[bytes] = field(default_factory=list)
    tts_done: bool = False
    tts_failed: BaseException | None = None
    grew: asyncio.Event = field(default_factory=asyncio.Event)
    llm_task: asyncio.Task[None] | None = None
    tts_task: asyncio.Task[None] | None = None

    def tell(self) -> None:
        self.grew.set()
        self.grew = asyncio.Event()

    def stop(self) -> None:
        for task in (self.llm_task, self.tts_task):
            if task is not None:
                task.cancel()

    def cost(self) -> Cost:
        llm = 1 if self.request is not None else 0
        return llm, sum(1 for d in self.deltas if isinstance(d, str)), sum(map(len, self.chunks)) / OUTPUT_BYTES_PER_SECOND


class Speculator:
    def __init__(self, services: Services, voice_for: Callable[[str], VoiceSpec | None]) -> None:
        self._real = services
        self._voice_for = voice_for
        self._ahead: _Ahead | None = None  # in flight, nobody's yet
        self._taken: _Ahead | None = None  # the one the current reply was answered from
        self._discarded: Cost = NOTHING  # dropped since it was last reported
        self._missed = False  # a speculation was dropped since the last reply began
        self._timeline: TurnTimeline | None = None  # the report of the reply being written
        self.services = replace(services, stream_llm=self._stream_llm if services.stream_llm else None, speak=self._speak)

    def start(self, words: str, request: LlmRequest | None, echo_text: str | None = None) -> None:
        """Start the reply to ``words`` ahead: the LLM ``request`` (or, for the echo agent, its ``echo_text``)
        and the first sentence's synthesis. One in flight for other words is dropped."""
        key = normalized(words)
        if self._ahead is not None and self._ahead.words == key:
            return
        self.cancel()
        ahead = self._ahead = _Ahead(key, request)
        if request is not None and self._real.stream_llm is not None:
            ahead.llm_task = asyncio.create_task(self._pump_llm(ahead), name="speculation:llm")
        elif echo_text is not None:
            ahead.llm_done = True
            segments = ReplyParser(plain=True).parse(echo_text)
            if segments:
                self._synthesize(ahead, segments[0])

    def cancel(self) -> None:
        """The user went on, or the turn changed: drop the speculation in flight (its cost is counted)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        ahead.stop()
        self._missed = True
        self._discarded = _add(self._discarded, ahead.cost())
        log.info("speculation dropped: %d LLM call(s), %d piece(s), %.2f s of speech", *ahead.cost())

    def reply_begins(self, words: str, timeline: TurnTimeline) -> None:
        """A reply to ``words`` is about to be written: a speculation for other words is a miss. The reply's
        report (``timeline``) says hit or miss, and what speculation discarded since the last report."""
        if self._ahead is not None and self._ahead.words != normalized(words):
            self.cancel()
        self._taken, self._timeline = None, timeline
        self._report(hit=self._ahead is not None)
        self._missed = False

    def close(self) -> None:
        for ahead in (self._ahead, self._taken):
            if ahead is not None:
                ahead.stop()

    def _report(self, hit: bool) -> None:
        if self._timeline is None:
            return
        self._timeline.speculation = "hit" if hit else ("miss" if self._missed else None)
        self._timeline.discarded = _add(self._timeline.discarded, self._discarded)
        self._discarded = NOTHING

    async def _pump_llm(self, ahead: _Ahead) -> None:
        assert ahead.request is not None and self._real.stream_llm is not None
        parser = ReplyParser()
        stream = self._real.stream_llm(ahead.request)
        try:
            async for delta in stream:
                ahead.deltas.append(delta)
                ahead.tell()
                if ahead.first is None and ahead.tts_task is None and isinstance(delta, str):
                    segments = parser.feed(delta)
                    if segments:
                        self._synthesize(ahead, segments[0])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ahead.llm_failed = exc
        finally:
            ahead.llm_done = True
            ahead.tell()
            await stream.aclose()  # type: ignore[attr-defined]

    def _synthesize(self, ahead: _Ahead, segment: Segment) -> None:
        voice = self._voice_for(segment.role)
        if voice is None:
            return
        ahead.first = (segment.spoken, voice, segment.tone)
        ahead.tts_task = asyncio.create_task(self._pump_tts(ahead, segment.spoken, voice, segment.tone),
                                             name="speculation:tts")

    async def _pump_tts(self, ahead: _Ahead, text: str, voice: VoiceSpec, tone: str | None) -> None:
        try:
            async for chunk in self._real.speak(text, voice, tone, False):
                ahead.chunks.append(chunk)
                ahead.tell()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ahead.tts_failed = exc
        finally:
            ahead.tts_done = True
            ahead.tell()

    async def _stream_llm(self, request: LlmRequest) -> AsyncIterator[Delta]:
        ahead = self._ahead
        if ahead is None or ahead.request is None or not _same_request(ahead.request, request):
            if ahead is not None:
                self.cancel()
                self._report(hit=False)
            assert self._real.stream_llm is not None
            async for delta in self._real.stream_llm(request):
                yield delta
            return
        self._ahead, self._taken = None, ahead
        log.info("speculation hit: %d piece(s) of the reply were ready", len(ahead.deltas))
        async for delta in _replay(ahead, ahead.deltas, lambda: ahead.llm_done, lambda: ahead.llm_failed, ahead.llm_task):
            yield delta

    async def _speak(self, text: str, voice: VoiceSpec, tone: str | None, cached: bool) -> AsyncIterator[bytes]:
        ahead = self._taken or self._ahead
        if ahead is None or ahead.first is None or ahead.first != (text, voice, tone):
            async for chunk in self._real.speak(text, voice, tone, cached):
                yield chunk
            return
        if ahead is self._ahead:  # the echo agent: the synthesis is all it speculated
            self._ahead, self._taken = None, ahead
        ahead.first = None  # the rest of the reply is synthesized as usual
        async for chunk in _replay(ahead, ahead.chunks, lambda: ahead.tts_done, lambda: ahead.tts_failed, ahead.tts_task):
            yield chunk


async def _replay(ahead: _Ahead, buffer: list[T], done: Callable[[], bool], failed: Callable[[], BaseException | None],
                  task: asyncio.Task[None] | None) -> AsyncIterator[T]:
    """What a speculation's ``task`` has put in ``buffer`` so far, then the rest as it comes, until ``done``; its
    failure is raised here, where the reply reads it. A reader that stops (a reply stopped, a speech cut) stops
    the task."""
    try:
        sent = 0
        while sent < len(buffer) or not done():
            if sent < len(buffer):
                sent += 1
                yield buffer[sent - 1]
            else:
                await ahead.grew.wait()
        if (error := failed()) is not None:
            raise error
    finally:
        if task is not None:
            task.cancel()  # (done by now, unless the reader stopped early)
