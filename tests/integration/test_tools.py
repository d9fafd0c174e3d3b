"""Tools on the real graph: an agent with http tools (a loopback tool server) and MCP servers (stdio, started by
the session host, and streamable HTTP), the LLM a scripted OpenAI-compatible server reached through LiteLLM
that asks for tool calls as providers stream them. Only the LLM is scripted: the Whisper, the tool executors,
the MCP SDK, the Conversation and the transports are the real ones."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from harness.mcp_test_server import McpHttpServer, read_events
from harness.scripted_llm import API_KEY, ScriptedLlm
from harness.server import ROOT, TEST_SECRET, Server, start_server
from harness.speech import speech_pcm16k
from harness.tool_server import ToolRequest, ToolServer
from protocol.client import Received, VoiClient
from protocol.tokens import issue_token
from tests.integration.conftest import TEST_MODELS
from tests.integration.helpers import ends_response, expect_refused, start_session, text_of

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

FILLER = "One moment, let me check."
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
SECONDS = {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}
NOTHING = {"type": "object", "properties": {}}


def http_tool(name: str, url: str, parameters: dict, **extra: object) -> dict:
    return {"type": "http", "name": name, "description": f"The {name} tool.", "parameters": parameters, "url": url,
            "method": "GET", **extra}


@pytest.fixture(scope="module")
def tools() -> AsyncIterator[ToolServer]:
    server = ToolServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mcp_http() -> AsyncIterator[McpHttpServer]:
    server = McpHttpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "events.jsonl"


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory: pytest.TempPathFactory, scripted_llm: ScriptedLlm, tools: ToolServer,
                 mcp_http: McpHttpServer, events_file: Path) -> AsyncIterator[Server]:
    """One graph for this module: the agent ``concierge`` with every kind of tool."""
    directory = tmp_path_factory.mktemp("tools")
    concierge = {
        "llm_model": "scripted-model", "system_prompt": "You are a concierge. Use your tools.",
        "voices": {"character": {"model": "piper-joe", "voice": "joe"}},
        "tool_filler_after_s": 1.0, "tool_fillers": [FILLER],
        "tools": [http_tool("weather", f"{tools.url}/weather", CITY),
                  http_tool("nap", f"{tools.url}/slow", SECONDS), http_tool("rest", f"{tools.url}/slow", SECONDS),
                  http_tool("broken", f"{tools.url}/error", NOTHING),
                  http_tool("stuck", f"{tools.url}/hang", NOTHING, timeout_s=1.0),
                  http_tool("huge", f"{tools.url}/big", NOTHING, result="text", max_result_chars=2000)],
        "mcp_servers": [
            {"name": "orders", "command": [sys.executable, "-m", "harness.mcp_test_server", "--events", str(events_file)],
             "env": {"PYTHONPATH": "PYTHONPATH"}, "allow": ["lookup_order", "fail", "slow"]},
            {"name": "clock", "url": mcp_http.url, "allow": ["get_time"]}],
    }
    agents = {"agents": {"concierge": concierge},
              "client_agent_config": {"allow_new_agents": True, "allowed_llm_models": ["echo", "scripted-model"]}}
    path = directory / "agents.yaml"
    path.write_text(yaml.safe_dump(agents))
    server = start_server(directory / "serve.log", f"agents={path}", f"models={TEST_MODELS}",
                          env_extra={"LITELLM_API_BASE": scripted_llm.url, "LITELLM_API_KEY": API_KEY,
                                     "PYTHONPATH": str(ROOT)})
    yield server
    server.stop()


@pytest.fixture
async def caller(tools_server: Server) -> AsyncIterator[VoiClient]:
    client = await VoiClient.connect(tools_server.ws_url, issue_token(TEST_SECRET, "tools"))
    await start_session(client, "concierge", send_tool_events=True, send_turn_metrics=True, agent_config=None)
    yield client
    await client.close()


async def typed_turn(client: VoiClient, text: str, timeout: float = 60, metrics: bool = True) -> list[Received]:
    """A typed turn, up to its turn_metrics (``metrics``: sent once its speech is done), or its end when it was cut."""
    await client.send({"type": "text", "content": text})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, timeout)
    if metrics and items[-1].is_status("response_done"):
        items += await client.until(lambda r: r.type == "turn_metrics", timeout)
    return items


def reply(items: list[Received]) -> str:
    return text_of([i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1])


def of_type(items: list[Received], kind: str) -> list[dict]:
    return [i.header for i in items if i.type == kind]


async def test_a_spoken_question_gets_an_answer_from_an_http_tool(caller: VoiClient, tools: ToolServer,
                                                                  scripted_llm: ScriptedLlm):
    await caller.send_audio(speech_pcm16k("What is the weather in Lisbon?"))
    await caller.send({"type": "create_response"})
    items = await caller.until(lambda r: r.type == "turn_metrics", 90)
    call, done = of_type(items, "tool_call")[0], of_type(items, "tool_done")[0]
    assert call["name"] == "weather" and call["side"] == "server" and json.loads(call["arguments"]) == {"city": "Lisbon"}
    assert done["ok"] and done["error"] is None and done["elapsed_ms"] >= 0
    assert tools.find("/weather")[-1].args == {"city": "Lisbon"}
    answer = reply(items)
    assert "sunny" in answer and "21" in answer, answer
    assert any(i.type == "audio" for i in items)
    assert of_type(items, "turn_metrics")[-1]["tool_ms"] is not None
    # the next turn knows what was looked up: the LLM is shown the call and its result
    await typed_turn(caller, "Thanks, and tomorrow?")
    shown = scripted_llm.find("Thanks, and tomorrow?")[-1].body["messages"]
    assert any(m["role"] == "tool" and "sunny" in m["content"] for m in shown)
    assert any(m["role"] == "assistant" and m.get("tool_calls") for m in shown)


async def test_mcp_tools_over_stdio_and_streamable_http(caller: VoiClient, mcp_http: McpHttpServer, events_file: Path):
    items = await typed_turn(caller, 'Please call lookup_order with {"order_id": "A100"}')
    assert of_type(items, "tool_done")[0]["ok"] and "shipped" in reply(items)
    assert any(e.get("tool") == "lookup_order" and e.get("order_id") == "A100" for e in read_events(events_file))
    items = await typed_turn(caller, "What is the time in Rome?")
    assert of_type(items, "tool_call")[0]["name"] == "get_time"
    assert "12:00 in Rome" in reply(items)
    assert any(e.get("tool") == "get_time" and e.get("city") == "Rome" for e in mcp_http.events)


async def test_two_calls_of_one_step_run_at_once(caller: VoiClient, tools: ToolServer):
    items = await typed_turn(caller, 'call nap with {"seconds": 1.5} and call rest with {"seconds": 1.5}')
    assert sorted(d["name"] for d in of_type(items, "tool_done")) == ["nap", "rest"]
    first, second = tools.find("/slow")[-2:]
    assert first.started < second.ended and second.started < first.ended  # the calls overlapped
    tool_ms = of_type(items, "turn_metrics")[-1]["tool_ms"]
    assert tool_ms < 0.85 * 3000, tool_ms  # about the longer call, not the sum of both


async def test_a_slow_tool_gets_a_filler_then_the_answer(caller: VoiClient):
    items = await typed_turn(caller, 'call nap with {"seconds": 3}')
    done_at = next(i for i, item in enumerate(items) if item.type == "tool_done")
    filler = [i for i, item in enumerate(items) if item.type == "message" and text_of(item) == FILLER]
    assert filler and filler[0] < done_at, [i.header for i in items if i.type != "audio"]
    filler_audio = [i for i, item in enumerate(items) if item.type == "audio" and i < done_at]
    assert filler_audio, "the filler was not spoken before the tool answered"
    answer = reply(items)
    assert answer.startswith(FILLER) and "slept" in answer, answer


async def in_flight(tools: ToolServer, seconds: str) -> ToolRequest:
    """The /slow request asked to sleep ``seconds``, once the tool server has it (``tool_call`` is sent before
    the request leaves)."""
    for _ in range(300):
        found = [r for r in tools.find("/slow") if r.args.get("seconds") == seconds]
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no /slow request for {seconds} s reached the tool server")


async def test_an_interrupt_during_a_slow_tool_cancels_it(caller: VoiClient, tools: ToolServer):
    await caller.send({"type": "text", "content": 'call nap with {"seconds": 60}'})
    await caller.send({"type": "create_response"})
    await caller.until(lambda r: r.type == "tool_call", 60)
    request = await in_flight(tools, "60")
    await caller.send({"type": "interrupt", "speech_id": None, "interrupted_at": None})
    items = await caller.until(ends_response, 30)
    assert items[-1].is_status("response_cancelled"), items[-1].header
    assert tools.wait_ended("/slow", 15) is request and request.cancelled
    items = await typed_turn(caller, "Hello again")
    assert "hello again" in reply(items).lower()


async def test_a_barge_in_during_a_slow_tool_cancels_it(tools_server: Server, tools: ToolServer):
    client = await VoiClient.connect(tools_server.ws_url, issue_token(TEST_SECRET, "tools"))
    try:
        await start_session(client, "concierge", mode="call", send_tool_events=True, agent_config=None)
        await client.send({"type": "text", "content": 'call rest with {"seconds": 61}'})
        await client.send({"type": "create_response"})
        await client.until(lambda r: r.type == "tool_call", 60)
        await in_flight(tools, "61")
        await client.send_audio(speech_pcm16k("Wait, stop, I have another question.") + b"\x00\x00" * 24_000,
                                realtime=True)
        items = await client.until(ends_response, 60)
        assert items[-1].is_status("response_cancelled"), items[-1].header
        assert any(i.is_status("user_interrupt") for i in items)
        calls = [r for r in tools.find("/slow") if r.args.get("seconds") == "61"]
        assert len(calls) == 1 and tools.wait_ended("/slow", 15) is calls[0] and calls[0].cancelled  # not retried
        items = await client.until(lambda r: r.is_status("response_done"), 60)  # what was said is answered
        assert reply(items).lower().startswith("you said: wait"), reply(items)  # (a pause may split the sentence)
    finally:
        await client.close()


async def test_failing_tools_give_the_llm_an_error_and_the_agent_answers(caller: VoiClient):
    cases = {"broken": ('call broken with {}', "HTTP 500"),
             "stuck": ('call stuck with {}', "timeout"),
             "weather": ('call weather with {"town": 5}', "invalid arguments"),
             "fail": ('call fail with {}', "error")}
    for name, (ask, error) in cases.items():
        items = await typed_turn(caller, ask)
        done = of_type(items, "tool_done")[0]
        assert done["name"] == name and not done["ok"] and error in (done["error"] or "").lower() + done["output"], done
        answer = reply(items).removeprefix(FILLER).strip()  # (a 1 s timeout may meet the 1 s filler)
        assert answer.startswith("Here is what I found.") and "error" in answer.lower(), answer
        assert "Traceback" not in json.dumps(done)


async def test_a_huge_result_is_truncated_and_nothing_breaks(caller: VoiClient, tools: ToolServer):
    items = await typed_turn(caller, "call huge with {}")
    done = of_type(items, "tool_done")[0]
    assert done["ok"] and len(done["output"]) < 2500 and "truncated" in done["output"], done["output"][-120:]
    assert tools.wait_ended("/big", 15).ended is not None  # (that the answer is never read whole into memory:
    # tests/integration/test_tools_executors.py; how much the server got out depends on the kernel's buffers)
    items = await typed_turn(caller, "Still there?")
    assert "still there" in reply(items).lower()


async def test_the_client_may_not_give_an_agent_server_tools(tools_server: Server):
    for field, value in (("tools", [http_tool("peek", "http://169.254.169.254/latest", NOTHING)]),
                         ("mcp_servers", [{"name": "shell", "command": ["sh"]}])):
        client = await VoiClient.connect(tools_server.ws_url, issue_token(TEST_SECRET, "tools"))
        await client.init("my_agent", agent_config={"llm_model": "echo", field: value})
        error = await expect_refused(client, "bad_agent_config", 1008)
        assert f"'{field}'" in error.header["error"]


async def test_voi_client_tools_are_handed_to_the_client(tools_server: Server, tools: ToolServer):
    client = await VoiClient.connect(tools_server.ws_url, issue_token(TEST_SECRET, "tools"))
    door = {"type": "function", "name": "open_door", "description": "Opens a door of the house.",
            "parameters": {"type": "object", "properties": {"door": {"type": "string"}}}}
    try:
        await start_session(client, "concierge", tools=[door], agent_config=None)
        items = await typed_turn(client, 'call open_door with {"door": "front"}', metrics=False)
        call = of_type(items, "tool_call")[0]
        assert call["side"] == "client" and call["name"] == "open_door" and json.loads(call["arguments"]) == {
            "door": "front"}
        assert items[-1].is_status("response_done") and not of_type(items, "tool_done")  # no server tool events asked
        await client.send({"type": "tool_result", "call_id": call["call_id"], "output": {"opened": True}})
        items = await client.until(ends_response, 60)
        assert items[-1].is_status("response_done")
        assert reply(items) == 'Here is what I found. {"opened": true}'
        await client.send({"type": "tool_result", "call_id": call["call_id"], "output": "again"})
        error = await client.until(lambda r: r.type == "error", 30)
        assert error[-1].header["code"] == "unknown_tool_call"
    finally:
        await client.close()


@pytest.mark.browser
def test_the_playground_shows_a_tool_call(tools_server: Server):
    """In real Chromium: the call (name, arguments), then its result and the time it took, in the transcript."""
    from tests.integration.browser import browser_page, no_errors, page_url, screenshot, wait_latency_bar

    with browser_page(None) as page:
        page.goto(page_url(tools_server, agent="concierge"))
        page.locator("#start").wait_for(state="visible", timeout=30_000)
        page.click("#start")
        page.wait_for_function("() => window.voiPlayground.state === 'ready'", timeout=60_000)
        page.fill("#text-input", "What is the weather in Lisbon?")
        page.keyboard.press("Enter")
        wait_latency_bar(page)
        card = page.locator(".msg.tool").last
        assert card.locator(".call").inner_text() == 'weather({"city": "Lisbon"})'
        result = card.locator(".result").inner_text()
        assert "sunny" in result and re.search(r"\(\d+ ms\)$", result), result
        assert "running" not in (card.get_attribute("class") or "")
        assert "sunny" in page.locator(".msg.assistant").last.inner_text()
        no_errors(page)
        screenshot(page, "playground_tool_call")
