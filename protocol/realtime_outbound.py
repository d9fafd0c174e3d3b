"""The Voi conversation's server messages as OpenAI Realtime server events, and the state that needs.

A reply's ``response_created`` / growing assistant ``message`` / ``audio`` / ``response_done`` become
``response.created``, ``response.output_item.added``, ``response.content_part.added``, transcript (or text)
deltas and audio deltas, and once the reply's audio is all sent (``speech_done``) the ``.done`` events and
``response.done``. The turn events ``speech_started`` / ``speech_stopped`` become server VAD's
``input_audio_buffer.speech_started`` / ``speech_stopped`` / ``committed`` and the user's audio item; the
user's transcript messages become ``conversation.item.input_audio_transcription.delta`` / ``completed``; a turn
the user went on with (``TurnReopened``) deletes its item, and the item of what they said since carries the whole.
What the client's own events change here (a commit, a cancel) is called by ``protocol/realtime.py``.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import events as ev
from protocol.realtime_events import AudioFormat, Events, SessionConfig, StreamConverter, new_id, usage

SPEECH_ONSET_MS = 300  # speech_started is told after this much speech: its audio started about this much earlier
SERVER_CODES = ("stt_failed", "tts_failed", "reply_failed", "internal", "session_lost", "server_busy")


@dataclass
class _UserAudio:
    """The user's audio item of the current turn (server VAD or push-to-talk)."""

    item_id: str
    voi_id: int | None = None  # the Voi message that shows its transcript
    transcript: str = ""
    sent: str = ""  # what transcription deltas have carried
    started: bool = False  # speech_started was sent
    committed: bool = False


@dataclass
class _Response:
    id: str
    audio: bool
    input_text: str = ""
    item_id: str | None = None
    voi_id: int | None = None  # the assistant message (and speech_id) of this reply
    previous_item_id: str | None = None
    text: str = ""  # what deltas have carried
    text_done: bool = False
    audio_done: bool = False
    error: dict[str, Any] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)  # its function_call items (the client's tools)
    encode: StreamConverter | None = None  # its audio in the session's output format (None: as it comes)



