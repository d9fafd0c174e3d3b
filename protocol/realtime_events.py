"""The OpenAI Realtime protocol's vocabulary: its session settings, its server events, and the two dialects.

The beta protocol (clients that send ``OpenAI-Beta: realtime=v1``) and the GA one name a few events and
session fields differently (``response.audio.delta`` / ``response.output_audio.delta``, ``modalities`` /
``output_modalities``, ``turn_detection`` / ``audio.input.turn_detection``). Clients' events are accepted
in either form; server events go out in the dialect the client speaks. This module holds shapes only: the
state machine that maps them to and from the Voi conversation is ``protocol/realtime.py``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from common.errors import CodedError
from protocol.framing import FrameError
from protocol.messages import ClientTool, parse_client_tools, parse_tool_choice
from protocol.pcm import BYTES_PER_SAMPLE

Dialect = Literal["beta", "ga"]
AUDIO_RATE = 24_000  # the protocol's PCM16 rate, both ways
AudioFormat = Literal["pcm16", "pcmu", "pcma"]  # 24 kHz PCM16, G.711 mu-law or A-law (8 kHz, a byte a sample)
BETA_FORMATS: dict[AudioFormat, str] = {"pcm16": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}
GA_FORMATS: dict[AudioFormat, dict[str, Any]] = {"pcm16": {"type": "audio/pcm", "rate": AUDIO_RATE},
                                                 "pcmu": {"type": "audio/pcmu"}, "pcma": {"type": "audio/pcma"}}
BYTES_PER_MS: dict[AudioFormat, int] = {"pcm16": AUDIO_RATE * BYTES_PER_SAMPLE // 1000, "pcmu": 8, "pcma": 8}
BETA_NAMES = {  # GA name -> beta name, for the server events that differ
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
}


class RealtimeError(CodedError):
    """A client event we refuse: answered with an ``error`` event naming the event and the field."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message, code)
        self.param = param


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass(frozen=True)
class SessionConfig:
    """What a client's ``session.update`` events have set so far (the server's defaults otherwise)."""

    model: str
    turn_detection: str | None = "server_vad"  # server_vad | semantic_vad | None (push-to-talk)
    modalities: tuple[str, ...] = ("audio", "text")
    transcribe_input: bool = False  # send the input transcription events (OpenAI's default is off)
    transcription_model: str = "whisper-1"
    instructions: str | None = None  # a client's instructions (used only where the server allows it)
    voice: str | None = None  # one of the agent's TTS voices
    tools: tuple[ClientTool, ...] = ()  # the client's function tools (it runs them; the server's own are not listed)
    tool_choice: str | None = None  # auto (None) | none | required
    input_format: AudioFormat = "pcm16"  # what input_audio_buffer.append and input_audio parts carry
    output_format: AudioFormat = "pcm16"  # what response.output_audio.delta carries
    expires_at: int = 0

    @property
    def audio_out(self) -> bool:
        return "audio" in self.modalities


