"""Transcribe as you speak: partials, silence and noise, call-mode end of turn, long utterances, batching."""

from __future__ import annotations

import asyncio
import random
import re
import time

import numpy as np
import pytest

from harness.speech import speech_pcm16k, wer
from protocol.client import AUDIO_FRAME_BYTES, VoiClient
from protocol.framing import encode_frame
from speech.audio import float_to_pcm16
from tests.integration.helpers import ends_response, final_user_text, start_session, user_messages

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

LONG = ("On Saturday morning we walked along the river to the old market, where the baker sold warm bread "
        "and the farmers had piled apples, pears and bright orange pumpkins on their wooden tables.")
VERY_LONG = ("The museum opens at nine in the morning and closes at six in the evening. Visitors can see paintings "
             "from four centuries, a large collection of ancient coins, and a garden with a small fountain. "
             "Children under twelve enter for free, and on Sundays there is a guided tour that starts at noon "
             "near the main entrance. Please remember that photographs with flash are not allowed inside.")


def tones(seconds: float) -> bytes:
    """Music-like: a little melody of harmonic notes with an envelope."""
    rate, out = 16_000, []
    for note in [262, 330, 392, 523, 392, 330] * int(seconds * 2):
        t = np.arange(int(rate * 0.25)) / rate
        env = np.minimum(1, t * 40) * np.exp(-3 * t)
        out.append(env * (0.4 * np.sin(2 * np.pi * note * t) + 0.2 * np.sin(2 * np.pi * 2 * note * t)))
    return float_to_pcm16(np.concatenate(out)[: int(rate * seconds)])


def white_noise(seconds: float) -> bytes:
    return float_to_pcm16(np.random.default_rng(7).normal(0, 0.08, int(16_000 * seconds)))


async def test_partials_arrive_while_speaking(connect):
    client = await connect()
    await start_session(client)
    pcm = speech_pcm16k(LONG)
    assert len(pcm) / 32_000 > 6.0
    sender = asyncio.create_task(client.send_audio(pcm, realtime=True))
    partials = []
    while not sender.done():
        try:
            item = await client.recv(0.3)
        except TimeoutError:
            continue
        if item.type == "message" and item.header["role"] == "user" and not item.header["final"]:
            partials.append(item)
    last_frame = sender.result()
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert len(partials) >= 3, "the transcript should grow several times during a 7 s utterance"
    assert partials[0].at < last_frame - 2.0, "the first partial should come well before the speech ends"
    assert len({p.header["id"] for p in partials} | {m.header["id"] for m in user_messages(items)}) == 1
    heard = final_user_text(client.received)
    assert wer(LONG, heard) <= 0.10, heard


async def test_silence_noise_and_music_give_no_text(connect):
    client = await connect()
    await start_session(client)
    for audio in (b"\x00\x00" * 48_000, white_noise(3.0), tones(3.0)):
        await client.send_audio(audio)
        await client.send({"type": "create_response"})
        items = await client.until(ends_response, 60)
        assert items[-1].is_status("response_cancelled")
        assert user_messages(items) == [], [i.header for i in items]


async def test_call_mode_turn_is_answered_without_create_response(connect):
    client = await connect()
    await start_session(client, mode="call")
    speech = speech_pcm16k("What time does the library open tomorrow?")
    await client.send_audio(speech + b"\x00\x00" * 16_000, realtime=True)  # then a second of silence, like a mic
    items = await client.until(ends_response, 30)
    assert items[-1].is_status("response_done")
    assert wer("What time does the library open tomorrow?", final_user_text(items)) <= 0.15
    kinds = [i.header.get("status") for i in items if i.type == "status"]
    assert kinds == ["response_created", "response_done"]
    reply = [i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1]
    audio = await client.until(lambda r: r.type == "audio", 30)
    assert audio[-1].header["speech_id"] == str(reply.header["id"])


async def test_call_mode_ignores_noise_between_turns(connect):
    client = await connect()
    await start_session(client, mode="call")
    await client.send_audio(white_noise(2.0) + tones(2.0) + b"\x00\x00" * 16_000, realtime=False)
    assert [i for i in await client.drain(2.0) if i.type != "audio"] == []


async def send_paced(client: VoiClient, pcm: bytes, frame_bytes: int, jitter_s: float, seed: int) -> None:
    """Real-time pacing with each frame late by a random 0..``jitter_s`` (fixed seed), as a real network
    does it: never a drift, but Whisper's windows start and end at other moments than with exact pacing."""
    rng = random.Random(seed)
    started = time.monotonic()
    for offset in range(0, len(pcm), frame_bytes):
        due = started + offset / 32_000 + rng.uniform(0.0, jitter_s)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await client.ws.send(encode_frame({"type": "audio"}, pcm[offset : offset + frame_bytes]))


# (frame bytes, jitter in seconds, seed): the JS client's 256 ms frames on time, then 40 ms and 150 ms frames
# arriving late by up to 60 ms and 200 ms, so the windows of the three runs are cut at different moments.
PACINGS = [(AUDIO_FRAME_BYTES, 0.0, 0), (1_280, 0.06, 1), (4_800, 0.2, 2)]


async def test_long_utterance_has_no_lost_or_repeated_words(connect):
    """Past the streaming window (12 s) the window is trimmed: words at the edges must survive exactly once,
    and no Whisper repetition loop may get in, whatever the timing of the windows (three pacings)."""
    pcm = speech_pcm16k(VERY_LONG)
    assert len(pcm) / 32_000 > 16  # well past the 12 s streaming window
    failures = []
    for frame_bytes, jitter_s, seed in PACINGS:
        client = await connect()
        await start_session(client)
        await send_paced(client, pcm, frame_bytes, jitter_s, seed)
        await client.send({"type": "create_response"})
        heard = final_user_text(await client.until(ends_response, 60))
        words = re.findall(r"[a-z0-9']+", heard.lower())
        trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        error = wer(VERY_LONG, heard)
        if error > 0.10 or len(trigrams) != len(set(trigrams)):
            failures.append(f"frames of {frame_bytes} B, jitter {jitter_s} s: WER {error:.2f}: {heard}")
        await client.close()
    assert not failures, "lost or repeated words:\n" + "\n".join(failures)


async def test_concurrent_sessions_are_batched_and_correct(server, token):
    sentences = ["Turn left at the second traffic light.", "My favorite color is dark green.",
                 "The concert starts late tonight.", "Please close the window before you leave."]
    clients = [await VoiClient.connect(server.ws_url, token) for _ in sentences]
    try:
        for client in clients:
            await start_session(client)

        async def one(client: VoiClient, sentence: str) -> str:
            await client.send_audio(speech_pcm16k(sentence), realtime=True)
            await client.send({"type": "create_response"})
            return final_user_text(await client.until(ends_response, 60))

        heard = await asyncio.gather(*(one(c, s) for c, s in zip(clients, sentences)))
        for sentence, text in zip(sentences, heard):
            assert wer(sentence, text) <= 0.15, (sentence, text)
    finally:
        for client in clients:
            await client.close()
