"""LLM replies in the Ray-free Conversation, with a scripted stream_llm (the LiteLLM path runs in integration)."""

import asyncio
import json

from agents.agent import AgentConfig, build_agent
from agents.control import ControlAgentConfig
from agents.conversation import Conversation
from agents.prompts import BUILTIN_PATTERNS
from agents.services import Services, SessionPolicy
from common.clock import VirtualClock, settle
from llm.client import LlmError
from protocol import messages as m
from tests.unit.helpers import Sent, ask, idle, statuses


def agent(**extra):
    raw = {"llm_model": "scripted", "system_prompt": "You are Joe.",
           "voices": {"character": {"model": "piper-joe", "voice": "joe"},
                      "narrator": {"model": "piper-joe", "voice": "joe_warm", "leading_silence": 0.1, "trailing_silence": 0.1}}}
    raw.update(extra)
    return build_agent(AgentConfig.model_validate(raw), patterns=BUILTIN_PATTERNS, others={}, models=None,
                       source="test", name="joe", base_dir=None)


def make(replies, agent_config=None, fail_after=None, gate=None):
    """``replies``: one list of tokens per LLM call; ``gate``: an Event the stream waits on after 2 tokens."""
    out, requests, spoken = Sent(), [], []
    replies = list(replies)

    async def stream_llm(request):
        requests.append(request)
        tokens = replies.pop(0)
        for i, token in enumerate(tokens):
            if fail_after is not None and i == fail_after:
                raise LlmError("the language model 'scripted' failed (APIError, HTTP 500)")
            if gate is not None and i == 2:
                await gate.wait()
            yield token
            await asyncio.sleep(0)

    async def complete_llm(request):
        requests.append(request)
        return "a completion"

    async def speak(text, voice, tone, cached):
        spoken.append((text, voice.voice, tone))
        yield b"\x01\x00" * 2400

    async def transcribe(pcm, prompt):
        raise AssertionError("no audio in these tests")

    conv = Conversation(agent_name="joe", agent=agent_config or agent(), init=m.Init(agent_name="joe", init_greeting=False),
                        services=Services(transcribe, speak, None, stream_llm, complete_llm), emit=out.emit,
                        policy=SessionPolicy(invoke_llm_models=("other-model",)), clock=VirtualClock())
    return conv, out, requests, spoken


async def ask_until_audio(conv, out):
    """Start the session, ask, and let the loop run until the reply's first audio (no time passes)."""
    await conv.start()
    await conv.handle(m.Text("Hi"))
    await conv.handle(m.CreateResponse())
    for _ in range(50):
        await settle()
        if any(o.type == "audio" for o in out):
            return


async def test_speech_starts_before_the_llm_finishes():
    gate = asyncio.Event()
    conv, out, requests, spoken = make([["Hello there, my", " friend. How", " are you?"]], gate=gate)
    await ask_until_audio(conv, out)
    assert any(o.type == "audio" for o in out) and "response_done" not in statuses(out)  # first audio, LLM held
    gate.set()
    await idle(conv)
    assert statuses(out)[-1] == "response_done"
    assert conv.messages[-1].text == "Hello there, my friend. How are you?"
    assert [s[0] for s in spoken] == ["Hello there, my friend.", "How are you?"]
    assert requests[0].messages[0] == {"role": "system", "content": "You are Joe."}
    assert requests[0].messages[-1] == {"role": "user", "content": "Hi"} and requests[0].temperature == 0.5


async def test_tone_first_json_and_narrator_voice():
    reply = json.dumps({"voice_tone": "excited", "text": "Great news! @he grins@ Tell me more."})
    tokens = [reply[i:i + 4] for i in range(0, len(reply), 4)]
    conv, out, _, spoken = make([tokens], agent(system_prompt="{prompt_pattern:character_agent_message_format_narrator_comments}"))
    await conv.start()
    await ask(conv)
    assert spoken == [("Great news!", "joe", "excited"), ("he grins", "joe_warm", "excited"), ("Tell me more.", "joe", "excited")]
    assert conv.messages[-1].text == "Great news! @he grins@ Tell me more." and conv.messages[-1].tone == "excited"
    history = conv.history.for_llm(json_replies=True)  # the persona asks for JSON replies
    assert json.loads(history[-1]["content"]) == {"voice_tone": "excited", "text": "Great news! @he grins@ Tell me more."}
    audio = b"".join(o.payload for o in out if o.type == "audio")
    assert len(audio) == 2 * (3 * 2400 + 2 * 2400)  # three pieces plus the narrator's 0.1 s silences


async def test_control_agent_retries_hotter_then_gives_up():
    control = {"model": "pattern_matching", "denial_phrases": ["I can't help"], "giveup_after": 3,
               "temperature_multiplier": 2.0, "giveup_response": ["Let's talk about something else."]}
    conv, out, requests, spoken = make([["I can't", " help with that. Sorry."]] * 3, agent(control_agent=control))
    await conv.start()
    await ask(conv)
    assert [r.temperature for r in requests] == [0.5, 1.0, 2.0]
    assert [s[0] for s in spoken] == ["Let's talk about something else."]
    assert statuses(out)[-2:] == ["response_created", "response_done"]
    assert [o.header["content"][0]["text"] for o in out if o.type == "message" and o.header["role"] == "assistant"] == [
        "Let's talk about something else."]


