"""agents/tools/spec.py: server-side tools as written in agents.yaml and their load-time checks (file, agent and
field in every message; secrets only as environment variable names). Milliseconds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.tools.spec import HttpToolSpec, McpServerSpec, check_tools
from common.config_errors import ConfigError
from common.yaml_files import read_yaml

ENV = {"WEATHER_KEY": "k-123", "MCP_TOKEN": "t-456", "GITHUB_TOKEN": "g-789"}

VALID = """
agents:
  concierge:
    llm_model: gpt-4o-mini
    tools:
      - name: get_weather
        description: The weather in a city today.
        parameters:
          type: object
          properties: {city: {type: string}}
          required: [city]
        url: https://weather.example/v1/today
        method: GET
        headers: {Accept: application/json}
        secret_headers: {X-Api-Key: WEATHER_KEY}
        timeout_s: 3
      - name: order_status
        description: An order's status.
        parameters:
          type: object
          properties: {order_id: {type: string}, verbose: {type: boolean}}
          required: [order_id]
        url: https://shop.example/orders/{order_id}/status
        result: text
        max_result_chars: 500
    mcp_servers:
      - name: github
        command: [npx, -y, some-mcp-server]
        env: {GITHUB_PERSONAL_ACCESS_TOKEN: GITHUB_TOKEN}
        allow: [search_issues]
      - name: remote
        url: https://mcp.example/mcp
        secret_headers: {Authorization: MCP_TOKEN}
        timeout_s: 20
