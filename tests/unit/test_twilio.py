"""The Twilio Media Streams codec (protocol/twilio.py) and the webhook's pieces (protocol/twilio_voice.py)."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET

import pytest

from harness.twilio_caller import call_fields, sign
from protocol import events as ev
from protocol import messages as m
from protocol import twilio as tw
from protocol.framing import FrameError
from protocol.twilio_voice import (
    PhoneOptions,
    agent_for,
    call_key,
    connect_twiml,
    end_twiml,
    form_fields,
    handovers_of,
    public_url,
    signature_valid,
)
from speech.audio import INPUT_RATE, OUTPUT_RATE
from speech.g711 import G711Decoder, G711Encoder

START = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
    "accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
    "customParameters": {"agent": "joe", "token": "t"},
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


def media(payload: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "chunk": "1",
                                                                       "timestamp": "5",
                                                                       "payload": base64.b64encode(payload).decode()}})


def test_twilios_documented_messages_parse():
    assert tw.parse_event(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == tw.Connected("Call")
    start = tw.parse_event(json.dumps(START))
    assert start == tw.Start("MZ1", "CA1", {"agent": "joe", "token": "t"}, "audio/x-mulaw", 8000)
    tw.check_format(start)
    assert tw.parse_event(media(b"\xff" * 160)) == tw.Media(b"\xff" * 160)
    assert tw.parse_event(json.dumps({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "7"}})) == tw.Dtmf("7")
    assert tw.parse_event(json.dumps({"event": "mark", "mark": {"name": "3:0.100"}})) == tw.Mark("3:0.100")
    assert tw.parse_event(json.dumps({"event": "stop", "stop": {"callSid": "CA1"}})) == tw.Stop()


@pytest.mark.parametrize(("raw", "code"), [
    (None, "text_expected"),
    ("{nope", "bad_json"),
    ("[" * 10_000, "frame_too_large" if 10_000 > tw.MAX_FRAME_CHARS else "bad_json"),
    (json.dumps({"event": "media", "media": {"payload": "%%%"}}), "bad_media"),
    (media(b"\xff" * (tw.MAX_PAYLOAD_BYTES + 1)), "media_too_large"),
    (json.dumps({"event": "media", "media": {"payload": "A" * (tw.MAX_FRAME_CHARS + 1)}}), "frame_too_large"),
    (json.dumps({"event": "dtmf", "dtmf": {"digit": "x"}}), "bad_field"),
    (json.dumps({"event": "start", "start": {}}), "bad_field"),
    (json.dumps({"event": "hello"}), "unknown_event"),
])
def test_what_is_not_twilios_is_refused_with_a_code(raw, code):
    with pytest.raises(FrameError) as refused:
        tw.parse_event(raw)
    assert refused.value.code == code


def test_only_mulaw_at_8khz_is_taken():
    start = tw.parse_event(json.dumps({**START, "start": {**START["start"], "mediaFormat": {"encoding": "audio/x-l16",
                                                                                            "sampleRate": 16000}}}))
    with pytest.raises(FrameError) as refused:
        tw.check_format(start)
    assert refused.value.code == "bad_format"


def test_caller_audio_is_handed_on_as_16khz_pcm_in_60ms_pieces():
    audio = tw.CallerAudio(G711Decoder("pcmu", INPUT_RATE))
    pieces = [audio.add(b"\xff" * 160) for _ in range(25)]  # 0.5 s of 20 ms Twilio frames
    handed = [i for i, p in enumerate(pieces) if p is not None]
    got = [p for p in pieces if p is not None]
    assert all(isinstance(p, m.Audio) for p in got)
    # Every third frame (the resampler's delay aside): speech reaches the Listener at most 60 ms after it came.
    assert max(b - a for a, b in zip(handed, handed[1:])) == 3 and handed[0] <= 3
    assert all(abs(len(p.data) / 32_000 - tw.IN_BATCH_S) < 0.021 for p in got)  # about 60 ms of 16 kHz PCM16
    assert abs(sum(len(p.data) for p in got) / 32_000 - 0.5) < 0.07  # nothing lost but the tail still kept


def test_reply_audio_goes_out_as_mulaw_media_each_followed_by_a_mark():
    codec = tw.TwilioEncoder("MZ1", lambda: G711Encoder("pcmu", OUTPUT_RATE))
    frames = codec.encode(ev.AudioChunk("7", b"\x00\x01" * 12_000))  # 0.5 s at 24 kHz
    kinds = [f["event"] for f in frames]
    assert kinds == ["media", "mark"] * 5 and all(f["streamSid"] == "MZ1" for f in frames)
    sent = sum(len(base64.b64decode(f["media"]["payload"])) for f in frames if f["event"] == "media")
    assert 3_000 <= sent <= 4_000  # 0.5 s of 8 kHz mu-law, one byte a sample (less the resampler's delay)
    assert [f["mark"]["name"] for f in frames if f["event"] == "mark"][-1] == "7:0.500"
    for kind in (ev.ResponseCreated(), ev.Message("assistant", 7, [{"type": "text", "text": "hi"}]), ev.Error("x", "y"),
                 ev.SpeechDone("7"), ev.UserSpeechStarted()):
        assert codec.encode(kind) == []  # the phone's wire carries audio only


def test_a_barge_in_clears_and_the_marks_say_what_was_heard():
    codec = tw.TwilioEncoder("MZ1", lambda: G711Encoder("pcmu", OUTPUT_RATE))
    names = [f["mark"]["name"] for f in codec.encode(ev.AudioChunk("7", b"\x00\x00" * 24_000)) if f["event"] == "mark"]
    for name in names[:3]:  # the caller heard 0.3 s
        codec.heard(name)
    assert codec.take_played() is None
    assert codec.encode(ev.UserInterrupt()) == [{"event": "clear", "streamSid": "MZ1"}]
    assert codec.take_played() == m.Played("7", pytest.approx(0.3))
    for name in names[3:]:  # Twilio sends back the waiting marks after a clear: not heard
        codec.heard(name)
    assert codec.heard_s("7") == pytest.approx(0.3)
    assert codec.encode(ev.SpeechDone("7", interrupted=True)) == []  # cleared once
    assert codec.encode(ev.AudioChunk("7", b"\x00\x00" * 2_400)) == []  # late audio of the cut speech is dropped


def test_the_webhook_answers_with_a_stream_naming_the_agent_and_the_token():
    twiml = connect_twiml("wss://voice.example.com/twilio/stream", "joe", "tok&en",
                          "https://voice.example.com/twilio/voice?handover=1")
    connect = ET.fromstring(twiml).find("./Connect")
    assert connect is not None and connect.get("action") == "https://voice.example.com/twilio/voice?handover=1"
    stream = connect.find("./Stream")
    assert stream is not None and stream.get("url") == "wss://voice.example.com/twilio/stream"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {"agent": "joe", "token": "tok&en"}
    options = PhoneOptions(numbers={"+15550001111": "sales"}, agent="front")
    assert agent_for("+15550001111", options, "first") == "sales"
    assert agent_for("+15559999999", options, "first") == "front"
    assert agent_for("+15559999999", PhoneOptions(), "first") == "first"


def test_a_handed_over_stream_says_so_and_each_stream_has_its_own_token_key():
    twiml = connect_twiml("wss://h/twilio/stream", "joe", "t", "https://h/twilio/voice?handover=3", handover=2)
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None and {p.get("name"): p.get("value") for p in stream.findall("Parameter")}["handover"] == "2"
    assert handovers_of("") == 0 and handovers_of("handover=2") == 2 and handovers_of("x=1&handover=7") == 7
    assert handovers_of("handover=-1") > PhoneOptions().max_handovers  # not a count: not handed over again
    assert handovers_of("handover=99999") > PhoneOptions().max_handovers
    assert call_key("CA1", "") == call_key("CA1", 0) == "CA1/0" != call_key("CA1", "1")
    assert ET.fromstring(end_twiml()).find("./Hangup") is not None


def test_a_turn_is_under_way_from_the_callers_speech_until_the_reply_has_been_played():
    codec = tw.TwilioEncoder("MZ1", lambda: G711Encoder("pcmu", OUTPUT_RATE))
    assert not codec.busy  # between turns
    codec.encode(ev.UserSpeechStarted())
    assert codec.busy  # the caller speaks: their turn is to be answered
    codec.encode(ev.ResponseCreated())
    frames = codec.encode(ev.AudioChunk("7", b"\x00\x00" * 4_800))  # 0.2 s: two media + mark pairs
    codec.encode(ev.ResponseDone())
    assert codec.busy  # the speech is still being made
    codec.encode(ev.SpeechDone("7", interrupted=False))
    assert codec.busy  # ... and played: its marks are not all back
    for frame in frames:
        if frame["event"] == "mark":
            codec.heard(frame["mark"]["name"])
    assert not codec.busy
    codec.encode(ev.UserSpeechStarted())
    codec.encode(ev.ResponseCancelled("no_input"))  # (a sound without words)
    assert not codec.busy


def test_the_public_url_is_the_configured_host_or_the_trusted_proxys():
    assert public_url(PhoneOptions(public_host="voice.example.com"), "http", "10.0.0.5:8000", None, None).stream() == \
        "wss://voice.example.com/twilio/stream"
    behind = PhoneOptions(trust_forwarded=True)
    assert public_url(behind, "http", "10.0.0.5:8000", "https", "voice.example.com").of("/twilio/voice") == \
        "https://voice.example.com/twilio/voice"
    assert public_url(PhoneOptions(), "http", "10.0.0.5:8000", "https", "evil.example.com").of("/x") == \
        "http://10.0.0.5:8000/x"  # forwarded headers are ignored unless the operator trusts them


def test_the_signature_is_checked_against_the_public_url():
    fields = call_fields("+15550001111", "+15557654321", "CA1")
    url = "https://voice.example.com/twilio/voice"
    body = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in fields.items()).encode()
    assert form_fields(body) == fields
    assert signature_valid("secret", url, fields, sign("secret", url, fields))
    assert not signature_valid("secret", "http://10.0.0.5:8000/twilio/voice", fields, sign("secret", url, fields))
    assert not signature_valid("secret", url, {**fields, "To": "+1"}, sign("secret", url, fields))
    assert not signature_valid("secret", url, fields, None)
    with pytest.raises(ValueError):
        form_fields(b"a=" + b"x" * 20_000)


@pytest.mark.parametrize(("args", "named"), [({"phone_agent": "nobody"}, "nobody"),
                                             ({"phone_numbers": '{"+15550001111": "ghost"}'}, "ghost"),
                                             ({"phone_dtmf_template": "pressed {keys}"}, "phone_dtmf_template")])
def test_a_phone_setting_naming_what_does_not_exist_stops_the_start(monkeypatch, tmp_path, args, named):
    from common.config_errors import ConfigError
    from serve_app import ROOT, build

    monkeypatch.setenv("TOKEN_SECRET_KEY", "a-token-secret-key-of-at-least-32-characters")
    monkeypatch.setenv("API_KEY", "key")
    with pytest.raises(ConfigError, match=named):
        build({"agents": str(ROOT / "tests" / "integration" / "agents.yaml"),
               "models": str(ROOT / "tests" / "integration" / "models.yaml"), "env_file": str(tmp_path / ".env"), **args})
