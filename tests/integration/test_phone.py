"""The phone on the real graph: a simulated Twilio (harness/twilio_caller.py, written from Twilio's docs) posts
the signed call webhook, follows the TwiML to ``/twilio/stream`` and speaks Piper speech as 8 kHz mu-law at
real-time pace; real Whisper, the echo agent or the scripted LLM, real Piper speech back as mu-law."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import httpx
import pytest
import websockets

from agents.recording_files import find_conversations
from harness.noises import in_sequence
from harness.scripted_llm import LONG_STORY
from harness.server import TEST_API_KEY, TEST_TWILIO_AUTH_TOKEN, Server
from harness.speech import speech_pcm16k, transcribe_pcm16k, wer
from harness.twilio_caller import CallSetup, TwilioCaller, dial, to_16k
from tests.integration.helpers import (
    PHONE_RECORDED,
    PHONE_SCRIPTED,
    RAY_PROXY_DISCONNECT,
    RECORDINGS,
    ended,
    logged_since,
    phone_turn,
)

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

QUESTION = "Please tell me the weather forecast for tomorrow morning."
OTHER_QUESTION = "Can you recommend a good book for a long train ride?"
GREETING = "Hi! Say something and I will repeat it."


async def call(server: Server, to: str = "+15550001000") -> TwilioCaller:
    setup = await dial(server.http_url, to=to, auth_token=TEST_TWILIO_AUTH_TOKEN)
    return await TwilioCaller.connect(setup)


async def sessions(server: Server) -> dict:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{server.http_url}/sessions", headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                                timeout=30)
    return answer.json()


async def open_sessions_become(server: Server, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (now := (await sessions(server))["open_sessions"]) != count:
        assert time.monotonic() < deadline, f"{now} sessions open, expected {count}"
        await asyncio.sleep(0.2)


def tracebacks(server: Server) -> int:
    """Tracebacks in the server's log, but Ray's proxy's own when a client leaves (helpers.RAY_PROXY_DISCONNECT)."""
    return RAY_PROXY_DISCONNECT.sub("", server.log_path.read_text(errors="replace")).count("Traceback")


async def test_a_call_greets_answers_and_ends_with_stop(server: Server):
    """The TwiML followed; the greeting heard as 8 kHz mu-law; a question answered (echo agent), heard back by
    Whisper; ``stop`` frees the session."""
    before = (await sessions(server))["open_sessions"]
    setup = await dial(server.http_url, auth_token=TEST_TWILIO_AUTH_TOKEN)
    assert setup.stream_url == f"{server.ws_url}/twilio/stream", setup.twiml
    assert setup.parameters["agent"] == "stt_test" and setup.parameters["token"], setup.twiml
    caller = await TwilioCaller.connect(setup)
    try:
        await caller.wait_media_after(0.0, 60)
        await caller.wait_played_out(quiet_s=1.5, timeout=60)
        greeting = transcribe_pcm16k(to_16k(bytes(caller.heard)))
        assert wer(GREETING, greeting) <= 0.25, greeting
        assert not caller.log.other, caller.log.other[:3]  # only media and mark frames came
        assert caller.log.marks_echoed and all(re.fullmatch(r"\d+:\d+\.\d{3}", n) for n in caller.log.marks_echoed)
        assert (await sessions(server))["open_sessions"] == before + 1

        ended, first, reply = await phone_turn(caller, QUESTION)
        assert wer(QUESTION, reply) <= 0.2, reply
        assert first - ended < 30, f"the reply began {first - ended:.1f} s after the caller stopped speaking"
    finally:
        await caller.hang_up()
    await open_sessions_become(server, before)


async def test_stop_closes_a_recorded_call_s_recording(server: Server):
    """A call to an agent that records: Twilio's ``stop`` (the socket still open) ends the conversation, and its
    recording is closed with what was said on the line."""
    before = {c.id for c in find_conversations(RECORDINGS)}
    caller = await call(server, PHONE_RECORDED)
    try:
        await caller.wait_media_after(0.0, 60)  # "Hello, this call is recorded."
        await caller.wait_played_out(quiet_s=1.5, timeout=60)
        ended_at = await caller.say(speech_pcm16k(QUESTION))
        await caller.wait_media_after(ended_at, 60)
        await caller.wait_played_out(quiet_s=1.5, timeout=60)
        await caller.stop()
        deadline = time.monotonic() + 30
        while not (new := {c.id for c in find_conversations(RECORDINGS)} - before):
            assert time.monotonic() < deadline, "no recording of the call"
            await asyncio.sleep(0.2)
        recording = await ended(new.pop())
    finally:
        await caller.close()
    assert recording.meta.get("agent") == "recorded", recording.meta
    said = [" ".join(p.get("text", "") for p in m["content"]) for m in recording.messages if m.get("role") == "user"]
    assert said and wer(QUESTION, said[-1]) <= 0.2, said


