"""``stream_output_audio: false``: each speech is one audio frame holding an Ogg/Opus file, sent when complete."""

from protocol import messages as m
from speech.audio import OUTPUT_RATE
from speech.codecs import decode_file
from tests.unit.helpers import ask, make


async def test_each_speech_is_one_ogg_opus_frame():
    conv, out = make(init=m.Init(agent_name="echo", init_greeting=True, stream_output_audio=False))
    await conv.start()
    await ask(conv, "one two three four")
    audio = [o for o in out if getattr(o, "type", None) == "audio"]
    assert [a.header["speech_id"] for a in audio] == ["0", "2"]  # the greeting, the reply
    for frame in audio:
        assert frame.header["format"] == "ogg_opus" and frame.payload[:4] == b"OggS"
    seconds = len(decode_file(audio[1].payload, OUTPUT_RATE)) / 2 / OUTPUT_RATE
    assert abs(seconds - (0.4 + 0.1 + 0.2)) < 0.05  # four words of 0.1 s, plus the voice's leading and trailing silence
    await conv.close()


async def test_an_interrupt_after_the_file_cuts_by_the_clients_own_time():
    conv, out = make(init=m.Init(agent_name="echo", init_greeting=False, stream_output_audio=False))
    await conv.start()
    await ask(conv, "one two three four five six")
    await conv.handle(m.Interrupt("1", 0.35))  # leading silence 0.1 s, then "one two" heard
    cut = [o for o in out if getattr(o, "type", None) == "message" and o.header["id"] == 1][-1]
    assert cut.header["content"][0]["text"].endswith("... (interrupted)")
    assert "six" not in cut.header["content"][0]["text"]
    await conv.close()
