"""A client of the Voi protocol, behaving like the JS client (junk suffix and all).

Used by ``scripts/talk.py``, the integration tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import websockets

from protocol.framing import decode_frame, encode_frame
from protocol.pcm import INPUT_BYTES_PER_SECOND

JS_JUNK = b"undefined"  # what the JS client appends to every control message
AUDIO_FRAME_BYTES = 8192  # 256 ms of 16 kHz PCM16, as the JS client sends


@dataclass
class Received:
    header: dict[str, Any]
    payload: bytes = field(repr=False)
    at: float  # time.monotonic() on arrival

    @property
    def type(self) -> str:
        return self.header["type"]

    def is_status(self, value: str) -> bool:
        return self.type == "status" and self.header.get("status") == value


class VoiClient:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: list[Received] = []

    @classmethod
    async def connect(cls, base_url: str, token: str | None, ssl_context: ssl.SSLContext | None = None) -> VoiClient:
        url = f"{base_url.rstrip('/')}/ws" + (f"?token={quote(token, safe='')}" if token is not None else "")
        ws = await websockets.connect(url, ssl=ssl_context, max_size=None, open_timeout=30)
        return cls(ws)

    async def send(self, header: dict[str, Any], payload: bytes = JS_JUNK) -> None:
        await self.ws.send(encode_frame(header, payload))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def init(self, agent_name: str, *, mode: str = "chat", init_greeting: bool = True,
                   agent_config: dict[str, Any] | None = None, **extra: Any) -> None:
        header = {
            "type": "init",
            "agent_name": agent_name,
            "agent_config": json.dumps(agent_config if agent_config is not None else {"llm_model": "echo"}),
            "mode": mode,
            "stream_user_stt": True,
            "final_stt_correction": True,
            "stream_output_audio": True,
            "init_greeting": init_greeting,
            **extra,
        }
        await self.send(header)

    async def send_audio(self, pcm16k: bytes, *, realtime: bool = False, frame_bytes: int = AUDIO_FRAME_BYTES) -> float:
        """Stream PCM in frames (at real-time pace if asked); returns the monotonic time of the last frame."""
        started = time.monotonic()
        last = started
        for i, offset in enumerate(range(0, len(pcm16k), frame_bytes)):
            if realtime:
                due = started + i * frame_bytes / INPUT_BYTES_PER_SECOND
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self.ws.send(encode_frame({"type": "audio"}, pcm16k[offset : offset + frame_bytes]))
            last = time.monotonic()
        return last

    async def send_compressed(self, data: bytes, seconds: float, *, realtime: bool = False, chunk_s: float = 0.25) -> float:
        """Send a compressed file (``seconds`` of audio: webm, ogg or mp4) in chunks of about ``chunk_s`` of
        audio, as a browser's MediaRecorder with that timeslice does; returns the time of the last chunk."""
        size = max(1, int(len(data) * chunk_s / max(seconds, chunk_s)))
        started = last = time.monotonic()
        for i, offset in enumerate(range(0, len(data), size)):
            if realtime:
                await asyncio.sleep(max(0.0, started + i * chunk_s - time.monotonic()))
            await self.ws.send(encode_frame({"type": "audio"}, data[offset : offset + size]))
            last = time.monotonic()
        return last

    async def recv(self, timeout: float = 30.0) -> Received:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(data, str):
            raise AssertionError(f"server sent a text frame: {data[:80]!r}")
        frame = decode_frame(data)
        item = Received(frame.header, frame.payload, time.monotonic())
        self.received.append(item)
        return item

    async def until(self, predicate: Callable[[Received], bool], timeout: float = 60.0) -> list[Received]:
        """Receive until ``predicate`` holds for a message; returns everything received, that one included."""
        deadline = time.monotonic() + timeout
        got: list[Received] = []
        while True:
            item = await self.recv(max(deadline - time.monotonic(), 0.001))
            got.append(item)
            if predicate(item):
                return got

    async def drain(self, quiet_s: float = 1.0) -> list[Received]:
        """Receive until nothing arrives for ``quiet_s`` seconds."""
        got: list[Received] = []
        while True:
            try:
                got.append(await self.recv(quiet_s))
            except TimeoutError:
                return got

    async def close(self) -> None:
        await self.ws.close()


def reply_audio(items: list[Received], speech_id: str) -> bytes:
    return b"".join(i.payload for i in items if i.type == "audio" and i.header.get("speech_id") == speech_id)
