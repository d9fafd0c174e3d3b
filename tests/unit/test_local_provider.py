"""The voi-local LiteLLM provider, on scripted stream / complete functions: no model, milliseconds."""

from __future__ import annotations

import asyncio

import litellm
import pytest

from llm.local_provider import register_local_provider
from llm.names import LOCAL_MODEL as MODEL
from llm.names import LOCAL_PROVIDER as PROVIDER

MESSAGES = [{"role": "user", "content": "Hello?"}]
# LiteLLM's own types, built on first use, warn about a pydantic feature: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning")


def chunk(content: str | None = None, finish_reason: str | None = None) -> dict:
    delta = {"content": content} if content is not None else {}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "smollm2-135m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


class Script:
    """A stream_fn that yields `pieces` (one chunk each) and records what happened to it."""

    def __init__(self, pieces: list[str], finish_reason: str = "stop", fail_after: int | None = None) -> None:
        self.pieces = pieces
        self.finish_reason = finish_reason
        self.fail_after = fail_after
        self.requests: list[dict] = []
        self.sent = 0
        self.gate: asyncio.Event | None = None  # set: the script waits on it before each piece after the first
        self.at_gate = asyncio.Event()  # the script waits on the gate now
        self.closed_by: str | None = None

    async def stream(self, request: dict):
        self.requests.append(request)
        try:
            yield {**chunk(), "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
            for i, piece in enumerate(self.pieces):
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("llama exploded")
                if i and self.gate is not None:
                    self.at_gate.set()
                    await self.gate.wait()
                    self.gate.clear()
                self.sent += 1
                yield chunk(piece)
            yield chunk(finish_reason=self.finish_reason)
            self.closed_by = "end"
        except GeneratorExit:
            self.closed_by = "close"
            raise
        except asyncio.CancelledError:
            self.closed_by = "cancel"
            raise

    async def complete(self, request: dict) -> dict:
        self.requests.append(request)
        return {"id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": request["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self.pieces)},
                             "finish_reason": self.finish_reason}],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(self.pieces),
                          "total_tokens": 5 + len(self.pieces)}}


def use(script: Script) -> Script:
    register_local_provider(script.stream, script.complete)
    return script


async def texts(stream) -> list[str]:
    return [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]


async def test_text_arrives_piece_by_piece():
    script = use(Script(["Hel", "lo", " there."]))
    script.gate = asyncio.Event()
    stream = await litellm.acompletion(model=MODEL, messages=MESSAGES, stream=True)
    first = await stream.__anext__()
    while not first.choices[0].delta.content:
        first = await stream.__anext__()
    # The first piece is out while the script still waits to send the second.
    assert first.choices[0].delta.content == "Hel" and script.sent == 1
    script.gate.set()
    rest = []
    async for c in stream:
        if c.choices and c.choices[0].delta.content:
            rest.append(c.choices[0].delta.content)
            script.gate.set()
    assert rest == ["lo", " there."]
    assert script.closed_by == "end"


async def test_finish_reason_comes_through():
    use(Script(["a", "b"], finish_reason="length"))
    stream = await litellm.acompletion(model=MODEL, messages=MESSAGES, stream=True)
    reasons = [c.choices[0].finish_reason async for c in stream if c.choices and c.choices[0].finish_reason]
    assert reasons == ["length"]


async def test_parameters_reach_the_request():
    script = use(Script(["ok"]))
    stream = await litellm.acompletion(model=MODEL, messages=MESSAGES, stream=True, temperature=0.3, top_p=0.8,
                                       max_tokens=12, stop=["\n"], seed=7, presence_penalty=0.5)
    assert await texts(stream) == ["ok"]
    request = script.requests[0]
    assert request["model"] == "smollm2-135m"
    assert request["messages"] == MESSAGES
    assert {k: request[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty")} == {
        "temperature": 0.3, "top_p": 0.8, "max_tokens": 12, "stop": ["\n"], "seed": 7, "presence_penalty": 0.5}
    assert "stream" not in request


async def test_completion_without_streaming():
    script = use(Script(["Fine", ", thanks."]))
    response = await litellm.acompletion(model=MODEL, messages=MESSAGES, max_tokens=4, temperature=0)
    assert response.choices[0].message.content == "Fine, thanks."
    assert response.usage.completion_tokens == 2
    assert script.requests[0]["max_tokens"] == 4 and script.requests[0]["temperature"] == 0


@pytest.mark.parametrize("fail_after", [0, 1])
async def test_errors_surface_from_the_stream(fail_after):
    use(Script(["one", "two"], fail_after=fail_after))
    stream = await litellm.acompletion(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(Exception, match="llama exploded"):
        await texts(stream)


async def test_closing_the_stream_closes_the_generator():
    script = use(Script(["a", "b", "c"]))
    script.gate = asyncio.Event()
    stream = await litellm.acompletion(model=MODEL, messages=MESSAGES, stream=True)
    async for c in stream:
        if c.choices and c.choices[0].delta.content:
            break
    await stream.aclose()
    assert script.closed_by == "close" and script.sent == 1


async def test_cancelling_the_consumer_closes_the_generator():
    script = use(Script(["a", "b", "c"]))
    script.gate = asyncio.Event()  # never set again: the script hangs before its second piece
    got: list[str] = []

    async def consume() -> None:
        stream = await litellm.acompletion(model=MODEL, messages=MESSAGES, stream=True)
        got.extend(await texts(stream))

    task = asyncio.create_task(consume())
    await asyncio.wait_for(script.at_gate.wait(), 10)  # a bound for a stuck test, not a pace
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert script.closed_by == "cancel" and script.sent == 1


def test_registering_again_replaces_the_functions():
    first, second = Script(["1"]), Script(["2"])
    use(first)
    use(second)
    entries = [e for e in litellm.custom_provider_map if e["provider"] == PROVIDER]
    assert len(entries) == 1
    assert entries[0]["custom_handler"].stream_fn == second.stream
