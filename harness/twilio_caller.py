"""A simulated Twilio: the phone network's side of a call, written from Twilio's documentation (Voice
webhook, TwiML ``<Connect><Stream>``, Media Streams websocket messages), for tests, scripts/phone.py and
scripts/bench_phone.py. No Twilio account is involved.

``dial`` posts the call webhook (form-encoded, signed like Twilio when given an auth token) and reads the
TwiML (``follow_action``: what Twilio does when our side closed the stream, it posts the ``<Connect>``'s
action and follows the answer); ``TwilioCaller.connect`` follows it: ``connected``, ``start`` (with the ``<Parameter>``s), then a
``media`` frame every 20 ms (the caller's words, silence between them, as a phone line does). The server's
``media`` is played in real time; each ``mark`` is echoed when the audio before it has been played, and a
``clear`` drops what was not played yet and echoes the waiting marks at once, as Twilio does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import websockets
from twilio.request_validator import RequestValidator

from speech import g711
from speech.audio import INPUT_RATE, PcmResampler

FRAME_S = 0.02
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
SILENCE = b"\xff" * FRAME_BYTES  # mu-law zero


@dataclass(frozen=True)
class CallSetup:
    """What the webhook's TwiML said: where the stream goes and its parameters."""

    stream_url: str
    parameters: dict[str, str]
    call_sid: str
    twiml: str
    action_url: str = ""  # the <Connect>'s action: posted when the stream ends
    fields: dict[str, str] = field(default_factory=dict)  # the call's webhook fields


def to_16k(pcm8k: bytes) -> bytes:
    """What a caller heard (8 kHz PCM16, ``Caller.heard``) at the 16 kHz Whisper takes."""
    return PcmResampler(g711.G711_RATE, INPUT_RATE)(pcm8k)


def sign(auth_token: str, url: str, fields: dict[str, str]) -> str:
    """``X-Twilio-Signature`` of a webhook request, as Twilio computes it."""
    return RequestValidator(auth_token).compute_signature(url, fields)


def call_fields(to: str, caller: str, call_sid: str) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": to, "CallStatus": "ringing",
            "Direction": "inbound", "ApiVersion": "2010-04-01"}


def read_twiml(twiml: str, call_sid: str, fields: dict[str, str] | None = None) -> CallSetup | None:
    """The stream the TwiML connects; None when it ends the call (``<Hangup/>``)."""
    root = ET.fromstring(twiml)
    connect = root.find("./Connect")
    stream = root.find("./Connect/Stream")
    if stream is None or connect is None:
        if root.find("./Hangup") is not None:
            return None
        raise ValueError(f"the TwiML connects no stream: {twiml[:200]}")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return CallSetup(stream.get("url", ""), parameters, call_sid, twiml, connect.get("action", ""), dict(fields or {}))


