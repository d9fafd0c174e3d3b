"""``/v1/realtime`` driven by the official ``openai`` SDK's realtime client against the real graph: real
Piper speech in (resampled to the protocol's 24 kHz), real Whisper, real Piper speech out. Every server event
a test receives is checked against the SDK's own types of its dialect (``connect`` and ``raw_event``, through
harness/realtime_types.py): a shape the SDK refuses fails the test, naming the event and the field."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI

from harness.realtime_types import check_server_event
from harness.server import TEST_API_KEY, TEST_SECRET, Server
from harness.speech import speech_pcm16k, speech_with_pause, wer
from protocol.realtime_events import Dialect
from protocol.tokens import issue_token
from speech import g711
from speech.audio import float_to_pcm16, pcm16_to_float, resample

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
CHUNK_MS = 100
PTT = {"type": "realtime", "audio": {"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}}}
VAD = {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"},
                                               "transcription": {"model": "whisper-1"}}}}


@asynccontextmanager
async def connect(server: Server, model: str, *, key: str = TEST_API_KEY, dialect: Dialect = "ga") -> AsyncIterator[Any]:
    """The SDK's realtime connection (``client.realtime``, or ``client.beta.realtime`` for the beta dialect);
    each event it receives is checked against the SDK's types before the SDK parses it."""
    client = AsyncOpenAI(api_key=key, base_url=f"{server.http_url}/v1", websocket_base_url=f"{server.ws_url}/v1",
                         max_retries=0)
    realtime = client.beta.realtime if dialect == "beta" else client.realtime
    async with realtime.connect(model=model) as conn:
        parse = conn.parse_event  # what recv() (and iterating the connection) calls on each received frame

        def checked(data: str | bytes) -> Any:
            check_server_event(json.loads(data), dialect)
            return parse(data)

        conn.parse_event = checked
        yield conn


async def raw_event(ws: Any, dialect: Dialect = "ga") -> dict[str, Any]:
    """The next event on a plain websocket, checked against the SDK's types."""
    event = json.loads(await ws.recv())
    check_server_event(event, dialect)
    return event


def pcm24k(text: str) -> bytes:
    return float_to_pcm16(resample(pcm16_to_float(speech_pcm16k(text)), 16_000, 24_000))


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


async def until(conn: Any, kind: str, timeout: float = 60) -> list[Any]:
    """Events up to and including the first of type ``kind``."""
    seen: list[Any] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await conn.recv()
            seen.append(event)
            if event.type == kind:
                return seen


async def drain(conn: Any, seconds: float) -> list[Any]:
    seen: list[Any] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                seen.append(await conn.recv())
    except TimeoutError:
        return seen


async def append_speech(conn: Any, pcm: bytes, *, real_time: bool, silence_s: float = 0.0) -> None:
    pcm += b"\x00\x00" * int(24_000 * silence_s)
    step = 24_000 * 2 * CHUNK_MS // 1000
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=b64(pcm[i:i + step]))
        if real_time:
            await asyncio.sleep(CHUNK_MS / 1000)


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def audio_of(events: list[Any]) -> bytes:
    return b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")


