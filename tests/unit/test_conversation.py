"""The Ray-free Conversation with small injected model callables (the real ones run in the integration tests)."""

import asyncio
import dataclasses

import pytest

from agents.agent import AgentConfig, build_agent
from agents.conversation import Conversation
from agents.services import Services, SessionPolicy
from protocol import events as ev
from protocol import messages as m
from protocol.voi_codec import VoiEncoder, to_frame
from speech.stt import Transcript, Word

AGENT = build_agent(AgentConfig.model_validate({
    "llm_model": "echo",
    "voices": {"character": {"model": "piper-joe", "voice": "joe", "leading_silence": 0.1, "trailing_silence": 0.2}},
    "greetings": {"choices": ["Hello there. Nice to meet you."]},
}), patterns={}, others={}, models=None, source="test", name="echo", base_dir=None)


class Sent(list):
    """What a conversation sent, in order: the frames a Voi client gets (the list), and every event (``events``).
    ``everything``: every event as a Voi-shaped frame, also those the Voi wire never carries."""

    def __init__(self, everything: bool = False) -> None:
        super().__init__()
        self.events: list[ev.ConversationEvent] = []
        self._encoder = VoiEncoder(tool_events=True, client_tools=True)
        self._everything = everything

    async def emit(self, event: ev.ConversationEvent) -> None:
        self.events.append(event)
        frame = to_frame(event) if self._everything else self._encoder.encode(event)
        if frame is not None:
            self.append(frame)


def make(transcripts=("hello world",), fail_tts=False, fail_stt=False, policy=SessionPolicy(), init=None,
         everything=False):
    """The conversation and, in order, what it sent: client messages and each answered turn's TurnReport
    (as a ``turn_report`` item with the report's fields; the conversation reports turns apart from ``emit``)."""
    out = Sent(everything)
    heard = list(transcripts)

    async def transcribe(pcm: bytes, prompt):
        if fail_stt:
            raise RuntimeError("stt down")
        text = heard.pop(0) if heard else ""
        return Transcript(text=text, words=[Word(" " + w, i * 0.3, i * 0.3 + 0.25, 0.9) for i, w in enumerate(text.split())])

    async def speak(text, voice, tone, cached):
        if fail_tts:
            raise RuntimeError("tts down")
        for _ in text.split():  # 0.1 s of audio per word, in two chunks
            yield b"\x01\x00" * 1200
            yield b"\x01\x00" * 1200

    async def report_turn(report):
        out.append(TurnItem(dataclasses.asdict(report)))

    conv = Conversation(agent_name="echo", agent=AGENT, init=init or m.Init(agent_name="echo", init_greeting=False),
                        services=Services(transcribe, speak), emit=out.emit, report_turn=report_turn, policy=policy)
    return conv, out


class TurnItem:
    type = "turn_report"

    def __init__(self, header):
        self.header = header


async def ask(conv, text="Hi"):
    """The user types ``text`` and asks for the reply; returns once it is all sent."""
    await conv.handle(m.Text(text))
    await conv.handle(m.CreateResponse())
    await conv.wait_idle()


def kinds(out):
    out = [o for o in out if not isinstance(o, TurnItem)]
    return [o.header.get("status") or (o.type + ":" + o.header.get("role", "")) if o.type != "audio" else "audio" for o in out]


async def test_spoken_turn_order_and_speech():
    conv, out = make()
    await conv.start()
    await conv.handle(m.Audio(b"\x00\x00" * 1600))
    await conv.handle(m.CreateResponse())
    await conv.wait_idle()
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
    await conv.wait_idle()
    assert out[1].header["id"] == 0 and out[1].header["role"] == "assistant"
    assert all(o.header["speech_id"] == "0" for o in out if o.type == "audio")


async def test_no_input_is_cancelled_without_response_created():
    conv, out = make(transcripts=("",))
    await conv.start()
    await conv.handle(m.Audio(b"\x00\x00" * 1600))
    await conv.handle(m.CreateResponse())
    await conv.wait_idle()
    assert kinds(out) == ["init_done", "response_cancelled"]


async def test_stt_failure_gives_error_and_closes_the_turn():
    conv, out = make(fail_stt=True)
    await conv.start()
    await conv.handle(m.Audio(b"\x00\x00" * 1600))
    await conv.handle(m.CreateResponse())
    await conv.wait_idle()
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
    await conv.wait_idle()
    assert conv.messages[-1].role == "assistant" and conv.messages[-1].text == " ".join(typed)
