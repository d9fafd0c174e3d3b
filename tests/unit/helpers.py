"""What the unit tests of the Ray-free Conversation share: an echo agent, what a conversation sent (``Sent``),
a conversation with small injected model callables (``make``), typed turns (``ask``) and readers of the frames.
Test modules import from here, never from each other."""

import dataclasses
import json
from pathlib import Path

from agents.agent import AgentConfig, build_agent
from agents.conversation import Conversation
from agents.services import Services, SessionPolicy
from common.clock import Clock, VirtualClock
from deployments.realtime import realtime_audio
from harness.realtime_types import check_server_event
from protocol import events as ev
from protocol import messages as m
from protocol.realtime import RealtimeAdapter, Translation
from protocol.realtime_events import SessionConfig
from protocol.voi_codec import VoiEncoder, to_frame
from speech.stt import Transcript, Word

AGENT = build_agent(AgentConfig.model_validate({
    "llm_model": "echo",
    "voices": {"character": {"model": "piper-joe", "voice": "joe", "leading_silence": 0.1, "trailing_silence": 0.2}},
    "greetings": {"choices": ["Hello there. Nice to meet you."]},
}), patterns={}, others={}, models=None, source="test", name="echo", base_dir=None)


class Sent(list):
    """What a conversation sent, in order: the frames a Voi client gets (the list), and every event (``events``).
    ``everything``: every event as a Voi-shaped frame, also those the Voi wire never carries."""

    def __init__(self, everything: bool = False) -> None:
        super().__init__()
        self.events: list[ev.ConversationEvent] = []
        self._encoder = VoiEncoder(tool_events=True, client_tools=True)
        self._everything = everything

    async def emit(self, event: ev.ConversationEvent) -> None:
        self.events.append(event)
        frame = to_frame(event) if self._everything else self._encoder.encode(event)
        if frame is not None:
            self.append(frame)


def make(transcripts=("hello world",), fail_tts=False, fail_stt=False, policy=SessionPolicy(), init=None,
         everything=False, clock: Clock | None = None):
    """The conversation and, in order, what it sent: client messages and each answered turn's TurnReport
    (as a ``turn_report`` item with the report's fields; the conversation reports turns apart from ``emit``).
    On a virtual clock unless told otherwise: ``idle`` (and ``ask``) let its time pass."""
    out = Sent(everything)
    heard = list(transcripts)

    async def transcribe(pcm: bytes, prompt):
        if fail_stt:
            raise RuntimeError("stt down")
        text = heard.pop(0) if heard else ""
        return Transcript(text=text, words=[Word(" " + w, i * 0.3, i * 0.3 + 0.25, 0.9) for i, w in enumerate(text.split())])

    async def speak(text, voice, tone, cached):
        if fail_tts:
            raise RuntimeError("tts down")
        for _ in text.split():  # 0.1 s of audio per word, in two chunks
            yield b"\x01\x00" * 1200
            yield b"\x01\x00" * 1200

    async def report_turn(report):
        out.append(TurnItem(dataclasses.asdict(report)))

    conv = Conversation(agent_name="echo", agent=AGENT, init=init or m.Init(agent_name="echo", init_greeting=False),
                        services=Services(transcribe, speak), emit=out.emit, report_turn=report_turn, policy=policy,
                        clock=clock or VirtualClock())
    return conv, out


class TurnItem:
    type = "turn_report"

    def __init__(self, header):
        self.header = header


async def ask(conv, text="Hi"):
    """The user types ``text`` and asks for the reply; returns once it is all sent."""
    await conv.handle(m.Text(text))
    await conv.handle(m.CreateResponse())
    await idle(conv)


async def idle(conv):
    """``wait_idle``; on a virtual clock, time jumps from timer to timer meanwhile."""
    if isinstance(conv.clock, VirtualClock):
        await conv.clock.run(conv.wait_idle())
    else:
        await conv.wait_idle()


def statuses(out):
    return [o.header["status"] for o in out if o.type == "status"]


def user_texts(out):
    return [o.header["content"][0]["text"] for o in out if o.type == "message" and o.header["role"] == "user"]


class CheckedAdapter(RealtimeAdapter):
    """The adapter, with each server event it makes checked against the openai SDK's types of its dialect."""

    def inbound(self, raw: str | bytes) -> Translation:
        translation = super().inbound(raw)
        self._check(translation.events)
        return translation

    def outbound(self, msg: m.ServerMessage) -> list[dict]:
        return self._check(super().outbound(msg))

    def session_event(self, kind: str = "session.created") -> dict:
        return self._check([super().session_event(kind)])[0]

    def _check(self, events: list[dict]) -> list[dict]:
        for event in events:
            check_server_event(event, self.events.dialect)
        return events


