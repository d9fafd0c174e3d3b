"""Typed client messages (parsed from frames) and builders for server messages.

Parsing is strict about the fields a message needs and tolerant of everything else: unknown fields are
ignored and the junk payload the JS client appends to control messages is dropped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from common.log_text import has_control_characters
from common.safe_json import parse_json
from protocol.framing import Frame, FrameError
from protocol.pcm import OUTPUT_BYTES_PER_SECOND

Mode = Literal["chat", "call"]
MAX_AUDIO_FRAME_BYTES = 1 << 20  # 32 s of 16 kHz PCM in one frame is far past anything a client sends
MAX_AGENT_NAME_CHARS = 100
AUDIO_FRAME_BYTES = OUTPUT_BYTES_PER_SECOND // 2  # the server's audio frames: at most 0.5 s of PCM16 each


@dataclass(frozen=True)
class Init:
    agent_name: str
    agent_config: dict[str, Any] | None = None
    mode: Mode = "chat"
    stream_user_stt: bool = True
    stream_output_audio: bool = True
    init_greeting: bool = True
    input_audio_format: str = "pcm16"
    send_turn_metrics: bool = False  # (ext) the client wants each answered turn's latency timeline
    send_tool_events: bool = False  # (ext) the client wants to see server-side tool calls and their results
    tools: tuple[ClientTool, ...] = ()  # (ext) functions the client runs itself when the LLM calls them
    tool_choice: str | None = None  # (ext) auto (None) | none | required
    # Set by a transport whose caller audio is a phone line (8 kHz G.711), never by a client's init: the
    # conversation listens with the phone profile of the turn settings (agents/turns.py TurnConfig.for_phone).
    narrowband: bool = False


@dataclass(frozen=True)
class ClientTool:
    """(ext) A function tool the client declares and runs: the LLM's calls of it go to the client."""

    name: str
    description: str
    parameters: dict[str, Any]

    def flat(self) -> dict[str, Any]:
        """The tool as the OpenAI Realtime API shows it."""
        return {"type": "function", "name": self.name, "description": self.description, "parameters": self.parameters}

    def definition(self) -> dict[str, Any]:
        """The tool as the chat-completions API takes it."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


INPUT_AUDIO_FORMATS = ("pcm16", "pcm_f32le", "webm", "ogg", "mp4")  # (ext) all but pcm16; see speech/codecs.py


@dataclass(frozen=True)
class Audio:
    # Bytes in the session's input_audio_format (PCM16 16 kHz mono by default): checked by the session,
    # which knows the format (audio may arrive before init, and compressed chunks have any length).
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Text:
    content: str


@dataclass(frozen=True)
class ImageUrl:
    url: str


@dataclass(frozen=True)
class CreateResponse:
    # Not on the Voi wire (OpenAI's response.create): this one reply's tools and tool_choice, over the session's.
    tools: tuple[ClientTool, ...] | None = None
    tool_choice: str | None = None


@dataclass(frozen=True)
class Interrupt:
    speech_id: str | None
    interrupted_at: float | None


@dataclass(frozen=True)
class InvokeLlm:
    model: str | None
    prompt: str | None
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class ToolResult:
    """(ext) The client's answer to a ``tool_call`` of one of its tools."""

    call_id: str
    output: str
    continue_reply: bool = True  # the reply goes on once every call of its step is answered (OpenAI: response.create)


@dataclass(frozen=True)
class SetTools:
    """Not on the Voi wire: the client's tools and tool_choice change mid-session (OpenAI's session.update)."""

    tools: tuple[ClientTool, ...]
    tool_choice: str | None = None


@dataclass(frozen=True)
class SetMode:
    """Not on the Voi wire: another transport switches turn-taking mid-session (OpenAI's turn_detection)."""

    mode: Mode


@dataclass(frozen=True)
class ClearAudio:
    """Not on the Voi wire: drop the audio of the current user turn (OpenAI's input_audio_buffer.clear)."""


@dataclass(frozen=True)
class ForgetMessage:
    """Not on the Voi wire: leave a message out of what the LLM is shown (OpenAI's conversation.item.delete)."""

    message_id: int


@dataclass(frozen=True)
class Played:
    """Not on the Voi wire: how much of a speech the listener has certainly heard, as the transport learned it
    (Twilio's ``mark`` echoes), instead of the Speaker's clock estimate."""

    speech_id: str
    played_s: float


ClientMessage = (Init | Audio | Text | ImageUrl | CreateResponse | Interrupt | InvokeLlm | ToolResult | SetTools | SetMode
                 | ClearAudio | ForgetMessage | Played)


def _bool(header: dict[str, Any], name: str, default: bool) -> bool:
    value = header.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FrameError(f"'{header['type']}' field '{name}' must be true or false", "bad_field")
    return value


