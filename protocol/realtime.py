"""The OpenAI Realtime protocol as an adapter over the Voi conversation: a second transport, no second brain.

``RealtimeAdapter.inbound`` turns one client event into the typed Voi client messages the Conversation
already handles (``input_audio_buffer.append`` -> ``Audio`` as 16 kHz PCM16 (from 24 kHz PCM16 or G.711), ``response.create`` ->
``CreateResponse``, ``response.cancel`` / ``conversation.item.truncate`` -> ``Interrupt``, a user text item
-> ``Text``) plus the events answered at once (``session.updated``, ``input_audio_buffer.committed``,
``error`` for anything refused: never a closed socket). ``outbound`` turns each Voi server message into
OpenAI events: a reply's ``response_created`` / growing assistant ``message`` / ``audio`` / ``response_done``
become ``response.*`` events (``protocol/realtime_outbound.py``). docs/realtime.md has the whole map.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from common.safe_json import JsonRefused, parse_json
from protocol import events as ev
from protocol import messages as m
from protocol.realtime_events import (
    BYTES_PER_MS,
    AudioCodec,
    AudioFormat,
    Dialect,
    Events,
    RealtimeError,
    SessionConfig,
    apply_session_update,
    client_tools,
    new_id,
    tool_choice,
)
from protocol.realtime_outbound import OutboundEvents


@dataclass
class Translation:
    messages: list[m.ClientMessage] = field(default_factory=list)  # to the conversation, in order
    events: list[dict[str, Any]] = field(default_factory=list)  # straight back to the client


class RealtimeAdapter:
    """One session's translation, both ways: ``inbound`` for client events, ``outbound`` for Voi messages."""

    def __init__(self, config: SessionConfig, dialect: Dialect, audio: AudioCodec, *,
                 voices: tuple[str, ...], voice: str, instructions_allowed: bool = False) -> None:
        self.events = Events(dialect)
        self.out = OutboundEvents(self.events, config, audio.encoder)
        self.opened = False  # the conversation runs: voice and instructions are fixed from now on
        self._audio = audio
        self._decode = audio.decoder(config.input_format)  # the input stream's converter to 16 kHz PCM16
        self._voices = voices
        self.voice = voice  # the effective voice
        self._instructions_allowed = instructions_allowed

    @property
    def config(self) -> SessionConfig:
        return self.out.config

    @config.setter
    def config(self, config: SessionConfig) -> None:
        self.out.config = config

    def outbound(self, event: ev.ConversationEvent) -> list[dict[str, Any]]:
        """One conversation event out, as the OpenAI events it means (often none, sometimes several)."""
        return self.out.outbound(event)

    # ---- the session -------------------------------------------------------------------------------

    def init(self, agent_name: str) -> m.Init:
        """The Voi ``init`` of the conversation: no greeting, the mode of turn_detection."""
        self.opened = True
        return m.Init(agent_name=agent_name, mode=self._mode(), init_greeting=False, tools=self.config.tools,
                      tool_choice=self.config.tool_choice, narrowband=self.config.input_format in ("pcmu", "pcma"))

    def _mode(self) -> m.Mode:
        return "call" if self.config.turn_detection else "chat"

    def session_event(self, kind: str = "session.created") -> dict[str, Any]:
        config = self.config if self._instructions_allowed else replace(self.config, instructions=None)
        return self.events.event(kind, session=self.events.session(config, self.voice))

    # ---- client -> conversation -------------------------------------------------------------------

    def inbound(self, raw: str | bytes) -> Translation:
        """One client event (a text frame) in; never raises: what is refused comes back as an ``error`` event."""
        try:
            event = parse_json(raw)
        except JsonRefused:
            return Translation(events=[self.events.error("the event is not valid JSON", "invalid_json")])
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return Translation(events=[self.events.error("an event must be a JSON object with a 'type'", "invalid_event")])
        kind = event["type"]
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self._handlers().get(kind)
        if handler is None:
            return Translation(events=[self.events.error(f"unsupported event type {kind[:60]!r} (docs/realtime.md lists "
                                                         "the supported ones)", "unknown_event", param="type",
                                                         event_id=client_event_id)])
        try:
            return handler(event)
        except RealtimeError as exc:
            return Translation(events=[self.events.error(str(exc), exc.code, param=exc.param, event_id=client_event_id)])
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError):  # a field of a shape no check foresaw
            return Translation(events=[self.events.error(f"{kind[:60]}: a field has the wrong type or shape", "invalid_value",
                                                         event_id=client_event_id)])

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Translation]]:
        return {"session.update": self._session_update, "input_audio_buffer.append": self._append,
                "input_audio_buffer.commit": self._commit, "input_audio_buffer.clear": self._clear,
                "conversation.item.create": self._item_create, "conversation.item.truncate": self._truncate,
                "conversation.item.delete": self._item_delete,
                "response.create": self._response_create, "response.cancel": self._response_cancel}

    def _session_update(self, event: dict[str, Any]) -> Translation:
        before, tools_before, choice_before = self._mode(), self.config.tools, self.config.tool_choice
        config = apply_session_update(self.config, event.get("session"))
        if self.opened or config.voice not in self._voices:  # voice: one of the agent's, chosen before the first turn
            config = replace(config, voice=self.config.voice)
        if self.opened:
            config = replace(config, instructions=self.config.instructions)
        if config.input_format != self.config.input_format:  # a new stream: no samples of the old format carried over
            self._decode = self._audio.decoder(config.input_format)
        self.config = config
        if config.voice in self._voices:
            self.voice = config.voice
        out = Translation(events=[self.session_event("session.updated")])
        if self.opened and self._mode() != before:
            out.messages.append(m.SetMode(self._mode()))
        if self.opened and (config.tools, config.tool_choice) != (tools_before, choice_before):
            out.messages.append(m.SetTools(config.tools, config.tool_choice))
        return out

    def _append(self, event: dict[str, Any]) -> Translation:
        data = _b64_audio(event.get("audio"), "input_audio_buffer.append", "audio", self.config.input_format)
        self.out.audio_ms += len(data) / BYTES_PER_MS[self.config.input_format]
        self.out.buffer_bytes += len(data)
        pcm = self._decode(data)
        return Translation(messages=[m.Audio(pcm)] if pcm else [])

    def _commit(self, event: dict[str, Any]) -> Translation:
        if self.out.buffer_bytes == 0:
            raise RealtimeError("input_audio_buffer.commit: the buffer is empty (append audio first)",
                                "input_audio_buffer_commit_empty")
        return Translation(events=self.out.commit_user_audio(speech_stopped=False))

    def _clear(self, event: dict[str, Any]) -> Translation:
        self.out.buffer_bytes = 0
        if self.out.user is not None and not self.out.user.committed:
            if self.out.user.voi_id is not None:
                self.out.retired.add(self.out.user.voi_id)
            self.out.user = None
        return Translation(messages=[m.ClearAudio()], events=[self.events.event("input_audio_buffer.cleared")])

    def _item_create(self, event: dict[str, Any]) -> Translation:
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            return self._function_output(item)
        if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") != "user":
            raise RealtimeError("conversation.item.create: only user message items and function_call_output items are "
                                "supported (no system or assistant items)", "unsupported_item", "item")
        parts = item.get("content")
        if not isinstance(parts, list) or not parts:
            raise RealtimeError("conversation.item.create: 'item.content' must be a non-empty list", "invalid_value", "item.content")
        out, text = Translation(), None
        item_id = item.get("id") if isinstance(item.get("id"), str) and item["id"] else new_id("item")
        for i, part in enumerate(parts):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "text") and isinstance(part.get("text"), str) and part["text"].strip():
                out.messages.append(m.Text(part["text"]))
                self.out.typed.append((item_id, [m.text_part(part["text"])]))
                text = part["text"] if text is None else f"{text}\n{part['text']}"
            elif kind == "input_audio":
                data = _b64_audio(part.get("audio"), "conversation.item.create", f"item.content[{i}].audio",
                                  self.config.input_format)
                self.out.audio_ms += len(data) / BYTES_PER_MS[self.config.input_format]
                out.messages.append(m.Audio(self._decode(data)))
            elif kind == "input_image" and isinstance(part.get("image_url"), str) and part["image_url"].startswith(("http", "data:image/")):
                out.messages.append(m.ImageUrl(part["image_url"]))
                self.out.typed.append((item_id, [m.image_part(part["image_url"])]))
            else:
                raise RealtimeError(f"conversation.item.create: content part {i} must be input_text (non-empty), "
                                    "input_audio or input_image", "invalid_value", f"item.content[{i}]")
        self.out.last_input = text or self.out.last_input
        audio = any(isinstance(msg, m.Audio) for msg in out.messages)
        out.events = self.out.new_item(self.events.user_item(item_id, text=text, audio=audio))
        return out

    def _function_output(self, item: dict[str, Any]) -> Translation:
        """The client's result of a function call: the conversation goes on at its next ``response.create``."""
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or call_id not in self.out.open_calls:
            raise RealtimeError(f"conversation.item.create: no open function call {str(call_id)[:40]!r}", "invalid_value",
                                "item.call_id")
        if not isinstance(output, str) or len(output) > m.MAX_TOOL_OUTPUT_CHARS:
            raise RealtimeError(f"conversation.item.create: 'item.output' must be a string of at most "
                                f"{m.MAX_TOOL_OUTPUT_CHARS} characters", "invalid_value", "item.output")
        self.out.open_calls.discard(call_id)
        item_id = item.get("id") if isinstance(item.get("id"), str) and item["id"] else new_id("item")
        events = self.out.new_item(self.events.function_output_item(item_id, call_id, output))
        return Translation(messages=[m.ToolResult(call_id, output, continue_reply=False)], events=events)

    def _truncate(self, event: dict[str, Any]) -> Translation:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        voi_id = self.out.assistant_items.get(item_id) if isinstance(item_id, str) else None
        if voi_id is None:
            raise RealtimeError(f"conversation.item.truncate: no assistant audio item {str(item_id)[:40]!r}", "item_not_found", "item_id")
        if isinstance(end_ms, bool) or not isinstance(end_ms, int) or end_ms < 0:
            raise RealtimeError("conversation.item.truncate: 'audio_end_ms' must be a non-negative integer", "invalid_value", "audio_end_ms")
        index = event.get("content_index", 0)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:  # echoed in conversation.item.truncated
            raise RealtimeError("conversation.item.truncate: 'content_index' must be a non-negative integer", "invalid_value", "content_index")
        events = [self.events.event("conversation.item.truncated", item_id=item_id, content_index=index, audio_end_ms=end_ms)]
        if self.out.response is not None and self.out.response.voi_id == voi_id:  # cut while it is still made
            events += self.out.finish("cancelled", {"type": "cancelled", "reason": "client_cancelled"})
        return Translation(messages=[m.Interrupt(str(voi_id), end_ms / 1000)], events=events)

    def _item_delete(self, event: dict[str, Any]) -> Translation:
        item_id = event.get("item_id")
        voi_ids = self.out.items.pop(item_id, None) if isinstance(item_id, str) else None
        if voi_ids is None:
            raise RealtimeError(f"conversation.item.delete: no item {str(item_id)[:40]!r} (or its message is not made yet)",
                                "item_not_found", "item_id")
        return Translation(messages=[m.ForgetMessage(v) for v in voi_ids],
                           events=[self.events.event("conversation.item.deleted", item_id=item_id)])

    def _response_create(self, event: dict[str, Any]) -> Translation:
        params = event.get("response") if isinstance(event.get("response"), dict) else {}
        modalities = params.get("output_modalities", params.get("modalities"))
        audio = self.config.audio_out if not isinstance(modalities, list) else "audio" in modalities
        self.out.requested.append(audio)
        tools = client_tools(params["tools"], "response.create", "response.tools") if "tools" in params else None
        choice = tool_choice(params.get("tool_choice"), "response.create", "response.tool_choice")
        return Translation(messages=[m.CreateResponse(tools=tools, tool_choice=choice)])

    def _response_cancel(self, event: dict[str, Any]) -> Translation:
        response = self.out.response
        if response is None:
            raise RealtimeError("response.cancel: no response is in progress", "response_cancel_not_active")
        events = self.out.finish("cancelled", {"type": "cancelled", "reason": "client_cancelled"})
        speech_id = None if response.voi_id is None else str(response.voi_id)
        return Translation(messages=[m.Interrupt(speech_id, None)], events=events)

def _b64_audio(value: Any, event: str, name: str, audio_format: AudioFormat) -> bytes:
    if not isinstance(value, str):
        raise RealtimeError(f"{event}: '{name}' must be base64-encoded audio in the session's input format "
                            f"({audio_format})", "invalid_value", name)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RealtimeError(f"{event}: '{name}' is not valid base64", "invalid_value", name) from None
    if audio_format == "pcm16" and len(data) % 2:
        raise RealtimeError(f"{event}: '{name}' must hold whole 16-bit samples (an even number of bytes)", "invalid_value", name)
    return data
