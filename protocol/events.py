"""What a conversation tells its client, as typed events: the seam between the conversation and a transport.

The conversation (agents/) emits these; each transport is a codec over them and nothing else: the Voi
codec (``protocol/voi_codec.py``) writes Voi frames, the OpenAI Realtime codec
(``protocol/realtime_outbound.py``) writes its JSON events. A transport decides what its wire can say:
the Voi protocol has no voice-activity events and shows tool calls only to a client that asked. A new
transport (a phone network, WebRTC) is one more codec over the same events, never a parser of another's frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SessionReady:
    """The conversation runs (Voi: ``status: init_done``)."""

    agent_name: str
    recording_id: str | None = None  # (ext) the user may ask for the recording's deletion


@dataclass(frozen=True)
class Message:
    """A user transcript or typed text, or an assistant reply, shown whole each time it changes (one ``id``)."""

    role: str  # "user" | "assistant"
    id: int
    content: list[dict[str, Any]]
    final: bool = True  # False while a transcript or a reply still grows

    @property
    def text(self) -> str:
        return " ".join(p.get("text", "") for p in self.content if p.get("type") == "text")


@dataclass(frozen=True)
class AudioChunk:
    """Reply audio: 24 kHz PCM16, at most ``AUDIO_FRAME_BYTES`` per chunk."""

    speech_id: str
    pcm: bytes = field(repr=False)


@dataclass(frozen=True)
class AudioFile:
    """(ext) A whole utterance as one compressed file (``stream_output_audio: false``)."""

    speech_id: str
    data: bytes = field(repr=False)
    format: str = "ogg_opus"


@dataclass(frozen=True)
class SpeechDone:
    """All of a speech's audio was sent (or it was cut)."""

    speech_id: str
    interrupted: bool = False


@dataclass(frozen=True)
class ResponseCreated:
    """A reply starts."""


@dataclass(frozen=True)
class ResponseDone:
    """A reply's text is complete (its audio may still be going out)."""


@dataclass(frozen=True)
class ResponseCancelled:
    reason: str | None = None  # no_input | interrupted | error


@dataclass(frozen=True)
class UserInterrupt:
    """The user spoke over the agent (call mode): the reply stops."""


@dataclass(frozen=True)
class UserSpeechStarted:
    """Voice activity began in the user's audio."""


@dataclass(frozen=True)
class TurnReopened:
    """The user went on within the resume window: the user message ``message_id`` grows again (its transcript was
    final) and the reply to it was abandoned; the whole turn is answered once it ends again."""

    message_id: int


@dataclass(frozen=True)
class UserSpeechStopped:
    """Voice activity ended (in call mode: the end of the user's turn)."""


@dataclass(frozen=True)
class ToolCallStarted:
    """The LLM called a tool. ``client``: the client runs it and must answer with its result; otherwise the
    server runs it (shown to clients that want to see tool activity)."""

    call_id: str
    name: str
    arguments: str  # the JSON text the LLM wrote
    client: bool = False
    message_id: int | None = None  # the assistant message this call belongs to, when it said something first


@dataclass(frozen=True)
class ToolCallDone:
    """A server-side tool call ended: its result (as the LLM sees it, truncated) or its error."""

    call_id: str
    name: str
    ok: bool
    output: str
    elapsed_ms: float
    error: str | None = None


@dataclass(frozen=True)
class Error:
    """Something the client should know went wrong; the session goes on unless the transport closes it."""

    text: str
    code: str


@dataclass(frozen=True)
class LlmResponse:
    """The answer to an ``invoke_llm`` (a Voi request beside the conversation)."""

    content: str


ConversationEvent = (SessionReady | Message | AudioChunk | AudioFile | SpeechDone | ResponseCreated | ResponseDone
                     | ResponseCancelled | UserInterrupt | UserSpeechStarted | UserSpeechStopped | TurnReopened
                     | ToolCallStarted | ToolCallDone | Error | LlmResponse)