"""


def agent_fields(tmp_path, body: str):
    path = tmp_path / "agents.yaml"
    path.write_text(body)
    agent = read_yaml(path)["agents"]["concierge"]
    return agent.get("tools"), agent.get("mcp_servers"), f"{path}: agent 'concierge'"


def test_a_valid_agent_loads(tmp_path):
    tools, servers, where = agent_fields(tmp_path, VALID)
    http, mcp = check_tools(tools, servers, where, environ=ENV)
    assert [t.name for t in http] == ["get_weather", "order_status"]
    weather, order = http
    assert weather.method == "GET" and weather.secret_headers == {"X-Api-Key": "WEATHER_KEY"} and weather.timeout_s == 3
    assert order.method == "POST" and order.result == "text" and order.placeholders == ("order_id",)
    github, remote = mcp
    assert github.transport == "stdio" and github.allow == ["search_issues"] and github.timeout_s == 10.0
    assert remote.transport == "http" and remote.allow is None
    assert check_tools(None, None, where) == ((), ())
    with pytest.raises(ValidationError):  # frozen
        weather.url = "https://elsewhere.example"  # type: ignore[misc]


def test_connection_key_ignores_what_is_per_agent():
    a = McpServerSpec(name="s", command=["srv"], allow=["x"], timeout_s=3)
    b = McpServerSpec(name="s", command=["srv"], allow=None, max_result_chars=100)
    assert a.connection_key() == b.connection_key()
    assert a.connection_key() != McpServerSpec(name="s", command=["srv", "--other"]).connection_key()


def tool(**fields):
    base = {"name": "t", "description": "A tool.", "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                                                 "required": ["q"]},
            "url": "https://api.example/t"}
    return {**base, **fields}


@pytest.mark.parametrize("tools, servers, field, words", [
    ([tool(name="get weather")], [], "tools.0.name", "letters, digits"),
    ([tool(name="x" * 65)], [], "tools.0.name", "1 to 64"),
    ([tool(parameters={"type": "string"})], [], "tools.0.parameters", "JSON schema of an object"),
    ([tool(parameters={"type": "object", "properties": {"q": {"type": "strin"}}})], [], "tools.0.parameters",
     "not a valid JSON schema"),
    ([tool(), tool(name="u", parameters="nope")], [], "tools.1.parameters", "dictionary"),
    ([tool(url="ftp://api.example/t")], [], "tools.0.url", "http:// or https://"),
    ([tool(url="https://user:pw@api.example/t")], [], "tools.0.url", "no credentials"),
    ([tool(url="https://api.example/t/{city}")], [], "tools.0.url", "placeholder {city} is not a property"),
    ([tool(url="https://api.example/t/{q}", parameters={"type": "object", "properties": {"q": {}}})], [], "tools.0.url",
     "must be a required parameter"),
    ([tool(url="https://{q}.example/t")], [], "tools.0.url", "not the host"),
    ([tool(url="https://api.example/t/{q")], [], "tools.0.url", "unmatched"),
    ([tool(method="FETCH")], [], "tools.0.method", "Input should be"),
    ([tool(timeout_s=0)], [], "tools.0.timeout_s", "greater than 0"),
    ([tool(timeout_s=float("inf"))], [], "tools.0.timeout_s", ""),
    ([tool(max_result_chars=50)], [], "tools.0.max_result_chars", "greater than or equal to 100"),
    ([tool(result="xml")], [], "tools.0.result", "Input should be"),
    ([tool(bogus=1)], [], "tools.0.bogus", "Extra inputs are not permitted"),
    ([tool(type="mcp")], [], "tools.0.type", "mcp_servers"),
    (["get_weather"], [], "tools.0", "mapping"),
    ({"name": "t"}, [], "tools", "must be a list"),
    ([tool(), tool()], [], "tools.1.name", "duplicate tool name 't' (also tools.0)"),
    ([tool(headers={"Authorization": "Bearer abc"})], [], "tools.0.headers.Authorization", "secret_headers"),
    ([tool(headers={"Bad Header": "x"})], [], "tools.0.headers.Bad Header", "not a valid header name"),
    ([tool(headers={"X-A": "a\r\nX-B: b"})], [], "tools.0.headers.X-A", "line breaks"),
    ([tool(secret_headers={"Authorization": "UNSET_VAR"})], [], "tools.0.secret_headers.Authorization",
     "environment variable 'UNSET_VAR' is not set"),
    ([tool(secret_headers={"Authorization": "Bearer k-123"})], [], "tools.0.secret_headers.Authorization",
     "never its value"),
    ([tool(headers={"x-api-key2": "a"}, secret_headers={"X-Api-Key2": "WEATHER_KEY"})], [], "tools.0.secret_headers",
     "also set in 'headers'"),
    ([], [{"name": "s"}], "mcp_servers.0", "exactly one of 'command'"),
    ([], [{"name": "s", "command": ["a"], "url": "https://x.example/mcp"}], "mcp_servers.0", "exactly one of"),
    ([], [{"name": "s", "command": []}], "mcp_servers.0.command", "non-empty"),
    ([], [{"name": "s", "command": "npx server"}], "mcp_servers.0.command", "list"),
    ([], [{"name": "s", "command": ["srv"], "env": {"TOKEN": "UNSET_VAR"}}], "mcp_servers.0.env.TOKEN",
     "environment variable 'UNSET_VAR' is not set"),
    ([], [{"name": "s", "command": ["srv"], "env": {"TOKEN": "g-789 literal"}}], "mcp_servers.0.env.TOKEN",
     "never its value"),
    ([], [{"name": "s", "command": ["srv"], "secret_headers": {"Authorization": "MCP_TOKEN"}}],
     "mcp_servers.0.secret_headers", "only for a 'url' server"),
    ([], [{"name": "s", "url": "https://x.example/mcp", "env": {"A": "MCP_TOKEN"}}], "mcp_servers.0.env",
     "only for a stdio server"),
    ([], [{"name": "s", "url": "file:///tmp/x"}], "mcp_servers.0.url", "http:// or https://"),
    ([], [{"name": "s", "command": ["a"]}, {"name": "s", "command": ["b"]}], "mcp_servers.1.name",
     "duplicate MCP server name 's'"),
    ([], [{"name": "bad name", "command": ["a"]}], "mcp_servers.0.name", "letters"),
    ([], [{"name": "s", "command": ["a"], "allow": ["ok", "not ok"]}], "mcp_servers.0.allow.1", "not a valid tool name"),
    ([], [{"name": "s", "command": ["a"], "allow": ["x", "x"]}], "mcp_servers.0.allow.1", "listed twice"),
    ([tool()], [{"name": "s", "command": ["a"], "allow": ["t"]}], "mcp_servers.0.allow.0",
     "duplicate tool name 't' (also tools.0)"),
    ([], [{"name": "s", "command": ["a"], "timeout_s": -1}], "mcp_servers.0.timeout_s", "greater than 0"),
    ([], [{"name": "s", "command": ["a"], "password": "x"}], "mcp_servers.0.password", "Extra inputs"),
])
def test_errors_name_the_file_agent_and_field(tools, servers, field, words):
    where = "/srv/voi/agents.yaml: agent 'concierge'"
    with pytest.raises(ConfigError) as info:
        check_tools(tools, servers, where, environ=ENV)
    message = str(info.value)
    assert message.startswith(f"{where}: field '{field}'"), message
    assert words in message, message


def test_no_secret_value_appears_in_an_error(tmp_path):
    # a value written where a variable's name belongs is refused without being echoed
    secret = "sk-live-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    with pytest.raises(ConfigError) as info:
        check_tools([tool(secret_headers={"Authorization": secret})], [], "agents.yaml: agent 'a'", environ=ENV)
    assert "never its value" in str(info.value) and secret[:12] not in str(info.value)


def test_specs_are_models_with_the_documented_defaults():
    spec = HttpToolSpec(name="t", description="d", parameters={"type": "object"}, url="https://a.example")
    assert (spec.type, spec.method, spec.timeout_s, spec.result, spec.max_result_chars) == ("http", "POST", 5.0, "json", 4000)
    assert (spec.headers, spec.secret_headers) == ({}, {})
    server = McpServerSpec(name="s", url="https://a.example/mcp")
    assert (server.command, server.env, server.allow, server.timeout_s, server.max_result_chars) == (None, {}, None, 10.0, 4000)


def test_the_commented_concierge_in_agents_yaml_is_a_valid_agent():
    """The example agent with tools in the repo's agents.yaml (commented out) passes the load-time checks."""
    import yaml

    from agents.agent import AgentConfig
    from harness.server import ROOT

    lines = (ROOT / "agents.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# concierge:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        block.append(line[:2] + line[3:])
    raw = yaml.safe_load("\n".join(block))["concierge"]
    config = AgentConfig.model_validate(raw)  # an unknown field would be an error
    tools, servers = check_tools(config.tools, config.mcp_servers, "agents.yaml: agent 'concierge'",
                                 environ={"BOOKINGS_AUTH": "Bearer x", "CRM_AUTH": "Bearer y"})
    assert [t.name for t in tools] == ["weather", "book_table"] and [s.name for s in servers] == ["time", "crm"]