async def ask(conn: Any, text: str, item_id: str | None = None) -> None:
    """A user text item, then ``response.create``."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await conn.conversation.item.create(item={**item, "id": item_id} if item_id else item)
    await conn.response.create()


async def open_session(conn: Any, session: dict[str, Any]) -> None:
    created = await conn.recv()
    assert created.type == "session.created", created
    await conn.session.update(session=session)
    updated = await until(conn, "session.updated", 10)
    assert types(updated) == ["session.updated"], updated


async def test_text_item_with_text_only_modalities(server):
    async with connect(server, "stt_test") as conn:
        await open_session(conn, {**PTT, "output_modalities": ["text"]})
        await ask(conn, "Hello from the realtime API.")
        events = await until(conn, "response.done")
        kinds = types(events)
        assert kinds[:2] == ["conversation.item.added", "conversation.item.done"], kinds
        assert "response.output_audio.delta" not in kinds and "response.output_audio_transcript.delta" not in kinds
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == "Hello from the realtime API.", text
        for kind in ("response.created", "response.output_item.added", "response.content_part.added",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done"):
            assert kind in kinds, kinds
        done = events[-1].response
        assert done.status == "completed" and done.usage.total_tokens > 0, done
        assert done.output[0].content[0].text == text
        assert not [e for e in await drain(conn, 1.0) if e.type.startswith("response.")]  # its speech is not sent


async def test_spoken_turn_with_server_vad(server):
    """Speech at real-time pace: speech_started/stopped, the transcript, audio that says the echo back."""
    async with connect(server, "stt_test") as conn:
        await open_session(conn, VAD)
        await append_speech(conn, pcm24k(SENTENCE), real_time=True, silence_s=1.5)
        events = await until(conn, "response.done", 90)
        kinds = types(events)
        order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                 "conversation.item.input_audio_transcription.completed", "response.created", "response.output_audio.delta",
                 "response.done"]
        assert all(k in kinds for k in order), kinds
        assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order), kinds
        started = next(e for e in events if e.type == "input_audio_buffer.speech_started")
        completed = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
        assert completed.item_id == started.item_id
        assert wer(SENTENCE, completed.transcript) <= 0.15, completed.transcript
        deltas = "".join(e.delta for e in events if e.type == "conversation.item.input_audio_transcription.delta")
        assert deltas == completed.transcript
        assert events[-1].response.status == "completed"
        spoken = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
        assert spoken.strip() == completed.transcript.strip()
        reply = audio_of(events)
        assert len(reply) > 24_000 * 2, len(reply)  # over a second of 24 kHz PCM16

        # The reply's own audio (24 kHz, as the protocol wants it) pushed back to talk: Whisper hears the same words.
        await conn.session.update(session=PTT)
        await until(conn, "session.updated", 10)
        await append_speech(conn, reply, real_time=False)
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events = await until(conn, "response.done", 90)
        heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed").transcript
        assert wer(spoken, heard) <= 0.15, (spoken, heard)


async def test_a_paused_sentence_is_answered_once_on_the_whole(server):
    """A pause mid-sentence with server VAD: if the turn ended at the pause and was taken back when the user went
    on, the first part's item is deleted; the one completed response answers the whole sentence, and the one
    transcript not deleted is the whole."""
    text = "My name is John and I live in Berlin."
    pcm = float_to_pcm16(resample(pcm16_to_float(speech_with_pause(text, 5, 1.0)), 16_000, 24_000))
    async with connect(server, "stt_test") as conn:
        await open_session(conn, VAD)
        await append_speech(conn, pcm, real_time=True, silence_s=2.0)
        events: list[Any] = []
        for _ in range(3):  # a reply to the first part may come first: stopped, or all sent before the user went on
            events += await until(conn, "response.done", 60)
            if "berlin" in spoken_by(events, events[-1].response.id).lower():
                break
        events += await drain(conn, 1.0)
    done = [e.response for e in events if e.type == "response.done"]
    assert done[-1].status == "completed" and wer(text, spoken_by(events, done[-1].id)) <= 0.15, spoken_by(events, done[-1].id)
    deleted = {e.item_id for e in events if e.type == "conversation.item.deleted"}
    kept = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed" and e.item_id not in deleted]
    assert len(kept) == 1 and wer(text, kept[0].transcript) <= 0.15, [(e.item_id, e.transcript) for e in kept]
    if len(done) > 1:  # the client was told to stop playing the first reply (it stops its playback on this)
        started = [i for i, e in enumerate(events) if e.type == "input_audio_buffer.speech_started"]
        assert started and started[-1] > events.index(next(e for e in events if e.type == "response.done"))


def spoken_by(events: list[Any], response_id: str) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta" and e.response_id == response_id)


async def test_push_to_talk_commit_and_response_create(server):
    async with connect(server, "stt_test") as conn:
        await open_session(conn, PTT)
        await append_speech(conn, pcm24k("Please call me back tomorrow morning."), real_time=False, silence_s=0.3)
        await conn.input_audio_buffer.commit()
        committed = await until(conn, "input_audio_buffer.committed", 10)
        await conn.response.create()
        events = await until(conn, "response.done", 90)
        kinds = types(committed + events)
        assert "input_audio_buffer.speech_started" not in kinds and "input_audio_buffer.speech_stopped" not in kinds, kinds
        transcript = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed").transcript
        assert wer("Please call me back tomorrow morning.", transcript) <= 0.2, transcript
        assert events[-1].response.status == "completed" and audio_of(events)
        await conn.input_audio_buffer.commit()  # nothing appended since: an error, and the session goes on
        error = await until(conn, "error", 10)
        assert error[-1].error.code == "input_audio_buffer_commit_empty"


async def slow_story_playing(conn: Any, session: dict[str, Any]) -> None:
    """A session asked for a long reply, once its audio has begun."""
    await open_session(conn, session)
    await ask(conn, "Tell me a slow story.")
    await until(conn, "response.output_audio.delta", 60)


async def test_response_cancel_mid_reply(server):
    async with connect(server, "scripted") as conn:
        await slow_story_playing(conn, PTT)
        await conn.response.cancel()
        events = await until(conn, "response.done", 10)
        assert events[-1].response.status == "cancelled", events[-1].response
        after = await drain(conn, 2.0)
        assert not [e.type for e in after if e.type.startswith("response.")], types(after)
        # The session goes on.
        await ask(conn, "Hello again.")
        events = await until(conn, "response.done", 60)
        assert events[-1].response.status == "completed"


async def test_barge_in_cancels_the_reply(server):
    async with connect(server, "scripted") as conn:
        await slow_story_playing(conn, VAD)
        talking = asyncio.create_task(append_speech(conn, pcm24k("Wait, stop, I have a question."), real_time=True,
                                                    silence_s=1.5))
        try:
            events = await until(conn, "response.done", 30)
        finally:
            await talking
        kinds = types(events)
        assert "input_audio_buffer.speech_started" in kinds, kinds
        assert kinds.index("input_audio_buffer.speech_started") < len(kinds) - 1
        done = events[-1].response
        assert done.status == "cancelled" and done.status_details.reason == "turn_detected", done
        heard = ""  # the interruption is a turn of its own (or up to three: Piper pauses at both commas)
        for _ in range(3):
            events = await until(conn, "response.done", 90)
            heard += " ".join(e.transcript for e in events if e.type == "conversation.item.input_audio_transcription.completed")
            if "question" in heard.lower():
                break
        assert "question" in heard.lower(), heard


async def test_tone_picks_its_voice(server):
    """The persona's JSON tone picks the voice here as on the Voi transport (excited = faster voice)."""
    durations = {}
    async with connect(server, "scripted_tone") as conn:
        await open_session(conn, PTT)
        for tone in ("neutral", "excited"):
            await ask(conn, f"Please be {tone} now.")
            events = await until(conn, "response.done", 60)
            text = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
            assert text == "I have some news for you today, my friend.", text  # the JSON is parsed, not shown
            durations[tone] = len(audio_of(events)) / 2 / 24_000
    assert durations["excited"] < 0.9 * durations["neutral"], durations


