"""Server-side tools as the operator writes them in agents.yaml, and their load-time checks.

An agent may list ``tools:`` (http tools: one URL each, called by the server with the LLM's arguments) and
``mcp_servers:`` (MCP servers, stdio or streamable HTTP, whose tools the server lists and calls). Secrets are never
written in the file: ``secret_headers`` and an MCP server's ``env`` name environment variables of the host, read
when the call is made. Everything the file can get wrong is caught here, at start-up, with a message naming the
file, the agent and the field; what only a running server can tell (does the stdio command start, does it list the
``allow``-ed tools) is checked by ``probe_mcp_servers`` (agents/tools/toolbox.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from jsonschema import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.config_errors import ConfigError

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # what OpenAI (and LiteLLM's providers) accept as a function name
SERVER_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
SECRET_LOOKING_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"})

_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _tool_name(value: str) -> str:
    if not TOOL_NAME.match(value):
        raise ValueError("must be 1 to 64 letters, digits, '_' or '-' (what LLM APIs accept as a function name)")
    return value


class HttpToolSpec(BaseModel):
    """One http tool: the server calls ``url`` with the LLM's arguments and shows the LLM the answer."""

    model_config = _MODEL

    type: Literal["http"] = "http"
    name: str
    description: str = Field(min_length=1)
    parameters: dict[str, Any]  # a JSON schema of an object (checked with jsonschema at load)
    url: str  # http(s); ``{param}`` placeholders in the path or query are filled from the arguments, URL-quoted
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"  # GET: arguments as query; others: JSON body
    headers: dict[str, str] = Field(default_factory=dict)  # plain, non-secret values
    # header name -> NAME of an environment variable holding the header's whole value (e.g. "Bearer sk-...")
    secret_headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0, le=120)  # the whole call: connect, send, answer
    result: Literal["json", "text"] = "json"
    max_result_chars: int = Field(default=4000, ge=100, le=200_000)

    _name = field_validator("name")(_tool_name)

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(PLACEHOLDER.findall(self.url))


class McpServerSpec(BaseModel):
    """One MCP server: a command started over stdio, or a streamable HTTP endpoint."""

    model_config = _MODEL

    name: str  # a label for logs and errors
    command: list[str] | None = None  # stdio: the command line (argv)
    env: dict[str, str] = Field(default_factory=dict)  # stdio: variable the server sees -> NAME of the host's variable
    url: str | None = None  # streamable HTTP endpoint
    secret_headers: dict[str, str] = Field(default_factory=dict)  # url: header name -> NAME of an environment variable
    allow: list[str] | None = None  # the tools this agent may call; None: every tool the server lists
    timeout_s: float = Field(default=10.0, gt=0, le=120)  # per call
    connect_timeout_s: float = Field(default=10.0, gt=0, le=120)  # start (or connect) and list the tools
    max_result_chars: int = Field(default=4000, ge=100, le=200_000)

    @field_validator("name")
    @classmethod
    def _label(cls, value: str) -> str:
        if not SERVER_NAME.match(value):
            raise ValueError("must be 1 to 64 letters, digits, '_', '.' or '-'")
        return value

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def connection_key(self) -> str:
        """What makes two agents' entries the same server (one connection per process): not ``allow`` or limits."""
        return self.model_dump_json(include={"name", "command", "env", "url", "secret_headers", "connect_timeout_s"})


def check_tools(raw_tools: list | None, raw_mcp: list | None, where: str, *,
                environ: Mapping[str, str] | None = None) -> tuple[tuple[HttpToolSpec, ...], tuple[McpServerSpec, ...]]:
    """Validate an agent's ``tools`` and ``mcp_servers`` fields (None: absent); ConfigError naming ``where``
    (e.g. "agents.yaml: agent 'concierge'") and the field. ``environ`` (default ``os.environ``) is where the
    environment variables named by ``secret_headers`` and ``env`` must be set."""
    environ = os.environ if environ is None else environ
    tools = tuple(_parse(HttpToolSpec, raw, f"tools.{i}", where) for i, raw in enumerate(_listed(raw_tools, "tools", where)))
    servers = tuple(_parse(McpServerSpec, raw, f"mcp_servers.{i}", where)
                    for i, raw in enumerate(_listed(raw_mcp, "mcp_servers", where)))
    seen: dict[str, str] = {}
    for i, tool in enumerate(tools):
        field = f"tools.{i}"
        if tool.name in seen:
            raise ConfigError(f"{where}: field '{field}.name': duplicate tool name {tool.name!r} (also {seen[tool.name]})")
        seen[tool.name] = field
        _check_http_tool(tool, field, where, environ)
    server_names: dict[str, str] = {}
    for i, server in enumerate(servers):
        field = f"mcp_servers.{i}"
        if server.name in server_names:
            raise ConfigError(f"{where}: field '{field}.name': duplicate MCP server name {server.name!r} "
                              f"(also {server_names[server.name]})")
        server_names[server.name] = field
        _check_mcp_server(server, field, where, environ)
        for j, name in enumerate(server.allow or ()):
            if name in seen:
                raise ConfigError(f"{where}: field '{field}.allow.{j}': duplicate tool name {name!r} (also {seen[name]})")
            seen[name] = f"{field}.allow.{j}"
    return tools, servers


