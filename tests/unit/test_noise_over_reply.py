"""Never stop for a cough: non-speech sounds over a call-mode reply, on the Ray-free Conversation.

The real VAD hears the synthesized sounds of harness/noises.py (a cough, a knock, a hum, a laugh) over the echo
agent's reply; Whisper is scripted to write what it writes for such sounds (nothing, a hum, an annotation, or
its hallucinations "Thank you.", "you", "Bye."); a timed fake TTS (0.2 s of audio a word) plays the reply in
virtual time. None of them may interrupt the reply, be announced as the user speaking, or become a turn; real
words still stop it, and backchannels still do not."""

import dataclasses
from pathlib import Path

import pytest

from agents.agent import AgentConfig, build_agent
from agents.conversation import Conversation
from common.clock import VirtualClock
from harness.noises import NOISES
from harness.speech import speech_pcm16k
from protocol import events as ev
from protocol import messages as m
from speech.audio import INPUT_RATE, dbfs, pcm16_to_float
from tests.unit.helpers import Sent, idle, scripted_services, statuses

# A short resume window: the sounds come 1 s after the question, when the VAD takes the hum and the laugh for
# speech (after a longer silence Silero hears them less; harness/noises.py), yet over the reply, not in the window.
AGENT = build_agent(AgentConfig.model_validate({"llm_model": "echo", "voices": {"character": {"model": "piper-joe",
                    "voice": "joe"}}, "turn_taking": {"resume_window_s": 0.3}}), patterns={}, others={}, models=None,
                    source="test", name="echo", base_dir=Path("."))
STORY = " ".join(f"word{i}" for i in range(100))  # echoed: 20 s of reply audio
SILENCE = b"\x00\x00" * INPUT_RATE
QUESTION = "On Saturday morning we walked along the river to the old market."


def call(saying: dict[str, str], agent=AGENT):
    """A call-mode conversation with the echo agent, its output, its clock, and how many Whisper passes it made."""
    out, clock, passes = Sent(), VirtualClock(), [0]
    conv = Conversation(agent_name="echo", agent=agent, init=m.Init(agent_name="echo", mode="call", init_greeting=False),
                        services=scripted_services(saying, clock, passes=passes), emit=out.emit, clock=clock)
    return conv, out, clock, passes


async def say(conv: Conversation, clock: VirtualClock, pcm: bytes) -> None:
    """At real-time pace, in 256 ms frames."""
    for offset in range(0, len(pcm), 8192):
        await conv.handle(m.Audio(pcm[offset : offset + 8192]))
        await clock.advance(0.256)


async def replying(saying: dict[str, str]):
    """A call whose agent is in the middle of echoing ``STORY`` (the user asked; the reply plays for 20 s), past
    the resume window of the turn that asked (words there reopen it: agents/continuation.py)."""
    conv, out, clock, passes = call(saying)
    await conv.start()
    saying["now"] = STORY
    await say(conv, clock, speech_pcm16k(QUESTION) + SILENCE)
    assert statuses(out) == ["init_done", "response_created", "response_done"]
    assert user_turns(out) == [STORY]
    return conv, out, clock, passes


def user_turns(out: Sent) -> list[str]:
    """Each user message's last text, in order (a transcript is shown again each time it grows)."""
    texts: dict[int, str] = {}
    for e in out.events:
        if isinstance(e, ev.Message) and e.role == "user":
            texts[e.id] = e.text
    return list(texts.values())


def over_the_reply(out: Sent) -> list[ev.ConversationEvent]:
    """The events since the reply began."""
    start = next(i for i, e in enumerate(out.events) if isinstance(e, ev.ResponseCreated))
    return out.events[start:]


def assert_not_stopped(out: Sent) -> None:
    events = over_the_reply(out)
    stops = [e for e in events if isinstance(e, ev.UserInterrupt | ev.ResponseCancelled | ev.UserSpeechStarted)]
    assert not stops, stops
    assert not [e for e in events if isinstance(e, ev.SpeechDone) and e.interrupted]
    assert {e.text for e in events if isinstance(e, ev.Message) and e.role == "assistant"} == {STORY}  # not cut
    assert "user_interrupt" not in statuses(out)
    assert user_turns(out) == [STORY]


def test_the_noises_are_loud_made_the_same_each_time_and_short():
    for name, make in NOISES.items():
        pcm = make()
        assert pcm == make(), name
        assert 0.4 <= len(pcm) / 2 / INPUT_RATE <= 1.1, name
        assert dbfs(pcm16_to_float(pcm)) > -42 + 10, name  # well above the barge-in level


# What Whisper writes for each (harness/noises.py's findings), and its hallucinations on any sound.
HEARD = {"cough": ["", "(coughs)"], "knock": ["", "[knocking]"], "hum": ["Mm.", "hmm", "Mmm..."],
         "laugh": ["", "Ha ha ha.", "*laughs*", "Ah, ah, ah, ah, ah, ah,"]}
HALLUCINATIONS = ["Thank you.", "you", "Bye."]


@pytest.mark.parametrize("heard", ["what it is heard as", *HALLUCINATIONS])
@pytest.mark.parametrize("noise", sorted(NOISES))
async def test_a_noise_over_the_reply_never_stops_it(noise, heard):
    saying = {"now": ""}
    conv, out, clock, passes = await replying(saying)
    judged = passes[0]
    for text in (HEARD[noise] if heard == "what it is heard as" else [heard]):
        saying["now"] = text
        await say(conv, clock, NOISES[noise]() + SILENCE)
    assert_not_stopped(out)
    if noise in ("hum", "laugh"):  # the VAD takes these for speech: they were judged by their words
        assert passes[0] > judged
    await clock.run(conv.wait_idle())
    assert_not_stopped(out)
    assert [e for e in over_the_reply(out) if isinstance(e, ev.SpeechDone)], "the reply played to its end"
    await conv.close()


