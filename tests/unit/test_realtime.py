"""The OpenAI Realtime adapter (protocol/realtime*.py): client events in, Voi messages out, and back; also
wired to a real Conversation (with the small model fakes of tests/unit/helpers.py) in-process. Every server event
the adapter makes here is checked against the official openai SDK's types (harness/realtime_types.py)."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from harness.realtime_types import RealtimeEventMismatch, check_server_event
from protocol import events as ev
from protocol import messages as m
from protocol.realtime import RealtimeAdapter
from protocol.realtime_events import BETA_NAMES, RealtimeError, SessionConfig, apply_session_update
from tests.unit.helpers import adapter, ask, idle, kinds, make, send


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


# ---- session.update ------------------------------------------------------------------------------------


def test_session_update_ga_and_beta_names():
    ga = apply_session_update(SessionConfig(model="x"), {"type": "realtime", "output_modalities": ["text"], "audio": {
        "input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}, "output": {"voice": "joe_warm"}}})
    assert (ga.turn_detection, ga.transcribe_input, ga.modalities, ga.voice) == (None, True, ("text",), "joe_warm")
    beta = apply_session_update(SessionConfig(model="x"), {"modalities": ["audio", "text"], "turn_detection":
                                {"type": "semantic_vad"}, "input_audio_transcription": None, "voice": "joe"})
    assert (beta.turn_detection, beta.transcribe_input, beta.audio_out) == ("semantic_vad", False, True)
    unchanged = apply_session_update(ga, {"instructions": "Be brief."})
    assert unchanged.turn_detection is None and unchanged.instructions == "Be brief."


@pytest.mark.parametrize("session,code", [
    ({"input_audio_format": "opus"}, "unsupported_audio_format"),
    ({"audio": {"output": {"format": {"type": "audio/g729"}}}}, "unsupported_audio_format"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "unsupported_audio_format"),
    ({"turn_detection": {"type": "magic"}}, "invalid_value"),
    ({"output_modalities": ["video"]}, "invalid_value"),
])
def test_session_update_refusals_name_the_field(session, code):
    with pytest.raises(RealtimeError) as err:
        apply_session_update(SessionConfig(model="x"), session)
    assert err.value.code == code and err.value.param.startswith("session.")


@pytest.mark.parametrize("dialect,session,shown", [
    ("ga", {"audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcma"}}}},
     lambda s: (s["audio"]["input"]["format"], s["audio"]["output"]["format"])),
    ("beta", {"input_audio_format": "g711_ulaw", "output_audio_format": "g711_alaw"},
     lambda s: (s["input_audio_format"], s["output_audio_format"])),
])
def test_g711_formats_in_both_dialects(dialect, session, shown):
    a = adapter(dialect)
    event = send(a, "session.update", session=session).events[0]  # checked against the SDK's session types
    assert (a.config.input_format, a.config.output_format) == ("pcmu", "pcma")
    expected = {"ga": ({"type": "audio/pcmu"}, {"type": "audio/pcma"}), "beta": ("g711_ulaw", "g711_alaw")}[dialect]
    assert shown(event["session"]) == expected
    back = send(a, "session.update", session={"audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}})
    assert a.config.input_format == "pcm16" and a.config.output_format == "pcma", back.events


def test_mu_law_input_becomes_16k_pcm_and_the_reply_goes_out_as_mu_law():
    from speech import g711
    from speech.audio import float_to_pcm16, pcm16_to_float

    a = adapter(input_format="pcmu", output_format="pcmu")
    tone_8k = float_to_pcm16(0.3 * np.sin(2 * np.pi * 440 * np.arange(8_000) / 8_000))
    pcm16k = b""
    for i in range(0, 8_000, 160):  # 1 s of mu-law in 20 ms frames, as a phone sends it
        out = send(a, "input_audio_buffer.append", audio=b64(g711.encode(tone_8k[2 * i : 2 * i + 320], "pcmu")))
        pcm16k += b"".join(msg.data for msg in out.messages)
    assert 0.85 * 32_000 <= len(pcm16k) <= 32_000
    assert a.out.audio_ms == pytest.approx(1_000)
    assert kinds(send(a, "input_audio_buffer.append", audio=b64(b"\xff" * 3)).events) == []  # odd byte counts are fine

    tone_24k = float_to_pcm16(0.3 * np.sin(2 * np.pi * 440 * np.arange(24_000) / 24_000))
    events = a.outbound(ev.ResponseCreated())
    events += a.outbound(ev.Message("assistant", 1, [m.text_part("Hi.")]))
    for i in range(0, len(tone_24k), 9_600):  # the speaker's 200 ms frames
        events += a.outbound(ev.AudioChunk("1", tone_24k[i : i + 9_600]))
    events += a.outbound(ev.ResponseDone()) + a.outbound(ev.SpeechDone("1"))
    mulaw = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    assert len(mulaw) == pytest.approx(8_000, abs=16)  # one byte a sample at 8 kHz, the resampler's tail included
    heard = pcm16_to_float(g711.decode(mulaw, "pcmu"))[200:-200]
    assert np.sqrt(np.mean(heard**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert events[-1]["type"] == "response.done" and events[-1]["response"]["status"] == "completed"


def test_voice_is_one_of_the_agents_and_fixed_once_the_conversation_runs():
    a = adapter()
    updated = send(a, "session.update", session={"audio": {"output": {"voice": "alloy"}}}).events[0]
    assert updated["session"]["audio"]["output"]["voice"] == "joe"  # not an agent voice: the effective one is shown
    send(a, "session.update", session={"audio": {"output": {"voice": "joe_warm"}}})
    assert a.voice == "joe_warm" and a.config.voice == "joe_warm"
    a.init("echo")
    send(a, "session.update", session={"audio": {"output": {"voice": "joe"}}})
    assert a.config.voice == "joe_warm"


def test_instructions_are_only_shown_where_allowed():
    a = adapter()
    event = send(a, "session.update", session={"instructions": "You are a pirate."}).events[0]
    assert event["session"]["instructions"] == ""


def test_turn_detection_picks_the_mode_and_switches_it_later():
    a = adapter()
    assert a.init("echo").mode == "call" and not a.init("echo").init_greeting
    out = send(a, "session.update", session={"audio": {"input": {"turn_detection": None}}})
    assert out.messages == [m.SetMode("chat")]
    assert send(a, "session.update", session={"instructions": "x"}).messages == []


# ---- client events ------------------------------------------------------------------------------------


def test_append_is_resampled_to_16k():
    a = adapter()
    pcm16 = b""
    for _ in range(10):  # 1 s of 24 kHz in 100 ms chunks
        out = send(a, "input_audio_buffer.append", audio=b64(b"\x10\x00" * 2400))
        pcm16 += b"".join(msg.data for msg in out.messages)
    assert 0.9 * 32_000 <= len(pcm16) <= 32_000


@pytest.mark.parametrize("raw,code", [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_event"),
    (json.dumps({"type": "conversation.item.retrieve", "item_id": "x"}), "unknown_event"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "@@@"}), "invalid_value"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": b64(b"\x00")}), "invalid_value"),
    (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
    (json.dumps({"type": "response.cancel"}), "response_cancel_not_active"),
    (json.dumps({"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 10}), "item_not_found"),
    (json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "system", "content": []}}),
     "unsupported_item"),
    ("[" * 100_000 + "]" * 100_000, "invalid_json"),
    ('{"type": "session.update", "x": ' + "[" * 500 + "]" * 500 + "}", "invalid_json"),  # common/safe_json.py's depth
    (b"\xff\xfe{", "invalid_json"),
    (json.dumps({"type": "session.update", "session": {"audio": {"input": {"transcription": {"model": 7}}}, "voice": 3}}),
     "invalid_value"),
    (json.dumps({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_image",
                                                                                             "image_url": 5}]}}), "invalid_value"),
])
def test_refused_events_get_an_error_event_and_no_message(raw, code):
    out = adapter().inbound(raw)
    assert out.messages == [] and kinds(out.events) == ["error"]
    assert out.events[0]["error"]["code"] == code and out.events[0]["error"]["message"]


def test_client_event_id_is_echoed_in_its_error():
    out = adapter().inbound(json.dumps({"type": "bogus", "event_id": "evt_1"}))
    assert out.events[0]["error"]["event_id"] == "evt_1"


def test_item_create_and_clear():
    a = adapter()
    out = send(a, "conversation.item.create", item={"type": "message", "role": "user", "id": "item_mine",
                                                    "content": [{"type": "input_text", "text": "Hi there"}]})
    assert out.messages == [m.Text("Hi there")]
    assert kinds(out.events) == ["conversation.item.added", "conversation.item.done"]
    assert out.events[0]["item"]["id"] == "item_mine"
    assert a.outbound(ev.Message("user", 0, [m.text_part("Hi there")])) == []  # the Voi echo is not told twice
    out = send(a, "input_audio_buffer.clear")
    assert out.messages == [m.ClearAudio()] and kinds(out.events) == ["input_audio_buffer.cleared"]


# ---- server messages ----------------------------------------------------------------------------------


def reply(a: RealtimeAdapter, voi_id: int = 1, text: str = "Hello there.") -> list[dict]:
    events = a.outbound(ev.ResponseCreated())
    events += a.outbound(ev.Message("assistant", voi_id, [m.text_part(text[:5])], final=False))
    events += a.outbound(ev.AudioChunk(str(voi_id), b"\x01\x00" * 100))
    events += a.outbound(ev.Message("assistant", voi_id, [m.text_part(text)]))
    return events


def test_audio_response_ends_when_its_audio_is_all_sent():
    a = adapter("beta")
    events = reply(a)
    assert kinds(events) == ["response.created", "response.output_item.added", "conversation.item.created",
                             "response.content_part.added", "response.audio_transcript.delta", "response.audio.delta",
                             "response.audio_transcript.delta"]
    assert a.outbound(ev.ResponseDone()) == []  # the text is complete, the audio is not
    done = a.outbound(ev.SpeechDone("1"))
    assert kinds(done) == ["response.audio.done", "response.audio_transcript.done", "response.content_part.done",
                           "response.output_item.done", "response.done"]
    assert done[-1]["response"]["status"] == "completed" and done[-1]["response"]["output"][0]["content"][0]["transcript"] == "Hello there."
    assert a.outbound(ev.AudioChunk("1", b"\x01\x00" * 10)) == []


def test_cancel_stops_the_deltas_and_a_late_resend_is_not_the_next_reply():
    a = adapter()
    reply(a)
    out = send(a, "response.cancel")
    assert out.messages == [m.Interrupt("1", None)]
    assert out.events[-1]["response"]["status"] == "cancelled"
    assert out.events[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    assert a.outbound(ev.AudioChunk("1", b"\x01\x00" * 10)) == []
    assert a.outbound(ev.ResponseCancelled("interrupted")) == []
    a.outbound(ev.ResponseCreated())
    assert a.outbound(ev.Message("assistant", 1, [m.text_part("Hel... (interrupted)")])) == []  # the cut old reply
    assert kinds(a.outbound(ev.Message("assistant", 3, [m.text_part("Next.")])))[0] == "response.output_item.added"


def test_barge_in_cancels_with_turn_detected():
    a = adapter()
    reply(a)
    started = a.outbound(ev.UserSpeechStarted())
    assert kinds(started) == ["input_audio_buffer.speech_started"]
    done = a.outbound(ev.UserInterrupt())
    assert done[-1]["response"]["status_details"]["reason"] == "turn_detected"


def test_server_vad_turn_events_and_transcription():
    a = adapter(transcribe_input=True)
    send(a, "input_audio_buffer.append", audio=b64(b"\x00\x00" * 24_000))
    events = a.outbound(ev.UserSpeechStarted())
    events += a.outbound(ev.Message("user", 0, [m.text_part("hello")], final=False))
    events += a.outbound(ev.UserSpeechStopped())
    events += a.outbound(ev.Message("user", 0, [m.text_part("hello world")]))
    events += a.outbound(ev.ResponseCreated())
    assert kinds(events) == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                             "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
                             "conversation.item.input_audio_transcription.delta",
                             "conversation.item.input_audio_transcription.delta",
                             "conversation.item.input_audio_transcription.completed", "response.created"]
    assert "".join(e["delta"] for e in events if e["type"].endswith("transcription.delta")) == "hello world"
    assert len({e.get("item_id") for e in events[:3]}) == 1


def test_text_only_response_ends_with_its_text_and_drops_audio():
    a = adapter(modalities=("text",))
    events = reply(a)
    assert "response.output_audio.delta" not in kinds(events) and "response.output_text.delta" in kinds(events)
    done = a.outbound(ev.ResponseDone())
    assert kinds(done)[-1] == "response.done" and done[-1]["response"]["output_modalities"] == ["text"]


def test_failed_reply_and_no_input():
    a = adapter()
    a.outbound(ev.ResponseCreated())
    errors = a.outbound(ev.Error("the language model failed", "llm_error"))
    assert errors[0]["error"]["type"] == "server_error"
    done = a.outbound(ev.ResponseCancelled("error"))
    assert done[-1]["response"]["status"] == "failed" and done[-1]["response"]["status_details"]["error"]["code"] == "llm_error"
    send(a, "response.create")
    nothing = a.outbound(ev.ResponseCancelled("no_input"))
    assert kinds(nothing) == ["response.created", "response.done"] and nothing[-1]["response"]["status"] == "cancelled"


# ---- the openai SDK's types ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_a_session_of_server_events_matches_the_sdk_types(dialect):
    """One session's worth of every kind of server event we send; the adapter checks each one (CheckedAdapter)."""
    a = adapter(dialect, transcribe_input=True)
    events = [a.session_event()]
    events += send(a, "session.update", session={"instructions": "Be brief."}).events
    # A spoken turn (server VAD) with its transcript, and its spoken reply.
    events += send(a, "input_audio_buffer.append", audio=b64(b"\x00\x00" * 24_000)).events
    events += a.outbound(ev.UserSpeechStarted())
    events += a.outbound(ev.Message("user", 0, [m.text_part("hello")], final=False))
    events += a.outbound(ev.UserSpeechStopped())
    events += a.outbound(ev.Message("user", 0, [m.text_part("hello world")]))
    events += reply(a, 1)
    events += a.outbound(ev.ResponseDone()) + a.outbound(ev.SpeechDone("1"))
    spoken = next(e["item"]["id"] for e in events if e["type"] == "response.output_item.added")
    refused = send(a, "conversation.item.truncate", item_id=spoken, content_index="0", audio_end_ms=500).events
    assert refused[0]["error"]["param"] == "content_index"  # it would be echoed in conversation.item.truncated
    events += refused + send(a, "conversation.item.truncate", item_id=spoken, content_index=0, audio_end_ms=500).events
    # A typed item, a text-only reply to it, and the item deleted.
    events += send(a, "conversation.item.create", item={"type": "message", "role": "user", "id": "item_typed",
                                                        "content": [{"type": "input_text", "text": "Hi"}]}).events
    a.outbound(ev.Message("user", 2, [m.text_part("Hi")]))
    events += send(a, "response.create", response={"output_modalities": ["text"]}).events
    events += reply(a, 3) + a.outbound(ev.ResponseDone())
    events += send(a, "conversation.item.delete", item_id="item_typed").events
    # Replies cancelled by the client and by a barge-in, one that fails, and one with nothing to answer.
    events += reply(a, 5) + send(a, "response.cancel").events
    events += reply(a, 7) + a.outbound(ev.UserSpeechStarted()) + a.outbound(ev.UserInterrupt())
    events += send(a, "input_audio_buffer.clear").events
    events += a.outbound(ev.ResponseCreated()) + a.outbound(ev.Error("the language model failed", "llm_error"))
    events += a.outbound(ev.ResponseCancelled("error"))
    events += send(a, "response.create").events + a.outbound(ev.ResponseCancelled("no_input"))
    # Errors: refused client events, and a server error outside a reply.
    events += a.inbound("{not json").events + send(a, "no.such.event", event_id="evt_1").events
    events += a.outbound(ev.Error("the speech model failed", "stt_failed"))

    ga = {"session.created", "session.updated", "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
          "input_audio_buffer.committed", "input_audio_buffer.cleared", "conversation.item.input_audio_transcription.delta",
          "conversation.item.input_audio_transcription.completed", "conversation.item.truncated", "conversation.item.deleted",
          "response.created", "response.output_item.added", "response.content_part.added",
          "response.output_audio_transcript.delta", "response.output_audio.delta", "response.output_audio.done",
          "response.output_audio_transcript.done", "response.output_text.delta", "response.output_text.done",
          "response.content_part.done", "response.output_item.done", "response.done", "error"}
    items = {"conversation.item.created"} if dialect == "beta" else {"conversation.item.added", "conversation.item.done"}
    expected = items | ({BETA_NAMES.get(k, k) for k in ga} if dialect == "beta" else ga)
    assert set(kinds(events)) == expected, set(kinds(events)) ^ expected
    statuses = [e["response"]["status"] for e in events if e["type"] == "response.done"]
    assert set(statuses) == {"completed", "cancelled", "failed"}, statuses
    parts = [e["part"]["type"] for e in events if e["type"].startswith("response.content_part.")]
    assert set(parts) == {"audio", "text"}, parts  # both dialects: the SDK's part types (GA's item content says output_*)


