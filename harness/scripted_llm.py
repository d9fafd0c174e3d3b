"""A scripted OpenAI-compatible chat-completions server on loopback, so tests exercise the real LiteLLM path.

The reply depends on the last user message (keywords below); every request is recorded with the time its
reply finished, so a test can check e.g. that speech started before the LLM was done.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.loopback import Served

API_KEY = "scripted-llm-key"
LONG_STORY = " ".join(f"This is sentence number {n} of a long story." for n in range(1, 41))
LONG_STORY_TOKEN_DELAY_S = 0.06  # 180 tokens: about 11 s, so a stream that was cut is told from one read to its end
LONG_STORY_S = len(range(0, len(LONG_STORY), 10)) * LONG_STORY_TOKEN_DELAY_S


@dataclass
class Recorded:
    body: dict[str, Any]
    started: float
    finished: float | None = None

    @property
    def last_user_text(self) -> str:
        return _text_of(next((m for m in reversed(self.body["messages"]) if m["role"] == "user"), {"content": ""}))


@dataclass
class Script:
    tokens: list[str]
    delay_s: float = 0.0  # between tokens
    status: int = 200
    stall_s: float = 0.0  # before the first token
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # tool calls after the tokens (name, arguments)


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content if p.get("type") == "text")


def _pieces(text: str, size: int = 6) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


CALL = re.compile(r"\bcall (\w+)(?: with (\{.*?\}))?", re.IGNORECASE)  # "call weather with {...}" (typed)
CITY = re.compile(r"\b(?:weather|time) (?:be )?(?:like )?in ([A-Z][a-z]+)")


def tool_script(body: dict[str, Any], said: str, original: str) -> Script | None:
    """The tool calls a request asks for, when it offers tools and the user asks for them; after tool results,
    an answer that carries them."""
    messages = body["messages"]
    if messages and messages[-1]["role"] == "tool":
        last_call = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        results = [m["content"] for m in messages[last_call + 1:] if m["role"] == "tool"]
        return Script(_pieces("Here is what I found. " + " ".join(r[:300] for r in results)), delay_s=0.005)
    names = [t["function"]["name"] for t in body.get("tools") or []]
    if not names or body.get("tool_choice") == "none":
        return None
    calls: list[tuple[str, dict[str, Any]]] = []
    for match in CALL.finditer(original):
        name, arguments = match.group(1), match.group(2)
        if name in names:
            calls.append((name, json.loads(arguments) if arguments else {}))
    city = CITY.search(original)
    for asked, tool in (("weather", "weather"), ("time", "get_time")):
        if not calls and asked in said and tool in names:
            calls.append((tool, {"city": city.group(1) if city else "Lisbon"}))
    if not calls:
        return None
    return Script(_pieces("Let me check that.") if "check first" in said else [], delay_s=0.005, calls=calls)


def script_for(body: dict[str, Any]) -> Script:
    messages = body["messages"]
    system = _text_of(messages[0]) if messages and messages[0]["role"] == "system" else ""
    said = _text_of(next((m for m in reversed(messages) if m["role"] == "user"), {"content": ""})).lower()
    said = said.strip().splitlines()[-1] if said.strip() else ""  # user messages in a row arrive merged: the last one
    last_user = next((m for m in reversed(messages) if m["role"] == "user"), {"content": ""})
    tools = tool_script(body, said, _text_of(last_user).strip().splitlines()[-1] if _text_of(last_user).strip() else "")
    if tools is not None:
        return tools
    if "reply classifier" in system:  # the LLM control agent
        return Script([json.dumps({"class": "refusal" if "can't" in said or "cannot" in said else "fine"})])
    if "server error" in said:
        return Script([], status=500)
    if "hang" in said:
        return Script(["Too late."], stall_s=60.0)
    if "refuse" in said:  # a refusal at low temperature; with "always" at every temperature
        temperature = body.get("temperature", 1.0)
        if "always" in said or temperature < 0.6:
            return Script(_pieces("I can't help with that. It is not allowed."), delay_s=0.01)
        return Script(_pieces("Alright, here is a cheerful answer for you."), delay_s=0.01)
    if "check the weather" in said:  # the same first sentence as an answer from tools (scripts/bench_tools.py)
        return Script(_pieces("Here is what I found. It is sunny in Lisbon today."), delay_s=0.005)
    if "slow story" in said:
        return Script(_pieces("Once upon a time, there was a small robot. It liked to sing songs all day long. "
                              "Then it went to sleep. The end.", 8), delay_s=0.25)
    if "long story" in said:
        return Script(_pieces(LONG_STORY, 10), delay_s=LONG_STORY_TOKEN_DELAY_S)
    for tone in ("excited", "sad", "neutral"):
        if f"be {tone}" in said:
            reply = json.dumps({"voice_tone": tone, "text": "I have some news for you today, my friend."})
            return Script(_pieces(reply), delay_s=0.005)
    if "narrate" in said:
        return Script(_pieces("Welcome back to the old house. @he opens the creaking door@ Come in, come in."), delay_s=0.005)
    if "picture" in said:
        images = sum(1 for m in messages for p in (m["content"] if isinstance(m["content"], list) else [])
                     if p.get("type") == "image_url")
        return Script(_pieces(f"I see {images} image{'s' if images != 1 else ''}."))
    return Script(_pieces(f"You said: {said.strip() or 'nothing'}."), delay_s=0.005)


class ScriptedLlm(Served):
    """Runs in a thread of the test process; ``url`` is the ``LITELLM_API_BASE`` to give the server."""

    def __init__(self, delay_scale: float = 1.0, first_token_s: float = 0.0) -> None:
        self.delay_scale = delay_scale  # 0: every token at once (an "instant" LLM for benchmarks)
        self.first_token_s = first_token_s  # added before every streamed reply: a provider's time to first token
        self.requests: list[Recorded] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def find(self, text: str) -> list[Recorded]:
        return [r for r in self.requests if text.lower() in r.last_user_text.lower()]

    async def _completions(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        body = await request.json()
        record = Recorded(body, time.monotonic())
        self.requests.append(record)
        script = script_for(body)
        if script.status != 200:
            record.finished = time.monotonic()
            return JSONResponse({"error": {"message": "scripted failure", "type": "server_error"}}, status_code=script.status)
        if not body.get("stream"):
            await asyncio.sleep(script.stall_s)
            record.finished = time.monotonic()
            return JSONResponse({
                "id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(script.tokens)}}]})

        async def events() -> AsyncIterator[bytes]:
            chunk_id = f"chatcmpl-{uuid.uuid4().hex[:8]}"

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                data = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"],
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                return f"data: {json.dumps(data)}\n\n".encode()

            await asyncio.sleep(script.stall_s + self.first_token_s)
            yield chunk({"role": "assistant", "content": ""})
            for token in script.tokens:
                yield chunk({"content": token})
                if script.delay_s * self.delay_scale:
                    await asyncio.sleep(script.delay_s * self.delay_scale)
            for index, (name, arguments) in enumerate(script.calls):  # as providers stream them: id and name, then
                text = json.dumps(arguments)  # the arguments in pieces
                yield chunk({"tool_calls": [{"index": index, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                                             "function": {"name": name, "arguments": ""}}]})
                for piece in _pieces(text, 8):
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            yield chunk({}, "tool_calls" if script.calls else "stop")
            yield b"data: [DONE]\n\n"
            record.finished = time.monotonic()

        return StreamingResponse(events(), media_type="text/event-stream")

    def start(self) -> ScriptedLlm:
        self.serve(Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])]),
                   name="scripted-llm")
        return self
