"""agents/tools against real servers, Ray-free: http tools against the loopback tool server
(harness/tool_server.py), MCP tools against the SDK-written test server (harness/mcp_test_server.py) over stdio
(a subprocess) and streamable HTTP (a thread). Cancellation is checked where it matters, on the server: a cancelled
call's request is seen closed (http) or its handler cancelled (MCP). Seconds, not minutes; every bound is generous
(a loaded 2-core machine) and no test asserts a tight wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.tools.calls import ToolCall, ToolResult
from agents.tools.spec import HttpToolSpec, McpServerSpec
from agents.tools.toolbox import McpHub, Toolbox, probe_mcp_servers
from common.config_errors import ConfigError
from harness.mcp_test_server import McpHttpServer, read_events
from harness.tool_server import BIG_BYTES, ToolServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-test-3f9a8c7e1d2b4a6f"
OBJECT = {"type": "object", "properties": {}}


@pytest.fixture(scope="module")
def tool_server():
    server = ToolServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mcp_http():
    server = McpHttpServer().start()
    yield server
    server.stop()


@pytest.fixture
def events(tmp_path, monkeypatch) -> Path:
    """The stdio test server's event file; the server finds the repo through PYTHONPATH passed via ``env``."""
    monkeypatch.setenv("VOI_TEST_PYTHONPATH", str(ROOT))
    return tmp_path / "events.jsonl"


def stdio_spec(events: Path, **fields) -> McpServerSpec:
    return McpServerSpec.model_validate({
        "name": "local", "command": [sys.executable, "-m", "harness.mcp_test_server", "--events", str(events)],
        "env": {"PYTHONPATH": "VOI_TEST_PYTHONPATH"}, "connect_timeout_s": 30, **fields})


def http_tool(server: ToolServer, path: str, *, name: str = "t", method: str = "GET", parameters: dict | None = None,
              **fields) -> HttpToolSpec:
    return HttpToolSpec.model_validate({"name": name, "description": "A test tool.", "url": f"{server.url}{path}",
                                        "method": method, "parameters": parameters or OBJECT, **fields})


def call(name: str, arguments: dict | str | None = None, call_id: str = "c1") -> ToolCall:
    return ToolCall(call_id, name, arguments if isinstance(arguments, str) else json.dumps(arguments or {}))


async def until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.02)


async def cancel_while_running(box: Toolbox, tool_call: ToolCall, started: Callable[[], object]) -> None:
    """Start the call, wait until the server has it, cancel the awaiting task: CancelledError, not a result."""
    task = asyncio.create_task(box.call(tool_call))
    await until(started, what="the call reaching the server")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- http tools