def _event(kind: str, **fields) -> dict:
    return {"type": kind, "event_id": "event_1", **fields}


WHERE = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}


@pytest.mark.parametrize("dialect,event,named", [
    ("ga", _event("response.content_part.added", **WHERE, part={"type": "output_audio", "transcript": ""}), "part.type"),
    ("ga", _event("response.output_item.added", response_id="resp_1", output_index=0, item={
        "type": "message", "role": "assistant", "content": [{"type": "audio", "transcript": "Hi"}]}), "content.0.type"),
    ("beta", _event("conversation.item.added", item={"type": "message", "role": "user", "content": []}),
     "not a server event type"),
    ("ga", _event("response.audio.delta", **WHERE, delta=""), "not a server event type"),
    ("ga", _event("input_audio_buffer.speech_started", item_id="item_1", audio_start_ms="5"), "audio_start_ms"),
    ("ga", _event("response.done", response={"status": "cancelled", "status_details": {"type": "cancelled",
                                                                                       "reason": "no_input"}}), "reason"),
    ("beta", _event("session.created", session={"model": "echo"}), "session.model"),
    ("ga", _event("response.done", response={"status": "completed", "modalities": ["text"]}), "response.modalities"),
    ("beta", _event("input_audio_buffer.cleared", previous_item_id=None), "previous_item_id"),
])
def test_the_sdk_types_refuse_a_wrong_shape_naming_the_event_and_field(dialect, event, named):
    with pytest.raises(RealtimeEventMismatch) as err:
        check_server_event(event, dialect)
    assert repr(event["type"]) in str(err.value) and named in str(err.value), str(err.value)


