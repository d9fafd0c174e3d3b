"""Tool calls in a reply, in the Ray-free Conversation: a scripted stream_llm that calls tools, small tool
executors (the real http and MCP executors and the real LiteLLM path run in the integration tests)."""

import asyncio
import json

from agents.agent import AgentConfig, build_agent
from agents.conversation import Conversation
from agents.history import CANCELLED_RESULT
from agents.prompts import BUILTIN_PATTERNS
from agents.services import Services
from agents.tools.calls import ToolCall, ToolResult
from common.clock import VirtualClock
from llm.tool_calls import ToolCallAssembler, ToolCalls
from protocol import events as ev
from protocol import messages as m
from tests.unit.helpers import Sent, adapter, ask, idle, kinds, send

WEATHER = {"type": "function", "function": {"name": "weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def agent(**extra):
    raw = {"llm_model": "scripted", "system_prompt": "You are Joe.", "voices": {"character": {"model": "piper-joe"}},
           **extra}
    return build_agent(AgentConfig.model_validate(raw), patterns=BUILTIN_PATTERNS, others={}, models=None,
                       source="test", name="joe", base_dir=None)


class Tools:
    """Server-side tools whose calls wait for a gate (or take 10 ms on the conversation's virtual clock), and
    note what happened to them."""

    def __init__(self, names=("weather", "time"), gate: asyncio.Event | None = None) -> None:
        self._names = frozenset(names)
        self.gate = gate
        self.running = 0
        self.most_at_once = 0
        self.cancelled: list[str] = []
        self.calls: list[ToolCall] = []
        self.clock = VirtualClock()  # make() gives them the conversation's

    def definitions(self):
        return [{**WEATHER, "function": {**WEATHER["function"], "name": n}} for n in sorted(self._names)]

    def names(self):
        return self._names

    async def call(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            else:
                await self.clock.sleep(0.01)
            return ToolResult(call.id, call.name, json.dumps({"tool": call.name, "args": json.loads(call.arguments)}),
                              ok=True, elapsed_ms=10.0)
        except asyncio.CancelledError:
            self.cancelled.append(call.id)
            raise
        finally:
            self.running -= 1


def make(rounds, tools=None, init=None, **agent_fields):
    """``rounds``: what the LLM streams on each call: text pieces and ToolCalls; on a virtual clock."""
    out, requests, clock = Sent(), [], VirtualClock()
    if tools is not None:
        tools.clock = clock
    rounds = list(rounds)

    async def stream_llm(request):
        requests.append(request)
        for piece in rounds.pop(0):
            yield piece
            await asyncio.sleep(0)

    async def speak(text, voice, tone, cached):
        yield b"\x01\x00" * 2400

    async def transcribe(pcm, prompt):
        raise AssertionError("no audio in these tests")

    conv = Conversation(agent_name="joe", agent=agent(**agent_fields), services=Services(transcribe, speak, None, stream_llm),
                        init=init or m.Init(agent_name="joe", init_greeting=False), emit=out.emit, tools=tools,
                        clock=clock)
    return conv, out, requests


def calls(*pairs):
    return ToolCalls(tuple(ToolCall(f"call_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(pairs)))


def of(out, kind):
    return [e for e in out.events if isinstance(e, kind)]


def reply_text(out):
    return [e for e in out.events if isinstance(e, ev.Message) and e.role == "assistant"][-1].text


async def test_a_server_tool_result_goes_back_to_the_llm_and_the_answer_is_spoken():
    tools = Tools()
    conv, out, requests = make([["Let me look. ", calls(("weather", {"city": "Lisbon"}))], ["It is sunny in Lisbon."]],
                               tools)
    await conv.start()
    await ask(conv, "Weather in Lisbon?")
    assert reply_text(out) == "Let me look. It is sunny in Lisbon."
    assert [e.name for e in of(out, ev.ToolCallStarted)] == ["weather"] and not of(out, ev.ToolCallStarted)[0].client
    done = of(out, ev.ToolCallDone)[0]
    assert done.ok and "Lisbon" in done.output
    assert requests[0].tools and requests[0].tools[0]["function"]["name"] == "time"
    second = requests[1].messages
    assert second[-2]["role"] == "assistant" and second[-2]["content"] == "Let me look."
    assert second[-2]["tool_calls"][0]["function"]["name"] == "weather"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_0", "content": done.output}
    statuses = [e for e in out.events if isinstance(e, (ev.ResponseCreated, ev.ResponseDone, ev.ResponseCancelled))]
    assert [type(s).__name__ for s in statuses] == ["ResponseCreated", "ResponseDone"]
    # the next turn knows what was looked up
    history = conv.history.for_llm(False)
    assert [h["role"] for h in history] == ["user", "assistant", "tool", "assistant"]
    await conv.close()


async def test_calls_of_one_step_run_at_once():
    tools = Tools()
    conv, out, _ = make([[calls(("weather", {"city": "A"}), ("time", {"city": "B"}))], ["Both done."]], tools)
    await conv.start()
    await ask(conv, "Two things")
    assert tools.most_at_once == 2
    assert reply_text(out) == "Both done."
    await conv.close()


async def test_a_slow_tool_gets_one_filler_then_the_answer():
    gate = asyncio.Event()
    tools = Tools(gate=gate)
    conv, out, _ = make([[calls(("weather", {"city": "Oslo"}))], ["It snows in Oslo."]], tools,
                        tool_filler_after_s=0.01, tool_fillers=["Hold on a second."])
    await conv.start()
    await conv.handle(m.Text("Oslo?"))
    await conv.handle(m.CreateResponse())
    await conv.clock.advance(0.01)
    assert reply_text(out) == "Hold on a second."
    gate.set()
    await idle(conv)
    assert reply_text(out) == "Hold on a second. It snows in Oslo."
    assert [m["role"] for m in conv.history.for_llm(False)][-3:] == ["assistant", "tool", "assistant"]
    assert conv.history.for_llm(False)[-3]["content"] == "Hold on a second."  # said before the result came
    assert len([e for e in out.events if isinstance(e, ev.AudioChunk)]) >= 2
    await conv.close()


async def test_an_interrupt_during_a_tool_call_cancels_the_call_and_the_reply():
    tools = Tools(gate=asyncio.Event())  # never answers
    conv, out, _ = make([["One sec. ", calls(("weather", {"city": "Rome"}))], ["Hello again."]], tools,
                        tool_filler_after_s=30)
    await conv.start()
    await conv.handle(m.Text("Rome?"))
    await conv.handle(m.CreateResponse())
    await conv.clock.advance(0)
    assert tools.calls
    await conv.handle(m.Interrupt(None, None))
    await idle(conv)
    assert tools.cancelled == ["call_0"]
    assert isinstance([e for e in out.events if isinstance(e, (ev.ResponseDone, ev.ResponseCancelled))][-1],
                      ev.ResponseCancelled)
    assert {"role": "tool", "tool_call_id": "call_0", "content": CANCELLED_RESULT} in conv.history.for_llm(False)
    await ask(conv, "And now?")
    assert reply_text(out) == "Hello again."
    await conv.close()


async def test_a_client_tool_is_handed_to_the_client_and_its_result_continues_the_reply():
    init = m.Init(agent_name="joe", init_greeting=False, tools=m.parse_client_tools([{
        "type": "function", "name": "open_door", "description": "Opens the door.",
        "parameters": {"type": "object", "properties": {}}}], "init"))
    conv, out, requests = make([[calls(("open_door", {}))], ["The door is open."]], init=init)
    await conv.start()
    await ask(conv, "Open the door")
    started = of(out, ev.ToolCallStarted)
    assert [(s.name, s.client) for s in started] == [("open_door", True)]
    assert [f.header["type"] for f in out if f.header["type"].startswith("tool")] == ["tool_call"]
    assert requests[0].tools[0]["function"]["name"] == "open_door"
    await conv.handle(m.ToolResult("call_0", '{"opened": true}'))
    await idle(conv)
    assert reply_text(out) == "The door is open."
    assert requests[1].messages[-1] == {"role": "tool", "tool_call_id": "call_0", "content": '{"opened": true}'}
    await conv.handle(m.ToolResult("call_0", "again"))
    assert of(out, ev.Error)[-1].code == "unknown_tool_call"
    await conv.close()


async def test_rounds_are_bounded_and_unknown_tools_get_an_error_result():
    conv, out, requests = make([[calls(("nope", {}))], [calls(("nope", {}))], ["Sorry, I cannot."]], Tools(),
                               max_tool_rounds=3)
    await conv.start()
    await ask(conv, "Loop")
    assert [r.tool_choice for r in requests] == [None, None, "none"]
    assert all(not d.ok and "no tool named" in d.output for d in of(out, ev.ToolCallDone))
    assert reply_text(out) == "Sorry, I cannot."
    await conv.close()


def test_streamed_tool_call_deltas_are_put_together():
    assembler = ToolCallAssembler()
    assembler.feed([{"index": 0, "id": "a", "function": {"name": "weather", "arguments": '{"ci'}}])
    assembler.feed([{"index": 1, "id": "b", "function": {"name": "time", "arguments": ""}}])
    assembler.feed([{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}, {"index": 1, "function": {"arguments": "{}"}}])
    assert assembler.calls() == (ToolCall("a", "weather", '{"city": "Oslo"}'), ToolCall("b", "time", "{}"))


def test_a_client_may_not_give_an_agent_server_tools():
    import pytest

    from common.config_errors import ConfigError

    for field in ("tools", "mcp_servers"):
        with pytest.raises(ConfigError, match=f"field '{field}': not allowed here"):
            agent(**{field: [{"type": "http", "name": "x"}]})


# ---- the OpenAI Realtime codec over the same conversation --------------------------------------------

DOOR = {"type": "function", "name": "open_door", "description": "Opens the door.",
        "parameters": {"type": "object", "properties": {"door": {"type": "string"}}}}
ASK = ("conversation.item.create", {"item": {"type": "message", "role": "user",
                                             "content": [{"type": "input_text", "text": "Open the front door"}]}})


async def realtime(a, conv, out, *raw_events):
    """Client events through the adapter to the conversation; the server events that come back, in order."""
    events, first = [], len(out.events)
    for kind, fields in raw_events:
        translation = send(a, kind, **fields)
        events += translation.events
        for msg in translation.messages:
            await conv.handle(msg)
    await idle(conv)
    for event in out.events[first:]:
        events += a.outbound(event)
    return events


async def test_realtime_function_call_round_trip_in_both_dialects():
    for dialect in ("ga", "beta"):
        a = adapter(dialect, turn_detection=None)
        session = send(a, "session.update", session={"tools": [DOOR], "tool_choice": "auto"}).events[0]["session"]
        assert session["tools"] == [DOOR] and session["tool_choice"] == "auto"
        conv, out, requests = make([["Sure. ", calls(("open_door", {"door": "front"}))], ["It is open now."]],
                                   init=a.init("joe"))
        await conv.start()
        asked = await realtime(a, conv, out, ASK, ("response.create", {}))
        names = kinds(asked)
        assert "response.function_call_arguments.delta" in names and "response.function_call_arguments.done" in names
        done = [e for e in asked if e["type"] == "response.done"][-1]["response"]
        call = [o for o in done["output"] if o["type"] == "function_call"][0]
        assert done["status"] == "completed" and call["name"] == "open_door"
        assert json.loads(call["arguments"]) == {"door": "front"}
        assert requests[0].tools[0]["function"]["name"] == "open_door"
        answer = await realtime(a, conv, out, ("conversation.item.create", {"item": {
            "type": "function_call_output", "call_id": call["call_id"], "output": '{"ok": true}'}}), ("response.create", {}))
        transcript = "".join(e.get("delta", "") for e in answer if e["type"].endswith("audio_transcript.delta"))
        assert transcript == "It is open now."
        assert requests[1].messages[-1] == {"role": "tool", "tool_call_id": call["call_id"], "content": '{"ok": true}'}
        await conv.close()


async def test_realtime_tool_choice_none_reaches_the_llm():
    a = adapter(turn_detection=None)
    send(a, "session.update", session={"tools": [DOOR], "tool_choice": "none"})
    conv, out, requests = make([["No tools today."], ["Still none."]], init=a.init("joe"))
    await conv.start()
    await realtime(a, conv, out, ASK, ("response.create", {}))
    assert requests[0].tool_choice == "none"
    await realtime(a, conv, out, ASK, ("response.create", {"response": {"tool_choice": "required"}}))
    assert requests[1].tool_choice == "required"
    await conv.close()