async def test_bad_events_get_errors_and_the_session_goes_on(server):
    async with connect(server, "stt_test") as conn:
        await open_session(conn, {**PTT, "output_modalities": ["text"]})
        await conn.send_raw("{this is not json")
        await conn.send_raw(json.dumps({"type": "no.such.event"}))
        await conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "***"}))
        errors = [e for e in await drain(conn, 2.0) if e.type == "error"]
        assert [e.error.code for e in errors] == ["invalid_json", "unknown_event", "invalid_value"], errors
        assert all(e.error.message for e in errors)
        await ask(conn, "Still here.", item_id="item_still")
        events = await until(conn, "response.done", 60)
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Still here."
        await conn.conversation.item.delete(item_id="item_still")
        assert (await until(conn, "conversation.item.deleted", 10))[-1].item_id == "item_still"


async def test_bad_model_and_bad_key_are_refused_before_a_session(server):
    async with connect(server, "no-such-agent") as conn:
        event = await conn.recv()
        assert event.type == "error" and event.error.code == "model_not_found", event
        with pytest.raises(Exception):  # noqa: B017 (the SDK raises the websockets close)
            await asyncio.wait_for(conn.recv(), 10)
    async with connect(server, "stt_test", key="wrong-key") as conn:
        event = await conn.recv()
        assert event.type == "error" and event.error.code == "invalid_api_key", event
        assert event.error.type == "authentication_error"


