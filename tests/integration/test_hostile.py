"""Hostile input, tried as an attacker would, against the real graph: each class of bad input gets its
error code, the session stays up where the protocol says so, no response or log line carries a traceback or
a secret, and a normal client is served promptly while the hostile one runs."""

from __future__ import annotations

import asyncio
import struct
import time

import httpx
import jwt
import pytest
import websockets

from harness.server import TEST_API_KEY, TEST_SECRET
from harness.speech import speech_pcm16k
from protocol.client import VoiClient
from protocol.tokens import issue_token
from tests.integration.helpers import (
    RAY_PROXY_DISCONNECT,
    ends_response,
    expect_refused,
    final_user_text,
    start_session,
    text_of,
)

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

LEAKS = ("Traceback", 'File "', "/work/", "site-packages", "pid=", "ip=", "actor_id", "ray::", TEST_SECRET,
         TEST_API_KEY)


def assert_clean(text: str) -> None:
    """Nothing of the server's insides (tracebacks, paths, Ray's process details) and no secret."""
    found = [leak for leak in LEAKS if leak in text]
    assert not found, (found, text[:500])


def raw(header: bytes, payload: bytes = b"undefined") -> bytes:
    return struct.pack(">I", len(header)) + header + payload


@pytest.fixture(scope="module")
def log_start(server) -> int:
    """Where the server log stood when this module began: its later lines are this module's."""
    return len(server.log_path.read_bytes())


async def typed_turn_works(client: VoiClient, text: str = "still here") -> None:
    """A typed turn of the echo agent is answered (its reply holds the text; in call mode after what was heard)."""
    await client.send({"type": "text", "content": text})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert items[-1].is_status("response_done"), [i.header for i in items if i.type != "audio"]
    assert text in text_of([i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1])


