"""Taking back a cut (agents/continuation.py) on the Ray-free Conversation: the real VAD on Piper-made speech, a
scripted Whisper (it hears what the test says is being said), a timed fake TTS (0.2 s of audio a word) and, for
the LLM agent, a scripted LLM that answers after a delay, on a virtual clock."""

from pathlib import Path

import pytest

from agents.agent import AgentConfig, build_agent
from agents.conversation import Conversation
from agents.services import Services
from common.clock import VirtualClock
from harness.speech import speech_pcm16k
from protocol import events as ev
from protocol import messages as m
from speech.stt import Transcript, Word
from tests.unit.helpers import Sent

VOICES = {"character": {"model": "piper-joe", "voice": "joe"}}
SILENCE = b"\x00\x00" * 16_000  # 1 s
FIRST, REST = "I would like to book a table for", "four people tonight."


def agent(**fields):
    return build_agent(AgentConfig.model_validate({"llm_model": "echo", "voices": VOICES, **fields}), patterns={},
                       others={}, models=None, source="test", name="a", base_dir=Path("."))


def call(saying: dict[str, str], llm_delay_s: float | None = None, **turn_taking):
    out, clock = Sent(everything=True), VirtualClock()
    asked: list[str] = []

    async def transcribe(pcm: bytes, prompt):
        text = saying["now"]
        return Transcript(text, [Word(" " + w, i * 0.2, i * 0.2 + 0.15, 0.9) for i, w in enumerate(text.split())])

    async def speak(text, voice, tone, cached):
        for _ in text.split():
            yield b"\x01\x00" * 4_800

    async def stream_llm(request):
        asked.append(request.messages[-1]["content"])
        await clock.sleep(llm_delay_s or 0.0)
        yield f"You said: {request.messages[-1]['content']}"

    model = {"llm_model": "openai/scripted"} if llm_delay_s is not None else {}
    conv = Conversation(agent_name="a", agent=agent(**model, **({"turn_taking": turn_taking} if turn_taking else {})),
                        init=m.Init(agent_name="a", mode="call", init_greeting=False),
                        services=Services(transcribe, speak, stream_llm=stream_llm), emit=out.emit, clock=clock)
    return conv, out, clock, asked


async def say(conv: Conversation, clock: VirtualClock, pcm: bytes) -> None:
    """At real-time pace, in 0.128 s frames."""
    for offset in range(0, len(pcm), 4096):
        await conv.handle(m.Audio(pcm[offset : offset + 4096]))
        await clock.advance(0.128)


def statuses(out: Sent) -> list[str]:
    """The replies' and barge-ins' statuses, in order."""
    kinds = (ev.ResponseCreated, ev.ResponseDone, ev.ResponseCancelled, ev.UserInterrupt)
    names = {ev.ResponseCreated: "response_created", ev.ResponseDone: "response_done",
             ev.ResponseCancelled: "response_cancelled", ev.UserInterrupt: "user_interrupt"}
    return [names[type(e)] for e in out.events if isinstance(e, kinds)]


def user_messages(out: Sent) -> list[ev.Message]:
    return [e for e in out.events if isinstance(e, ev.Message) and e.role == "user"]


def assistant_texts(out: Sent) -> list[str]:
    """The last text of each assistant message."""
    last = {e.id: e.text for e in out.events if isinstance(e, ev.Message) and e.role == "assistant"}
    return list(last.values())


