"""A conversation keeps at most one Whisper call in flight, across its turns: a client that ends turns in quick
succession queues its windows behind each other, not ahead of other sessions' at the Transcriber."""

import asyncio

from agents.listener import Listener
from agents.mode import SessionMode
from common.clock import VirtualClock
from speech.stt import Transcript


async def test_turns_of_one_conversation_take_turns_at_whisper():
    running = peak = 0
    clock = VirtualClock()  # each Whisper call takes 10 ms of virtual time
    started = clock.now()

    async def transcribe(pcm16: bytes, prompt: str | None) -> Transcript:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await clock.sleep(0.01)
        running -= 1
        return Transcript(text="", words=[])

    async def on_event(event) -> None:
        pass

    listener = Listener(transcribe=transcribe, on_event=on_event, mode=SessionMode("call"), clock=clock)
    turns = []
    for _ in range(5):  # five turns ended at once, each settling its audio
        listener.turn.streamer.add(b"\x00\x01" * 16_000)
        turns.append(listener.take_turn())
    await clock.run(asyncio.gather(*(turn.streamer.finish() for turn in turns)))
    assert peak == 1 and clock.now() - started > 0.049  # five calls or more, one after another
