"""The echo conversation over a real websocket: real Piper speech in, real Whisper, real Piper speech out."""

from __future__ import annotations

import numpy as np
import pytest

from harness.speech import speech_pcm16k, trim_trailing_silence, wer
from protocol.client import reply_audio
from speech.audio import pcm16_to_float
from tests.integration.helpers import ends_response, final_user_text, start_session, text_of, user_messages

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


def _kinds(items):
    out = []
    for i in items:
        if i.type == "status":
            out.append(i.header["status"])
        elif i.type == "message":
            if i.header["role"] == "user" and not i.header.get("final"):
                continue  # partial transcripts may come at any time before the turn ends
            out.append(f"message:{i.header['role']}")
        else:
            out.append(i.type)
    return out


async def test_spoken_chat_turn_is_echoed_in_order(connect):
    client = await connect()
    await start_session(client)
    await client.send_audio(speech_pcm16k(SENTENCE))
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    items += await client.drain(1.5)
    kinds = [k for k in _kinds(items) if k != "audio"]
    assert kinds == ["message:user", "response_created", "message:assistant", "response_done"], _kinds(items)
    user = user_messages(items, final=True)[-1]
    reply = next(i for i in items if i.type == "message" and i.header["role"] == "assistant")
    assert wer(SENTENCE, text_of(user)) <= 0.10, text_of(user)
    assert user.header["final"] is True and user.header["id"] == 0  # no greeting was asked for
    assert reply.header["id"] == 1 and text_of(reply) == text_of(user)
    # response_done comes as soon as the text is complete, before the reply's audio
    done_at = next(n for n, i in enumerate(items) if i.is_status("response_done"))
    audio_at = [n for n, i in enumerate(items) if i.type == "audio"]
    assert audio_at and min(audio_at) > done_at
    assert all(items[n].header == {"type": "audio", "speech_id": "1"} for n in audio_at)
    pcm = reply_audio(items, "1")
    assert all(len(items[n].payload) % 2 == 0 for n in audio_at)
    seconds = len(pcm) / 2 / 24_000  # 24 kHz 16-bit: the same sentence again takes about as long
    spoken = len(speech_pcm16k(SENTENCE)) / 2 / 16_000
    assert 0.6 * spoken < seconds < 1.6 * spoken, (seconds, spoken)
    assert np.abs(pcm16_to_float(pcm)).max() > 0.1  # speech, not silence


async def test_reply_speech_is_transcribed_back_to_the_same_words(connect):
    """The reply audio really is 24 kHz speech: resampled to 16 kHz it transcribes to the reply text."""
    from speech.audio import float_to_pcm16, resample

    client = await connect()
    await start_session(client)
    await client.send({"type": "text", "content": "Please bring me a large cup of hot coffee and two slices of toast with butter."})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    items += await client.drain(1.5)
    reply = [i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1]
    pcm24 = reply_audio(items, str(reply.header["id"]))
    pcm16 = float_to_pcm16(resample(pcm16_to_float(pcm24), 24_000, 16_000))
    await client.send_audio(pcm16)
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    heard = final_user_text(items)
    assert wer("Please bring me a large cup of hot coffee and two slices of toast with butter.", heard) <= 0.10, heard


async def test_greeting_is_spoken_at_init(connect):
    client = await connect()
    await client.init("stt_test", init_greeting=True)
    items = await client.until(lambda r: r.type == "audio", 60)
    items += await client.drain(1.0)
    assert items[0].header == {"type": "status", "status": "init_done", "agent_name": "stt_test"}
    greeting = items[1]
    assert greeting.type == "message" and greeting.header["role"] == "assistant" and greeting.header["id"] == 0
    assert text_of(greeting) == "Hi! Say something and I will repeat it."
    audio = reply_audio(items, "0")
    assert len(audio) / 2 / 24_000 > 1.0


async def test_no_greeting_when_not_asked(connect):
    client = await connect()
    await start_session(client, greeting=False)
    assert await client.drain(1.0) == []