async def test_control_agent_passes_a_later_attempt():
    control = ControlAgentConfig(model="pattern_matching", denial_phrases=["as an AI"])
    conv, _, requests, spoken = make([["As an AI, I can't."], ["Sure, here goes.", " Once upon a time."]],
                                     agent(control_agent=control))
    await conv.start()
    await ask(conv)
    assert len(requests) == 2 and [s[0] for s in spoken] == ["Sure, here goes.", "Once upon a time."]


async def test_llm_error_before_text_cancels_and_after_text_keeps_it():
    conv, out, _, _ = make([["Hello", " there."]], fail_after=0)
    await conv.start()
    await ask(conv)
    assert statuses(out)[-1] == "response_cancelled" and [o.header["code"] for o in out if o.type == "error"] == ["llm_failed"]
    conv, out, _, spoken = make([["First sentence here.", " Second one", " never."]], fail_after=2)
    await conv.start()
    await ask(conv)
    assert statuses(out)[-1] == "response_done" and conv.messages[-1].text.startswith("First sentence here.")
    assert spoken[0][0] == "First sentence here."
    await ask(conv, "again")  # the session goes on
    assert statuses(out).count("response_created") == 2


async def test_chat_interrupt_while_streaming_stops_the_llm():
    gate = asyncio.Event()
    conv, out, _, _ = make([["One sentence here.", " Two", " three four.", " five."]], gate=gate)
    await ask_until_audio(conv, out)
    await conv.handle(m.Interrupt("1", 0.05))
    await idle(conv)
    assert statuses(out)[-1] == "response_cancelled"
    assert conv.messages[1].text.endswith("... (interrupted)") and "five" not in conv.messages[1].text


async def test_invoke_llm_runs_beside_and_checks_the_model():
    conv, out, requests, _ = make([])
    await conv.start()
    await conv.handle(m.InvokeLlm(model=None, prompt="Summarize.", messages=[{"role": "user", "content": "text"}]))
    await conv.handle(m.InvokeLlm(model="other-model", prompt=None, messages=[{"role": "user", "content": "x"}]))
    await conv.handle(m.InvokeLlm(model="gpt-secret", prompt="p", messages=[]))
    await conv.handle(m.InvokeLlm(model=None, prompt=None, messages=[{"role": "robot", "content": "x"}]))
    await idle(conv)
    assert [o.header["content"] for o in out if o.type == "llm_response"] == ["a completion", "a completion"]
    assert [r.model for r in requests] == ["scripted", "other-model"]
    assert requests[0].messages == [{"role": "system", "content": "Summarize."}, {"role": "user", "content": "text"}]
    assert [o.header["code"] for o in out if o.type == "error"] == ["model_not_allowed", "bad_field"]


async def test_images_reach_the_llm_as_content_parts():
    conv, _, requests, _ = make([["A cat."]])
    await conv.start()
    await conv.handle(m.ImageUrl("data:image/webp;base64,UklGRg=="))
    await ask(conv, "What is this?")
    assert requests[0].messages[-1] == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}}, {"type": "text", "text": "What is this?"}]}


async def test_narrator_aside_without_a_narrator_voice_is_spoken_by_the_character():
    no_narrator = agent(voices={"character": {"model": "piper-joe", "voice": "joe"}})
    conv, out, _, spoken = make([["Hi there. @he bows@ Welcome."]], no_narrator)
    await conv.start()
    await ask(conv)
    assert spoken == [("Hi there.", "joe", None), ("he bows", "joe", None), ("Welcome.", "joe", None)]
    assert conv.messages[-1].text == "Hi there. @he bows@ Welcome."


async def test_the_interrupt_after_the_next_create_response_reaches_the_next_reply():
    """The JS client's order: text, create_response, then the interrupt of the reply still playing. The next
    reply waits for that message however late it comes while the previous one plays (here 0.3 s of its 0.4 s,
    far past any fixed wait that could stand in for the order), so its LLM sees the previous reply cut where the
    client stopped it."""
    conv, out, requests, _ = make([["Once upon a time. ", "There was a cat. ", "It sat. ", "The end."], ["Yes?"]])
    await conv.start()
    await ask(conv, "A story")
    await conv.handle(m.Text("Wait"))
    await conv.handle(m.CreateResponse())
    speech = conv._speaker.get("1")
    assert speech.timeline.seconds == 0.4 and speech.playing(conv.clock.now())
    await conv.clock.advance(0.3)
    assert len(requests) == 1  # not asked yet: the speech plays until the client's next word
    await conv.handle(m.Interrupt("1", 0.15))
    await idle(conv)
    assert [r["content"] for r in requests[1].messages if r["role"] == "assistant"] == [
        "Once upon a time. There... (interrupted)"]
    assert conv.messages[-1].text == "Yes?" and statuses(out)[-1] == "response_done"


async def test_a_turn_asked_for_while_the_reply_plays_goes_on_once_it_has_played_out():
    """A client that lets the previous reply play (no interrupt): the next reply starts when it has played out."""
    conv, out, requests, _ = make([["Once upon a time. ", "There was a cat. ", "It sat. ", "The end."], ["Yes?"]])
    await conv.start()
    await ask(conv, "A story")
    speech = conv._speaker.get("1")
    ends = speech.first_audio_at + speech.timeline.seconds
    await conv.handle(m.Text("And then?"))
    await conv.handle(m.CreateResponse())
    await conv.clock.advance(0.05)
    assert len(requests) == 1
    await idle(conv)
    assert len(requests) == 2 and conv.clock.now() >= ends
    assert [r["content"] for r in requests[1].messages if r["role"] == "assistant"] == [
        "Once upon a time. There was a cat. It sat. The end."]