async def test_client_secret_token_and_browser_subprotocol(server):
    async with httpx.AsyncClient() as http:
        refused = await http.post(f"{server.http_url}/v1/realtime/client_secrets", json={})
        assert refused.status_code == 401
        answer = await http.post(f"{server.http_url}/v1/realtime/client_secrets",
                                 headers={"Authorization": f"Bearer {TEST_API_KEY}"},
                                 json={"expires_after": {"anchor": "created_at", "seconds": 60}})
    assert answer.status_code == 200, answer.text
    secret = answer.json()
    assert secret["value"] and secret["expires_at"] > 0 and secret["session"]["type"] == "realtime"
    async with connect(server, "stt_test", key=secret["value"]) as conn:
        assert (await conn.recv()).type == "session.created"
    # A browser cannot set headers: the key travels as a subprotocol (our own JWTs work the same way).
    token = issue_token(TEST_SECRET, "browser")
    async with websockets.connect(f"{server.ws_url}/v1/realtime?model=stt_test",
                                  subprotocols=["realtime", f"openai-insecure-api-key.{token}"]) as ws:
        assert ws.subprotocol == "realtime"
        assert (await raw_event(ws))["type"] == "session.created"


async def test_beta_client_gets_beta_event_names(server):
    async with connect(server, "stt_test", dialect="beta") as conn:
        created = await conn.recv()
        assert created.type == "session.created" and created.session.input_audio_format == "pcm16"
        await conn.session.update(session={"turn_detection": None, "input_audio_transcription": {"model": "whisper-1"}})
        await until(conn, "session.updated", 10)
        await ask(conn, "Hello beta.")
        events = await until(conn, "response.done", 60)
        kinds = types(events)
        assert "conversation.item.created" in kinds and "response.audio.delta" in kinds, kinds
        assert "".join(e.delta for e in events if e.type == "response.audio_transcript.delta") == "Hello beta."
        audio = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.audio.delta")
        assert np.abs(pcm16_to_float(audio)).max() > 0.05


WEATHER_TOOL = {"type": "function", "name": "weather", "description": "The weather in a city now.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


async def answer_call(conn: Any, events: list[Any], output: dict[str, Any]) -> list[Any]:
    """The function call the response ended with is answered; the next response, up to its end."""
    call = next(o for o in events[-1].response.output if o.type == "function_call")
    await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call.call_id,
                                              "output": json.dumps(output)})
    await conn.response.create()
    return await until(conn, "response.done", 90)


async def test_a_function_tool_asked_by_text_and_by_voice(server):
    """The SDK defines a function tool; asked by text and by voice, the server hands over the call (its events,
    the item in response.done), and the output the client sends goes into the spoken answer."""
    async with connect(server, "scripted") as conn:
        await open_session(conn, {**PTT, "tools": [WEATHER_TOOL], "tool_choice": "auto"})
        for dialog in ("text", "voice"):
            if dialog == "text":
                await ask(conn, "What is the weather in Lisbon?")
            else:
                await append_speech(conn, pcm24k("What is the weather in Lisbon?"), real_time=False, silence_s=0.3)
                await conn.input_audio_buffer.commit()
                await conn.response.create()
            events = await until(conn, "response.done", 90)
            kinds = types(events)
            for kind in ("response.output_item.added", "response.function_call_arguments.delta",
                         "response.function_call_arguments.done", "response.output_item.done"):
                assert kind in kinds, (dialog, kinds)
            done = next(e for e in events if e.type == "response.function_call_arguments.done")
            assert done.name == "weather" and json.loads(done.arguments) == {"city": "Lisbon"}, done
            assert events[-1].response.status == "completed"
            answer = await answer_call(conn, events, {"forecast": "sunny", "temperature_c": 21})
            spoken = "".join(e.delta for e in answer if e.type == "response.output_audio_transcript.delta")
            assert "sunny" in spoken and "21" in spoken, (dialog, spoken)
            assert audio_of(answer), dialog


