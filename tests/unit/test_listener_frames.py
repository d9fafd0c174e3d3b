"""The audio Whisper hears for a call-mode turn does not depend on how the client cut it into frames: the
turn starts ``pre_roll_s`` before the VAD's onset and its settling pass ends where the speech ended (plus a
short tail), both counted on the VAD's windows, not at frame edges (issue 22's "in Lisbon" heard as "and
listen" in 100 ms appends). Real speech and the real VAD; Whisper is replaced by a recorder of its windows."""

import asyncio

import pytest

from agents.listener import Listener
from agents.mode import SessionMode
from agents.turns import TurnConfig
from agents.user_turn import ListenerEvent, TurnEnded
from harness.speech import speech_pcm16k
from speech.stt import Transcript, Word

SPEECH = b"\x00\x00" * 8_000 + speech_pcm16k("What will the weather be like in Lisbon tomorrow afternoon?")
TAIL = b"\x00\x00" * 16_000


async def settling_window(frame_ms: int) -> tuple[bytes, bytes]:
    """(the audio of the last Whisper pass of the turn, what the end-of-turn model heard)."""
    windows: list[bytes] = []
    model_heard: list[bytes] = []
    ended = asyncio.Event()

    async def transcribe(pcm16: bytes, prompt: str | None) -> Transcript:
        windows.append(pcm16)
        return Transcript("What will.", [Word(" What", 0.0, 0.3, 1.0), Word(" will.", 0.3, 0.6, 1.0)])

    async def predict_end(pcm16: bytes) -> float:
        model_heard.append(pcm16)
        return 0.9

    async def on_event(event: ListenerEvent) -> None:
        if isinstance(event, TurnEnded):
            ended.set()

    listener = Listener(transcribe=transcribe, on_event=on_event, mode=SessionMode("call"), predict_end=predict_end,
                        config=TurnConfig(update_interval_s=0.5))
    step = 32 * frame_ms
    audio = SPEECH + TAIL
    for i in range(0, len(audio), step):
        await listener.feed(audio[i : i + step])
        for _ in range(20):  # let each spawned pass run, as a fast Transcriber would
            await asyncio.sleep(0)
        if ended.is_set():
            break
    assert ended.is_set(), frame_ms
    await listener.close()
    return windows[-1], model_heard[-1]


@pytest.mark.parametrize("frame_ms", [20, 100, 500])
async def test_whisper_and_the_model_hear_the_same_audio_whatever_the_frames(frame_ms):
    window, heard = await settling_window(frame_ms)
    reference_window, reference_heard = await settling_window(32)  # the VAD's own window size
    assert window == reference_window
    assert heard == reference_heard
    assert 2.5 * 32_000 < len(window) < len(SPEECH)  # the whole utterance, not its leading silence