class OutboundEvents:
    """Server events for one session; ``outbound`` takes each Voi server message in order."""

    def __init__(self, events: Events, config: SessionConfig,
                 encoder: Callable[[AudioFormat], StreamConverter] | None = None) -> None:
        self.events = events
        self.config = config
        self._encoder = encoder  # a reply's converter from 24 kHz PCM16 to the output format (None: PCM16 only)
        self.audio_ms = 0.0  # input audio received in this session
        self.buffer_bytes = 0  # input audio since the last commit or clear
        self.user: _UserAudio | None = None  # the user's audio item being spoken (not committed yet)
        self.committed: _UserAudio | None = None  # the committed item whose transcript is not completed yet
        self.typed: deque[tuple[str, list[dict[str, Any]]]] = deque()  # user items whose Voi echo is still to come
        self.items: dict[str, list[int]] = {}  # OpenAI item id -> its Voi messages (conversation.item.delete)
        self.requested: deque[bool] = deque()  # response.create requests not started yet: audio out?
        self.response: _Response | None = None
        self.retired: set[int] = set()  # Voi messages of finished responses and transcripts: late re-sends are dropped
        self.assistant_items: dict[str, int] = {}  # OpenAI item id -> Voi message id (truncate names items)
        self.last_item_id: str | None = None
        self.last_input = ""
        self.open_calls: set[str] = set()  # call ids of function calls the client has not answered yet

    def outbound(self, event: ev.ConversationEvent) -> list[dict[str, Any]]:
        """One conversation event out, as the OpenAI events it means (often none, sometimes several)."""
        match event:
            case ev.Message(role="user"):
                return self._on_user_message(event.id, event.content)
            case ev.Message(role="assistant"):
                return self._on_assistant_message(event.id, event.text)
            case ev.AudioChunk(speech_id=speech_id, pcm=pcm):
                return self._on_audio(speech_id, pcm)
            case ev.Error(text=text, code=code):
                return self._on_error(text, code)
            case ev.UserSpeechStarted() if self.config.turn_detection:
                return self._speech_started()
            case ev.UserSpeechStopped() if self.config.turn_detection:
                return self.commit_user_audio(speech_stopped=True)
            case ev.TurnReopened(message_id=voi_id):
                return self._reopened(voi_id)
            case ev.UserInterrupt() if self.response is not None:
                return self.finish("cancelled", {"type": "cancelled", "reason": "turn_detected"})
            case ev.ResponseCreated():
                events = self._complete_transcription()
                audio = self.requested.popleft() if self.requested else self.config.audio_out
                self.response = _Response(new_id("resp"), audio, input_text=self.last_input, encode=self._encode_audio())
                return events + [self.events.event("response.created", response=self._body("in_progress", []))]
            case ev.ResponseDone() if self.response is not None:
                self.response.text_done = True
                return self._finish_if_complete()
            case ev.SpeechDone(speech_id=speech_id) if self.response is not None and speech_id == str(self.response.voi_id):
                self.response.audio_done = True
                return self._audio_tail(self.response) + self._finish_if_complete()
            case ev.ResponseCancelled(reason=reason):
                return self._on_cancelled(reason or "")
            case ev.ToolCallStarted(client=True) if self.response is not None:
                return self._function_call(self.response, event)
        return []  # llm_response: invoke_llm is not part of this protocol; the session's own statuses

    def _function_call(self, response: _Response, call: ev.ToolCallStarted) -> list[dict[str, Any]]:
        """A call of one of the client's tools: a function_call item of the response, complete at once."""
        item_id, index = new_id("item"), (response.item_id is not None) + len(response.calls)
        where = {"response_id": response.id, "item_id": item_id, "output_index": index}
        added = self.events.function_call_item(item_id, "in_progress", call.call_id, call.name, "")
        done = self.events.function_call_item(item_id, "completed", call.call_id, call.name, call.arguments)
        previous = self.last_item_id
        events = [self.events.event("response.output_item.added", response_id=response.id, output_index=index, item=added)]
        events += self.new_item(added, complete=False)
        events.append(self.events.event("response.function_call_arguments.delta", **where, call_id=call.call_id,
                                        delta=call.arguments))
        named = {"name": call.name} if self.events.dialect == "ga" else {}  # beta's event has no name
        events.append(self.events.event("response.function_call_arguments.done", **where, call_id=call.call_id,
                                        arguments=call.arguments, **named))
        events.append(self.events.event("response.output_item.done", response_id=response.id, output_index=index, item=done))
        if self.events.dialect == "ga":
            events.append(self.events.item_done(done, previous))
        response.calls.append(done)
        self.open_calls.add(call.call_id)
        return events

    def _speech_started(self) -> list[dict[str, Any]]:
        user = self._current_user()
        if user.started:
            return []
        user.started = True
        start = max(0, int(self.audio_ms) - SPEECH_ONSET_MS)
        return [self.events.event("input_audio_buffer.speech_started", audio_start_ms=start, item_id=user.item_id)]

    def _reopened(self, voi_id: int) -> list[dict[str, Any]]:
        """The user went on with the turn shown as ``voi_id``. A committed item's audio and transcript cannot grow,
        so that item is deleted and the item of the audio said since carries the whole turn's transcript."""
        events: list[dict[str, Any]] = []
        for item_id, voi_ids in list(self.items.items()):
            if voi_id in voi_ids and item_id not in self.assistant_items:
                del self.items[item_id]
                events.append(self.events.event("conversation.item.deleted", item_id=item_id))
        if self.committed is not None and self.committed.voi_id == voi_id:
            self.committed = None  # (deleted before its transcript completed)
        self.retired.discard(voi_id)
        user = self._current_user()
        user.voi_id, user.transcript, user.sent = voi_id, "", ""
        return events

    def _on_cancelled(self, reason: str) -> list[dict[str, Any]]:
        if self.response is not None:
            error = self.response.error
            if reason == "error" and error is not None:
                return self.finish("failed", {"type": "failed", "error": error})
            return self.finish("cancelled", {"type": "cancelled", "reason": "turn_detected"})
        if reason != "no_input":
            return []
        events = self._complete_transcription()
        if self.requested:  # an explicit response.create with nothing to answer
            audio = self.requested.popleft()
            self.response = _Response(new_id("resp"), audio, encode=self._encode_audio())
            events.append(self.events.event("response.created", response=self._body("in_progress", [])))
            events += self.finish("cancelled", {"type": "cancelled"})  # no reason: OpenAI's four name none for this
        return events

    def _on_user_message(self, voi_id: int, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if voi_id in self.retired:
            return []
        known = [u for u in (self.committed, self.user) if u is not None and u.voi_id == voi_id]
        if not known and self.typed and content == self.typed[0][1]:
            item_id, _ = self.typed.popleft()  # the echo of a conversation.item.create: its item was announced already
            self.items.setdefault(item_id, []).append(voi_id)
            self.retired.add(voi_id)
            return []
        if known:
            user = known[0]
        elif self.committed is not None and self.committed.voi_id is None:
            user = self.committed  # the first transcript of audio committed before it was shown
        else:
            user = self._current_user()
        user.voi_id = voi_id
        self.items[user.item_id] = [voi_id]
        user.transcript = " ".join(p.get("text", "") for p in content if p.get("type") == "text").strip()
        return self._transcript_delta(user) if user.committed else []

    def _on_assistant_message(self, voi_id: int, text: str) -> list[dict[str, Any]]:
        response = self.response
        if response is None or voi_id in self.retired or response.voi_id not in (None, voi_id):
            return []
        events: list[dict[str, Any]] = []
        if response.voi_id is None:
            response.voi_id = voi_id
            response.item_id = new_id("item")
            self.assistant_items[response.item_id] = voi_id
            self.items[response.item_id] = [voi_id]
            item = self.events.assistant_item(response.item_id, "in_progress", audio=response.audio, text=None)
            events.append(self.events.event("response.output_item.added", response_id=response.id, output_index=0, item=item))
            response.previous_item_id = self.last_item_id
            events += self.new_item(item, complete=False)
            events.append(self.events.event("response.content_part.added", **self._where(response),
                                            part=self.events.part(response.audio, "")))
        if text.startswith(response.text) and len(text) > len(response.text):
            kind = "response.output_audio_transcript.delta" if response.audio else "response.output_text.delta"
            events.append(self.events.event(kind, **self._where(response), delta=text[len(response.text):]))
            response.text = text
        return events

    def _on_audio(self, speech_id: str, pcm: bytes) -> list[dict[str, Any]]:
        response = self.response
        if response is None or not response.audio or str(response.voi_id) != speech_id or not pcm:
            return []
        data = response.encode(pcm) if response.encode is not None else pcm
        if not data:  # the output resampler holds the first milliseconds until it has a block
            return []
        return [self.events.event("response.output_audio.delta", **self._where(response),
                                  delta=base64.b64encode(data).decode("ascii"))]

    def _audio_tail(self, response: _Response) -> list[dict[str, Any]]:
        """The reply's last milliseconds, held by the output resampler until its speech is done."""
        data = response.encode.flush() if response.encode is not None and response.audio else b""
        if not data:
            return []
        return [self.events.event("response.output_audio.delta", **self._where(response),
                                  delta=base64.b64encode(data).decode("ascii"))]

    def _encode_audio(self) -> StreamConverter | None:
        """A new reply's audio converter: each reply is a stream of its own, so no reply begins with another's tail."""
        return None if self._encoder is None else self._encoder(self.config.output_format)

    def _on_error(self, text: str, code: str) -> list[dict[str, Any]]:
        kind = "server_error" if code in SERVER_CODES or code.startswith("llm") else "invalid_request_error"
        if self.response is not None:
            self.response.error = {"type": kind, "code": code, "message": text}
        return [self.events.error(text, code, kind=kind)]

    # ---- helpers ------------------------------------------------------------------------------------

    def _current_user(self) -> _UserAudio:
        if self.user is None:
            self.user = _UserAudio(new_id("item"))
        return self.user

    def new_item(self, item: dict[str, Any], *, complete: bool = True) -> list[dict[str, Any]]:
        events = self.events.item_created(item, self.last_item_id, complete=complete)
        self.last_item_id = item["id"]
        return events

    def commit_user_audio(self, *, speech_stopped: bool) -> list[dict[str, Any]]:
        """The user's audio so far becomes an item (VAD's end of turn, or the client's commit)."""
        user = self._current_user()
        events: list[dict[str, Any]] = []
        if speech_stopped:
            if not user.started:
                user.started = True
                start = max(0, int(self.audio_ms) - SPEECH_ONSET_MS)
                events.append(self.events.event("input_audio_buffer.speech_started", audio_start_ms=start, item_id=user.item_id))
            events.append(self.events.event("input_audio_buffer.speech_stopped", audio_end_ms=int(self.audio_ms),
                                            item_id=user.item_id))
        events += self._complete_transcription() if self.committed is not None else []  # two commits, one turn
        user.committed = True
        self.user, self.committed = None, user
        self.buffer_bytes = 0
        events.append(self.events.event("input_audio_buffer.committed", previous_item_id=self.last_item_id, item_id=user.item_id))
        events += self.new_item(self.events.user_item(user.item_id, audio=True))
        return events + self._transcript_delta(user)

    def _transcript_delta(self, user: _UserAudio) -> list[dict[str, Any]]:
        if not self.config.transcribe_input or not user.transcript.startswith(user.sent) or user.transcript == user.sent:
            return []
        delta, user.sent = user.transcript[len(user.sent):], user.transcript
        return [self.events.event("conversation.item.input_audio_transcription.delta", item_id=user.item_id,
                                  content_index=0, delta=delta)]

    def _complete_transcription(self) -> list[dict[str, Any]]:
        """The turn's transcript is settled (a reply starts, or there was nothing to answer). In push-to-talk a
        turn's audio that was shown but not committed (``response.create`` without a commit) is committed now."""
        events: list[dict[str, Any]] = []
        if self.committed is None and not self.config.turn_detection and self.user is not None and self.user.voi_id is not None:
            events = self.commit_user_audio(speech_stopped=False)
        user, self.committed = self.committed, None
        if user is None:
            return events
        if user.voi_id is not None:
            self.retired.add(user.voi_id)
        self.last_input = user.transcript or self.last_input
        if not self.config.transcribe_input:
            return events
        events += self._transcript_delta(user)
        return events + [self.events.event("conversation.item.input_audio_transcription.completed", item_id=user.item_id,
                                           content_index=0, transcript=user.transcript,
                                           usage={"type": "duration", "seconds": round(self.audio_ms / 1000, 2)})]

    def _where(self, response: _Response) -> dict[str, Any]:
        return {"response_id": response.id, "item_id": response.item_id, "output_index": 0, "content_index": 0}

    def _body(self, status: str, output: list[dict[str, Any]], details: dict[str, Any] | None = None,
              with_usage: bool = False) -> dict[str, Any]:
        response = self.response
        assert response is not None
        return self.events.response(response.id, status, audio=response.audio, output=output, details=details,
                                    usage=usage(response.input_text, response.text) if with_usage else None)

    def _finish_if_complete(self) -> list[dict[str, Any]]:
        response = self.response
        assert response is not None
        if response.text_done and (response.audio_done or not response.audio or response.item_id is None):
            return self.finish("completed", None)
        return []

    def finish(self, status: str, details: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The ``.done`` events of the response's item, then ``response.done``; nothing more of it is sent."""
        response = self.response
        assert response is not None
        events: list[dict[str, Any]] = []
        output: list[dict[str, Any]] = []
        if response.item_id is not None:
            where = self._where(response)
            if response.audio:
                events.append(self.events.event("response.output_audio.done", **where))
                events.append(self.events.event("response.output_audio_transcript.done", **where, transcript=response.text))
            else:
                events.append(self.events.event("response.output_text.done", **where, text=response.text))
            events.append(self.events.event("response.content_part.done", **where, part=self.events.part(response.audio, response.text)))
            item = self.events.assistant_item(response.item_id, "completed" if status == "completed" else "incomplete",
                                              audio=response.audio, text=response.text)
            events.append(self.events.event("response.output_item.done", response_id=response.id, output_index=0, item=item))
            if self.events.dialect == "ga":
                events.append(self.events.item_done(item, response.previous_item_id))
            output.append(item)
        output += response.calls
        events.append(self.events.event("response.done", response=self._body(status, output, details, with_usage=True)))
        if response.voi_id is not None:
            self.retired.add(response.voi_id)
        self.response = None
        return events
