"""LlmClient through the real LiteLLM against a scripted OpenAI-compatible server on loopback."""

import asyncio

import pytest

from harness.scripted_llm import API_KEY, ScriptedLlm
from llm.client import LlmClient, LlmError, LlmRequest, LlmSettings
from llm.warmup import warm_up_litellm


@pytest.fixture(scope="module")
def scripted():
    llm = ScriptedLlm().start()
    yield llm
    llm.stop()


def test_routing():
    client = LlmClient(LlmSettings(api_base="http://proxy:4000", api_key="k"))
    assert client.route("gpt-4o-mini") == {"model": "openai/gpt-4o-mini", "api_base": "http://proxy:4000", "api_key": "k"}
    assert client.route("meta-llama/Llama-3-8b") == {"model": "openai/meta-llama/Llama-3-8b", "api_base": "http://proxy:4000",
                                                     "api_key": "k"}
    assert client.route("gemini/gemini-2.0-flash") == {"model": "gemini/gemini-2.0-flash"}
    assert client.route("voi-local/smollm2-135m") == {"model": "voi-local/smollm2-135m"}
    assert LlmClient(LlmSettings()).route("gpt-4o-mini") == {"model": "gpt-4o-mini"}


async def test_stream_complete_errors_and_early_close(scripted):
    client = LlmClient(LlmSettings(api_base=scripted.url, api_key=API_KEY))
    await warm_up_litellm(client)
    pieces = [p async for p in client.stream(LlmRequest("m", [{"role": "user", "content": "hello there"}], 0.5, 20))]
    assert len(pieces) > 1 and "".join(pieces) == "You said: hello there."
    assert scripted.requests[-1].body["temperature"] == 0.5 and scripted.requests[-1].body["max_tokens"] == 20
    assert await client.complete(LlmRequest("m", [{"role": "user", "content": "hi"}])) == "You said: hi."
    with pytest.raises(LlmError) as failed:
        async for _ in client.stream(LlmRequest("m", [{"role": "user", "content": "server error"}])):
            pass
    assert failed.value.code == "llm_failed" and "500" in str(failed.value) and API_KEY not in str(failed.value)
    with pytest.raises(LlmError) as late:
        await client.complete(LlmRequest("m", [{"role": "user", "content": "hang"}], timeout_s=0.5))
    assert late.value.code == "llm_timeout"
    stream = client.stream(LlmRequest("m", [{"role": "user", "content": "long story"}]))
    async for _ in stream:
        break
    await stream.aclose()
    await asyncio.sleep(0.3)
    assert scripted.find("long story")[-1].finished is None  # the server's stream was cut, not read to its end