async def _post(url: str, fields: dict[str, str], headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(verify=False) as http:
        answer = await http.post(url, data=fields, headers=headers, timeout=30)
    answer.raise_for_status()
    return answer.text


async def follow_action(setup: CallSetup, *, auth_token: str | None = None, status: str = "in-progress") -> CallSetup | None:
    """Our side closed the stream: Twilio posts the ``<Connect>``'s action (the call's fields, its status) and
    follows the TwiML it gets (None: the call is hung up)."""
    if not setup.action_url:
        raise ValueError("the TwiML's <Connect> has no action: the call would end here")
    fields = {**setup.fields, "CallStatus": status}
    headers = {"X-Twilio-Signature": sign(auth_token, setup.action_url, fields)} if auth_token else {}
    return read_twiml(await _post(setup.action_url, fields, headers), setup.call_sid, fields)


async def dial(http_url: str, *, to: str = "+15550001000", caller: str = "+15557654321", auth_token: str | None = None,
               signature: str | None = None, signed_url: str | None = None, stream_host: str | None = None) -> CallSetup:
    """Twilio's call webhook to ``/twilio/voice`` and the TwiML's stream: signed with ``auth_token`` for the URL
    called (or ``signed_url``), or carrying ``signature`` as given; ``stream_host`` replaces the scheme and host
    the TwiML names (a server behind a tunnel names its public one)."""
    call_sid = "CA" + uuid.uuid4().hex
    fields = call_fields(to, caller, call_sid)
    url = f"{http_url}/twilio/voice"
    headers = {}
    if signature is not None or auth_token:
        headers["X-Twilio-Signature"] = signature if signature is not None else sign(auth_token or "", signed_url or url, fields)
    setup = read_twiml(await _post(url, fields, headers), call_sid, fields)
    if setup is None:
        raise ValueError("the webhook hung up a new call")
    if stream_host:
        _, _, rest = setup.stream_url.partition("://")
        path = rest[rest.index("/"):]
        setup = replace(setup, stream_url=f"{stream_host}{path}")
    return setup


@dataclass
class _Played:
    kind: str  # "audio" | "mark"
    data: bytes = b""
    name: str = ""
    speech: str | None = None


@dataclass
class CallLog:
    """What happened on the line, with monotonic times."""

    media_at: list[tuple[float, int]] = field(default_factory=list)  # server media: arrival time, bytes
    clears_at: list[float] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    played_s: dict[str, float] = field(default_factory=dict)  # per speech (from its marks): seconds played
    played_at_clear: dict[str, float] = field(default_factory=dict)  # the speech cleared: seconds played by then
    other: list[dict[str, Any]] = field(default_factory=list)  # frames of any other kind (there should be none)


class TwilioCaller:
    def __init__(self, ws: Any, setup: CallSetup, stream_sid: str) -> None:
        self.ws = ws
        self.setup = setup
        self.stream_sid = stream_sid
        self.log = CallLog()
        self.heard = bytearray()  # the server's audio as the caller heard it: 8 kHz PCM16
        self._outgoing: deque[bytes] = deque()  # mu-law frames of the caller's speech, 20 ms each
        self._buffer: deque[_Played] = deque()  # the server's audio and marks, waiting to be played
        self._sequence = 0
        self._chunk = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._said = asyncio.Event()
        self._playing: str | None = None  # the speech whose audio was played last
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, setup: CallSetup, *, media_format: dict[str, Any] | None = None,
                      parameters: dict[str, str] | None = None) -> TwilioCaller:
        ws = await websockets.connect(setup.stream_url, max_size=None, open_timeout=30)
        caller = cls(ws, setup, "MZ" + uuid.uuid4().hex)
        await caller.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await caller.send({"event": "start", "sequenceNumber": caller._next(), "streamSid": caller.stream_sid, "start": {
            "accountSid": "AC" + "0" * 32, "streamSid": caller.stream_sid, "callSid": setup.call_sid,
            "tracks": ["inbound"], "customParameters": setup.parameters if parameters is None else parameters,
            "mediaFormat": media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        caller._tasks = [asyncio.create_task(caller._line()), asyncio.create_task(caller._receive())]
        return caller

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    # ---- the caller's side ---------------------------------------------------------------------------

    async def say(self, pcm16k: bytes) -> float:
        """Speak 16 kHz PCM16 into the call at real-time pace; returns when its last frame went out (monotonic).
        Silence follows on its own (the line): audio appended here delays the return past the server's answer."""
        mulaw = g711.encode(PcmResampler(INPUT_RATE, g711.G711_RATE)(pcm16k), "pcmu")
        self._said.clear()
        for offset in range(0, len(mulaw), FRAME_BYTES):
            self._outgoing.append(mulaw[offset : offset + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff"))
        await self._said.wait()
        return time.monotonic()

    async def press(self, digits: str) -> None:
        for digit in digits:
            await self.send({"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._next(),
                             "dtmf": {"track": "inbound_track", "digit": digit}})
            await asyncio.sleep(0.15)

    async def stop(self) -> None:
        """Twilio's ``stop`` message (the caller hung up); the socket stays open for the server to close."""
        try:
            await self.send({"event": "stop", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                             "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.setup.call_sid}})
        except websockets.ConnectionClosed:
            pass

    async def hang_up(self) -> None:
        """Twilio's ``stop``, then the socket closes."""
        await self.stop()
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()

    async def _line(self) -> None:
        """Every 20 ms: one media frame to the server (speech or silence) and 20 ms of the server's audio played."""
        next_tick = time.monotonic()
        start = next_tick
        while True:
            payload = self._outgoing.popleft() if self._outgoing else SILENCE
            if not self._outgoing:
                self._said.set()
            self._chunk += 1
            try:
                await self.send({"event": "media", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                                 "media": {"track": "inbound", "chunk": str(self._chunk),
                                           "timestamp": str(int((next_tick - start) * 1000)),
                                           "payload": base64.b64encode(payload).decode("ascii")}})
            except websockets.ConnectionClosed:
                return
            await self._play(FRAME_BYTES)
            next_tick += FRAME_S
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def _play(self, budget: int) -> None:
        while self._buffer:
            item = self._buffer[0]
            if item.kind == "mark":
                self._buffer.popleft()
                self.log.marks_echoed.append(item.name)
                await self.send({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                                 "mark": {"name": item.name}})
                continue
            if budget <= 0:
                return
            take = item.data[:budget]
            item.data = item.data[budget:]
            budget -= len(take)
            self.heard += g711.decode(take, "pcmu")
            if item.speech is not None:
                self._playing = item.speech
                self.log.played_s[item.speech] = self.log.played_s.get(item.speech, 0.0) + len(take) / g711.G711_RATE
            if not item.data:
                self._buffer.popleft()

    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                kind = frame.get("event")
                if kind == "media":
                    data = base64.b64decode(frame["media"]["payload"])
                    self.log.media_at.append((time.monotonic(), len(data)))
                    self._buffer.append(_Played("audio", data))
                elif kind == "mark":
                    name = frame["mark"]["name"]
                    speech = name.split(":")[0]
                    for item in reversed(self._buffer):  # the audio before a mark belongs to its speech
                        if item.kind == "mark" or item.speech is not None:
                            break
                        item.speech = speech
                    self._buffer.append(_Played("mark", name=name))
                elif kind == "clear":
                    self.log.clears_at.append(time.monotonic())
                    if self._playing is not None:
                        self.log.played_at_clear[self._playing] = self.log.played_s.get(self._playing, 0.0)
                    waiting = [i.name for i in self._buffer if i.kind == "mark"]
                    self._buffer.clear()
                    for name in waiting:  # Twilio sends back the marks that were still waiting
                        await self.send({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                                         "mark": {"name": name}})
                else:
                    self.log.other.append(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()

    # ---- what the caller heard ------------------------------------------------------------------------

    def first_media_after(self, t: float) -> float | None:
        return next((at for at, _ in self.log.media_at if at >= t), None)

    async def wait_media_after(self, t: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first_media_after(t)
            if found is not None:
                return found
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no media within {timeout:.0f} s")

    async def wait_played_out(self, quiet_s: float = 1.5, timeout: float = 60) -> None:
        """Until the server has sent nothing for ``quiet_s`` and everything it sent was played."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.log.media_at[-1][0] if self.log.media_at else 0.0
            if not self._buffer and time.monotonic() - last >= quiet_s:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the server's audio did not end within {timeout:.0f} s")

    def heard_since(self, heard_bytes: int) -> bytes:
        return bytes(self.heard[heard_bytes:])