@pytest.mark.parametrize("keep_s", [2.0, 0.1])
async def test_words_soon_after_the_end_of_a_turn_reopen_it_and_its_reply_stops(keep_s):
    """The first part ended the turn and its reply began playing; the rest, said soon after, reopens it: the
    reply is cut, the user's message keeps its id and grows, and one reply answers the whole sentence. The cut
    reply stays in the history only when more than resume_keep_heard_s of it was heard."""
    saying = {"now": FIRST}
    conv, out, clock, _ = call(saying, resume_keep_heard_s=keep_s)
    await conv.start()
    await say(conv, clock, speech_pcm16k(FIRST) + SILENCE[: 16_000 * 2 * 9 // 10 // 2 * 2])  # 0.9 s: the timer ends it
    assert statuses(out)[-2:] == ["response_created", "response_done"]  # the echo of the first part is playing
    abandoned = [e for e in out.events if isinstance(e, ev.Message) and e.role == "assistant"][-1].id
    saying["now"] = f"{FIRST} {REST}"
    await say(conv, clock, speech_pcm16k(REST) + SILENCE * 2)
    await clock.run(conv.wait_idle())
    assert any(isinstance(e, ev.TurnReopened) for e in out.events)
    assert "user_interrupt" in statuses(out)
    assert {e.id for e in user_messages(out)} == {user_messages(out)[0].id}  # one user message
    assert user_messages(out)[-1].text == f"{FIRST} {REST}" and user_messages(out)[-1].final
    assert assistant_texts(out)[-1] == f"{FIRST} {REST}"  # answered once, on the whole
    heard = conv.history[abandoned].text
    assert heard == "" if keep_s == 2.0 else heard.endswith("(interrupted)") and heard.startswith("I would"), heard
    assert statuses(out).count("response_created") == 2
    await conv.close()


async def test_a_turn_reopened_before_its_reply_speaks_is_answered_once_and_the_llm_sees_the_whole():
    saying = {"now": FIRST}
    conv, out, clock, asked = call(saying, llm_delay_s=2.0)
    await conv.start()
    await say(conv, clock, speech_pcm16k(FIRST) + SILENCE[: 16_000 * 2 * 9 // 10 // 2 * 2])
    saying["now"] = f"{FIRST} {REST}"
    await say(conv, clock, speech_pcm16k(REST) + SILENCE * 2)
    await clock.advance(3.0)
    await clock.run(conv.wait_idle())
    assert statuses(out) == ["response_created", "response_cancelled", "response_created", "response_done"]
    assert "user_interrupt" not in statuses(out)  # nothing of the first reply had been sent to be played
    assert asked[-1] == f"{FIRST} {REST}"
    assert assistant_texts(out) == [f"You said: {FIRST} {REST}"]
    await conv.close()


async def test_a_noise_in_the_resume_window_neither_reopens_the_turn_nor_stops_the_reply():
    saying = {"now": "What time does the museum close on Sundays?"}
    conv, out, clock, _ = call(saying)
    await conv.start()
    await say(conv, clock, speech_pcm16k("What time does the museum close on Sundays?") + SILENCE[:16_000])
    saying["now"] = "Thank you."  # what Whisper makes of a cough
    await say(conv, clock, speech_pcm16k("Thank you.") + SILENCE * 2)
    await clock.run(conv.wait_idle())
    assert not any(isinstance(e, ev.TurnReopened) for e in out.events)
    assert statuses(out) == ["response_created", "response_done"]
    assert not [e for e in out.events if isinstance(e, ev.SpeechDone) and e.interrupted]
    assert [e.text for e in user_messages(out)][-1] == "What time does the museum close on Sundays?"
    await conv.close()


async def test_words_after_the_window_are_a_turn_of_their_own():
    saying = {"now": "Hello there."}
    conv, out, clock, _ = call(saying, resume_window_s=0.5)
    await conv.start()
    await say(conv, clock, speech_pcm16k("Hello there.") + SILENCE * 2)
    saying["now"] = "My sister lives in Berlin."
    await say(conv, clock, speech_pcm16k("My sister lives in Berlin.") + SILENCE * 2)
    await clock.run(conv.wait_idle())
    assert not any(isinstance(e, ev.TurnReopened) for e in out.events)
    assert len({e.id for e in user_messages(out)}) == 2
    assert assistant_texts(out) == ["Hello there.", "My sister lives in Berlin."]
    await conv.close()