async def test_typed_text_turn(connect):
    client = await connect()
    await start_session(client)
    await client.send({"type": "text", "content": "Hello from the keyboard"})
    echoed = await client.recv(30)
    assert echoed.type == "message" and echoed.header["role"] == "user" and text_of(echoed) == "Hello from the keyboard"
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert [k for k in _kinds(items) if k != "audio"] == ["response_created", "message:assistant", "response_done"]
    reply = items[1]
    assert text_of(reply) == "Hello from the keyboard" and reply.header["id"] == echoed.header["id"] + 1
    audio = await client.until(lambda r: r.type == "audio", 30)
    assert audio[-1].header["speech_id"] == str(reply.header["id"])


async def test_turn_without_speech_is_cancelled(connect):
    client = await connect()
    await start_session(client)
    await client.send_audio(b"\x00\x00" * 16_000)  # one second of silence
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert items[-1].is_status("response_cancelled") and len(items) == 1
    await client.send({"type": "create_response"})  # no audio at all
    items = await client.until(ends_response, 60)
    assert items[-1].is_status("response_cancelled")


async def test_last_words_before_create_response_are_kept(connect):
    """No trailing silence at all: the final word ends in the last frame before create_response."""
    client = await connect()
    await start_session(client)
    pcm = trim_trailing_silence(speech_pcm16k("Please remember to buy fresh oranges"))
    await client.send_audio(pcm, realtime=True)
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    heard = final_user_text(items)
    assert "oranges" in heard.lower(), heard


async def test_short_utterance_is_transcribed(connect):
    client = await connect()
    await start_session(client)
    await client.send_audio(speech_pcm16k("Yes."))
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert "yes" in final_user_text(items).lower()


async def test_audio_before_init_is_buffered(connect):
    client = await connect()
    await client.send_audio(speech_pcm16k("Good morning everyone"))
    await start_session(client)
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert wer("Good morning everyone", final_user_text(items)) <= 0.34


async def test_nothing_leaks_into_the_next_turn(connect):
    client = await connect()
    await start_session(client)
    await client.send_audio(speech_pcm16k("The first turn is about apples."))
    await client.send({"type": "create_response"})
    await client.until(ends_response, 60)
    await client.send_audio(speech_pcm16k("The second turn is about bicycles."))
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    heard = final_user_text(items)
    assert "bicycles" in heard.lower() and "apples" not in heard.lower()


async def test_interrupting_the_greeting_truncates_it(connect):
    client = await connect()
    await client.init("stt_test", init_greeting=True)
    await client.until(lambda r: r.type == "audio", 60)
    await client.send({"type": "interrupt", "speech_id": "0", "interrupted_at": 0.6})
    items = await client.until(lambda r: r.type == "message" and r.header["id"] == 0, 30)
    cut = text_of(items[-1])
    assert cut.endswith("... (interrupted)") and cut != "Hi! Say something and I will repeat it."
    assert "repeat" not in cut, cut  # 0.6 s in, only "Hi!" (0.5 s) was heard


async def test_interrupt_after_the_next_create_response(connect):
    """The JS client can send the interrupt of the previous reply after the next create_response."""
    client = await connect()
    await start_session(client)
    await client.send({"type": "text", "content": "One two three four five six seven eight nine ten."})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    first_id = [i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1].header["id"]
    await client.until(lambda r: r.type == "audio", 30)
    await client.send({"type": "text", "content": "Next question."})
    await client.send({"type": "create_response"})
    await client.send({"type": "interrupt", "speech_id": str(first_id), "interrupted_at": 0.5})
    seen: list = []

    def both_arrived(r) -> bool:
        seen.append(r)
        truncated = [i for i in seen if i.type == "message" and i.header["id"] == first_id]
        return bool(truncated) and any(ends_response(i) for i in seen)

    await client.until(both_arrived, 60)
    truncated = [i for i in seen if i.type == "message" and i.header["id"] == first_id][-1]
    assert text_of(truncated).endswith("... (interrupted)") and "ten" not in text_of(truncated)
    assert [i for i in seen if ends_response(i)][-1].is_status("response_done")
    reply = [i for i in seen if i.type == "message" and i.header["role"] == "assistant" and i.header["id"] != first_id]
    assert text_of(reply[-1]) == "Next question."
