from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

import websockets

from agents.recording_files import Conversation, load_conversation
from harness.server import ROOT
from harness.speech import speech_pcm16k, transcribe_pcm16k
from harness.twilio_caller import TwilioCaller, to_16k
from protocol.client import Received, VoiClient

if TYPE_CHECKING:
    from harness.server import Server

# Ray Serve's proxy logs this traceback of its own when a websocket client drops while a frame is on its way to
# it (ray-project/ray#64077, open in Ray 2.60: the proxy's response generator is closed at `yield`). Nothing of
# ours raised and the client saw nothing; every other traceback still fails the log check below.
RAY_PROXY_DISCONNECT = re.compile(
    r"^(?P<who>\S*\(ProxyActor pid=\d+\)\S*) Traceback \(most recent call last\):\n"
    r"(?P=who)   File \"[^\"\n]*/ray/serve/_private/proxy\.py\", line \d+, in send_request_to_replica\n"
    r"(?P=who)     yield asgi_message\n"
    r"(?P=who) GeneratorExit$", re.M)


# A graph's agents file with the echo agent only (no LocalLLM: a quicker start), for modules that start their own
ECHO_AGENTS = """
agents:
  stt_test:
    llm_model: echo
    voices:
      character: {model: piper-joe, voice: joe}
"""
PHONE_SCRIPTED = "+15550002000"  # the test server's phone number of the scripted agent; others reach the echo agent
PHONE_RECORDED = "+15550003000"  # ... and of the 'recorded' agent


async def start_session(client: VoiClient, agent: str = "stt_test", *, greeting: bool = False, **init: object) -> list[Received]:
    """init, then everything up to init_done (and the greeting's first audio when asked for)."""
    await client.init(agent, init_greeting=greeting, **init)
    got = await client.until(lambda r: r.is_status("init_done") or r.type == "error", 60)
    assert got[-1].is_status("init_done"), got[-1].header
    return got


def ends_response(item: Received) -> bool:
    return item.is_status("response_done") or item.is_status("response_cancelled")


async def expect_refused(client: VoiClient, code: str, close_code: int) -> Received:
    """The server sends one error with ``code`` and then closes the socket with ``close_code``."""
    error = await client.recv(30)
    assert error.type == "error", error.header
    assert error.header["code"] == code, error.header
    assert isinstance(error.header["error"], str) and error.header["error"]
    try:
        extra = await client.recv(30)
        raise AssertionError(f"expected close after the error, got {extra.header}")
    except websockets.ConnectionClosed:
        pass
    await asyncio.wait_for(client.ws.wait_closed(), 10)
    assert client.ws.close_code == close_code, client.ws.close_code
    return error


def text_of(item: Received) -> str:
    return " ".join(p["text"] for p in item.header["content"] if p.get("type") == "text")


def user_messages(items: list[Received], *, final: bool | None = None) -> list[Received]:
    return [i for i in items if i.type == "message" and i.header["role"] == "user"
            and (final is None or i.header.get("final") is final)]


def final_user_text(items: list[Received]) -> str:
    finals = user_messages(items, final=True)
    assert finals, [i.header for i in items if i.type != "audio"]
    return text_of(finals[-1])


def named_actors(ray, fragment: str) -> list[str]:
    """Names of the live named actors whose name contains ``fragment`` (no dashboard needed)."""
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if fragment in a["name"] and a["namespace"] == "serve")


def hosts(ray) -> dict[str, dict]:
    """Every live session host's describe() view, by actor name."""
    return {name: ray.get(ray.get_actor(name, namespace="serve").describe.remote())
            for name in named_actors(ray, "voi_host_")}


async def echo_turn(client: VoiClient, text: str) -> str:
    """One typed turn; the reply's text (the echo agent says what it was told)."""
    await client.send({"type": "text", "content": text})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert items[-1].is_status("response_done"), [i.header for i in items if i.type != "audio"]
    return text_of([i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1])


async def logged_since(server: Server, offset: int, needle: str, timeout: float = 10.0) -> str:
    """The server log written after byte ``offset``, once ``needle`` is in it (Ray forwards a session host's
    lines to the log with a delay) or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        written = server.log_path.read_bytes()[offset:].decode(errors="replace")
        if needle in written or time.monotonic() > deadline:
            return written
        await asyncio.sleep(0.2)


RECORDINGS = ROOT / "tests" / ".cache" / "recordings"  # the 'recorded' agent's directory (agents.yaml)


async def ended(conversation_id: str, timeout: float = 20.0) -> Conversation:
    """The conversation's recording once its 'end' line is written (the writer thread works behind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (RECORDINGS / conversation_id).is_dir():
            c = load_conversation(RECORDINGS, conversation_id)
            if c.lines and c.lines[-1].get("event") == "end":
                return c
        await asyncio.sleep(0.2)
    raise AssertionError(f"recording {conversation_id} did not end")


async def phone_turn(caller: TwilioCaller, text: str, timeout: float = 60) -> tuple[float, float, str]:
    """The caller says ``text`` (Piper) and hears the reply out: (when its speech ended, when the reply's first
    audio came, the reply as the caller heard it, transcribed)."""
    heard_from = len(caller.heard)
    said_at = await caller.say(speech_pcm16k(text))  # the line goes on with silence
    first = await caller.wait_media_after(said_at, timeout)
    await caller.wait_played_out(quiet_s=1.5, timeout=timeout)
    return said_at, first, transcribe_pcm16k(to_16k(caller.heard_since(heard_from)))
