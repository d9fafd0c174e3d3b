"""The Ray-free Conversation with small injected model callables (the real ones run in the integration tests)."""

import asyncio

import pytest

from agents.services import SessionPolicy
from protocol import messages as m
from tests.unit.helpers import TurnItem, ask, idle, make


def kinds(out):
    out = [o for o in out if not isinstance(o, TurnItem)]
    return [o.header.get("status") or (o.type + ":" + o.header.get("role", "")) if o.type != "audio" else "audio" for o in out]


async def test_spoken_turn_order_and_speech():
    conv, out = make()
    await conv.start()
    await conv.handle(m.Audio(b"\x00\x00" * 1600))
    await conv.handle(m.CreateResponse())
    await idle(conv)
    non_audio = [k for k in kinds(out) if k != "audio"]
    assert non_audio == ["init_done", "message:user", "response_created", "message:assistant", "response_done"]
    assert kinds(out).index("response_done") < kinds(out).index("audio")
    audio = b"".join(o.payload for o in out if o.type == "audio")
    assert len(audio) == 2 * (2400 + 2 * 2400 + 4800)  # leading silence, two words, trailing silence
    timeline = [o.header for o in out if o.type == "turn_report"]
    assert len(timeline) == 1 and timeline[0]["agent"] == "echo" and timeline[0]["mode"] == "chat"
    stages = timeline[0]["stages_ms"]
    assert list(stages) == ["transcript_final", "llm_first_token", "first_text_to_tts", "first_tts_chunk",
                            "first_audio_sent", "response_done"] or set(stages) >= {"transcript_final", "first_audio_sent"}
    assert stages["transcript_final"] <= stages["llm_first_token"] <= stages["first_audio_sent"]
    assert timeline[0]["voice_to_voice_ms"] == stages["first_audio_sent"] >= 0
    assert {o.header["speech_id"] for o in out if o.type == "audio"} == {"1"}
    await conv.close()


async def test_greeting_uses_id_zero():
    conv, out = make(init=m.Init(agent_name="echo"))
    await conv.start()
    await idle(conv)
    assert out[1].header["id"] == 0 and out[1].header["role"] == "assistant"
    assert all(o.header["speech_id"] == "0" for o in out if o.type == "audio")


async def test_no_input_is_cancelled_without_response_created():
    conv, out = make(transcripts=("",))
    await conv.start()
    await conv.handle(m.Audio(b"\x00\x00" * 1600))
    await conv.handle(m.CreateResponse())
    await idle(conv)
    assert kinds(out) == ["init_done", "response_cancelled"]


async def test_stt_failure_gives_error_and_closes_the_turn():
    conv, out = make(fail_stt=True)
    await conv.start()
    await conv.handle(m.Audio(b"\x00\x00" * 1600))
    await conv.handle(m.CreateResponse())
    await idle(conv)
    assert kinds(out) == ["init_done", "error:", "response_cancelled"]
    assert out[1].header["code"] == "stt_failed"


async def test_tts_failure_keeps_the_text_and_says_so():
    conv, out = make(fail_tts=True)
    await conv.start()
    await ask(conv, "hi there")
    assert [k for k in kinds(out) if k != "audio"] == [
        "init_done", "message:user", "response_created", "message:assistant", "response_done", "error:"]
    assert "first_tts_chunk" not in [o.header for o in out if o.type == "turn_report"][0]["stages_ms"]
    assert [o for o in out if o.type == "error"][-1].header["code"] == "tts_failed" and conv.messages[1].text == "hi there"


async def test_interrupt_truncates_to_what_was_heard():
    conv, out = make()
    await conv.start()
    await ask(conv, "one two three four")
    await conv.handle(m.Interrupt("1", 0.1 + 0.25))  # leading silence, then half of "one two three four"
    assert out[-1].header["id"] == 1 and out[-1].header["content"][0]["text"] == "one two... (interrupted)"
    assert conv.messages[1].text == "one two... (interrupted)"
    await conv.handle(m.Interrupt("1", 1.0))  # a second interrupt of the same speech changes nothing
    assert conv.messages[1].text == "one two... (interrupted)"


async def test_a_transports_played_position_recuts_what_was_heard():
    """A phone's marks say how much the caller heard (m.Played): a speech already cut is cut there instead; a
    speech that was not cut keeps its text."""
    conv, out = make()
    await conv.start()
    await ask(conv, "one two three four")
    await conv.handle(m.Played("1", 0.5))
    assert conv.messages[1].text == "one two three four"
    await conv.handle(m.Interrupt("1", 0.1 + 0.25))
    assert conv.messages[1].text == "one two... (interrupted)"
    await conv.handle(m.Played("1", 0.1 + 0.125))  # the marks: the caller heard only "one"
    assert conv.messages[1].text == "one... (interrupted)" and out[-1].header["content"][0]["text"] == conv.messages[1].text
    await conv.handle(m.Played("99", 1.0))  # no such speech: nothing happens


async def test_interrupt_after_everything_was_heard_changes_nothing():
    conv, out = make()
    await conv.start()
    await ask(conv, "short")
    count = len(out)
    await conv.handle(m.Interrupt("1", 60.0))
    assert len(out) == count and conv.messages[1].text == "short"


async def test_audio_past_the_limit_is_refused_once():
    conv, out = make(policy=SessionPolicy(max_turn_seconds=1.0))
    await conv.start()
    for _ in range(5):
        await conv.handle(m.Audio(b"\x00\x00" * 8000))
    errors = [o for o in out if o.type == "error"]
    assert len(errors) == 1 and errors[0].header["code"] == "audio_too_long"
    assert conv._listener.turn.streamer.received_s == 1.0


async def test_other_messages_get_clear_errors():
    conv, out = make()
    await conv.start()
    await conv.handle(m.InvokeLlm(model="x", prompt="p", messages=[]))
    await conv.handle(m.Init(agent_name="again"))
    await conv.handle(m.Text("   "))
    await conv.handle(m.Interrupt("9", 1.0))
    assert [o.header["code"] for o in out if o.type == "error"] == ["unsupported", "duplicate_init", "bad_field", "unknown_speech"]


async def test_close_cancels_speech():
    conv, out = make()
    await conv.start()
    await conv.handle(m.Text(" ".join(["word"] * 500)))
    await conv.handle(m.CreateResponse())
    await asyncio.sleep(0)
    await asyncio.wait_for(conv.close(), 1.0)


@pytest.mark.parametrize("typed", [["a b"], ["first", "second"]])
async def test_typed_texts_are_echoed_together(typed):
    conv, out = make()
    await conv.start()
    for text in typed:
        await conv.handle(m.Text(text))
    await conv.handle(m.CreateResponse())
    await idle(conv)
    assert conv.messages[-1].role == "assistant" and conv.messages[-1].text == " ".join(typed)
