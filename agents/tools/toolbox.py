"""The server-side tools of one conversation (``Toolbox``), the process's MCP connections (``McpHub``) and the
load-time check of MCP servers (``probe_mcp_servers``).

``Toolbox.call`` is the one door the reply loop uses: it never raises (but for cancellation), every failure
becomes a ``ToolResult`` the LLM can read and react to. Arguments are parsed with the one parser for strangers'
JSON (the LLM writes them) and checked against the tool's JSON schema before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import exceptions as schema_exceptions
from jsonschema.validators import Draft202012Validator, validator_for
from mcp_types import Tool
from referencing.exceptions import Unresolvable

from agents.tools.calls import ToolCall, ToolResult
from agents.tools.http_tool import HttpTool, ToolFailure
from agents.tools.mcp_client import McpConnection, McpUnavailable, describe_failure
from agents.tools.spec import TOOL_NAME, HttpToolSpec, McpServerSpec
from common.config_errors import ConfigError
from common.log_text import printable
from common.safe_json import JsonRefused, parse_json

log = logging.getLogger("voi.tools")

PROBE_GRACE_S = 20.0  # beyond the slowest server's connect timeout: its shutdown, the thread's own start
MAX_LISTED_NAMES = 20  # tools named in the "no such tool" answer


@dataclass(frozen=True)
class ToolEntry:
    """One tool of a toolbox: how the LLM sees it, how its arguments are checked, what runs it (returns the
    result's text or raises ToolFailure)."""

    definition: dict[str, Any]  # OpenAI chat-completions format
    validator: Any | None  # a jsonschema validator; None: the server's schema could not be compiled (it checks)
    run: Callable[[dict[str, Any]], Awaitable[str]]


def tool_entry(name: str, description: str, parameters: dict[str, Any],
               run: Callable[[dict[str, Any]], Awaitable[str]]) -> ToolEntry:
    """A tool from its parts (the executors use it; so can a test's fake tool)."""
    definition = {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
    return ToolEntry(definition, _validator(parameters), run)


class Toolbox:
    """The server-side tools of one conversation."""

    def __init__(self, entries: dict[str, ToolEntry] | None = None, *, owned: httpx.AsyncClient | None = None) -> None:
        self._entries = dict(entries or {})
        self._owned = owned  # an http client made for this toolbox alone (built without a hub)

    @classmethod
    def of_http(cls, http: Sequence[HttpToolSpec]) -> Toolbox:
        """A toolbox of http tools with its own http client (tests, scripts); a session host uses ``McpHub``."""
        client = new_http_client()
        return cls({spec.name: http_entry(spec, client) for spec in http}, owned=client)

    def definitions(self) -> list[dict[str, Any]]:
        """The tools in the OpenAI chat-completions ``tools`` format."""
        return [entry.definition for entry in self._entries.values()]

    def names(self) -> frozenset[str]:
        return frozenset(self._entries)

    async def call(self, call: ToolCall) -> ToolResult:
        started = time.perf_counter()

        def result(content: str, error: str | None = None) -> ToolResult:
            return ToolResult(call.id, call.name, content, error is None, (time.perf_counter() - started) * 1000, error)

        entry = self._entries.get(call.name)
        if entry is None:
            names = sorted(self._entries)
            listed = ", ".join(names[:MAX_LISTED_NAMES]) + (", ..." if len(names) > MAX_LISTED_NAMES else "")
            return result(f"error: there is no tool named {printable(call.name, 64)!r}; the tools are: {listed or 'none'}",
                          "unknown tool")
        try:
            arguments = parse_arguments(call.arguments)
            if entry.validator is not None:
                check_arguments(entry.validator, arguments)
            return result(await entry.run(arguments))
        except ToolFailure as failure:
            return result(failure.content, failure.error)
        except Exception:  # a bug or a surprise from a library: the operator's log gets the traceback, nobody else
            log.warning("tool %s failed unexpectedly", call.name, exc_info=True)
            return result("error: the tool failed", "tool failed")

    async def aclose(self) -> None:
        """Close what this toolbox owns (the hub's connections are the hub's)."""
        self._entries = {}
        if self._owned is not None:
            client, self._owned = self._owned, None
            await client.aclose()


def parse_arguments(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}  # some models send "" for a tool without parameters
    try:
        value = parse_json(text)
    except JsonRefused as exc:
        raise ToolFailure(f"error: the arguments are {exc}; send one JSON object", "invalid JSON arguments") from None
    if not isinstance(value, dict):
        raise ToolFailure("error: the arguments must be one JSON object", "invalid JSON arguments")
    return value


def check_arguments(validator: Any, arguments: dict[str, Any]) -> None:
    try:
        error = schema_exceptions.best_match(validator.iter_errors(arguments))
    except Unresolvable:
        log.warning("a tool schema has a $ref that does not resolve; its arguments go unchecked")
        return
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ToolFailure(f"error: invalid arguments: {printable(error.message, 300)}" + (f" (at {where})" if where else ""),
                          "invalid arguments")


def _validator(schema: dict[str, Any]) -> Any | None:
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
        return cls(schema)
    except Exception:  # a server's schema we cannot compile: the server checks its own arguments
        return None


def http_entry(spec: HttpToolSpec, client: httpx.AsyncClient) -> ToolEntry:
    return tool_entry(spec.name, spec.description, spec.parameters, HttpTool(spec, client).run)


def mcp_entry(tool: Tool, connection: McpConnection, spec: McpServerSpec) -> ToolEntry:
    parameters = tool.input_schema if isinstance(tool.input_schema, dict) else {"type": "object", "properties": {}}

    async def run(arguments: dict[str, Any]) -> str:
        return await connection.call(tool.name, arguments, spec.timeout_s, spec.max_result_chars)

    return tool_entry(tool.name, tool.description or tool.title or tool.name, parameters, run)


def new_http_client() -> httpx.AsyncClient:
    # redirects are not followed: a tool's URL is the operator's, a 3xx is an answer like any non-2xx
    return httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(max_connections=200, max_keepalive_connections=20))


class McpHub:
    """MCP connections of one process (a session host): each server started or connected once, its tools listed
    once and cached, shared by all the conversations of the process (and the http tools' connection pool)."""

    def __init__(self, *, retry_after_s: float | None = None) -> None:
        self._connections: dict[str, McpConnection] = {}
        self._retry_after_s = retry_after_s
        self._http: httpx.AsyncClient | None = None
        self._warned: set[tuple[str, str]] = set()
        self._closed = False

    async def toolbox(self, http: tuple[HttpToolSpec, ...], mcp: tuple[McpServerSpec, ...]) -> Toolbox:
        """The tools of one conversation. A server that cannot be started or reached is left out (one warning per
        try; tries are at least ``retry_after_s`` apart), bounded by its ``connect_timeout_s``."""
        if self._closed:
            raise RuntimeError("the MCP hub is closed")
        if self._http is None:
            self._http = new_http_client()
        entries = {spec.name: http_entry(spec, self._http) for spec in http}
        connections = [self._connection(spec) for spec in mcp]
        listings = await asyncio.gather(*(c.tools() for c in connections), return_exceptions=True)
        for spec, connection, listing in zip(mcp, connections, listings):
            if isinstance(listing, asyncio.CancelledError):
                raise listing
            if isinstance(listing, BaseException):  # McpUnavailable: logged by the connection
                if not isinstance(listing, McpUnavailable):
                    log.warning("MCP server %s: %s; its tools are left out", spec.name, describe_failure(listing, spec))
                continue
            for tool in self._allowed(spec, listing):
                if tool.name in entries:
                    self._warn_once(spec.name, f"tool {tool.name} is already defined by another tool; skipped")
                    continue
                entries[tool.name] = mcp_entry(tool, connection, spec)
        return Toolbox(entries)

    def _allowed(self, spec: McpServerSpec, tools: tuple[Tool, ...]) -> list[Tool]:
        listed = {tool.name: tool for tool in tools}
        if spec.allow is not None:
            for name in spec.allow:
                if name not in listed:
                    self._warn_once(spec.name, f"allowed tool {name} is not listed by the server")
            chosen = [listed[name] for name in spec.allow if name in listed]
        else:
            chosen = list(tools)
        usable = []
        for tool in chosen:
            if not TOOL_NAME.match(tool.name):
                self._warn_once(spec.name, f"tool {printable(tool.name, 80)} has a name LLM APIs refuse; skipped")
            else:
                usable.append(tool)
        return usable

    def _warn_once(self, server: str, message: str) -> None:
        if (server, message) not in self._warned:
            self._warned.add((server, message))
            log.warning("MCP server %s: %s", server, message)

    def _connection(self, spec: McpServerSpec) -> McpConnection:
        key = spec.connection_key()
        connection = self._connections.get(key)
        if connection is None:
            kwargs = {} if self._retry_after_s is None else {"retry_after_s": self._retry_after_s}
            connection = self._connections[key] = McpConnection(spec, **kwargs)
        return connection

    async def aclose(self) -> None:
        """Stop the stdio servers and hang up on the others (each bounded), close the http pool."""
        self._closed = True
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()


def probe_mcp_servers(servers: tuple[McpServerSpec, ...], where: str) -> None:
    """Load-time check: each stdio server starts and lists its tools within its ``connect_timeout_s``, and every
    ``allow``-ed name is listed; else ConfigError naming ``where`` and the field (``mcp_servers.N.command`` /
    ``mcp_servers.N.allow.M``). A url server that cannot be reached is a logged warning only. Synchronous, and safe
    to call with an event loop running: the probe runs on its own loop in a helper thread."""
    if not servers:
        return
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["problem"] = asyncio.run(_probe_all(servers, where))
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="mcp-probe", daemon=True)
    thread.start()
    thread.join(max(s.connect_timeout_s for s in servers) + PROBE_GRACE_S)
    if thread.is_alive():
        raise ConfigError(f"{where}: field 'mcp_servers': the MCP servers' check did not finish in time")
    if "error" in outcome:
        raise outcome["error"]
    if outcome.get("problem"):
        raise ConfigError(outcome["problem"])


