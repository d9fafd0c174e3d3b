"""The Voi transport's codec: conversation events (``protocol/events.py``) as Voi server frames.

``to_frame`` renders any event in the Voi vocabulary (recordings and tests read every event that way);
``VoiEncoder`` is what one Voi client is sent: the original protocol's messages, plus the extensions it
asked for (docs/PROTOCOL.md section 8). The unmodified Voi client asks for none, so it never sees a frame it
does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import events as ev
from protocol import messages as m
from protocol.framing import Frame


def to_frame(event: ev.ConversationEvent) -> Frame:
    """``event`` as a Voi-shaped frame (also the events the Voi wire never carries, as ``status`` frames)."""
    match event:
        case ev.Message(role=role, id=message_id, content=content, final=final):
            return m.message(role, message_id, content, final=final)
        case ev.AudioChunk(speech_id=speech_id, pcm=pcm):
            return m.audio(speech_id, pcm)
        case ev.AudioFile(speech_id=speech_id, data=data, format=audio_format):
            return m.audio_file(speech_id, data, audio_format)
        case ev.SessionReady(agent_name=agent_name, recording_id=recording_id):
            return m.status("init_done", agent_name=agent_name,
                            **({"recording_id": recording_id} if recording_id is not None else {}))
        case ev.ResponseCreated():
            return m.status("response_created")
        case ev.ResponseDone():
            return m.status("response_done")
        case ev.ResponseCancelled(reason=reason):
            return m.status("response_cancelled", **({"reason": reason} if reason else {}))
        case ev.UserInterrupt():
            return m.status("user_interrupt")
        case ev.UserSpeechStarted():
            return m.status("speech_started")
        case ev.UserSpeechStopped():
            return m.status("speech_stopped")
        case ev.TurnReopened(message_id=message_id):
            return m.status("turn_reopened", message_id=message_id)
        case ev.SpeechDone(speech_id=speech_id, interrupted=interrupted):
            return m.status("speech_done", speech_id=speech_id, interrupted=interrupted)
        case ev.ToolCallStarted():
            return m.tool_call(event.call_id, event.name, event.arguments, client=event.client,
                               message_id=event.message_id)
        case ev.ToolCallDone():
            return m.tool_done(event.call_id, event.name, ok=event.ok, output=event.output, error=event.error,
                               elapsed_ms=event.elapsed_ms)
        case ev.Error(text=text, code=code):
            return m.error(text, code)
        case ev.LlmResponse(content=content):
            return m.llm_response(content)
    raise TypeError(f"not a conversation event: {type(event).__name__}")


_NOT_ON_THE_WIRE = (ev.UserSpeechStarted, ev.UserSpeechStopped, ev.SpeechDone, ev.TurnReopened)


@dataclass(frozen=True)
class VoiEncoder:
    """What one Voi client is sent, by what its ``init`` asked for."""

    tool_events: bool = False  # (ext) init's send_tool_events: server-side tool calls and their results
    client_tools: bool = False  # (ext) init declared tools: the calls of those tools (the client answers them)

    def encode(self, event: ev.ConversationEvent) -> Frame | None:
        if isinstance(event, _NOT_ON_THE_WIRE):
            return None
        if isinstance(event, ev.ToolCallStarted) and not (self.client_tools if event.client else self.tool_events):
            return None
        if isinstance(event, ev.ToolCallDone) and not self.tool_events:
            return None
        return to_frame(event)