async def test_http_get_and_post_tools(tool_server):
    weather = http_tool(tool_server, "/weather", name="get_weather",
                        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    order = http_tool(tool_server, "/orders/lookup", name="lookup_order", method="POST",
                      parameters={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})
    by_path = http_tool(tool_server, "/orders/{order_id}", name="order_by_id",
                        parameters={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})
    box = Toolbox.of_http((weather, order, by_path))
    try:
        result = await box.call(call("get_weather", {"city": "Oslo"}))
        assert result.ok and json.loads(result.content) == {"city": "Oslo", "forecast": "sunny", "temperature_c": 21}
        assert tool_server.find("/weather")[-1].args == {"city": "Oslo"}
        result = await box.call(call("lookup_order", {"order_id": "A100"}))
        assert result.ok and json.loads(result.content)["status"] == "shipped"
        assert tool_server.find("/orders/lookup")[-1].method == "POST"
        result = await box.call(call("order_by_id", {"order_id": "B200"}))
        assert result.ok and json.loads(result.content)["status"] == "processing"
        result = await box.call(call("order_by_id", {"order_id": "Z9"}))
        assert not result.ok and result.error == "HTTP 404" and "no order Z9" in result.content
    finally:
        await box.aclose()


async def test_http_500_and_an_unreachable_server_are_errors_the_llm_reads(tool_server):
    box = Toolbox.of_http((http_tool(tool_server, "/error", name="broken"),
                           HttpToolSpec(name="nowhere", description="d", parameters=OBJECT, url="http://127.0.0.1:9/x")))
    try:
        result = await box.call(call("broken"))
        assert not result.ok and result.error == "HTTP 500"
        assert result.content.startswith("error: the tool's server answered HTTP 500") and "database is down" in result.content
        result = await box.call(call("nowhere"))
        assert not result.ok and result.error == "connection failed" and result.content.startswith("error: ")
    finally:
        await box.aclose()


async def test_http_timeout_closes_the_request(tool_server):
    box = Toolbox.of_http((http_tool(tool_server, "/hang", name="hang", timeout_s=0.5),))
    try:
        result = await box.call(call("hang"))
        assert not result.ok and result.error == "timeout" and "did not answer within 0.5 s" in result.content
        await until(lambda: tool_server.find("/hang") and tool_server.find("/hang")[-1].ended, what="the server's hang-up")
        assert tool_server.find("/hang")[-1].cancelled
    finally:
        await box.aclose()


async def test_a_cancelled_http_call_is_seen_cancelled_by_the_server(tool_server):
    box = Toolbox.of_http((http_tool(tool_server, "/slow", name="slow", method="POST", timeout_s=60,
                                     parameters={"type": "object", "properties": {"seconds": {"type": "number"}}}),))
    before = len(tool_server.find("/slow"))
    try:
        await cancel_while_running(box, call("slow", {"seconds": 30}), lambda: len(tool_server.find("/slow")) > before)
        record = tool_server.find("/slow")[-1]
        await until(lambda: record.ended is not None, what="the server seeing the hang-up")
        assert record.cancelled and record.ended - record.started < 20  # not the 30 s it would have slept
    finally:
        await box.aclose()


async def test_a_10_mb_answer_is_cut_without_being_read_whole(tool_server):
    box = Toolbox.of_http((http_tool(tool_server, "/big", name="big", result="text", max_result_chars=2000),))
    try:
        tracemalloc.start()
        result = await box.call(call("big"))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.ok and result.content.startswith("x" * 2000) and "[truncated" in result.content
        assert len(result.content) < 2100
        assert peak < BIG_BYTES // 4, f"{peak} bytes at the peak: the answer was read whole"
    finally:
        await box.aclose()
    # 10 MB fit in loopback socket buffers; 100 MB do not: the server sees the client stop reading and hang up
    box = Toolbox.of_http((http_tool(tool_server, f"/big?bytes={10 * BIG_BYTES}", name="huge", result="text"),))
    try:
        assert (await box.call(call("huge"))).ok
        record = tool_server.find("/big")[-1]
        await until(lambda: record.ended is not None, what="the huge answer's end")
        assert record.cancelled and record.bytes_sent < 10 * BIG_BYTES, "the client read the whole answer"
    finally:
        await box.aclose()


async def test_a_secret_header_is_sent_and_never_logged_or_shown(tool_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's included
    monkeypatch.setenv("VOI_TEST_SECRET", SECRET)
    weather = http_tool(tool_server, "/weather", name="weather", secret_headers={"X-Api-Key": "VOI_TEST_SECRET"},
                        parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    failing = http_tool(tool_server, "/error", name="failing", secret_headers={"Authorization": "VOI_TEST_SECRET"})
    slow = http_tool(tool_server, "/hang", name="hanging", timeout_s=0.3, secret_headers={"Authorization": "VOI_TEST_SECRET"})
    box = Toolbox.of_http((weather, failing, slow))
    try:
        results = [await box.call(call("weather", {"city": "Oslo"})), await box.call(call("failing")),
                   await box.call(call("hanging"))]
    finally:
        await box.aclose()
    assert [r.ok for r in results] == [True, False, False]
    assert tool_server.find("/weather")[-1].headers["x-api-key"] == SECRET
    assert tool_server.find("/error")[-1].headers["authorization"] == SECRET
    for result in results:
        assert SECRET not in result.content and SECRET not in (result.error or "")
    assert caplog.records and SECRET not in caplog.text


async def test_two_concurrent_http_calls_take_about_the_longer_one(tool_server):
    box = Toolbox.of_http((http_tool(tool_server, "/slow", name="slow", timeout_s=30,
                                     parameters={"type": "object", "properties": {"seconds": {"type": "number"}}}),))
    try:
        await box.call(call("slow", {"seconds": 0}))  # a warm connection pool, so both calls start alike
        started = time.perf_counter()
        results = await asyncio.gather(box.call(call("slow", {"seconds": 1.5}, "a")), box.call(call("slow", {"seconds": 1.5}, "b")))
        elapsed = time.perf_counter() - started
    finally:
        await box.aclose()
    assert all(r.ok for r in results)
    assert 1.5 <= elapsed < 0.85 * 3.0, f"{elapsed:.2f} s for two calls of 1.5 s: they did not overlap"


# ---------------------------------------------------------------- MCP over stdio

def results_by_id(results: list[ToolResult]) -> dict[str, ToolResult]:
    return {r.call_id: r for r in results}


async def test_mcp_stdio_tools_calls_and_errors(events):
    hub = McpHub()
    try:
        box = await hub.toolbox((), (stdio_spec(events, allow=["lookup_order", "fail", "get_time"], max_result_chars=100),))
        assert box.names() == {"lookup_order", "fail", "get_time"}  # the allow-list, not all seven
        definition = next(d for d in box.definitions() if d["function"]["name"] == "lookup_order")
        assert definition["type"] == "function" and "order" in definition["function"]["description"].lower()
        assert definition["function"]["parameters"]["required"] == ["order_id"]
        ok = await box.call(call("lookup_order", {"order_id": "A100"}))
        assert ok.ok and json.loads(ok.content) == {"order_id": "A100", "status": "shipped", "items": 2}
        failed = await box.call(call("fail"))
        assert not failed.ok and failed.error == "tool error" and "the order system is down" in failed.content
        assert failed.content.startswith("error: ")
        unknown = await box.call(call("lookup_order", {"order_id": "Z1"}))
        assert not unknown.ok and "no order Z1" in unknown.content
        hidden = await box.call(call("slow", {"seconds": 1}))
        assert not hidden.ok and hidden.error == "unknown tool"  # listed by the server, not allowed for this agent
        invalid = await box.call(call("get_time", {"town": "Oslo"}))
        assert not invalid.ok and invalid.error == "invalid arguments" and "'city' is a required property" in invalid.content
        assert [e["tool"] for e in read_events(events) if e["event"] == "call"] == ["lookup_order", "fail", "lookup_order"]
    finally:
        await hub.aclose()


async def test_mcp_stdio_cancelled_and_timed_out_calls_are_cancelled_on_the_server(events):
    hub = McpHub()
    try:
        box = await hub.toolbox((), (stdio_spec(events, timeout_s=1.0),))

        def slow_events(kind: str) -> list[dict]:
            return [e for e in read_events(events) if e["tool"] == "slow" and e["event"] == kind]

        await cancel_while_running(box, call("slow", {"seconds": 30}), lambda: slow_events("started"))
        await until(lambda: slow_events("cancelled"), what="the server cancelling the slow tool")
        result = await box.call(call("slow", {"seconds": 30}))  # past its 1 s timeout
        assert not result.ok and result.error == "timeout" and "within 1 s" in result.content
        await until(lambda: len(slow_events("cancelled")) == 2, what="the server cancelling the timed-out call")
        assert slow_events("finished") == []
        quick = await box.call(call("slow", {"seconds": 0.1}))  # the connection is still good
        assert quick.ok and quick.content == "Waited 0.1 seconds."
    finally:
        await hub.aclose()


async def test_mcp_stdio_concurrent_calls_share_one_server_and_overlap(events):
    hub = McpHub()
    try:
        spec = stdio_spec(events)
        first, second = await hub.toolbox((), (spec,)), await hub.toolbox((), (spec.model_copy(update={"allow": ["slow"]}),))
        started = time.perf_counter()
        results = await asyncio.gather(first.call(call("slow", {"seconds": 1.5}, "a")),
                                       second.call(call("slow", {"seconds": 1.5}, "b")))
        elapsed = time.perf_counter() - started
        assert all(r.ok for r in results)
        assert 1.5 <= elapsed < 0.85 * 3.0, f"{elapsed:.2f} s for two calls of 1.5 s: they did not overlap"
        assert len({e["pid"] for e in read_events(events)}) == 1  # one process for both conversations
    finally:
        await hub.aclose()


async def test_mcp_stdio_server_that_dies_is_restarted_on_next_use_and_closed_for_good(events):
    hub = McpHub()
    try:
        box = await hub.toolbox((), (stdio_spec(events),))
        died = await box.call(call("crash"))
        assert not died.ok and died.error == "MCP server went away"
        again = await box.call(call("get_time", {"city": "Lima"}))
        assert again.ok and again.content == "It is 12:00 in Lima."
        pids = [e["pid"] for e in read_events(events)]
        assert len(set(pids)) == 2 and pids[-1] != pids[0]
    finally:
        started = time.perf_counter()
        await hub.aclose()
        assert time.perf_counter() - started < 15
    with pytest.raises(ProcessLookupError):
        os.kill(pids[-1], 0)


async def test_mcp_stdio_env_passes_only_named_variables(events, monkeypatch):
    monkeypatch.setenv("VOI_TEST_HOST_ONLY", "not for the server")
    monkeypatch.setenv("VOI_TEST_FOR_SERVER", "hello server")
    hub = McpHub()
    try:
        box = await hub.toolbox((), (stdio_spec(events, env={"PYTHONPATH": "VOI_TEST_PYTHONPATH",
                                                             "GREETING": "VOI_TEST_FOR_SERVER"}),))
        assert (await box.call(call("env_value", {"name": "GREETING"}))).content == "hello server"
        assert (await box.call(call("env_value", {"name": "VOI_TEST_HOST_ONLY"}))).content == "(unset)"
    finally:
        await hub.aclose()


# ---------------------------------------------------------------- MCP over streamable HTTP

async def test_mcp_http_tools_calls_errors_and_the_secret_header(mcp_http, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("VOI_TEST_MCP_TOKEN", SECRET)
    hub = McpHub()
    try:
        box = await hub.toolbox((), (McpServerSpec(name="remote", url=mcp_http.url, secret_headers={"Authorization": "VOI_TEST_MCP_TOKEN"}),))
        assert box.names() == {"lookup_order", "get_time", "slow", "fail", "big", "env_value"}  # no allow-list: all
        ok = await box.call(call("get_time", {"city": "Oslo"}))
        assert ok.ok and ok.content == "It is 12:00 in Oslo."
        failed = await box.call(call("fail"))
        assert not failed.ok and failed.error == "tool error" and "the order system is down" in failed.content
        long = await box.call(call("big", {"chars": 10_000}))
        assert long.ok and long.content.startswith("y" * 4000) and "[truncated" in long.content
        assert {h.get("authorization") for h in mcp_http.headers} == {SECRET}
        assert SECRET not in caplog.text
    finally:
        await hub.aclose()


async def test_mcp_http_cancelled_call_is_cancelled_on_the_server(mcp_http):
    hub = McpHub()

    def slow_events(kind: str) -> list[dict]:
        return [e for e in mcp_http.events if e["tool"] == "slow" and e["event"] == kind and e["seconds"] == 31]

    try:
        box = await hub.toolbox((), (McpServerSpec(name="remote", url=mcp_http.url, allow=["slow"]),))
        assert box.names() == {"slow"}
        await cancel_while_running(box, call("slow", {"seconds": 31}), lambda: slow_events("started"))
        await until(lambda: slow_events("cancelled"), what="the server cancelling the slow tool")
        assert slow_events("finished") == []
    finally:
        await hub.aclose()


async def test_an_unreachable_remote_server_is_a_warning_and_no_tools(tool_server, caplog):
    caplog.set_level(logging.WARNING)
    hub = McpHub()
    weather = http_tool(tool_server, "/weather", name="get_weather",
                        parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    gone = McpServerSpec(name="gone", url="http://127.0.0.1:9/mcp", connect_timeout_s=5)
    try:
        started = time.perf_counter()
        box = await hub.toolbox((weather,), (gone,))
        assert time.perf_counter() - started < 15
        assert box.names() == {"get_weather"}
        warnings = [r for r in caplog.records if "MCP server gone" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        box = await hub.toolbox((weather,), (gone,))  # the next conversation does not wait for it again
        assert box.names() == {"get_weather"}
        assert len([r for r in caplog.records if "MCP server gone" in r.getMessage()]) == 1
    finally:
        await hub.aclose()
    probe_mcp_servers((gone,), "agents.yaml: agent 'a'")  # a warning, not an error


# ---------------------------------------------------------------- load-time probe

async def test_probe_accepts_a_good_stdio_server_from_inside_an_event_loop(events):
    probe_mcp_servers((stdio_spec(events, allow=["lookup_order", "slow"]),), "agents.yaml: agent 'a'")


@pytest.mark.parametrize("command, words", [
    (["/nonexistent/mcp-server"], "no such command '/nonexistent/mcp-server'"),
    ([sys.executable, "-c", "import sys; print('not an MCP server', file=sys.stderr); sys.exit(2)"],
     "its stderr ends: not an MCP server"),
])
def test_probe_refuses_a_stdio_server_that_does_not_start(tmp_path, command, words):
    spec = McpServerSpec(name="broken", command=command, connect_timeout_s=20)
    with pytest.raises(ConfigError) as info:
        probe_mcp_servers((McpServerSpec(name="fine", url="http://127.0.0.1:9/mcp", connect_timeout_s=2), spec),
                          "agents.yaml: agent 'a'")
    message = str(info.value)
    assert message.startswith("agents.yaml: agent 'a': field 'mcp_servers.1.command': MCP server 'broken' did not start")
    assert words in message, message


def test_probe_refuses_an_allow_list_naming_a_tool_the_server_lacks(events):
    with pytest.raises(ConfigError) as info:
        probe_mcp_servers((stdio_spec(events, allow=["lookup_order", "refund_order"]),), "agents.yaml: agent 'a'")
    message = str(info.value)
    assert "field 'mcp_servers.0.allow.1'" in message and "no tool 'refund_order'" in message and "lookup_order" in message