# ---- with a real Conversation ---------------------------------------------------------------------------


async def test_push_to_talk_turn_through_a_conversation():
    a = adapter(turn_detection=None, transcribe_input=True)
    conv, out = make(transcripts=("hello world",), init=a.init("echo"))
    await conv.start()
    events: list[dict] = []
    for raw in ({"type": "input_audio_buffer.append", "audio": b64(b"\x00\x00" * 4800)},
                {"type": "input_audio_buffer.commit"}, {"type": "response.create"}):
        translation = a.inbound(json.dumps(raw))
        events += translation.events
        for msg in translation.messages:
            await conv.handle(msg)
    await idle(conv)
    for event in out.events:
        events += a.outbound(event)
    names = kinds(events)
    assert names[0] == "input_audio_buffer.committed"
    assert names[-1] == "response.done" and events[-1]["response"]["status"] == "completed", names
    assert next(e for e in events if e["type"].endswith("transcription.completed"))["transcript"] == "hello world"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta") == "hello world"
    assert names.count("response.output_audio.delta") >= 2


async def test_interrupt_without_speech_id_stops_the_running_reply():
    conv, out = make(init=m.Init(agent_name="echo", init_greeting=False, ), everything=True)
    await conv.start()
    await conv.handle(m.Text("one two three"))
    await conv.handle(m.CreateResponse())
    while "response_created" not in [o.header.get("status") for o in out if o.type == "status"]:
        await asyncio.sleep(0)
    await conv.handle(m.Interrupt(None, None))
    await idle(conv)
    assert any("(interrupted)" in str(o.header.get("content")) for o in out if o.type == "message")
    assert "unknown_speech" not in [o.header.get("code") for o in out if o.type == "error"]


