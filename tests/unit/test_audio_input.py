"""AudioInput on real compressed streams made with PyAV: decoded while they arrive, bad bytes reported."""

import asyncio
import os

import numpy as np
import pytest

from agents.audio_input import FLUSH_TIMEOUT_S, AudioInput
from harness.media import chunks, compress
from speech.codecs import NO_AUDIO_LIMIT_BYTES, decode_file, encode_ogg_opus

RATE = 16_000


def tone_pcm(seconds: float, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * 0.5 * 32767).astype("<i2").tobytes()


CHANGED: dict[str, asyncio.Event] = {}  # set whenever the input feeds audio or reports an error


def make(audio_format: str, per_turn: bool = True):
    fed: list[bytes] = []
    errors: list[str] = []
    changed = CHANGED["now"] = asyncio.Event()

    async def feed(pcm: bytes) -> None:
        fed.append(pcm)
        changed.set()

    async def report(exc) -> None:
        errors.append(exc.code)
        changed.set()

    return AudioInput(audio_format, feed=feed, report=report, stream_per_turn=per_turn), fed, errors


async def wait_for(predicate, timeout: float = 5.0) -> bool:
    """Until ``predicate()`` holds after something was fed or reported by the decoder's thread; False after a
    generous real ``timeout`` (a bound for a stuck decoder, not a pace)."""
    changed = CHANGED["now"]
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("container", ["webm", "ogg", "mp4"])
async def test_compressed_stream_is_decoded_while_it_arrives(container):
    pcm = tone_pcm(3.0)
    audio, fed, errors = make(container)
    parts = chunks(compress(pcm, container), 2000)
    for part in parts[: len(parts) // 2]:
        await audio.write(part)
    # half the file is in: its audio reaches the listener before the turn ends (partials can stream)
    assert await wait_for(lambda: sum(map(len, fed)) > len(pcm) // 4), sum(map(len, fed))
    for part in parts[len(parts) // 2 :]:
        await audio.write(part)
    await audio.end_turn()
    got = b"".join(fed)
    assert abs(len(got) - len(pcm)) < 0.05 * len(pcm) and not errors
    decoded = np.frombuffer(got, "<i2").astype(np.float32) / 32768
    assert 0.25 < np.sqrt(np.mean(decoded[RATE // 2 : -RATE // 2] ** 2)) < 0.45  # the tone, not noise or silence
    await audio.close()


async def test_each_chat_turn_is_a_new_file():
    audio, fed, errors = make("webm")
    for turn in range(2):
        for part in chunks(compress(tone_pcm(1.0), "webm"), 3000):
            await audio.write(part)
        started = asyncio.get_running_loop().time()
        await audio.end_turn()
        # the file's end is seen when the decoder finishes, not after the flush timeout (a generous bound: the
        # decoder is a real PyAV thread on shared cores)
        assert asyncio.get_running_loop().time() - started < FLUSH_TIMEOUT_S / 2
        assert abs(sum(map(len, fed)) - (turn + 1) * 2 * RATE) < 0.05 * 2 * RATE
    assert not errors
    await audio.close()


async def test_garbage_is_bad_audio_once_and_a_good_stream_after_it_decodes():
    audio, fed, errors = make("webm")
    await audio.write(os.urandom(5000))
    await audio.write(os.urandom(5000))
    await audio.end_turn()
    assert errors == ["bad_audio"] and not fed
    for part in chunks(compress(tone_pcm(1.0), "webm"), 3000):
        await audio.write(part)
    await audio.end_turn()
    assert errors == ["bad_audio"] and sum(map(len, fed)) > RATE


async def test_truncated_header_is_bad_audio():
    audio, fed, errors = make("ogg")
    await audio.write(compress(tone_pcm(1.0), "ogg")[:30])
    await audio.end_turn()
    assert errors == ["bad_audio"] and not fed


async def test_call_mode_garbage_without_end_is_reported_after_the_limit():
    audio, fed, errors = make("webm", per_turn=False)
    for _ in range(NO_AUDIO_LIMIT_BYTES // 8192 + 2):
        await audio.write(os.urandom(8192))
    assert await wait_for(lambda: errors == ["bad_audio"])
    await audio.close()


async def test_pcm_formats():
    audio, fed, errors = make("pcm_f32le")
    samples = np.array([0.5, -0.5, 2.0, np.nan], dtype="<f4")
    await audio.write(samples.tobytes())
    await audio.write(b"\x00" * 6)
    assert np.frombuffer(fed[0], "<i2").tolist() == [16384, -16384, 32767, 0] and errors == ["bad_audio"]
    audio, fed, errors = make("pcm16")
    await audio.write(b"\x01\x02\x03")
    await audio.write(b"\x01\x02")
    assert fed == [b"\x01\x02"] and errors == ["bad_audio"]


def test_ogg_opus_file_round_trip():
    pcm24 = np.repeat(np.frombuffer(tone_pcm(1.0), "<i2"), 3)[::2].tobytes()  # 1 s at 24 kHz
    ogg = encode_ogg_opus(pcm24, 24_000)
    assert ogg[:4] == b"OggS" and b"OpusHead" in ogg[:100] and len(ogg) < len(pcm24) // 5
    back = decode_file(ogg, 24_000)
    assert abs(len(back) - len(pcm24)) < 0.05 * len(pcm24)


async def test_call_mode_is_one_stream_across_turns():
    pcm = tone_pcm(2.0)
    audio, fed, errors = make("ogg", per_turn=False)
    parts = chunks(compress(pcm, "ogg"), 1500)
    for part in parts[: len(parts) // 2]:
        await audio.write(part)
    await audio.end_turn()  # the server ended a turn: the client's recorder goes on, so does the decoder
    for part in parts[len(parts) // 2 :]:
        await audio.write(part)
    assert await wait_for(lambda: sum(map(len, fed)) > 0.9 * len(pcm)) and not errors
    await audio.close()