def adapter(dialect="ga", **config) -> RealtimeAdapter:
    return CheckedAdapter(SessionConfig(model="echo", **config), dialect, realtime_audio(),
                          voices=("joe", "joe_warm"), voice="joe")


def send(a: RealtimeAdapter, event_type: str, **fields):
    return a.inbound(json.dumps({"type": event_type, **fields}))


def kinds(events):
    return [e["type"] for e in events]


# A call on a virtual clock (test_continuation.py, test_speculation.py, ...).
TIMED_VOICES = {"character": {"model": "piper-joe", "voice": "joe"}}
SILENCE = b"\x00\x00" * 16_000  # 1 s


def scripted_services(saying: dict[str, str], clock: Clock, whisper_s: float = 0.0, passes: list[int] | None = None) -> Services:
    """A Whisper that hears ``saying["now"]`` (the test changes it as it speaks; ``whisper_s`` a pass, counted in
    ``passes[0]``) and a TTS that makes 0.2 s of audio a word."""

    async def transcribe(pcm: bytes, prompt):
        if passes is not None:
            passes[0] += 1
        text = saying["now"]
        await clock.sleep(whisper_s)
        return Transcript(text, [Word(" " + w, i * 0.2, i * 0.2 + 0.15, 0.9) for i, w in enumerate(text.split())])

    async def speak(text, voice, tone, cached):
        for _ in text.split():
            yield b"\x01\x00" * 4_800

    return Services(transcribe, speak)


def timed_agent(**fields):
    return build_agent(AgentConfig.model_validate({"llm_model": "echo", "voices": TIMED_VOICES, **fields}), patterns={},
                       others={}, models=None, source="test", name="a", base_dir=Path("."))


def timed_call(saying: dict[str, str], llm_delay_s: float | None = None, mode: str = "call", whisper_s: float = 0.0,
               **turn_taking):
    """A conversation whose Whisper hears ``saying["now"]`` (the test changes it as it speaks), whose TTS makes
    0.2 s of audio a word (Whisper takes ``whisper_s`` a pass) and, with ``llm_delay_s``, an LLM agent whose scripted LLM answers "You said: ..."
    after that delay (else the echo agent); turn reports are ``TurnItem``s in ``out``, every event in
    ``out.events``. Returns the conversation, ``out``, its virtual clock and the LLM's requests (user text)."""
    out, clock = Sent(everything=True), VirtualClock()
    asked: list[str] = []
    services = scripted_services(saying, clock, whisper_s)

    async def stream_llm(request):
        asked.append(request.messages[-1]["content"])
        await clock.sleep(llm_delay_s or 0.0)
        yield f"You said: {request.messages[-1]['content']}"

    model = {"llm_model": "openai/scripted"} if llm_delay_s is not None else {}

    async def report_turn(report):
        out.append(TurnItem(dataclasses.asdict(report)))

    conv = Conversation(agent_name="a", agent=timed_agent(**model, **({"turn_taking": turn_taking} if turn_taking else {})),
                        init=m.Init(agent_name="a", mode=mode, init_greeting=False),
                        services=dataclasses.replace(services, stream_llm=stream_llm), emit=out.emit,
                        report_turn=report_turn, clock=clock)
    return conv, out, clock, asked


async def say(conv: Conversation, clock: VirtualClock, pcm: bytes) -> None:
    """At real-time pace, in 0.128 s frames."""
    for offset in range(0, len(pcm), 4096):
        await conv.handle(m.Audio(pcm[offset : offset + 4096]))
        await clock.advance(0.128)


def reply_statuses(out: Sent) -> list[str]:
    """The replies' and barge-ins' statuses, in order."""
    kinds = (ev.ResponseCreated, ev.ResponseDone, ev.ResponseCancelled, ev.UserInterrupt)
    names = {ev.ResponseCreated: "response_created", ev.ResponseDone: "response_done",
             ev.ResponseCancelled: "response_cancelled", ev.UserInterrupt: "user_interrupt"}
    return [names[type(e)] for e in out.events if isinstance(e, kinds)]


def user_messages(out: Sent) -> list[ev.Message]:
    return [e for e in out.events if isinstance(e, ev.Message) and e.role == "user"]


def turn_reports(out: Sent) -> list[dict]:
    return [o.header for o in out if o.type == "turn_report"]


def assistant_texts(out: Sent) -> list[str]:
    """The last text of each assistant message."""
    last = {e.id: e.text for e in out.events if isinstance(e, ev.Message) and e.role == "assistant"}
    return list(last.values())
