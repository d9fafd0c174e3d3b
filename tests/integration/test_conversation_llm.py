"""The conversation with LLM personas over a real websocket: LiteLLM to a scripted OpenAI-compatible server on
loopback (and the bundled local LLM), real Whisper, real Piper, the real graph."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from harness.scripted_llm import LONG_STORY, LONG_STORY_S
from harness.speech import speech_pcm16k, wer
from protocol.client import reply_audio
from speech.audio import float_to_pcm16, pcm16_to_float, resample
from tests.integration.helpers import ends_response, expect_refused, final_user_text, start_session, text_of

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)


def statuses(items):
    return [i.header["status"] for i in items if i.type == "status"]


def assistant_messages(items):
    return [i for i in items if i.type == "message" and i.header["role"] == "assistant"]


async def ask(client, text, timeout=60):
    await client.send({"type": "text", "content": text})
    await client.send({"type": "create_response"})
    return await client.until(ends_response, timeout)


async def collect(client, seconds: float):
    """Everything received during ``seconds`` (drain() would wait for a pause that streaming audio never has)."""
    got, deadline = [], asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            got.append(await client.recv(left))
        except TimeoutError:
            break
    return got


def longest_zero_run_s(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2")
    best = run = 0
    for zero in samples == 0:
        run = run + 1 if zero else 0
        best = max(best, run)
    return best / 24_000


async def test_local_llm_answers_a_spoken_question(connect):
    """No API key: the bundled SmolLM2 (LocalLLM deployment, through LiteLLM) answers, and the answer is spoken."""
    client = await connect()
    await start_session(client, "assistant")
    question = "What is the capital of France?"
    await client.send_audio(speech_pcm16k(question))
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 120)
    assert items[-1].is_status("response_done"), [i.header for i in items if i.type != "audio"]
    assert wer(question, final_user_text(items)) <= 0.15
    reply = assistant_messages(items)[-1]
    assert len(text_of(reply).split()) >= 2
    items += await client.drain(3.0)
    audio = reply_audio(items, str(reply.header["id"]))
    assert len(audio) / 2 / 24_000 > 0.5 and np.abs(pcm16_to_float(audio)).max() > 0.1


async def test_first_audio_arrives_before_the_llm_finishes(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted")
    items = await ask(client, "Tell me a slow story please.")
    items += await client.until(lambda r: r.type == "audio", 30) if not any(i.type == "audio" for i in items) else []
    first_audio = next(i for i in items if i.type == "audio")
    record = scripted_llm.find("slow story")[-1]
    assert record.finished is not None and first_audio.at < record.finished  # spoke while the LLM still wrote
    growing = [text_of(m) for m in assistant_messages(items)]
    assert len(growing) >= 2 and growing[-1].endswith("The end.") and growing[0] != growing[-1]
    assert statuses(items)[-2:] == ["response_created", "response_done"]
    body = record.body
    assert body["messages"][0] == {"role": "system", "content": "You are Joe, a friendly guide.\nKeep answers short."}
    assert body["messages"][1:3] == [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Joe."}]
    assert body["stream"] is True and body["temperature"] == 0.5


async def test_denials_are_retried_hotter_then_given_up(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted_control")
    items = await ask(client, "Please refuse once.")
    assert text_of(assistant_messages(items)[-1]) == "Alright, here is a cheerful answer for you."
    assert [r.body["temperature"] for r in scripted_llm.find("refuse once")] == [0.5, 0.75]
    items = await ask(client, "Please refuse always.")
    assert [text_of(m) for m in assistant_messages(items)] == ["Let us talk about the weather instead."]
    assert [r.body["temperature"] for r in scripted_llm.find("refuse always")] == [0.5, 0.75, 1.125]
    assert statuses(items)[-1] == "response_done"
    items += await client.drain(2.0)
    assert reply_audio(items, str(assistant_messages(items)[-1].header["id"]))  # the give-up text is spoken


async def test_llm_classifier_control_agent(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted_classifier")
    items = await ask(client, "Would you refuse always for me?")
    assert [text_of(m) for m in assistant_messages(items)] == ["I would rather not say."]
    classifier_calls = [r for r in scripted_llm.requests if "reply classifier" in r.body["messages"][0]["content"]
                        and "can't help" in r.last_user_text]
    assert len(classifier_calls) >= 1 and not classifier_calls[0].body.get("stream")


async def test_voice_tone_switches_the_voice(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted_tone")
    durations = {}
    for tone in ("neutral", "excited"):
        items = await ask(client, f"Please be {tone} now.")
        reply = assistant_messages(items)[-1]
        assert text_of(reply) == "I have some news for you today, my friend."  # the JSON is decoded, not shown
        items += await client.drain(2.0)
        durations[tone] = len(reply_audio(items, str(reply.header["id"]))) / 2 / 24_000
    assert durations["excited"] < 0.85 * durations["neutral"], durations  # joe_excited speaks much faster
    system = scripted_llm.find("be excited")[-1].body["messages"][0]["content"]
    assert '"voice_tone"' in system and system.index("voice_tone") < system.index('"text"')  # tone asked first


async def test_narrator_aside_uses_the_narrator_voice_and_silences(connect):
    client = await connect()
    await start_session(client, "scripted")
    items = await ask(client, "Please narrate.")
    reply = assistant_messages(items)[-1]
    assert text_of(reply) == "Welcome back to the old house. @he opens the creaking door@ Come in, come in."
    items += await client.drain(2.0)
    audio = reply_audio(items, str(reply.header["id"]))
    assert longest_zero_run_s(audio) >= 0.55  # the narrator's 0.6 s silences (the character has none)


async def test_llm_error_and_timeout_end_the_response_cleanly(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted_timeout")
    items = await ask(client, "Trigger a server error.")
    errors = [i for i in items if i.type == "error"]
    assert [e.header["code"] for e in errors] == ["llm_failed"] and "500" in errors[0].header["error"]
    assert statuses(items) == ["response_created", "response_cancelled"]
    items = await ask(client, "Now hang forever.", timeout=30)
    assert [i.header["code"] for i in items if i.type == "error"] == ["llm_timeout"]
    assert statuses(items) == ["response_created", "response_cancelled"]
    items = await ask(client, "Hello again.")  # the session goes on
    assert text_of(assistant_messages(items)[-1]) == "You said: hello again.."
    # nothing the user said is lost: the turns that failed go to the LLM with the next one
    assert scripted_llm.find("hello again")[-1].last_user_text == "Trigger a server error.\nNow hang forever.\nHello again."


async def test_call_mode_barge_in(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted", mode="call")
    question = "Tell me a long story."
    await client.send_audio(speech_pcm16k(question) + b"\x00\x00" * 16_000, realtime=True)
    items = await client.until(lambda r: r.type == "audio", 60)
    speech_id = items[-1].header["speech_id"]
    await asyncio.sleep(1.0)  # the story plays for a while
    await client.send_audio(speech_pcm16k("Wait, stop please, I have a question."), realtime=True)
    items += await client.until(lambda r: r.is_status("user_interrupt"), 30)
    after = await client.drain(2.0)
    assert not [i for i in after if i.type == "audio" and i.header["speech_id"] == speech_id]  # its audio stopped
    cut = [i for i in items + after if i.type == "message" and str(i.header["id"]) == speech_id]
    assert text_of(cut[-1]).endswith("... (interrupted)")
    assert "number 40" not in text_of(cut[-1]) and len(text_of(cut[-1])) < len(LONG_STORY)
    assert "response_cancelled" in statuses(items + after) or "response_done" in statuses(items + after)
    assert scripted_llm.find("long story")[-1].finished is None  # the LLM stream was stopped too


async def test_own_echo_at_low_level_does_not_barge_in(connect):
    client = await connect()
    await start_session(client, "scripted", mode="call")
    await client.send_audio(speech_pcm16k("Tell me a long story.") + b"\x00\x00" * 16_000, realtime=True)
    items = await client.until(lambda r: r.type == "audio", 60)
    speech_id = items[-1].header["speech_id"]
    items += await collect(client, 1.0)
    echo = pcm16_to_float(reply_audio(items, speech_id))[: 24_000 * 3]
    echo = resample(echo, 24_000, 16_000) * 0.02  # the agent's voice leaking back at about -52 dBFS (VAD: speech)
    await client.send_audio(float_to_pcm16(echo), realtime=True)
    later = await collect(client, 1.5)
    assert "user_interrupt" not in statuses(items + later)
    assert not [i for i in items + later if i.type == "message" and "(interrupted)" in text_of(i)]


async def test_chat_interrupts_truncate_greeting_and_late_interrupt(connect, scripted_llm):
    client = await connect()
    await client.init("scripted", init_greeting=True)
    items = await client.until(lambda r: r.type == "audio" and r.header["speech_id"] == "0", 60)
    await client.send({"type": "interrupt", "speech_id": "0", "interrupted_at": 0.6})
    items += await client.until(lambda r: r.type == "message" and r.header["id"] == 0 and "interrupted" in text_of(r), 30)
    assert text_of(items[-1]) in ("Hello!... (interrupted)", "... (interrupted)")
    items = await ask(client, "Tell me a long story.")
    reply_id = assistant_messages(items)[-1].header["id"]
    await client.until(lambda r: r.type == "audio" and r.header["speech_id"] == str(reply_id), 30)
    # The JS client's order: text -> create_response -> the interrupt of the previous reply.
    await client.send({"type": "text", "content": "A next question."})
    await client.send({"type": "create_response"})
    await client.send({"type": "interrupt", "speech_id": str(reply_id), "interrupted_at": 1.5})
    items = await client.until(ends_response, 60)
    cut = [i for i in items if i.type == "message" and i.header["id"] == reply_id]
    assert cut and text_of(cut[-1]).endswith("... (interrupted)") and len(text_of(cut[-1])) < 200
    context = scripted_llm.find("a next question")[-1].body["messages"]
    assert any(m["role"] == "assistant" and "(interrupted)" in m["content"] for m in context)


async def test_invoke_llm(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted")
    await client.send({"type": "invoke_llm", "model": None, "prompt": "Summarize.",
                       "messages": [{"role": "user", "content": "invoke this"}]})
    got = await client.until(lambda r: r.type in ("llm_response", "error"), 30)
    assert got[-1].type == "llm_response" and got[-1].header["content"] == "You said: invoke this."
    assert scripted_llm.find("invoke this")[-1].body["messages"][0] == {"role": "system", "content": "Summarize."}
    await client.send({"type": "invoke_llm", "model": "gpt-4o", "prompt": "x", "messages": []})
    got = await client.until(lambda r: r.type in ("llm_response", "error"), 30)
    assert got[-1].type == "error" and got[-1].header["code"] == "model_not_allowed"


async def test_images_reach_the_llm(connect, scripted_llm):
    client = await connect()
    await start_session(client, "scripted")
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    await client.send({"type": "image_url", "image_url": png})
    await client.send({"type": "image_url", "image_url": "https://example.com/cat.webp"})
    items = await ask(client, "What is in this picture?")
    assert text_of(assistant_messages(items)[-1]) == "I see 2 images."
    user = scripted_llm.find("in this picture")[-1].body["messages"][-1]
    urls = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    assert urls == [png, "https://example.com/cat.webp"]


async def test_client_agent_config_policy(connect):
    client = await connect()
    await client.init("my_agent", agent_config={"llm_model": "gpt-4o-secret", "system_prompt": "x"})
    error = await expect_refused(client, "model_not_allowed", 1008)
    assert "gpt-4o-secret" in error.header["error"]
    client = await connect()
    await client.init("my_agent", agent_config={"llm_model": "scripted-model",
                                                "greetings": {"choices": [{"content": "x", "file": "/etc/passwd"}]}})
    await expect_refused(client, "file_not_allowed", 1008)
    client = await connect()  # an allowed client-defined agent works
    await start_session(client, "my_agent", agent_config={"llm_model": "scripted-model", "system_prompt": "Be brief."})
    items = await ask(client, "Hello there.")
    assert text_of(assistant_messages(items)[-1]) == "You said: hello there.."


async def test_local_llm_is_an_openai_endpoint_for_litellm(server):
    """Other apps reach the graph's LocalLLM through LiteLLM like any OpenAI-compatible server."""
    import httpx

    from harness.server import TEST_API_KEY
    from llm.client import LlmClient, LlmRequest, LlmSettings

    client = LlmClient(LlmSettings(api_base=f"{server.http_url}/v1", api_key=TEST_API_KEY))
    request = LlmRequest("smollm2-135m", [{"role": "user", "content": "Say hello."}], 0.2, 12)
    pieces = [piece async for piece in client.stream(request)]
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert (await client.complete(request)).strip()
    async with httpx.AsyncClient() as http:
        wrong = await http.post(f"{server.http_url}/v1/chat/completions", json={"messages": []},
                                headers={"Authorization": "Bearer wrong"})
        bad = await http.post(f"{server.http_url}/v1/chat/completions", json={"messages": [], "stream": True},
                              headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    assert wrong.status_code == 403
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]