async def test_set_mode_switches_turn_taking():
    conv, _ = make(init=m.Init(agent_name="echo", init_greeting=False, mode="chat"))
    await conv.start()
    await conv.handle(m.SetMode("call"))
    assert conv.init.mode == "call" and conv._listener.call_mode
    await conv.close()


async def test_item_delete_leaves_the_message_out_of_the_llm_context():
    a = adapter(turn_detection=None)
    conv, out = make(init=a.init("echo"))
    await conv.start()
    for text, item_id in (("first thing", "item_a"), ("second thing", "item_b")):
        translation = send(a, "conversation.item.create", item={"type": "message", "role": "user", "id": item_id,
                                                                "content": [{"type": "input_text", "text": text}]})
        for msg in translation.messages:
            await conv.handle(msg)
    for event in out.events:
        a.outbound(event)
    deleted = send(a, "conversation.item.delete", item_id="item_a")
    assert kinds(deleted.events) == ["conversation.item.deleted"] and deleted.messages == [m.ForgetMessage(0)]
    await conv.handle(deleted.messages[0])
    assert conv.history.for_llm(False) == [{"role": "user", "content": "second thing"}]
    assert send(a, "conversation.item.delete", item_id="item_a").events[0]["error"]["code"] == "item_not_found"
    await conv.close()