def _finite(value: Any) -> bool:
    """A JSON number that is a real quantity: Python's JSON reads the literals NaN, Infinity and -Infinity
    (and 1e999 as infinity), and NaN passes every ``< 0`` check."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _str(header: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = header.get(name)
    if value is None:
        if required:
            raise FrameError(f"'{header['type']}' message needs a string field '{name}'", "bad_field")
        return None
    if not isinstance(value, str):
        raise FrameError(f"'{header['type']}' field '{name}' must be a string", "bad_field")
    return value


def _parse_init(header: dict[str, Any]) -> Init:
    agent_name = _str(header, "agent_name", required=True)
    assert agent_name is not None
    if not agent_name.strip():
        raise FrameError("'init' field 'agent_name' is empty", "bad_field")
    if len(agent_name) > MAX_AGENT_NAME_CHARS or has_control_characters(agent_name):
        raise FrameError(f"'init' field 'agent_name' must be at most {MAX_AGENT_NAME_CHARS} printable characters",
                         "bad_field")
    raw_config = header.get("agent_config")
    agent_config: dict[str, Any] | None
    if raw_config is None or raw_config == "":
        agent_config = None
    elif isinstance(raw_config, dict):
        agent_config = raw_config
    elif isinstance(raw_config, str):
        try:
            agent_config = parse_json(raw_config)
        except ValueError as exc:
            raise FrameError(f"'init' field 'agent_config' is not an acceptable JSON string: {exc}", "bad_field") from None
        if agent_config is not None and not isinstance(agent_config, dict):
            raise FrameError("'init' field 'agent_config' must encode a JSON object", "bad_field")
    else:
        raise FrameError("'init' field 'agent_config' must be a JSON string, an object or null", "bad_field")
    mode = header.get("mode") or "chat"
    if mode not in ("chat", "call"):
        raise FrameError(f"'init' field 'mode' must be 'chat' or 'call', got {str(mode)[:20]!r}", "bad_field")
    audio_format = header.get("input_audio_format") or "pcm16"
    if audio_format not in INPUT_AUDIO_FORMATS:
        raise FrameError(f"'init' field 'input_audio_format' must be one of {', '.join(INPUT_AUDIO_FORMATS)}",
                         "bad_field")
    # The original Voi's ``final_stt_correction`` is checked and then ignored: every utterance's transcript is
    # settled by a final pass over its whole audio (speech/streaming.py) because the reply is written from it.
    _bool(header, "final_stt_correction", True)
    return Init(
        agent_name=agent_name,
        agent_config=agent_config,
        mode=mode,
        stream_user_stt=_bool(header, "stream_user_stt", True),
        stream_output_audio=_bool(header, "stream_output_audio", True),
        init_greeting=_bool(header, "init_greeting", True),
        input_audio_format=audio_format,
        send_turn_metrics=_bool(header, "send_turn_metrics", False),
        send_tool_events=_bool(header, "send_tool_events", False),
        tools=parse_client_tools(header.get("tools"), "init"),
        tool_choice=parse_tool_choice(header.get("tool_choice"), "init"),
    )


TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # what chat-completions APIs accept as a function name
MAX_CLIENT_TOOLS = 64
MAX_TOOL_OUTPUT_CHARS = 100_000


TOOL_CHOICES = ("auto", "none", "required")


def parse_tool_choice(raw: Any, where: str) -> str | None:
    """(ext) ``auto`` (the default), ``none`` or ``required``."""
    if raw is None or raw == "auto":
        return None
    if raw not in TOOL_CHOICES:
        raise FrameError(f"'{where}' field 'tool_choice' must be one of {', '.join(TOOL_CHOICES)}", "bad_field")
    return str(raw)


def parse_client_tools(raw: Any, where: str) -> tuple[ClientTool, ...]:
    """(ext) Function tools a client declares: ``[{"type": "function", "name", "description", "parameters"}]``
    (OpenAI Realtime's flat form; the chat-completions form with a nested ``function`` is taken too)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_CLIENT_TOOLS:
        raise FrameError(f"'{where}' field 'tools' must be a list of at most {MAX_CLIENT_TOOLS} function tools", "bad_field")
    tools: list[ClientTool] = []
    for index, item in enumerate(raw):
        spec = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(spec, dict) or item.get("type", "function") != "function":
            raise FrameError(f"'{where}' field 'tools.{index}' must be a function tool", "bad_field")
        name, description = spec.get("name"), spec.get("description", "")
        parameters = spec.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise FrameError(f"'{where}' field 'tools.{index}.name' must match {TOOL_NAME.pattern}", "bad_field")
        if not isinstance(description, str) or not isinstance(parameters, dict):
            raise FrameError(f"'{where}' field 'tools.{index}': 'description' must be a string and 'parameters' "
                             "a JSON schema object", "bad_field")
        if any(t.name == name for t in tools):
            raise FrameError(f"'{where}' field 'tools.{index}.name': {name!r} is declared twice", "bad_field")
        tools.append(ClientTool(name, description, parameters))
    return tuple(tools)


def _parse_audio(frame: Frame) -> Audio:
    data = frame.payload
    if len(data) > MAX_AUDIO_FRAME_BYTES:
        raise FrameError(f"audio frame of {len(data)} bytes exceeds the {MAX_AUDIO_FRAME_BYTES}-byte limit", "audio_too_large")
    return Audio(data=data)


def _parse_interrupt(header: dict[str, Any]) -> Interrupt:
    speech_id = header.get("speech_id")
    if speech_id is not None and not isinstance(speech_id, (str, int)):
        raise FrameError("'interrupt' field 'speech_id' must be a string or null", "bad_field")
    at = header.get("interrupted_at")
    if at is not None and not (_finite(at) and at >= 0):
        raise FrameError("'interrupt' field 'interrupted_at' must be a non-negative finite number", "bad_field")
    return Interrupt(speech_id=None if speech_id is None else str(speech_id), interrupted_at=None if at is None else float(at))


def _parse_invoke_llm(header: dict[str, Any]) -> InvokeLlm:
    messages = header.get("messages") or []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise FrameError("'invoke_llm' field 'messages' must be a list of {role, content} objects", "bad_field")
    return InvokeLlm(model=_str(header, "model", required=False), prompt=_str(header, "prompt", required=False), messages=messages)


def _parse_tool_result(header: dict[str, Any]) -> ToolResult:
    call_id = _str(header, "call_id", required=True)
    output = header.get("output", "")
    if not isinstance(output, str):
        output = json.dumps(output)  # a JSON result is shown to the LLM as its text
    if len(output) > MAX_TOOL_OUTPUT_CHARS:
        raise FrameError(f"'tool_result' field 'output' is over {MAX_TOOL_OUTPUT_CHARS} characters", "bad_field")
    assert call_id is not None
    return ToolResult(call_id=call_id, output=output)


def parse_client_message(frame: Frame) -> ClientMessage:
    """Turn a decoded frame into a typed message; FrameError names the message and field at fault."""
    header = frame.header
    kind = frame.type
    if kind == "audio":
        return _parse_audio(frame)
    if kind == "init":
        return _parse_init(header)
    if kind == "text":
        content = _str(header, "content", required=True)
        assert content is not None
        return Text(content=content)
    if kind == "image_url":
        url = _str(header, "image_url", required=True)
        assert url is not None
        if not (url.startswith(("http://", "https://")) or url.startswith("data:image/")):
            raise FrameError("'image_url' must be an http(s) URL or a data:image/... URL", "bad_field")
        return ImageUrl(url=url)
    if kind == "create_response":
        return CreateResponse()
    if kind == "interrupt":
        return _parse_interrupt(header)
    if kind == "invoke_llm":
        return _parse_invoke_llm(header)
    if kind == "tool_result":
        return _parse_tool_result(header)
    raise FrameError(f"unknown message type {kind[:40]!r}", "unknown_type")


# ---- server -> client ---------------------------------------------------------------------------------


ServerMessage = Frame  # one message to the client: a JSON header and an optional payload (only ``audio``)


def status(value: str, **extra: Any) -> ServerMessage:
    return ServerMessage({"type": "status", "status": value, **extra})


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def message(role: str, message_id: int, content: list[dict[str, Any]], *, final: bool = True) -> ServerMessage:
    return ServerMessage({"type": "message", "role": role, "content": content, "id": message_id, "final": final})


def audio(speech_id: str, pcm24k: bytes) -> ServerMessage:
    if len(pcm24k) % 2:
        raise ValueError("audio payload must hold whole 16-bit samples")
    return ServerMessage({"type": "audio", "speech_id": speech_id}, pcm24k)


def audio_file(speech_id: str, data: bytes, audio_format: str = "ogg_opus") -> ServerMessage:
    """(ext) One whole utterance as a compressed file (``stream_output_audio: false``)."""
    return ServerMessage({"type": "audio", "speech_id": speech_id, "format": audio_format}, data)


def error(text: str, code: str) -> ServerMessage:
    return ServerMessage({"type": "error", "error": text, "code": code})


def turn_metrics(speech_id: str | None, mode: str, stages_ms: dict[str, float],
                 **derived: float | int | bool | str | None) -> ServerMessage:
    """(ext) One answered turn's timeline, only to a client whose ``init`` asked (``send_turn_metrics``)."""
    return ServerMessage({"type": "turn_metrics", "speech_id": speech_id, "mode": mode, "stages_ms": stages_ms,
                          **derived})


def llm_response(content: str) -> ServerMessage:
    return ServerMessage({"type": "llm_response", "content": content})


def tool_call(call_id: str, name: str, arguments: str, *, client: bool, message_id: int | None) -> ServerMessage:
    """(ext) The LLM called a tool: the client's own (it answers with ``tool_result``) or the server's."""
    return ServerMessage({"type": "tool_call", "call_id": call_id, "name": name, "arguments": arguments,
                          "side": "client" if client else "server", "message_id": message_id})


def tool_done(call_id: str, name: str, *, ok: bool, output: str, error: str | None, elapsed_ms: float) -> ServerMessage:
    """(ext) A server-side tool call ended, to a client that asked to see tool activity."""
    return ServerMessage({"type": "tool_done", "call_id": call_id, "name": name, "ok": ok, "output": output,
                          "error": error, "elapsed_ms": round(elapsed_ms, 1)})