async def test_greeting_comes_from_the_cache(connect):
    """Greetings are rendered once (at start-up) and replayed: two sessions get the very same samples, which
    fresh Piper renditions (sampling noise on) never are. The narrator aside has its voice and silences."""
    greetings = []
    for _ in range(2):
        client = await connect()
        await client.init("scripted", init_greeting=True)
        items = await client.until(lambda r: r.is_status("init_done"), 60)
        items += await client.drain(1.5)
        message = [i for i in items if i.type == "message" and i.header["id"] == 0][0]
        assert text_of(message) == "Hello! @he waves@ Nice to see you."
        greetings.append(reply_audio(items, "0"))
        await client.close()
    assert len(greetings[0]) > 24_000 and greetings[0] == greetings[1]
    assert longest_zero_run_s(greetings[0]) >= 0.55


async def test_greeting_from_a_server_file(connect):
    """A {content, file} greeting plays the recording named in the server's agents file (16 kHz WAV -> 24 kHz)."""
    from harness.speech import GREETING_FILE, GREETING_TEXT
    from speech.audio import read_wav

    client = await connect()
    await client.init("file_greeter", init_greeting=True)
    items = await client.until(lambda r: r.is_status("init_done"), 60)
    items += await client.drain(1.5)
    assert text_of([i for i in items if i.type == "message"][0]) == GREETING_TEXT
    audio, rate = read_wav(GREETING_FILE)
    played = len(reply_audio(items, "0")) / 2 / 24_000
    assert abs(played - len(audio) / rate) < 0.05, (played, len(audio) / rate)


async def test_dropped_connection_mid_reply_stops_the_llm(connect, scripted_llm):
    """A client that goes away while the reply streams: the LLM stream is closed, the server goes on."""
    client = await connect()
    await start_session(client, "scripted")
    await client.send({"type": "text", "content": "Tell me a long story, dropped."})
    await client.send({"type": "create_response"})
    await client.until(lambda r: r.type == "audio", 60)
    await client.ws.close()
    for _ in range(50):
        await asyncio.sleep(0.1)
        if scripted_llm.find("long story, dropped"):
            break
    await asyncio.sleep(LONG_STORY_S + 1.0)  # read to its end, the scripted story would be done streaming by now
    assert scripted_llm.find("long story, dropped")[-1].finished is None
    client = await connect()
    await start_session(client, "scripted")
    items = await ask(client, "Still there?")
    assert text_of(assistant_messages(items)[-1]) == "You said: still there?."