async def test_cancel_then_truncate_cuts_the_reply_where_the_client_stopped_playing():
    """response.cancel cuts by the server's estimate; the client's conversation.item.truncate then refines it."""
    conv, out = make(init=m.Init(agent_name="echo", init_greeting=False, ), everything=True)
    await conv.start()
    await ask(conv, "one two three four five six seven eight")
    reply_id = max(o.header["id"] for o in out if o.type == "message" and o.header["role"] == "assistant")
    await conv.handle(m.Interrupt(str(reply_id), None))  # at once: about nothing was heard yet
    await conv.handle(m.Interrupt(str(reply_id), 0.45))  # the client had played 0.45 s (0.1 s silence + 0.1 s a word)
    cut = [o for o in out if o.type == "message" and o.header["id"] == reply_id][-1].header["content"][0]["text"]
    assert cut.startswith("one two three") and cut.endswith("(interrupted)"), cut
    await conv.close()


def test_barge_in_turn_keeps_its_transcript_until_the_reply_starts():
    """The reply cancelled by a barge-in must not settle the new turn's transcript early (a failure seen live)."""
    a = adapter(transcribe_input=True)
    reply(a)
    events = a.outbound(ev.UserSpeechStarted())
    events += a.outbound(ev.Message("user", 2, [m.text_part("Wait stop")], final=False))
    events += a.outbound(ev.UserInterrupt())
    events += a.outbound(ev.ResponseCancelled("interrupted"))
    events += a.outbound(ev.Message("assistant", 1, [m.text_part("Hel... (interrupted)")]))
    events += a.outbound(ev.Message("user", 2, [m.text_part("Wait, stop, I have a")], final=False))
    events += a.outbound(ev.UserSpeechStopped())
    events += a.outbound(ev.UserSpeechStarted())  # the user goes on talking before the reply starts
    events += a.outbound(ev.Message("user", 2, [m.text_part("Wait, stop, I have a question.")]))
    events += a.outbound(ev.ResponseCreated())
    completed = [e for e in events if e["type"].endswith("transcription.completed")]
    assert [e["transcript"] for e in completed] == ["Wait, stop, I have a question."], kinds(events)
    started = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
    assert completed[0]["item_id"] == started[0]["item_id"] != started[1]["item_id"]