async def test_barge_in_clears_and_history_keeps_what_was_heard(server: Server, scripted_llm):
    """Speaking over a long reply: ``clear`` comes, no more of that reply is played, and the LLM is next shown
    the reply cut where the marks say the caller stopped hearing it."""
    caller = await call(server, PHONE_SCRIPTED)
    try:
        await caller.wait_media_after(0.0, 60)  # the scripted agent's greeting
        await caller.wait_played_out(quiet_s=1.0, timeout=60)
        asked = await caller.say(speech_pcm16k("Tell me a long story."))
        started = await caller.wait_media_after(asked, 60)
        while time.monotonic() < started + 5.0:  # about two sentences of the story are played
            await asyncio.sleep(0.1)
        speaking = time.monotonic()
        await caller.say(speech_pcm16k("Stop, please wait.") + b"\x00\x00" * 16_000)
        deadline = time.monotonic() + 20
        while not caller.log.clears_at and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert caller.log.clears_at, "no clear after the caller spoke over the reply"
        assert caller.log.clears_at[0] - speaking < 10  # generous here; scripts/bench_phone.py measures it
        (speech, played), = caller.log.played_at_clear.items()
        await asyncio.sleep(1.0)
        assert caller.log.played_s[speech] == played, "the reply went on playing after the clear"
        deadline = time.monotonic() + 60
        while not scripted_llm.find("wait") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        request = scripted_llm.find("wait")[-1]
    finally:
        await caller.hang_up()
    story = [m for m in request.body["messages"] if m["role"] == "assistant" and "sentence number" in str(m["content"])]
    text = story[-1]["content"] if isinstance(story[-1]["content"], str) else story[-1]["content"][0]["text"]
    assert text.endswith("(interrupted)"), text
    heard = text.removesuffix("(interrupted)").rstrip(". ").strip()
    assert heard and LONG_STORY.startswith(heard.rsplit(" ", 1)[0]), text
    # Piper speaks one sentence of the story in about 2.6 s: the text kept is what the played seconds hold.
    sentence_s = len(speech_pcm16k("This is sentence number 1 of a long story.")) / 32_000
    sentences = heard.count("sentence number")
    assert abs(sentences - played / sentence_s) <= 1.5, (sentences, played, text)



async def test_noises_over_a_reply_send_no_clear(server: Server, scripted_llm):
    """A cough, a knock, a hum and a laugh (harness/noises.py) over the phone line while a long reply plays: no
    ``clear``, the reply goes on playing, and no turn reaches the LLM. The server log shows they were judged."""
    caller = await call(server, PHONE_SCRIPTED)
    try:
        await caller.wait_media_after(0.0, 60)  # the scripted agent's greeting
        await caller.wait_played_out(quiet_s=1.0, timeout=60)
        asked = await caller.say(speech_pcm16k("Tell me a long story."))
        await caller.wait_media_after(asked, 60)
        await asyncio.sleep(3.0)  # the story plays (past the resume window of the turn that asked for it)
        asked_llm = len(scripted_llm.requests)
        log_from = len(server.log_path.read_bytes())
        played = dict(caller.log.played_s)
        await caller.say(in_sequence() + b"\x00\x00" * 16_000)
        await asyncio.sleep(1.0)
        assert not caller.log.clears_at, "clear sent for a sound that was no speech"
        grew = {s: t for s, t in caller.log.played_s.items() if t > played.get(s, 0.0) + 6.0}
        assert grew, (played, caller.log.played_s)  # the story played on through the 7 s of sounds
        assert len(scripted_llm.requests) == asked_llm, [r.last_user_text for r in scripted_llm.requests[asked_llm:]]
        judged = await logged_since(server, log_from, "backchannel")
        assert "backchannel" in judged, "no sound was taken for speech: the test would not test anything"
    finally:
        await caller.hang_up()