async def _probe_all(servers: tuple[McpServerSpec, ...], where: str) -> str | None:
    problems = await asyncio.gather(*(_probe(i, spec, where) for i, spec in enumerate(servers)))
    return next((p for p in problems if p), None)


async def _probe(index: int, spec: McpServerSpec, where: str) -> str | None:
    field = f"mcp_servers.{index}"
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        connection = McpConnection(spec, retry_after_s=0.0, errlog=errlog)
        try:
            try:
                tools = await connection.tools()
            except McpUnavailable as exc:
                if spec.command is None:
                    return None  # a remote server may come up later: the connection logged a warning
                errlog.seek(0)
                tail = " ".join(errlog.read()[-2000:].strip().splitlines()[-3:])
                reason = str(exc).removeprefix(f"MCP server {spec.name}: ")
                return (f"{where}: field '{field}.command': MCP server {spec.name!r} did not start: {reason}"
                        + (f" (its stderr ends: {printable(tail, 300)})" if tail else ""))
        finally:
            await connection.aclose()
    listed = {tool.name for tool in tools}
    for j, name in enumerate(spec.allow or ()):
        if name not in listed:
            return (f"{where}: field '{field}.allow.{j}': MCP server {spec.name!r} lists no tool {name!r} "
                    f"(it lists {sorted(listed)[:MAX_LISTED_NAMES]})")
    if spec.allow is None:  # allow-ed names are valid function names (check_tools); the rest may not be
        refused = sorted(printable(tool.name, 80) for tool in tools if not TOOL_NAME.match(tool.name))
        if refused:
            log.warning("%s: MCP server %s: tools %s have names LLM APIs refuse; they are left out", where, spec.name, refused)
    return None
