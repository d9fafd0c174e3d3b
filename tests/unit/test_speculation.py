"""Answering early (agents/speculation.py) on the Ray-free Conversation: the real VAD on Piper-made speech, a
scripted Whisper and an LLM with 0.4 s to its first token, on a virtual clock (tests/unit/helpers.py)."""

from harness.speech import speech_pcm16k
from protocol import events as ev
from protocol import messages as m
from tests.unit.helpers import SILENCE, assistant_texts, reply_statuses, say, timed_call, turn_reports

QUESTION = "What time does the museum close on Sundays?"
FIRST, REST = "I would like to book a table for", "four people tonight."


async def answered(speculate: bool) -> tuple[dict, list[str], list]:
    saying = {"now": QUESTION}
    conv, out, clock, asked = timed_call(saying, llm_delay_s=0.4, speculate=speculate)
    await conv.start()
    await say(conv, clock, speech_pcm16k(QUESTION) + SILENCE * 2)
    await clock.run(conv.wait_idle())
    await conv.close()
    assert assistant_texts(out) == [f"You said: {QUESTION}"]
    return turn_reports(out)[-1], asked, out


async def test_a_speculation_hit_answers_sooner_with_one_llm_call():
    hit, asked, _ = await answered(True)
    off, _, _ = await answered(False)
    assert asked == [QUESTION]  # the speculative call was the reply's: no second one
    assert hit["speculation"] == "hit" and hit["discarded_llm_calls"] == 0
    assert off["speculation"] is None
    # Its LLM call began at the utterance's end, before the turn was called over (virtual time: exact).
    assert hit["voice_to_voice_ms"] < off["voice_to_voice_ms"] - 50, (hit, off)


async def test_a_speculation_miss_reaches_nothing_the_client_sees_and_its_cost_is_reported():
    """The speculation answers the spoken words; a typed message before the turn ends changes what the reply
    answers: the speculation is dropped, its text is never sent, and the report says miss and what it cost."""
    saying = {"now": QUESTION}
    conv, out, clock, asked = timed_call(saying, llm_delay_s=0.4, end_of_turn_s=1.5, quick_end_of_turn_s=1.5)
    await conv.start()
    await say(conv, clock, speech_pcm16k(QUESTION) + SILENCE[: 16_000])  # 0.5 s: the transcript settles
    await clock.advance(0.5)  # the speculative LLM answers
    await conv.handle(m.Text("And on Mondays?"))
    await say(conv, clock, SILENCE * 2)
    await clock.run(conv.wait_idle())
    await conv.close()
    assert asked[0] == QUESTION and len(asked) == 2
    report = turn_reports(out)[-1]
    assert report["speculation"] == "miss" and report["discarded_llm_calls"] == 1
    assert report["discarded_llm_tokens"] >= 1
    speculated = f"You said: {QUESTION}"
    assert not [e for e in out.events if isinstance(e, ev.Message) and e.text == speculated]
    assert reply_statuses(out) == ["response_created", "response_done"]


async def test_the_user_going_on_drops_the_speculation_and_the_whole_is_answered():
    saying = {"now": FIRST}
    conv, out, clock, asked = timed_call(saying, llm_delay_s=0.4, end_of_turn_s=1.5, quick_end_of_turn_s=1.5)
    await conv.start()
    await say(conv, clock, speech_pcm16k(FIRST) + SILENCE[: 16_000])  # a 0.5 s pause, less than the turn's end
    saying["now"] = f"{FIRST} {REST}"
    await say(conv, clock, speech_pcm16k(REST) + SILENCE * 2)
    await clock.run(conv.wait_idle())
    await conv.close()
    assert asked == [FIRST, f"{FIRST} {REST}"]  # the first speculation, then the one the reply took
    assert assistant_texts(out) == [f"You said: {FIRST} {REST}"]
    report = turn_reports(out)[-1]
    assert report["speculation"] == "hit" and report["discarded_llm_calls"] == 1


async def test_chat_mode_speculates_at_the_silence_before_create_response():
    saying = {"now": QUESTION}
    conv, out, clock, _ = timed_call(saying, mode="chat")
    await conv.start()
    await say(conv, clock, speech_pcm16k(QUESTION) + SILENCE[: 16_000])
    await clock.advance(0.3)  # the button is let go 0.3 s after the speech ended
    await conv.handle(m.CreateResponse())
    await clock.run(conv.wait_idle())
    await conv.close()
    assert assistant_texts(out) == [QUESTION]
    assert turn_reports(out)[-1]["speculation"] == "hit"