async def test_tool_choice_none_makes_no_call(server):
    async with connect(server, "scripted") as conn:
        await open_session(conn, {**PTT, "output_modalities": ["text"], "tools": [WEATHER_TOOL], "tool_choice": "none"})
        await ask(conn, "What is the weather in Lisbon?")
        events = await until(conn, "response.done", 90)
        assert not [o for o in events[-1].response.output if o.type == "function_call"], events[-1].response.output
        assert "response.function_call_arguments.done" not in types(events)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text.startswith("You said:"), text


async def test_a_beta_client_gets_its_function_call_events(server):
    async with connect(server, "scripted", dialect="beta") as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(session={"turn_detection": None, "modalities": ["text"], "tools": [WEATHER_TOOL]})
        await until(conn, "session.updated", 10)
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "What is the weather in Oslo?"}]})
        await conn.response.create()
        events = await until(conn, "response.done", 90)
        call = next(o for o in events[-1].response.output if o.type == "function_call")
        assert call.name == "weather" and json.loads(call.arguments) == {"city": "Oslo"}, call
        answer = await answer_call(conn, events, {"forecast": "snow"})
        assert "snow" in "".join(e.delta for e in answer if e.type == "response.text.delta")


LISBON = "What will the weather be like in Lisbon tomorrow afternoon?"


async def spoken_turn(server: Server, session: dict[str, Any], audio: bytes, chunk_bytes: int, *,
                      pace_s: float = 0.0) -> list[Any]:
    """One server-VAD turn of ``audio`` appended in chunks of ``chunk_bytes`` (``pace_s`` apart): its events
    up to the reply's ``response.done``."""
    async with connect(server, "stt_test") as conn:
        await open_session(conn, session)
        for i in range(0, len(audio), chunk_bytes):
            await conn.input_audio_buffer.append(audio=b64(audio[i:i + chunk_bytes]))
            if pace_s:
                await asyncio.sleep(pace_s)
        return await until(conn, "response.done", 90)


def transcript_of(events: list[Any]) -> str:
    return next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed").transcript


async def test_the_transcript_does_not_depend_on_the_append_size(server):
    """Issue 22: this 24 kHz clip appended in 100 ms chunks came back "... be like and list in tomorrow
    afternoon." The same clip (after half a second of silence) in 20, 100 and 500 ms appends: one transcript."""
    clip = b"\x00\x00" * 12_000 + pcm24k(LISBON) + b"\x00\x00" * 24_000 * 2
    heard = {}
    for chunk_ms in (20, 100, 500):
        heard[chunk_ms] = transcript_of(await spoken_turn(server, VAD, clip, 48 * chunk_ms))
    assert len(set(heard.values())) == 1, heard
    assert wer(LISBON, heard[100]) <= 0.1, heard


G711 = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"},
                                                "transcription": {"model": "whisper-1"}},
                                      "output": {"format": {"type": "audio/pcmu"}}}}


async def test_mu_law_in_and_out(server):
    """A phone-quality session: a spoken question as 8 kHz mu-law in 20 ms frames at real-time pace, the echo
    agent's reply as mu-law, and that reply, sent back as mu-law, heard as the same words."""
    question = "Can you book a table for two at seven tonight?"
    narrowband = float_to_pcm16(resample(pcm16_to_float(speech_pcm16k(question)), 16_000, g711.G711_RATE))
    mulaw = g711.encode(narrowband + b"\x00\x00" * g711.G711_RATE * 2, "pcmu")
    events = await spoken_turn(server, G711, mulaw, 160, pace_s=0.02)
    assert wer(question, transcript_of(events)) <= 0.2, transcript_of(events)
    spoken = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    reply = audio_of(events)  # mu-law bytes: one a sample at 8 kHz
    assert len(reply) > g711.G711_RATE, len(reply)
    # The reply's own mu-law sent back as a turn: Whisper hears what the agent said.
    heard = transcript_of(await spoken_turn(server, G711, reply + b"\xff" * g711.G711_RATE * 2, 1_600))
    assert wer(spoken, heard) <= 0.2, (spoken, heard)
    assert wer(question, heard) <= 0.2, (question, heard)