def _listed(raw: Any, field: str, where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: field '{field}': must be a list, got {type(raw).__name__}")
    return raw


def _parse(model: type[BaseModel], raw: Any, field: str, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: field '{field}': must be a mapping of fields, got {type(raw).__name__}")
    if model is HttpToolSpec and raw.get("type", "http") != "http":
        raise ConfigError(f"{where}: field '{field}.type': unknown tool type {str(raw['type'])[:40]!r} "
                          "(tools are 'http'; MCP servers go under 'mcp_servers')")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in (field, *err["loc"]))
            problems.append(f"field '{loc}': {err['msg']}")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


def _check_http_tool(tool: HttpToolSpec, field: str, where: str, environ: Mapping[str, str]) -> None:
    problem = schema_problem(tool.parameters)
    if problem:
        raise ConfigError(f"{where}: field '{field}.parameters': {problem}")
    _check_url(tool.url, f"{field}.url", where)
    stray = PLACEHOLDER.sub("", tool.url)
    if "{" in stray or "}" in stray:
        raise ConfigError(f"{where}: field '{field}.url': unmatched '{{' or '}}'")
    if "{" in urlsplit(tool.url).netloc:  # the LLM's arguments never choose the host
        raise ConfigError(f"{where}: field '{field}.url': placeholders may fill the path or the query, not the host")
    properties = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    for name in tool.placeholders:
        if name not in properties:
            raise ConfigError(f"{where}: field '{field}.url': placeholder {{{name}}} is not a property of 'parameters'")
        if name not in required:
            raise ConfigError(f"{where}: field '{field}.url': placeholder {{{name}}} must be a required parameter")
    _check_headers(tool.headers, f"{field}.headers", where, plain=True)
    _check_headers(tool.secret_headers, f"{field}.secret_headers", where, plain=False)
    _check_overlap(tool.headers, tool.secret_headers, field, where)
    _check_env_names(tool.secret_headers, f"{field}.secret_headers", where, environ)


def _check_mcp_server(server: McpServerSpec, field: str, where: str, environ: Mapping[str, str]) -> None:
    if (server.command is None) == (server.url is None):
        raise ConfigError(f"{where}: field '{field}': give exactly one of 'command' (stdio) and 'url' (streamable HTTP)")
    if server.command is not None:
        if not server.command or not all(part for part in server.command):
            raise ConfigError(f"{where}: field '{field}.command': must be a non-empty list of non-empty strings")
        if server.secret_headers:
            raise ConfigError(f"{where}: field '{field}.secret_headers': only for a 'url' server (stdio has no headers; "
                              "use 'env')")
        for name in server.env:
            if not ENV_NAME.match(name):
                raise ConfigError(f"{where}: field '{field}.env.{name}': not an environment variable name")
        _check_env_names(server.env, f"{field}.env", where, environ)
    else:
        assert server.url is not None
        _check_url(server.url, f"{field}.url", where)
        if server.env:
            raise ConfigError(f"{where}: field '{field}.env': only for a stdio server ('command')")
        _check_headers(server.secret_headers, f"{field}.secret_headers", where, plain=False)
        _check_env_names(server.secret_headers, f"{field}.secret_headers", where, environ)
    if server.allow is not None:
        seen: set[str] = set()
        for j, name in enumerate(server.allow):
            if not TOOL_NAME.match(name):
                raise ConfigError(f"{where}: field '{field}.allow.{j}': {name[:70]!r} is not a valid tool name")
            if name in seen:
                raise ConfigError(f"{where}: field '{field}.allow.{j}': {name!r} is listed twice")
            seen.add(name)


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be a tool's parameters (a JSON schema of an object), or None."""
    if not isinstance(schema, dict):
        return "must be a JSON schema (a mapping)"
    if schema.get("type") != "object":
        return "must be the JSON schema of an object ('type: object')"
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        return f"not a valid JSON schema: {exc.message[:200]}" + (f" (at {path})" if path else "")
    return None


def _check_url(url: str, field: str, where: str) -> None:
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ConfigError(f"{where}: field '{field}': must be an http:// or https:// URL")
    if "@" in split.netloc:
        raise ConfigError(f"{where}: field '{field}': no credentials in the URL (use 'secret_headers')")


def _check_headers(headers: Mapping[str, str], field: str, where: str, *, plain: bool) -> None:
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise ConfigError(f"{where}: field '{field}.{name}': not a valid header name")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}: field '{field}.{name}': line breaks are not allowed")
        if plain and name.lower() in SECRET_LOOKING_HEADERS:
            raise ConfigError(f"{where}: field '{field}.{name}': a credential does not belong in agents.yaml; "
                              "name an environment variable under 'secret_headers'")


def _check_overlap(headers: Mapping[str, str], secret_headers: Mapping[str, str], field: str, where: str) -> None:
    both = {n.lower() for n in headers} & {n.lower() for n in secret_headers}
    if both:
        raise ConfigError(f"{where}: field '{field}.secret_headers': {sorted(both)} also set in 'headers'")


def _check_env_names(names: Mapping[str, str], field: str, where: str, environ: Mapping[str, str]) -> None:
    for key, variable in names.items():
        if not ENV_NAME.match(variable):
            raise ConfigError(f"{where}: field '{field}.{key}': not an environment variable name "
                              "(write the variable's name here, never its value)")
        if not environ.get(variable):
            raise ConfigError(f"{where}: field '{field}.{key}': environment variable {variable!r} is not set")


def read_env(names: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``key -> value of the named environment variable``, for the variables that are set (at call time: a secret
    rotated in the environment is picked up, and no value is kept in a spec)."""
    environ = os.environ if environ is None else environ
    return {key: environ[variable] for key, variable in names.items() if environ.get(variable)}
