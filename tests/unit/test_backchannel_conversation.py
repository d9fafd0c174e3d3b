"""Call mode over the agent's speech, on the Ray-free Conversation: the real VAD on Piper-made speech, a
scripted Whisper (it hears what the test says is being said) and a timed fake TTS (0.2 s of audio a word), on a
virtual clock: the audio is paced, Whisper takes its time and the reply plays in virtual time, the same on every run."""

from pathlib import Path

from agents.agent import AgentConfig, build_agent
from agents.conversation import Conversation
from common.clock import VirtualClock
from harness.speech import speech_pcm16k
from protocol import messages as m
from tests.unit.helpers import Sent, scripted_services, statuses, user_texts

AGENT = build_agent(AgentConfig.model_validate({"llm_model": "echo", "voices": {"character": {"model": "piper-joe",
                    "voice": "joe"}}}), patterns={}, others={}, models=None, source="test", name="echo", base_dir=None)
STORY = " ".join(f"word{i}" for i in range(40))  # echoed: 8 s of reply audio


def call(saying: dict[str, str], agent=AGENT, whisper_s: float = 0.0):
    out, clock = Sent(), VirtualClock()
    conv = Conversation(agent_name="echo", agent=agent, init=m.Init(agent_name="echo", mode="call", init_greeting=False),
                        services=scripted_services(saying, clock, whisper_s), emit=out.emit, clock=clock)
    return conv, out, clock


async def say(conv: Conversation, clock: VirtualClock, pcm: bytes) -> None:
    """At four times real time: the agent's reply (8 s) is still playing when the test is done."""
    for offset in range(0, len(pcm), 8192):
        await conv.handle(m.Audio(pcm[offset : offset + 8192]))
        await clock.advance(0.064)


async def test_a_backchannel_over_the_reply_is_no_interruption_and_no_turn():
    saying = {"now": STORY}
    conv, out, clock = call(saying)
    await conv.start()
    silence = b"\x00\x00" * 16_000
    await say(conv, clock, speech_pcm16k("On Saturday morning we walked along the river to the old market.") + silence)
    assert statuses(out) == ["init_done", "response_created", "response_done"]
    await clock.advance(1.6)  # past the resume window, where any word would take the turn back (test_continuation.py)
    for backchannel in ("Yeah.", "Okay."):
        saying["now"] = backchannel
        await say(conv, clock, speech_pcm16k(backchannel) + silence)
    assert statuses(out) == ["init_done", "response_created", "response_done"]
    assert user_texts(out)[-1] == STORY
    saying["now"] = "Wait, stop, I have a question."
    await say(conv, clock, speech_pcm16k("Wait, stop, I have a question.") + silence)
    assert "user_interrupt" in statuses(out)
    assert user_texts(out)[-1] == "Wait, stop, I have a question."
    await conv.close()


def agent_taking_turns(**turn_taking):
    return build_agent(AgentConfig.model_validate({"llm_model": "echo", "voices": {"character": {"model": "piper-joe",
                       "voice": "joe"}}, "turn_taking": turn_taking}), patterns={}, others={}, models=None,
                       source="test", name="echo", base_dir=Path("."))


async def test_an_agent_without_backchannels_is_interrupted_by_them():
    """The agent's own ``turn_taking`` (here ``backchannels: []``) replaces the server's for its sessions."""
    agent = agent_taking_turns(backchannels=[])
    saying = {"now": STORY}
    conv, out, clock = call(saying, agent)
    await conv.start()
    silence = b"\x00\x00" * 16_000
    await say(conv, clock, speech_pcm16k("On Saturday morning we walked along the river to the old market.") + silence)
    await clock.advance(1.6)  # past the resume window
    saying["now"] = "Yeah."
    await say(conv, clock, speech_pcm16k("Yeah.") + silence)
    assert "user_interrupt" in statuses(out) and user_texts(out)[-1] == "Yeah."
    await conv.close()


async def test_a_quiet_backchannel_begun_over_the_reply_is_no_turn_when_it_settles_after_the_reply():
    """An "uh-huh" too quiet to barge in (barge_in_min_dbfs: -1) whose turn ends only after the reply's audio
    has played out (as when the end-of-turn model holds it open) is still a backchannel: no turn of its own."""
    saying = {"now": "one two three four five"}  # echoed: 1 s of reply audio
    conv, out, clock = call(saying, agent_taking_turns(barge_in_min_dbfs=-1.0))
    await conv.start()
    silence = b"\x00\x00" * 16_000
    await say(conv, clock, speech_pcm16k("On Saturday morning we walked along the river.") + silence)
    assert statuses(out) == ["init_done", "response_created", "response_done"]
    saying["now"] = "Oh."  # what Whisper tiny.en hears of Piper's "Uh-huh."
    await say(conv, clock, speech_pcm16k("Uh-huh."))
    await clock.advance(1.2)  # the reply has played out before the turn ends
    await say(conv, clock, silence)
    await clock.run(conv.wait_idle())
    assert statuses(out) == ["init_done", "response_created", "response_done"]
    assert "Oh." not in user_texts(out)
    await conv.close()


async def test_a_slow_whisper_pass_does_not_make_a_backchannel_long():
    """``backchannel_max_s`` counts the user's speech, not the wall clock: a 1.5 s Whisper pass (a loaded
    Transcriber) over a short "Yeah." does not make it a 1.2 s utterance that interrupts."""
    saying = {"now": STORY}
    conv, out, clock = call(saying, agent_taking_turns(end_of_turn_s=3.0, quick_end_of_turn_s=3.0), whisper_s=1.5)
    await conv.start()
    silence = b"\x00\x00" * 16_000
    await say(conv, clock, speech_pcm16k("On Saturday morning we walked along the river to the old market.") + silence * 4)
    await clock.advance(1.6)  # the reply's first audio is out
    saying["now"] = "Yeah."
    await say(conv, clock, speech_pcm16k("Yeah.") + silence)
    await clock.advance(3.5)  # the judgement's passes
    assert "user_interrupt" not in statuses(out), statuses(out)
    assert "Yeah." not in user_texts(out)
    await conv.close()
