"""Taking back a cut (agents/continuation.py) on the Ray-free Conversation in call mode: the real VAD on
Piper-made speech, a scripted Whisper and LLM on a virtual clock (tests/unit/helpers.py ``timed_call``)."""

import pytest

from harness.speech import speech_pcm16k
from protocol import events as ev
from tests.unit.helpers import SILENCE, assistant_texts, reply_statuses, say, timed_call, user_messages

FIRST, REST = "I would like to book a table for", "four people tonight."
PAUSE = SILENCE[: int(0.9 * 16_000) * 2]  # long enough for the timer to end the turn (end_of_turn_s 0.7)


@pytest.mark.parametrize("keep_s", [2.0, 0.1])
async def test_words_soon_after_the_end_of_a_turn_reopen_it_and_its_reply_stops(keep_s):
    """The first part ended the turn and its reply began playing; the rest, said soon after, reopens it: the
    reply is cut, the user's message keeps its id and grows, and one reply answers the whole sentence. The cut
    reply stays in the history only when more than resume_keep_heard_s of it was heard."""
    saying = {"now": FIRST}
    conv, out, clock, _ = timed_call(saying, resume_keep_heard_s=keep_s)
    await conv.start()
    await say(conv, clock, speech_pcm16k(FIRST) + PAUSE)  # 0.9 s: the timer ends it
    assert reply_statuses(out)[-2:] == ["response_created", "response_done"]  # the echo of the first part is playing
    abandoned = [e for e in out.events if isinstance(e, ev.Message) and e.role == "assistant"][-1].id
    saying["now"] = f"{FIRST} {REST}"
    await say(conv, clock, speech_pcm16k(REST) + SILENCE * 2)
    await clock.run(conv.wait_idle())
    assert any(isinstance(e, ev.TurnReopened) for e in out.events)
    assert "user_interrupt" in reply_statuses(out)
    assert {e.id for e in user_messages(out)} == {user_messages(out)[0].id}  # one user message
    assert user_messages(out)[-1].text == f"{FIRST} {REST}" and user_messages(out)[-1].final
    assert assistant_texts(out)[-1] == f"{FIRST} {REST}"  # answered once, on the whole
    heard = conv.history[abandoned].text
    assert heard == "" if keep_s == 2.0 else heard.endswith("(interrupted)") and heard.startswith("I would"), heard
    assert reply_statuses(out).count("response_created") == 2
    await conv.close()


async def test_a_turn_reopened_before_its_reply_speaks_is_answered_once_and_the_llm_sees_the_whole():
    saying = {"now": FIRST}
    conv, out, clock, asked = timed_call(saying, llm_delay_s=2.0)
    await conv.start()
    await say(conv, clock, speech_pcm16k(FIRST) + PAUSE)
    saying["now"] = f"{FIRST} {REST}"
    await say(conv, clock, speech_pcm16k(REST) + SILENCE * 2)
    await clock.advance(3.0)
    await clock.run(conv.wait_idle())
    assert reply_statuses(out) == ["response_created", "response_cancelled", "response_created", "response_done"]
    assert "user_interrupt" not in reply_statuses(out)  # nothing of the first reply had been sent to be played
    assert asked[-1] == f"{FIRST} {REST}"
    assert assistant_texts(out) == [f"You said: {FIRST} {REST}"]
    await conv.close()


async def test_a_noise_in_the_resume_window_neither_reopens_the_turn_nor_stops_the_reply():
    saying = {"now": "What time does the museum close on Sundays?"}
    conv, out, clock, _ = timed_call(saying)
    await conv.start()
    await say(conv, clock, speech_pcm16k("What time does the museum close on Sundays?") + SILENCE[:16_000])
    saying["now"] = "Thank you."  # what Whisper makes of a cough
    await say(conv, clock, speech_pcm16k("Thank you.") + SILENCE * 2)
    await clock.run(conv.wait_idle())
    assert not any(isinstance(e, ev.TurnReopened) for e in out.events)
    assert reply_statuses(out) == ["response_created", "response_done"]
    assert not [e for e in out.events if isinstance(e, ev.SpeechDone) and e.interrupted]
    assert [e.text for e in user_messages(out)][-1] == "What time does the museum close on Sundays?"
    await conv.close()


async def test_words_after_the_window_are_a_turn_of_their_own():
    saying = {"now": "Hello there."}
    conv, out, clock, _ = timed_call(saying, resume_window_s=0.5)
    await conv.start()
    await say(conv, clock, speech_pcm16k("Hello there.") + SILENCE * 2)
    saying["now"] = "My sister lives in Berlin."
    await say(conv, clock, speech_pcm16k("My sister lives in Berlin.") + SILENCE * 2)
    await clock.run(conv.wait_idle())
    assert not any(isinstance(e, ev.TurnReopened) for e in out.events)
    assert len({e.id for e in user_messages(out)}) == 2
    assert assistant_texts(out) == ["Hello there.", "My sister lives in Berlin."]
    await conv.close()


async def test_backchannels_over_the_reply_are_no_turn_to_go_on_with():
    """Backchannels over a long reply, past its turn's resume window, each ending as a turn the settled transcript
    drops (a slow Whisper: the Listener ends the turn before the judgement does): the next one is not taken for
    the user going on with the one before."""
    story = " ".join(f"word{i}" for i in range(40))
    saying = {"now": story}
    conv, out, clock, _ = timed_call(saying, whisper_s=0.4)
    await conv.start()
    await say(conv, clock, speech_pcm16k("On Saturday morning we walked along the river.") + SILENCE)
    await clock.advance(1.6)  # the reply plays on (8 s), past the window of the turn that asked for it
    for backchannel in ("Yeah.", "Okay.", "Uh-huh."):
        saying["now"] = backchannel
        await say(conv, clock, speech_pcm16k(backchannel) + SILENCE[: 16_000])
    await say(conv, clock, SILENCE * 2)
    since_reply = out.events[next(i for i, e in enumerate(out.events) if isinstance(e, ev.ResponseCreated)):]
    assert not [e for e in since_reply if isinstance(e, ev.TurnReopened | ev.UserSpeechStarted)]  # never announced
    assert reply_statuses(out) == ["response_created", "response_done"]
    assert [e.text for e in user_messages(out)][-1] == story
    await conv.close()
