"""Warming LiteLLM up before a session needs it.

LiteLLM loads most of itself lazily: the first streamed completion in a process costs about a second (imports,
the OpenAI client, the stream wrapper). A session host pays that once, while it is started ahead of need, by
streaming one completion from a throw-away OpenAI-compatible stub on loopback, never from a real provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

log = logging.getLogger("voi.llm")

_CHUNK = {"id": "warm-up", "object": "chat.completion.chunk", "created": 0, "model": "warm-up",
          "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
_COMPLETION = {"id": "warm-up", "object": "chat.completion", "created": 0, "model": "warm-up",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        body = json.loads(await reader.readexactly(length) or b"{}")
        if body.get("stream"):
            payload = f"data: {json.dumps(_CHUNK)}\n\ndata: [DONE]\n\n".encode()
            kind = b"text/event-stream"
        else:
            payload, kind = json.dumps(_COMPLETION).encode(), b"application/json"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                     + str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n" + payload)
        await writer.drain()
    except (asyncio.IncompleteReadError, ValueError, ConnectionError):
        pass
    finally:
        writer.close()


async def warm_up_litellm(client: Any) -> None:
    """Stream one completion and get one whole completion through ``client`` (an LlmClient) from the stub."""
    from llm.client import LlmRequest, LlmSettings

    started = time.perf_counter()
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stub = type(client)(LlmSettings(api_base=f"http://127.0.0.1:{port}/v1", api_key="warm-up"))
        request = LlmRequest("warm-up", [{"role": "user", "content": "hi"}], 0.0, 1, 10.0)
        async for _ in stub.stream(request):
            pass
        await stub.complete(request)
    except Exception as exc:  # a failed warm-up only costs the first turn its second
        log.warning("LiteLLM warm-up failed: %s", exc)
    finally:
        server.close()
    log.info("LiteLLM warmed up in %.2f s", time.perf_counter() - started)