# Each class of bad JSON: nesting far past and just past the limit, arrays and objects, integers Python will not
# convert, a header too large; and every non-finite number where a float field is.
BAD_FRAMES = {
    "100k_brackets": ("bad_json", raw(b"[" * 100_000)),
    "100k_objects": ("bad_json", raw(b'{"a":' * 100_000)),
    "nested_33_in_a_field": ("bad_json", raw(b'{"type":"text","content":"x","extra":' + b"[" * 33 + b"]" * 33 + b"}")),
    "5000_digit_integer": ("bad_json", raw(b'{"type":"interrupt","interrupted_at":' + b"9" * 5000 + b"}")),
    "5000_digit_negative": ("bad_json", raw(b'{"type":"text","content":"x","n":-' + b"1" * 5000 + b"}")),
    "nan_interrupt": ("bad_field", raw(b'{"type":"interrupt","speech_id":null,"interrupted_at":NaN}')),
    "infinity_interrupt": ("bad_field", raw(b'{"type":"interrupt","speech_id":null,"interrupted_at":Infinity}')),
    "minus_infinity_interrupt": ("bad_field", raw(b'{"type":"interrupt","speech_id":null,"interrupted_at":-Infinity}')),
    "overflowing_float_interrupt": ("bad_field", raw(b'{"type":"interrupt","speech_id":null,"interrupted_at":1e999}')),
    "header_past_4_mib": ("frame_too_large", raw(b'{"type":"text","content":"' + b"x" * (5 << 20) + b'"}')),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
async def test_hostile_json_after_init_is_an_error_and_the_session_goes_on(log_start, connect, case):
    code, data = BAD_FRAMES[case]
    client = await connect()
    await start_session(client)
    await client.send_raw(data)
    error = await client.recv(30)
    assert error.type == "error" and error.header["code"] == code, error.header
    assert_clean(error.header["error"])
    await typed_turn_works(client)


@pytest.mark.parametrize("case", ["100k_brackets", "5000_digit_integer", "100k_objects"])
async def test_hostile_json_before_init_is_refused_with_a_close_frame(log_start, connect, case):
    """Not a dropped socket (1006): an error, then close 1002."""
    client = await connect()
    await client.send_raw(BAD_FRAMES[case][1])
    error = await expect_refused(client, "bad_json", 1002)
    assert_clean(error.header["error"])


@pytest.mark.parametrize("agent_config", [
    '{"llm_model":"echo","voices":{"character":{"model":"piper-joe","speed":NaN}}}',
    '{"llm_model":"echo","llm_timeout_s":Infinity}',
    '{"llm_model":"echo","x":' + "[" * 50 + "]" * 50 + "}",
    '{"llm_model":"echo","x":' + "7" * 5000 + "}",
])
async def test_hostile_agent_config_is_refused(log_start, connect, agent_config):
    client = await connect()
    await client.send({"type": "init", "agent_name": "my_agent", "agent_config": agent_config})
    error = await client.recv(30)
    assert error.type == "error" and error.header["code"] in ("bad_field", "bad_agent_config"), error.header
    assert_clean(error.header["error"])


async def test_size_limits_drop_the_message_and_keep_the_session(log_start, connect):
    client = await connect()
    await start_session(client)
    await client.send({"type": "text", "content": "y" * 8_001})
    assert (await client.recv(30)).header["code"] == "text_too_long"
    await client.send({"type": "image_url", "image_url": "data:image/png;base64," + "A" * 2_100_000})
    assert (await client.recv(30)).header["code"] == "image_too_large"
    await typed_turn_works(client, "short enough")


async def test_message_flood_gets_one_error_and_the_session_goes_on(log_start, connect):
    """200 control messages at once (and 100 malformed frames): the burst passes, the rest is dropped with one
    too_many_messages error; after a pause the session answers as before."""
    client = await connect()
    await start_session(client)
    for n in range(200):
        await client.send({"type": "text", "content": f"spam {n}"})
    for _ in range(100):
        await client.send_raw(b"\x00")
    items = await client.drain(2.0)
    errors = [i.header["code"] for i in items if i.type == "error"]
    assert errors == ["too_many_messages"], errors
    echoed = [i for i in items if i.type == "message"]
    assert 30 <= len(echoed) <= 80, len(echoed)  # the burst (40) and what the rate refilled meanwhile
    await asyncio.sleep(3)
    await typed_turn_works(client, "after the flood")


async def test_idle_sockets_hold_no_session_capacity(log_start, server):
    """200 sockets of one app that never send init: the app's cap (64) refuses the rest at once with
    too_many_sessions / 1008, a normal client of another app gets init_done promptly, and the idle ones are
    closed at the init deadline (10 s)."""
    hostile_token = issue_token(TEST_SECRET, "idle-sockets")
    opened = await asyncio.gather(*(VoiClient.connect(server.ws_url, hostile_token) for _ in range(200)),
                                  return_exceptions=True)
    sockets = [s for s in opened if isinstance(s, VoiClient)]
    try:
        assert len(sockets) == 200, [repr(s) for s in opened if not isinstance(s, VoiClient)][:3]
        opened_at = time.monotonic()

        async def first_word(client: VoiClient) -> str:
            try:
                item = await client.recv(3)
                return item.header.get("code", item.type)
            except TimeoutError:
                return "waiting"
            except websockets.ConnectionClosed:
                return "closed"

        words = await asyncio.gather(*(first_word(s) for s in sockets))
        assert words.count("too_many_sessions") == 136 and words.count("waiting") == 64, sorted(set(words))
        normal = await VoiClient.connect(server.ws_url, issue_token(TEST_SECRET, "normal-app"))
        try:
            started = time.monotonic()
            await start_session(normal)
            waited = time.monotonic() - started
            await typed_turn_works(normal)
        finally:
            await normal.close()
        print(f"normal client init_done after {waited * 1000:.0f} ms beside 64 idle sockets")
        assert waited < 5.0, waited
        waiting = [s for s, word in zip(sockets, words) if word == "waiting"]
        remaining = 10.0 - (time.monotonic() - opened_at) + 10.0
        codes = await asyncio.gather(*(s.recv(max(remaining, 1.0)) for s in waiting))
        assert {c.header["code"] for c in codes} == {"init_timeout"}
        # Their slots are free again: the app can open a session.
        again = await VoiClient.connect(server.ws_url, hostile_token)
        try:
            await start_session(again)
        finally:
            await again.close()
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def test_audio_flood_is_capped_and_a_normal_client_is_answered_promptly(log_start, server, connect):
    """A call-mode client floods speech at 50x real time: it is told audio_too_fast once and capped at 2x,
    and another client's spoken turn is answered about as fast as without the flood."""
    sentence = "Could you tell me the way to the train station?"
    speech = speech_pcm16k(sentence)

    async def spoken_turn(client: VoiClient) -> float:
        await client.send_audio(speech, realtime=True)
        await client.send({"type": "create_response"})
        asked = time.monotonic()
        items = await client.until(ends_response, 120)
        assert items[-1].is_status("response_done"), [i.header for i in items if i.type != "audio"]
        assert "train station" in final_user_text(items).lower(), final_user_text(items)
        return time.monotonic() - asked

    normal = await connect(issue_token(TEST_SECRET, "normal-app"))
    await start_session(normal)
    baseline = await spoken_turn(normal)
    await normal.drain(1.0)

    hostile = await connect(issue_token(TEST_SECRET, "flood-app"))
    await start_session(hostile, mode="call")
    turn_audio = speech + b"\x00\x00" * 16_000  # a sentence and a second of silence: a turn every 4 s of audio
    stop = asyncio.Event()
    sent = 0.0

    async def flood() -> None:
        nonlocal sent
        frame, offset, began = 8192, 0, time.monotonic()
        while not stop.is_set():
            chunk = turn_audio[offset % len(turn_audio):][:frame]
            offset += len(chunk)
            await hostile.send({"type": "audio"}, chunk)
            sent = offset / 32_000
            await asyncio.sleep(max(0.0, began + sent / 50 - time.monotonic()))  # 50x real time

    flooding = asyncio.create_task(flood())
    try:
        got = await hostile.until(lambda r: r.type == "error" and r.header["code"] == "audio_too_fast", 30)
        assert_clean(got[-1].header["error"])
        await asyncio.sleep(3)  # the burst allowance it spent is being answered; the flood goes on
        # The better of two turns: a slow service fails both, a passing hiccup of a shared machine only one.
        flooded = min([await spoken_turn(normal), await spoken_turn(normal)])
    finally:
        stop.set()
        await flooding
    print(f"spoken turn answered {baseline * 1000:.0f} ms after create_response alone, {flooded * 1000:.0f} ms "
          f"beside a 50x audio flood ({sent:.0f} s of audio sent)")
    # The cap is what is judged, not this machine's speed: the flood capped at 2x still shares Whisper with the
    # normal client (on two loaded cores a turn has been seen to take 2.5 s), while an uncapped flood would queue
    # its ~900 s of audio in front of it (a minute or more). 8 s separates the two with room for a noisy machine.
    assert flooded < 2 * baseline + 8.0, (baseline, flooded)
    errors = [i.header["code"] for i in await hostile.drain(2.0) if i.type == "error"]
    assert "audio_too_fast" not in errors  # one error per episode, not one per dropped frame
    await typed_turn_works(hostile, "flood over")  # the hostile session itself goes on


def test_chat_completions_never_show_a_traceback(log_start, server):
    url, auth = f"{server.http_url}/v1/chat/completions", {"Authorization": f"Bearer {TEST_API_KEY}"}
    bodies = {
        "bad_messages": (400, b'{"messages":[{"role":"wizard","content":"hi"}]}'),
        "messages_not_a_list": (400, b'{"messages":"hi"}'),
        "nan_temperature": (400, b'{"messages":[{"role":"user","content":"hi"}],"temperature":NaN}'),
        "100k_brackets": (400, b"[" * 100_000),
        "5000_digits": (400, b'{"messages":[],"max_tokens":' + b"9" * 5000 + b"}"),
        "not_json": (400, b"\xff\xfe"),
        "too_large": (413, b'{"messages":"' + b"x" * (2 << 20) + b'"}'),
        "bad_stream": (400, b'{"messages":[{"role":"user","content":7}],"stream":true}'),
    }
    for name, (status, body) in bodies.items():
        response = httpx.post(url, content=body, headers={**auth, "Content-Type": "application/json"}, timeout=60)
        assert response.status_code == status, (name, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/json"), name
        assert response.json()["error"]["message"], name
        assert_clean(response.text)


def test_app_names_with_control_characters_are_not_minted(log_start, server):
    for name in ("a%0Ab", "a%0D%0AINFO%20forged", "tab%09here", "nul%00"):
        response = httpx.post(f"{server.http_url}/integrations/{name}", headers={"API-Key": TEST_API_KEY}, timeout=10)
        assert response.status_code == 400, (name, response.text)
        assert "token" not in response.json()


async def test_forged_log_lines_cannot_be_written(log_start, server, connect):
    """A token signed with the server's key but an app claim holding a newline, and an agent name with one:
    refused, and nothing the client wrote starts a line of the server log."""
    forged_app = jwt.encode({"app": "x\nFORGED-LINE app", "iat": int(time.time()), "exp": int(time.time()) + 600},
                            TEST_SECRET, "HS256")
    await expect_refused(await connect(forged_app), "bad_token", 1008)
    client = await connect()
    await client.send({"type": "init", "agent_name": "my_agent\nFORGED-LINE agent", "agent_config": None})
    await expect_refused(client, "bad_field", 1002)
    await asyncio.sleep(1.0)
    lines = server.log_path.read_text(errors="replace").splitlines()
    assert not [line for line in lines if line.lstrip().startswith("FORGED-LINE")]


async def test_token_lifetimes_are_capped(log_start, connect):
    forever = jwt.encode({"app": "t", "iat": int(time.time()), "exp": 32503680000}, TEST_SECRET, "HS256")  # year 3000
    error = await expect_refused(await connect(forever), "bad_token", 1008)
    assert "30 days" in error.header["error"]
    month = jwt.encode({"app": "t", "exp": int(time.time()) + 29 * 86_400}, TEST_SECRET, "HS256")
    await start_session(await connect(month))


def test_openapi_is_not_served_unless_asked(server):
    assert httpx.get(f"{server.http_url}/openapi.json", timeout=10).status_code == 404
    assert httpx.get(f"{server.http_url}/docs", timeout=10).status_code == 404


def test_no_traceback_or_secret_in_the_server_log(log_start, server):
    """Everything above was answered without a traceback (or a secret) in the server's log."""
    written = RAY_PROXY_DISCONNECT.sub("", server.log_path.read_bytes()[log_start:].decode(errors="replace"))
    assert "Traceback" not in written, written[written.find("Traceback") - 2000:][:4000]
    assert TEST_SECRET not in written and TEST_API_KEY not in written
