"""The bundled SmolLM2-135M through LocalChatModel (llama.cpp), and end to end through LiteLLM's voi-local provider.

Real model, real tokens; answers are kept a few tokens long so the file runs in seconds on two cores.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from llm.local_model import LocalChatModel, bundled_model_path

QUESTION = [{"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def model() -> Iterator[LocalChatModel]:
    model = LocalChatModel(n_threads=1, seed=0)  # one thread: robust when the test machine is busy
    yield model
    model.close()


def contents(chunks) -> list[str]:
    return [c["choices"][0]["delta"]["content"] for c in chunks if c["choices"][0]["delta"].get("content")]


def test_bundled_model_is_a_gguf_file():
    path = bundled_model_path()
    assert path.suffix == ".gguf" and path.read_bytes()[:4] == b"GGUF"


def test_streams_openai_chunks(model):
    chunks = list(model.stream({"model": "smollm2-135m", "messages": QUESTION, "max_tokens": 12, "temperature": 0}))
    assert len(contents(chunks)) > 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["model"] == "smollm2-135m"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert "Paris" in "".join(contents(chunks))


def test_answers_a_short_question(model):
    response = model.complete({"messages": QUESTION, "max_tokens": 16, "temperature": 0})
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"]["role"] == "assistant"
    assert response["choices"][0]["message"]["content"].strip()
    assert response["usage"]["prompt_tokens"] > 10 and response["usage"]["completion_tokens"] >= 1


def test_respects_max_tokens(model):
    request = {"messages": [{"role": "user", "content": "Tell me a long story about a dragon."}], "max_tokens": 5}
    chunks = list(model.stream(request))
    assert 1 <= len(contents(chunks)) <= 5
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert model.complete(request)["usage"]["completion_tokens"] == 5


def test_stop_sequence_ends_the_answer(model):
    request = {"messages": [{"role": "user", "content": "Count from one to ten."}], "max_tokens": 30, "temperature": 0}
    full = "".join(contents(model.stream(request)))
    assert "3." in full, full
    stopped = model.complete({**request, "stop": ["3."]})
    assert stopped["choices"][0]["message"]["content"] == full[:full.index("3.")]
    assert stopped["choices"][0]["finish_reason"] == "stop"


def test_image_parts_are_dropped_text_kept(model):
    with_image = [QUESTION[0], {"role": "user", "content": [
        {"type": "text", "text": QUESTION[1]["content"]},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}]
    answer = model.complete({"messages": with_image, "max_tokens": 12, "temperature": 0})
    plain = model.complete({"messages": QUESTION, "max_tokens": 12, "temperature": 0})
    assert "Paris" in answer["choices"][0]["message"]["content"]
    assert answer["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]


def test_closing_the_stream_stops_generation(model):
    stream = model.stream({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 200})
    assert len(contents([next(stream), next(stream)])) == 1
    stream.close()
    # The model is free again at once (a stream left running would make this raise "already generating").
    assert model.complete({"messages": QUESTION, "max_tokens": 2})["choices"][0]["message"]["content"]


@pytest.mark.parametrize(("request_body", "field"), [
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"messages": QUESTION, "temperature": 3}, "temperature"),
    ({"messages": QUESTION, "top_p": "high"}, "top_p"),
    ({"messages": QUESTION, "max_tokens": 0}, "max_tokens"),
    ({"messages": QUESTION, "stop": 5}, "stop"),
    ({"messages": QUESTION, "seed": 1.5}, "seed"),
    ({"model": 3, "messages": QUESTION}, "model"),
])
def test_bad_request_raises_value_error_naming_the_field(model, request_body, field):
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}:"):
        model.stream(request_body)
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}:"):
        model.complete(request_body)


async def test_through_litellm_end_to_end(model):
    import litellm

    from llm.local_provider import register_local_provider
    from llm.names import LOCAL_MODEL as MODEL

    async def stream_fn(request: dict) -> AsyncIterator[dict]:
        for chunk in model.stream(request):  # a few ms per token: fine inline in a test
            yield chunk
            await asyncio.sleep(0)

    async def complete_fn(request: dict) -> dict:
        return model.complete(request)

    register_local_provider(stream_fn, complete_fn)
    stream = await litellm.acompletion(model=MODEL, messages=QUESTION, stream=True, max_tokens=12, temperature=0)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "Paris" in "".join(pieces)
    response = await litellm.acompletion(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    assert response.choices[0].message.content == "".join(pieces)
