"""What a conversation is given from outside: the model calls it makes, as plain async callables, and the
server's policy for one session.

The Conversation never imports Ray, a model or a socket: the session host passes deployment-handle calls,
a unit test passes small fakes, and a benchmark's in-process baseline passes the models themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from agents.agent import VoiceSpec
from agents.timeline import TurnReport
from llm.client import LlmRequest
from protocol import events as ev
from speech.stt import Transcript

Emit = Callable[[ev.ConversationEvent], Awaitable[None]]  # an event for the client's transport, in order
ReportTurn = Callable[[TurnReport], Awaitable[None]]  # an answered turn's latencies, for the operator's metrics
Speak = Callable[[str, VoiceSpec, "str | None", bool], AsyncIterator[bytes]]  # text, voice, tone, cached


@dataclass
class Services:
    """The model calls a conversation makes; each is an async callable so backends and transports swap."""

    transcribe: Callable[[bytes, str | None], Awaitable[Transcript]]  # 16 kHz PCM16 -> transcript
    speak: Speak  # one piece of text in a voice -> 24 kHz PCM16 chunks (cached: from the greeting cache)
    load_greeting_audio: Callable[[Path], Awaitable[bytes]] | None = None  # server file -> 24 kHz PCM16
    stream_llm: Callable[[LlmRequest], AsyncIterator[str]] | None = None  # a reply's text as it is generated
    complete_llm: Callable[[LlmRequest], Awaitable[str]] | None = None  # a whole completion (classifier, invoke_llm)
    predict_end_of_turn: Callable[[bytes], Awaitable[float]] | None = None  # 16 kHz PCM16 -> P(the turn is complete)


@dataclass(frozen=True)
class SessionPolicy:
    """What the server allows one session."""

    max_turn_seconds: float = 120.0  # audio taken per user turn; the rest is refused with an error
    invoke_llm_models: tuple[str, ...] = ()  # models invoke_llm may name besides the agent's own