async def test_keys_pressed_reach_the_agent(server: Server, scripted_llm):
    caller = await call(server, PHONE_SCRIPTED)
    try:
        await caller.wait_media_after(0.0, 60)
        await caller.wait_played_out(quiet_s=1.0, timeout=60)
        pressed = time.monotonic()
        await caller.press("42#")
        await caller.wait_media_after(pressed + 0.3, 60)  # the agent answers the keys
    finally:
        await caller.hang_up()
    found = scripted_llm.find("pressed 4 2 #")
    assert found, [r.last_user_text for r in scripted_llm.requests[-3:]]


async def test_webhook_refuses_a_bad_or_missing_signature(server: Server):
    for signature in ("", "bm90IGEgc2lnbmF0dXJl"):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await dial(server.http_url, signature=signature)
        assert refused.value.response.status_code == 403
    with pytest.raises(httpx.HTTPStatusError) as refused:  # signed for another URL: a proxy must say the public one
        await dial(server.http_url, auth_token=TEST_TWILIO_AUTH_TOKEN, signed_url="https://example.com/twilio/voice")
    assert refused.value.response.status_code == 403


async def closed_with(caller: TwilioCaller, timeout: float = 20) -> int | None:
    await asyncio.wait_for(caller.closed.wait(), timeout)
    return caller.close_code


async def test_a_bad_or_reused_token_is_refused(server: Server):
    setup = await dial(server.http_url, auth_token=TEST_TWILIO_AUTH_TOKEN)
    forged = await TwilioCaller.connect(setup, parameters={**setup.parameters, "token": "not-a-token"})
    assert await closed_with(forged) == 1008 and not forged.log.media_at
    other_call = CallSetup(setup.stream_url, setup.parameters, "CA-another-call", setup.twiml)
    stolen = await TwilioCaller.connect(other_call)
    assert await closed_with(stolen) == 1008 and not stolen.log.media_at
    first = await TwilioCaller.connect(setup)
    await first.wait_media_after(0.0, 60)
    await first.hang_up()
    again = await TwilioCaller.connect(setup)  # the same call's token, after its call
    assert await closed_with(again) == 1008 and not again.log.media_at


async def test_hostile_media_streams_end_cleanly_and_other_calls_go_on(server: Server):
    """Bad base64, a huge payload, a binary frame, an event out of order, a flood of media: the call goes on
    or ends cleanly, no traceback in the server log, and a good call beside them is answered."""
    before, tracebacks_before = (await sessions(server))["open_sessions"], tracebacks(server)
    good = await call(server)
    hostile = [await call(server) for _ in range(3)]
    try:
        await good.wait_media_after(0.0, 60)
        bad_media = {"event": "media", "streamSid": hostile[0].stream_sid, "media": {"payload": "%%% not base64"}}
        await hostile[0].send(bad_media)
        await hostile[0].send({**bad_media, "media": {"payload": base64.b64encode(b"\xff" * 200_000).decode()}})
        await hostile[0].send("{not json")
        await hostile[0].send(json.dumps({"event": "start", "start": {}}))  # a second start
        await hostile[0].send(json.dumps({"event": "unknown"}))
        await hostile[1].ws.send(b"\x00binary")
        flood = json.dumps({"event": "media", "streamSid": hostile[2].stream_sid,
                            "media": {"payload": base64.b64encode(b"\x7f" * 160).decode()}})
        for _ in range(3_000):  # 60 s of audio at once
            await hostile[2].send(flood)
        await good.wait_played_out(quiet_s=1.0, timeout=60)
        _, _, reply = await phone_turn(good, OTHER_QUESTION)
        assert wer(OTHER_QUESTION, reply) <= 0.2, reply
        for caller in hostile:  # each goes on (still open) or was closed with a code, never 1011
            assert caller.close_code in (None, 1000, 1002, 1008), caller.close_code
    finally:
        for caller in [good, *hostile]:
            try:
                await caller.hang_up()
            except websockets.ConnectionClosed:
                pass
    await open_sessions_become(server, before)
    assert tracebacks(server) == tracebacks_before