class StreamConverter(Protocol):
    """One audio stream's converter: chunks in order, ``flush`` at its end (what a resampler still holds)."""

    def __call__(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


@dataclass(frozen=True)
class AudioCodec:
    """How a session's audio is converted (speech/g711.py, wired by the deployment): ``decoder(format)`` makes
    one input stream's converter to the Listener's 16 kHz PCM16, ``encoder(format)`` one reply's converter from
    the Synthesizer's 24 kHz PCM16."""

    decoder: Callable[[AudioFormat], StreamConverter]
    encoder: Callable[[AudioFormat], StreamConverter]


def _format(value: Any, where: str) -> AudioFormat | None:
    """A format as the beta names it (``g711_ulaw``) or as a GA object (``{"type": "audio/pcmu"}``)."""
    if value is None:
        return None
    if isinstance(value, str):
        found = next((f for f, name in BETA_FORMATS.items() if name == value), None)
    elif isinstance(value, dict) and value.get("type", "audio/pcm") == "audio/pcm":
        found = "pcm16" if value.get("rate", AUDIO_RATE) == AUDIO_RATE else None
    elif isinstance(value, dict):
        found = next((f for f, shape in GA_FORMATS.items() if shape["type"] == value.get("type")), None)
    else:
        found = None
    if found is None:
        raise RealtimeError(f"session.update: '{where}': supported formats are 24 kHz PCM16 ('pcm16' or "
                            "{'type': 'audio/pcm', 'rate': 24000}) and G.711 at 8 kHz ('g711_ulaw' / 'g711_alaw' or "
                            "{'type': 'audio/pcmu'} / {'type': 'audio/pcma'})", "unsupported_audio_format",
                            f"session.{where}")
    return found


def _turn_detection(value: Any, where: str) -> str | None:
    if value is None:
        return None
    kind = value.get("type", "server_vad") if isinstance(value, dict) else None
    if kind not in ("server_vad", "semantic_vad"):
        raise RealtimeError(f"session.update: '{where}' must be null or have type 'server_vad' or 'semantic_vad'",
                            "invalid_value", f"session.{where}")
    return kind


def _modalities(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or any(v not in ("audio", "text") for v in value):
        raise RealtimeError(f"session.update: '{where}' must be a list of 'audio' and 'text'", "invalid_value",
                            f"session.{where}")
    return ("audio", "text") if "audio" in value else ("text",)


def client_tools(raw: Any, event: str, param: str) -> tuple[ClientTool, ...]:
    """A client's ``tools`` (function tools, the flat Realtime form)."""
    try:
        return parse_client_tools(raw, event)
    except FrameError as exc:
        raise RealtimeError(str(exc), "invalid_value", param) from None


def tool_choice(raw: Any, event: str, param: str) -> str | None:
    """``auto``, ``none`` or ``required`` (a choice naming one function is not supported)."""
    try:
        return parse_tool_choice(raw, event)
    except FrameError as exc:
        raise RealtimeError(str(exc), "invalid_value", param) from None


def apply_session_update(config: SessionConfig, session: Any) -> SessionConfig:
    """The settings after one ``session.update`` (beta or GA field names); fields it leaves out keep their value."""
    if not isinstance(session, dict):
        raise RealtimeError("session.update needs a 'session' object", "invalid_value", "session")
    changes: dict[str, Any] = {}
    audio = session.get("audio") if isinstance(session.get("audio"), dict) else {}
    audio_in = audio.get("input") if isinstance(audio.get("input"), dict) else {}
    audio_out = audio.get("output") if isinstance(audio.get("output"), dict) else {}
    for key, where, value in (("input_format", "input_audio_format", session.get("input_audio_format")),
                              ("output_format", "output_audio_format", session.get("output_audio_format")),
                              ("input_format", "audio.input.format", audio_in.get("format")),
                              ("output_format", "audio.output.format", audio_out.get("format"))):
        found = _format(value, where)
        if found is not None:
            changes[key] = found
    for where, holder, key in (("turn_detection", session, "turn_detection"),
                               ("audio.input.turn_detection", audio_in, "turn_detection")):
        if key in holder:
            changes["turn_detection"] = _turn_detection(holder[key], where)
    for holder, key in ((session, "input_audio_transcription"), (audio_in, "transcription")):
        if key in holder:
            value = holder[key]
            changes["transcribe_input"] = isinstance(value, dict)
            if isinstance(value, dict) and isinstance(value.get("model"), str):
                changes["transcription_model"] = value["model"]
    for where, key in (("modalities", "modalities"), ("output_modalities", "output_modalities")):
        if session.get(key) is not None:
            changes["modalities"] = _modalities(session[key], where)
    voice = audio_out.get("voice", session.get("voice"))
    if voice is not None:
        if not isinstance(voice, str) or not voice.strip():
            raise RealtimeError("session.update: 'voice' must be a voice name", "invalid_value", "session.voice")
        changes["voice"] = voice
    if "tools" in session:
        changes["tools"] = client_tools(session["tools"], "session.update", "session.tools")
    if "tool_choice" in session:
        changes["tool_choice"] = tool_choice(session["tool_choice"], "session.update", "session.tool_choice")
    if session.get("instructions") is not None:
        if not isinstance(session["instructions"], str):
            raise RealtimeError("session.update: 'instructions' must be a string", "invalid_value", "session.instructions")
        changes["instructions"] = session["instructions"]
    return replace(config, **changes)


@dataclass
class Events:
    """Builds server events in one dialect; every event gets a fresh ``event_id``."""

    dialect: Dialect
    session_id: str = field(default_factory=lambda: new_id("sess"))

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        name = BETA_NAMES.get(kind, kind) if self.dialect == "beta" else kind
        return {"type": name, "event_id": new_id("event"), **fields}

    def error(self, message: str, code: str, *, param: str | None = None, event_id: str | None = None,
              kind: str = "invalid_request_error") -> dict[str, Any]:
        return self.event("error", error={"type": kind, "code": code, "message": message, "param": param,
                                          "event_id": event_id})

    def session(self, config: SessionConfig, voice: str) -> dict[str, Any]:
        """The session object of ``session.created`` / ``session.updated`` in this dialect."""
        turn = {"type": config.turn_detection} if config.turn_detection else None
        transcription = {"model": config.transcription_model} if config.transcribe_input else None
        common: dict[str, Any] = {"id": self.session_id, "object": "realtime.session",
                                  "instructions": config.instructions or "",
                                  "tools": [t.flat() for t in config.tools], "tool_choice": config.tool_choice or "auto",
                                  "expires_at": config.expires_at}
        if self.dialect == "beta":  # no model: beta's session.model admits only OpenAI's model names, not an agent's
            return {**common, "modalities": list(config.modalities), "voice": voice,
                    "input_audio_format": BETA_FORMATS[config.input_format],
                    "output_audio_format": BETA_FORMATS[config.output_format], "input_audio_transcription": transcription,
                    "turn_detection": turn, "max_response_output_tokens": "inf"}
        return {**common, "type": "realtime", "model": config.model,
                "output_modalities": ["audio"] if config.audio_out else ["text"],
                "max_output_tokens": "inf",
                "audio": {"input": {"format": dict(GA_FORMATS[config.input_format]), "transcription": transcription,
                                    "turn_detection": turn, "noise_reduction": None},
                          "output": {"format": dict(GA_FORMATS[config.output_format]), "voice": voice, "speed": 1.0}}}

    def item_created(self, item: dict[str, Any], previous_item_id: str | None, *, complete: bool = True) -> list[dict[str, Any]]:
        """A new conversation item: ``conversation.item.created`` (beta); ``.added``, and ``.done`` when it is
        ``complete`` already (GA: an assistant item is done with its response)."""
        if self.dialect == "beta":
            return [self.event("conversation.item.created", previous_item_id=previous_item_id, item=item)]
        added = [self.event("conversation.item.added", previous_item_id=previous_item_id, item=item)]
        return added + ([self.item_done(item, previous_item_id)] if complete else [])

    def item_done(self, item: dict[str, Any], previous_item_id: str | None) -> dict[str, Any]:
        return self.event("conversation.item.done", previous_item_id=previous_item_id, item=item)

    def user_item(self, item_id: str, *, text: str | None = None, audio: bool = False,
                  transcript: str | None = None) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if audio:
            content.append({"type": "input_audio", "transcript": transcript})
        if text is not None:
            content.append({"type": "input_text", "text": text})
        return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": content}

    def assistant_item(self, item_id: str, status: str, *, audio: bool, text: str | None) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if text is not None:
            part = self.part(audio, text)
            if self.dialect == "ga":  # a GA item's content names its parts output_audio / output_text
                part["type"] = "output_" + part["type"]
            content.append(part)
        return {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
                "content": content}

    @staticmethod
    def part(audio: bool, text: str) -> dict[str, Any]:
        """The part of ``response.content_part.added`` / ``.done``: ``audio`` with its transcript, or ``text``. GA
        keeps these beta names in these two events (the SDK's types refuse ``output_audio`` here); only the item's
        own content says ``output_audio`` / ``output_text`` (``assistant_item``)."""
        return {"type": "audio", "transcript": text} if audio else {"type": "text", "text": text}

    def function_call_item(self, item_id: str, status: str, call_id: str, name: str, arguments: str) -> dict[str, Any]:
        return {"id": item_id, "object": "realtime.item", "type": "function_call", "status": status, "call_id": call_id,
                "name": name, "arguments": arguments}

    def function_output_item(self, item_id: str, call_id: str, output: str) -> dict[str, Any]:
        return {"id": item_id, "object": "realtime.item", "type": "function_call_output", "status": "completed",
                "call_id": call_id, "output": output}

    def response(self, response_id: str, status: str, *, audio: bool, output: list[dict[str, Any]],
                 details: dict[str, Any] | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        modalities = ["audio", "text"] if audio else ["text"]
        body: dict[str, Any] = {"id": response_id, "object": "realtime.response", "status": status,
                                "status_details": details, "output": output, "usage": usage,
                                "conversation_id": "conv_" + self.session_id.removeprefix("sess_"), "metadata": None}
        if self.dialect == "beta":
            body["modalities"] = modalities
        else:
            body["output_modalities"] = ["audio"] if audio else ["text"]
        return body


def usage(input_text: str, output_text: str) -> dict[str, Any]:
    """Token counts for ``response.done``: estimates (4 characters a token), as the LLM's own counts are not
    carried through the conversation."""
    tokens_in, tokens_out = max(1, len(input_text) // 4), max(1, len(output_text) // 4) if output_text else 0
    return {"total_tokens": tokens_in + tokens_out, "input_tokens": tokens_in, "output_tokens": tokens_out,
            "input_token_details": {"text_tokens": tokens_in, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": tokens_out, "audio_tokens": 0}}


def expires_at(ttl_s: float) -> int:
    return int(time.time() + ttl_s)
