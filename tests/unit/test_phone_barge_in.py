"""The phone's way into a barge-in, Ray-free: a caller's 20 ms mu-law frames through the Twilio codec's
``CallerAudio`` and the 8 -> 16 kHz decoder into the real Listener (real Silero VAD) with the phone profile. A
short "Stop," said over the agent after an earlier question must start the barge-in's judging on that word, at
every alignment of the caller's frames, not only on the next word ~0.4 s later (docs/listening.md)."""

import pytest

from agents.listener import Listener
from agents.mode import SessionMode
from agents.turns import TurnConfig
from agents.user_turn import SpeechStarted
from harness.speech import speech_pcm16k
from protocol import twilio as tw
from speech import g711
from speech.audio import INPUT_RATE, PcmResampler
from speech.stt import Transcript

FRAME_S = 0.02
SILENCE = b"\xff" * 160  # 20 ms of mu-law silence


def caller_frames(pcm16k: bytes) -> list[bytes]:
    """16 kHz speech as a phone caller's Twilio sends it: 8 kHz mu-law in 20 ms frames."""
    mulaw = g711.encode(PcmResampler(INPUT_RATE, g711.G711_RATE)(pcm16k), "pcmu")
    return [mulaw[i : i + 160].ljust(160, b"\xff") for i in range(0, len(mulaw), 160)]


async def speech_started_after(frames: list[bytes], onset: int, config: TurnConfig | None = None) -> list[float]:
    """Seconds from frame ``onset`` to each ``SpeechStarted``, counted in the caller's frames handed on."""
    started: list[float] = []
    sent = [0]

    async def transcribe(pcm: bytes, prompt):
        return Transcript(text="")

    async def on_event(event):
        if isinstance(event, SpeechStarted):
            started.append(round((sent[0] - onset) * FRAME_S, 2))

    listener = Listener(transcribe=transcribe, on_event=on_event, mode=SessionMode("call"),
                        config=config or TurnConfig().for_phone())
    audio = tw.CallerAudio(g711.G711Decoder("pcmu", INPUT_RATE))
    for sent[0], frame in enumerate(frames, start=1):
        piece = audio.add(frame)
        if piece is not None:
            await listener.feed(piece.data)
    await listener.close()
    return started


@pytest.mark.parametrize("lead_frames", [0, 1, 2, 8])  # alignments where 0.15 s, HQ and 0.1 s pieces missed "Stop,"
@pytest.mark.parametrize(("start_s", "within_s"), [(0.1, 0.4), (None, 0.8)])
async def test_a_short_stop_over_the_reply_starts_a_barge_in_on_the_phone(lead_frames, start_s, within_s):
    """With 0.1 s of loud speech the judging starts on "Stop," (about 0.3 s in) at every alignment; the phone
    profile keeps 0.15 s (noise judged earlier was heard as words on the graph), which may wait for "please"."""
    question, stop = caller_frames(speech_pcm16k("Tell me a long story.")), caller_frames(speech_pcm16k("Stop, please wait."))
    frames = [SILENCE] * (50 + lead_frames) + question + [SILENCE] * 150 + stop + [SILENCE] * 50
    onset = 50 + lead_frames + len(question) + 150
    config = TurnConfig().for_phone()
    if start_s is not None:
        config = config.with_agent({"barge_in_min_speech_s": start_s})
    started = await speech_started_after(frames, onset, config)
    assert len(started) == 2 and started[0] < 0  # the question, then the interruption
    assert started[1] <= within_s


async def test_a_barge_in_level_shorter_than_an_utterance_start_still_announces_the_speech():
    """``barge_in_min_speech_s`` below ``min_speech_s``: the loud speech is announced once the utterance has
    started, not marked announced before its turn began (its SpeechStarted then never came)."""
    question = caller_frames(speech_pcm16k("Tell me a long story."))
    frames = [SILENCE] * 50 + question + [SILENCE] * 50
    config = TurnConfig(min_speech_s=0.15, barge_in_min_speech_s=0.1)
    assert len(await speech_started_after(frames, 50, config)) == 1
