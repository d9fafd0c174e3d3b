import json

import pytest

from protocol import messages as m
from protocol.framing import Frame, FrameError


def parse(header, payload=b"undefined"):
    return m.parse_client_message(Frame(header, payload))


def test_js_client_init():
    init = parse({"type": "init", "agent_name": "stt_test",
                  "agent_config": json.dumps({"title": "STT Test", "llm_model": "echo"}), "mode": "chat",
                  "stream_user_stt": True, "final_stt_correction": True, "stream_output_audio": True,
                  "init_greeting": True, "brand_new_field": {"x": 1}})
    assert init == m.Init(agent_name="stt_test", agent_config={"title": "STT Test", "llm_model": "echo"})


def test_init_defaults_and_null_config():
    init = parse({"type": "init", "agent_name": "a", "agent_config": None})
    assert init.mode == "chat" and init.init_greeting and init.agent_config is None


@pytest.mark.parametrize("header", [
    {"type": "init"},
    {"type": "init", "agent_name": ""},
    {"type": "init", "agent_name": 5},
    {"type": "init", "agent_name": "a", "agent_config": "{not json"},
    {"type": "init", "agent_name": "a", "agent_config": "[1]"},
    {"type": "init", "agent_name": "a", "mode": "video"},
    {"type": "init", "agent_name": "a", "init_greeting": "yes"},
    {"type": "init", "agent_name": "a", "input_audio_format": "opus"},
])
def test_bad_init(header):
    with pytest.raises(FrameError) as info:
        parse(header)
    assert info.value.code == "bad_field"


def test_audio_and_its_limits():
    assert parse({"type": "audio"}, b"\x00" * 8192) == m.Audio(b"\x00" * 8192)
    # any length: the session checks it against its input_audio_format (compressed chunks have any length)
    assert parse({"type": "audio"}, b"\x00" * 3) == m.Audio(b"\x00" * 3)
    with pytest.raises(FrameError) as info:
        parse({"type": "audio"}, b"\x00" * (m.MAX_AUDIO_FRAME_BYTES + 2))
    assert info.value.code == "audio_too_large"


def test_interrupt_forms():
    assert parse({"type": "interrupt", "speech_id": "0", "interrupted_at": 1.5}) == m.Interrupt("0", 1.5)
    assert parse({"type": "interrupt", "speech_id": 3, "interrupted_at": 2}) == m.Interrupt("3", 2.0)
    assert parse({"type": "interrupt", "speech_id": None}) == m.Interrupt(None, None)
    with pytest.raises(FrameError):
        parse({"type": "interrupt", "speech_id": "1", "interrupted_at": -1})


def test_other_messages():
    assert parse({"type": "text", "content": "hi"}) == m.Text("hi")
    assert parse({"type": "create_response"}) == m.CreateResponse()
    assert parse({"type": "image_url", "image_url": "data:image/webp;base64,AAAA"}) == m.ImageUrl("data:image/webp;base64,AAAA")
    assert parse({"type": "invoke_llm", "model": "x", "prompt": "p", "messages": [{"role": "user", "content": "c"}]}).model == "x"
    with pytest.raises(FrameError) as info:
        parse({"type": "wave"})
    assert info.value.code == "unknown_type"


def test_server_messages():
    assert m.status("init_done", agent_name="a").header == {"type": "status", "status": "init_done", "agent_name": "a"}
    msg = m.message("user", 1, [m.text_part("hi")], final=False)
    assert msg.header == {"type": "message", "role": "user", "content": [{"type": "text", "text": "hi"}], "id": 1, "final": False}
    assert m.audio("2", b"\x00\x00").header == {"type": "audio", "speech_id": "2"}
    with pytest.raises(ValueError):
        m.audio("2", b"\x00")
    assert m.error("bad", "x").header == {"type": "error", "error": "bad", "code": "x"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), True, "1.0", [1]])
def test_interrupted_at_must_be_a_finite_number(value):
    with pytest.raises(FrameError) as info:
        parse({"type": "interrupt", "speech_id": "0", "interrupted_at": value})
    assert info.value.code == "bad_field"


@pytest.mark.parametrize("config", ['{"a":' + "[" * 40 + "]" * 40 + "}", '{"n":' + "1" * 5000 + "}", "[" * 100_000])
def test_hostile_agent_config_strings_are_bad_field(config):
    with pytest.raises(FrameError) as info:
        parse({"type": "init", "agent_name": "a", "agent_config": config})
    assert info.value.code == "bad_field" and len(str(info.value)) < 200


@pytest.mark.parametrize("name", ["a\nb", "x\x00", "y" * 101])
def test_agent_names_are_short_and_printable(name):
    with pytest.raises(FrameError) as info:
        parse({"type": "init", "agent_name": name})
    assert info.value.code == "bad_field"