def test_a_reopened_turn_is_one_item_with_the_whole_transcript():
    """The user went on within the resume window: the first part's committed item is deleted, and the item of
    what was said since carries the whole turn's transcript, completed once, before the one reply to it."""
    a = adapter(transcribe_input=True)
    send(a, "input_audio_buffer.append", audio=b64(b"\x00\x00" * 24_000))
    events = a.outbound(ev.UserSpeechStarted())
    events += a.outbound(ev.UserSpeechStopped())
    events += a.outbound(ev.Message("user", 0, [m.text_part("I would like a table for")]))
    events += reply(a, 1)  # the reply to the first part begins ...
    events += a.outbound(ev.UserSpeechStarted()) + a.outbound(ev.UserInterrupt())  # ... and is cut
    events += a.outbound(ev.TurnReopened(0))
    events += a.outbound(ev.Message("user", 0, [m.text_part("I would like a table for four")], final=False))
    events += a.outbound(ev.UserSpeechStopped())
    events += a.outbound(ev.Message("user", 0, [m.text_part("I would like a table for four people.")]))
    events += a.outbound(ev.ResponseCreated())
    completed = [e for e in events if e["type"].endswith("transcription.completed")]
    deleted = [e["item_id"] for e in events if e["type"] == "conversation.item.deleted"]
    assert deleted == [completed[0]["item_id"]]
    assert completed[-1]["transcript"] == "I would like a table for four people."
    assert completed[-1]["item_id"] != deleted[0]
    deltas = [e["delta"] for e in events if e["type"].endswith("transcription.delta") and e["item_id"] == completed[-1]["item_id"]]
    assert "".join(deltas) == "I would like a table for four people."
