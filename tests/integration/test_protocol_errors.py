"""Every malformed frame of PROTOCOL.md section 2 gets an error and the session stays usable."""

from __future__ import annotations

import json
import struct

import pytest

from protocol.framing import encode_frame
from tests.integration.helpers import ends_response, expect_refused, start_session, text_of

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)


def raw(header: bytes) -> bytes:
    return struct.pack(">I", len(header)) + header


MALFORMED = {
    "text_frame": ("text_frame", '{"type":"text","content":"hi"}'),
    "shorter_than_prefix": ("frame_too_short", b"\x00\x01"),
    "length_past_end": ("bad_length", struct.pack(">I", 500) + b'{"type":"text"}'),
    "json_not_object": ("bad_json", raw(b"[1,2,3]")),
    "invalid_json": ("bad_json", raw(b"{not json")),
    "missing_type": ("missing_type", raw(b'{"content":1}')),
    "unknown_type": ("unknown_type", encode_frame({"type": "dance"}) + b"undefined"),
    "odd_audio": ("bad_audio", encode_frame({"type": "audio"}) + b"\x01\x02\x03"),
    "text_without_content": ("bad_field", encode_frame({"type": "text"}) + b"undefined"),
    "bad_image_url": ("bad_field", encode_frame({"type": "image_url", "image_url": "file:///etc/passwd"})),
    "bad_interrupt": ("bad_field", encode_frame({"type": "interrupt", "speech_id": "1", "interrupted_at": "soon"})),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_frame_gets_error_and_session_survives(connect, case):
    code, data = MALFORMED[case]
    client = await connect()
    await start_session(client)
    await client.send_raw(data)
    error = await client.recv(30)
    assert error.type == "error" and error.header["code"] == code, error.header
    assert error.header["error"] and "Traceback" not in error.header["error"]
    # the session still works: a typed turn is answered
    await client.send({"type": "text", "content": "still here"})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert items[-1].is_status("response_done")
    assert text_of([i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1]) == "still here"


def test_malformed_cases_are_really_malformed():
    """Guard the table above: a JSON array and a header without a type really are what they claim."""
    assert json.loads(MALFORMED["json_not_object"][1][4:]) == [1, 2, 3]
    assert "type" not in json.loads(MALFORMED["missing_type"][1][4:])


async def test_junk_suffix_on_control_messages_is_ignored(connect):
    client = await connect()
    await client.send_raw(encode_frame({"type": "init", "agent_name": "stt_test", "init_greeting": False,
                                        "agent_config": None, "some_future_field": [1, 2]}) + b"undefined")
    got = await client.recv(30)
    assert got.header == {"type": "status", "status": "init_done", "agent_name": "stt_test"}


async def test_js_client_init_is_accepted_verbatim(connect):
    client = await connect()
    init = (b'{"type":"init","agent_name":"stt_test","agent_config":"{\\"title\\":\\"STT Test\\",\\"description\\":'
            b'\\"echo agent\\",\\"llm_model\\":\\"echo\\"}","mode":"chat","stream_user_stt":true,'
            b'"final_stt_correction":true,"stream_output_audio":true,"init_greeting":true}')
    await client.send_raw(struct.pack(">I", len(init)) + init + b"undefined")
    items = await client.until(lambda r: r.type == "audio", 60)
    assert items[0].is_status("init_done") and items[1].header["id"] == 0 and items[-1].header["speech_id"] == "0"


async def test_malformed_first_frame_closes_the_session(connect):
    client = await connect()
    await client.send_raw(b"\x00\x00")
    await expect_refused(client, "frame_too_short", 1002)


async def test_first_message_must_be_init(connect):
    client = await connect()
    await client.send({"type": "create_response"})
    await expect_refused(client, "init_expected", 1002)


async def test_unknown_agent_is_refused(connect):
    """An agent the server does not know and the client does not define (the test server allows new agents)."""
    client = await connect()
    await client.send({"type": "init", "agent_name": "no_such_agent", "agent_config": None})
    error = await expect_refused(client, "unknown_agent", 1008)
    assert "no_such_agent" in error.header["error"]


async def test_client_agent_config_cannot_change_a_server_agent(connect):
    """The default policy ignores a client's config for a server agent (the JS client always sends one)."""
    client = await connect()
    await client.init("stt_test", init_greeting=True,
                      agent_config={"llm_model": "gpt-4o", "greetings": {"choices": [{"content": "x", "file": "/etc/passwd"}]}})
    items = await client.until(lambda r: r.type == "message", 60)
    assert text_of(items[-1]) == "Hi! Say something and I will repeat it."


async def test_bad_init_field_is_refused(connect):
    client = await connect()
    await client.send({"type": "init", "agent_name": "stt_test", "mode": "telepathy"})
    await expect_refused(client, "bad_field", 1002)


async def test_interrupt_of_unknown_speech_gets_error(connect):
    client = await connect()
    await start_session(client)
    await client.send({"type": "interrupt", "speech_id": "42", "interrupted_at": 1.0})
    error = await client.recv(30)
    assert error.type == "error" and error.header["code"] == "unknown_speech"


async def test_endless_audio_is_capped_with_an_error(connect):
    """More than max_turn_seconds of audio in one turn: one error, the turn is still answered."""
    client = await connect()
    await start_session(client)
    second = b"\x00\x00" * 16_000
    await client.send_audio(second * 28)  # past the test server's 25 s, within the 30 s burst of audio at once
    error = await client.recv(30)
    assert error.type == "error" and error.header["code"] == "audio_too_long"
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 120)
    assert items[-1].is_status("response_cancelled")  # silence only