async def test_all_four_noises_then_a_backchannel_leave_the_reply_and_real_words_still_stop_it():
    saying = {"now": ""}
    conv, out, clock, passes = await replying(saying)
    for noise, text in (("cough", "Thank you."), ("knock", ""), ("hum", "Mm."), ("laugh", "Bye.")):
        saying["now"] = text
        await say(conv, clock, NOISES[noise]() + SILENCE)
    saying["now"] = "Yeah."
    await say(conv, clock, speech_pcm16k("Yeah.") + SILENCE)
    assert_not_stopped(out)
    saying["now"] = "Wait, stop, I have a question."
    await say(conv, clock, speech_pcm16k("Wait, stop, I have a question.") + SILENCE)
    await idle(conv)
    events = over_the_reply(out)
    assert [e for e in events if isinstance(e, ev.UserInterrupt)]
    assert [e for e in events if isinstance(e, ev.UserSpeechStarted)]
    cut = [e.text for e in events if isinstance(e, ev.Message) and e.role == "assistant" and e.text.startswith("word0")]
    assert cut[-1].endswith("(interrupted)") and len(cut[-1]) < len(STORY)  # the reply stopped where it was heard
    assert user_turns(out)[-1] == "Wait, stop, I have a question."
    await conv.close()


async def test_a_hallucination_with_real_words_is_a_real_interruption():
    """Only a transcript that is nothing but a noise phrase is ignored: "Thank you, but stop." interrupts."""
    saying = {"now": ""}
    conv, out, clock, passes = await replying(saying)
    saying["now"] = "Thank you, but stop."
    await say(conv, clock, speech_pcm16k("Thank you, but stop.") + SILENCE)
    assert [e for e in over_the_reply(out) if isinstance(e, ev.UserInterrupt)]
    assert user_turns(out)[-1] == "Thank you, but stop."
    await idle(conv)
    await conv.close()


@pytest.mark.parametrize("heard", ["Mm.", "hmm", "Thank you.", ""])
async def test_a_hum_in_the_resume_window_neither_reopens_the_turn_nor_stops_the_reply(heard):
    """With the default window (1.5 s), a hum right after the question: Whisper mostly writes "Mm." for it
    (harness/noises.py), a word that must not count as the user going on."""
    saying = {"now": STORY}
    conv, out, clock, _ = call(saying, build_agent(AgentConfig.model_validate({"llm_model": "echo", "voices": {
        "character": {"model": "piper-joe", "voice": "joe"}}}), patterns={}, others={}, models=None, source="test",
        name="echo", base_dir=None))
    await conv.start()
    await say(conv, clock, speech_pcm16k(QUESTION) + SILENCE)
    saying["now"] = heard
    await say(conv, clock, NOISES["hum"]() + SILENCE)
    await clock.run(conv.wait_idle())
    assert not [e for e in out.events if isinstance(e, ev.TurnReopened)]
    assert_not_stopped(out)
    await conv.close()


async def test_a_long_laugh_over_the_reply_does_not_stop_it():
    """Voiced past ``backchannel_max_s`` (1.2 s) with no word heard: still a noise, not an interruption."""
    saying = {"now": ""}
    conv, out, clock, passes = await replying(saying)
    judged = passes[0]
    saying["now"] = ""  # Whisper writes nothing for it
    await say(conv, clock, NOISES["laugh"]() * 2 + SILENCE)
    assert passes[0] > judged  # "ha-ha-ha-ha-ha" twice: 2 s
    assert_not_stopped(out)
    await conv.close()


async def test_speech_over_the_reply_is_judged_by_its_own_whisper_passes_alone():
    """While speech over the reply is judged, its partial transcripts wait: no pass of the same audio runs beside
    the judge's (on two CPU cores such a pass, batched with the judge's, made it take twice as long, and with it the
    interruption). The words still interrupt, and the turn is still transcribed whole."""
    saying = {"now": ""}
    out, clock = Sent(), VirtualClock()
    services = scripted_services(saying, clock, whisper_s=0.2)
    in_flight, most = [0], [0]

    async def transcribe(pcm: bytes, prompt):
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        try:
            return await services.transcribe(pcm, prompt)
        finally:
            in_flight[0] -= 1

    conv = Conversation(agent_name="echo", agent=AGENT, init=m.Init(agent_name="echo", mode="call", init_greeting=False),
                        services=dataclasses.replace(services, transcribe=transcribe), emit=out.emit, clock=clock)
    await conv.start()
    saying["now"] = STORY
    await say(conv, clock, speech_pcm16k(QUESTION) + SILENCE)
    assert user_turns(out) == [STORY]
    most[0] = 0
    saying["now"] = "Wait, stop, I have a question."
    await say(conv, clock, speech_pcm16k("Wait, stop, I have a question.") + SILENCE)
    await idle(conv)
    assert [e for e in over_the_reply(out) if isinstance(e, ev.UserInterrupt)]
    assert most[0] == 1
    assert user_turns(out)[-1] == "Wait, stop, I have a question."
    await conv.close()
