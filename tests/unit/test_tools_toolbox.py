"""agents/tools: a Toolbox's calls against an in-memory http transport (no sockets): argument parsing and schema
checks, URL placeholders and query encoding, results cut at their limit, errors the LLM can read. Milliseconds; the
real servers (cancellation, timeouts, MCP) are in tests/integration/test_tools_executors.py."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from mcp_types import CallToolResult, ImageContent, TextContent

from agents.tools.calls import TRUNCATION_MARKER, ToolCall, clip
from agents.tools.http_tool import ToolFailure, _fill_url, _query
from agents.tools.mcp_client import result_text
from agents.tools.spec import HttpToolSpec
from agents.tools.toolbox import Toolbox, http_entry, parse_arguments, tool_entry


def weather_spec(**fields) -> HttpToolSpec:
    base = {"name": "get_weather", "description": "The weather in a city.", "url": "https://api.example/weather",
            "method": "GET", "parameters": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1},
                                                                           "days": {"type": "integer", "maximum": 7}},
                                            "required": ["city"], "additionalProperties": False}}
    return HttpToolSpec.model_validate({**base, **fields})


class Api:
    """An in-memory http server: records each request and answers with ``respond``."""

    def __init__(self, respond=None) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond or (lambda request: httpx.Response(200, json={"ok": True}))

    def toolbox(self, *specs: HttpToolSpec) -> Toolbox:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.respond(request)

        client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
        return Toolbox({spec.name: http_entry(spec, client) for spec in specs}, owned=client)


def call(name: str, arguments: str | dict, call_id: str = "call_1") -> ToolCall:
    return ToolCall(call_id, name, arguments if isinstance(arguments, str) else json.dumps(arguments))


async def test_definitions_are_in_the_openai_tools_format():
    box = Api().toolbox(weather_spec())
    assert box.names() == frozenset({"get_weather"})
    [definition] = box.definitions()
    assert definition == {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                                           "parameters": weather_spec().parameters}}
    await box.aclose()


async def test_a_call_sends_the_arguments_and_shows_the_answer():
    api = Api(lambda request: httpx.Response(200, json={"city": "Oslo", "forecast": "snow"}))
    box = api.toolbox(weather_spec())
    result = await box.call(call("get_weather", {"city": "Oslo", "days": 2}))
    assert result.ok and result.error is None and result.call_id == "call_1" and result.name == "get_weather"
    assert json.loads(result.content) == {"city": "Oslo", "forecast": "snow"} and result.elapsed_ms >= 0
    [request] = api.requests
    assert request.method == "GET" and request.url.params["city"] == "Oslo" and request.url.params["days"] == "2"
    await box.aclose()


async def test_a_get_url_keeps_its_own_query():
    api = Api()
    box = api.toolbox(weather_spec(url="https://api.example/weather?units=metric&lang=en"))
    assert (await box.call(call("get_weather", {"city": "Oslo", "days": 1}))).ok
    assert api.requests[0].url.params.multi_items() == [("units", "metric"), ("lang", "en"), ("city", "Oslo"), ("days", "1")]
    await box.aclose()


@pytest.mark.parametrize("arguments, words", [
    ('{"city": "Oslo"', "not valid JSON"),
    ("[1, 2]", "must be one JSON object"),
    ('"Oslo"', "must be one JSON object"),
    ("[" * 100 + "]" * 100, "nested deeper"),
    ("{}", "'city' is a required property"),
    ('{"city": ""}', "should be non-empty"),
    ('{"city": "Oslo", "days": 30}', "30 is greater than the maximum of 7 (at days)"),
    ('{"city": "Oslo", "when": "now"}', "Additional properties are not allowed"),
])
async def test_bad_arguments_are_an_error_the_llm_reads_and_nothing_is_sent(arguments, words):
    api = Api()
    box = api.toolbox(weather_spec())
    result = await box.call(call("get_weather", arguments))
    assert not result.ok and result.content.startswith("error: ") and words in result.content, result
    assert result.error in ("invalid JSON arguments", "invalid arguments")
    assert api.requests == []
    await box.aclose()


async def test_an_unknown_tool_names_the_tools_there_are():
    box = Api().toolbox(weather_spec())
    result = await box.call(call("get_wether", {}))
    assert not result.ok and result.error == "unknown tool"
    assert "no tool named 'get_wether'" in result.content and "get_weather" in result.content
    await box.aclose()


async def test_empty_arguments_mean_none():
    assert parse_arguments("") == {} and parse_arguments("  ") == {}
    box = Api().toolbox(weather_spec(name="ping", parameters={"type": "object", "properties": {}}))
    assert (await box.call(call("ping", ""))).ok
    await box.aclose()


async def test_http_errors_show_the_status_and_the_start_of_the_body():
    api = Api(lambda request: httpx.Response(404, json={"error": "no such city"}))
    box = api.toolbox(weather_spec())
    result = await box.call(call("get_weather", {"city": "Atlantis"}))
    assert not result.ok and result.error == "HTTP 404"
    assert "HTTP 404" in result.content and "no such city" in result.content
    api.respond = lambda request: httpx.Response(302, headers={"Location": "https://elsewhere.example"})
    result = await box.call(call("get_weather", {"city": "Oslo"}))
    assert not result.ok and result.error == "HTTP 302"  # redirects are not followed
    await box.aclose()


async def test_a_json_tool_that_answers_something_else_is_an_error():
    api = Api(lambda request: httpx.Response(200, text="<html>login</html>"))
    box = api.toolbox(weather_spec())
    result = await box.call(call("get_weather", {"city": "Oslo"}))
    assert not result.ok and result.error == "answer not JSON"
    api.respond = lambda request: httpx.Response(204)
    assert (await box.call(call("get_weather", {"city": "Oslo"}))).content == "(empty answer)"
    await box.aclose()


async def test_long_answers_are_cut_with_a_marker():
    api = Api(lambda request: httpx.Response(200, text="é" * 50_000))
    box = api.toolbox(weather_spec(result="text", max_result_chars=1000))
    result = await box.call(call("get_weather", {"city": "Oslo"}))
    assert result.ok and result.content == "é" * 1000 + TRUNCATION_MARKER.format(limit=1000)
    api.respond = lambda request: httpx.Response(200, json={"items": list(range(10_000))})
    box = api.toolbox(weather_spec(max_result_chars=100))
    result = await box.call(call("get_weather", {"city": "Oslo"}))
    assert result.ok and result.content.startswith('{"items":[0,1,2') and result.content.endswith("100 characters]")
    await box.aclose()


async def test_post_sends_a_json_body_without_the_url_placeholders():
    api = Api(lambda request: httpx.Response(200, json={"status": "shipped"}))
    spec = HttpToolSpec(name="order", description="An order.", method="POST", url="https://shop.example/orders/{order_id}",
                        parameters={"type": "object", "properties": {"order_id": {"type": "string"},
                                                                     "verbose": {"type": "boolean"}},
                                    "required": ["order_id"]})
    box = api.toolbox(spec)
    assert (await box.call(call("order", {"order_id": "a/b c", "verbose": True}))).ok
    [request] = api.requests
    assert request.url.raw_path == b"/orders/a%2Fb%20c" and json.loads(request.content) == {"verbose": True}
    result = await box.call(call("order", {"order_id": ".."}))
    assert not result.ok and "must not be empty, '.' or '..'" in result.content and len(api.requests) == 1
    await box.aclose()


def test_placeholders_and_query_values():
    url, rest = _fill_url("https://a.example/{x}/{y}?k=1", {"x": 5, "y": "é/?", "z": 1})
    assert url == "https://a.example/5/%C3%A9%2F%3F?k=1" and rest == {"z": 1}
    assert _query({"a": True, "b": None, "c": [1, "x"], "d": {"e": 1}, "f": 1.5}) == \
        {"a": True, "c": [1, "x"], "d": '{"e":1}', "f": 1.5}


async def test_secret_headers_are_read_from_the_environment_at_call_time(monkeypatch, caplog):
    caplog.set_level("DEBUG")
    api = Api(lambda request: httpx.Response(200, json={"ok": True}))
    box = api.toolbox(weather_spec(secret_headers={"X-Api-Key": "VOI_TEST_TOOL_KEY"}, headers={"Accept": "application/json"}))
    monkeypatch.delenv("VOI_TEST_TOOL_KEY", raising=False)
    result = await box.call(call("get_weather", {"city": "Oslo"}))
    assert not result.ok and result.error == "tool not configured" and api.requests == []
    monkeypatch.setenv("VOI_TEST_TOOL_KEY", "sk-unit-secret-value")
    assert (await box.call(call("get_weather", {"city": "Oslo"}))).ok
    assert api.requests[-1].headers["x-api-key"] == "sk-unit-secret-value"
    assert api.requests[-1].headers["accept"] == "application/json"
    assert "sk-unit-secret-value" not in caplog.text
    await box.aclose()


async def test_an_unexpected_failure_is_a_short_error_without_a_traceback(caplog):
    def explode(request):
        raise RuntimeError("secret internals")

    box = Api(explode).toolbox(weather_spec())
    result = await box.call(call("get_weather", {"city": "Oslo"}))
    assert not result.ok and result.content == "error: the tool failed" and result.error == "tool failed"
    assert "secret internals" not in result.content
    await box.aclose()


def test_clip():
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "abc" + TRUNCATION_MARKER.format(limit=3)
    assert clip("ab", 3, cut=True).startswith("ab\n[truncated")


def test_mcp_results_as_text():
    result = CallToolResult(content=[TextContent(text="one"), ImageContent(data="AAAA", mime_type="image/png"),
                                     TextContent(text="two")])
    assert result_text(result, 100) == "one\n[image omitted]\ntwo"
    assert result_text(CallToolResult(content=[], structured_content={"a": 1}), 100) == '{"a":1}'
    assert result_text(CallToolResult(content=[]), 100) == "(empty result)"
    assert result_text(CallToolResult(content=[TextContent(text="z" * 500)]), 100).endswith("100 characters]")


async def test_a_fake_tool_and_cancellation_pass_through():
    started = asyncio.Event()

    async def add(arguments):
        if arguments["a"] < 0:
            raise ToolFailure("error: only positive numbers", "negative")
        if arguments["a"] == 0:
            started.set()
            await asyncio.Event().wait()  # hangs until cancelled
        return str(arguments["a"] + arguments["b"])

    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}
    box = Toolbox({"add": tool_entry("add", "Adds two numbers.", schema, add)})
    assert (await box.call(call("add", {"a": 2, "b": 3}))).content == "5"
    failed = await box.call(call("add", {"a": -1, "b": 3}))
    assert (failed.ok, failed.content, failed.error) == (False, "error: only positive numbers", "negative")
    task = asyncio.create_task(box.call(call("add", {"a": 0, "b": 0})))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # never turned into a result
        await task
