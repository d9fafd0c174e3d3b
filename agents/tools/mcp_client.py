"""One MCP server's connection in this process: started (or connected) once, its tools listed once, shared by every
conversation of the process, restarted on the next use after it ends.

The SDK's client context managers (``mcp.Client`` over ``stdio_client`` or ``streamable_http_client``) hold anyio
task groups, so they must be entered and left in one task: each connection has an owner task that enters the
client, lists the tools, and waits until the connection ends (the server exited or hung up, seen as the end of its
read stream) or the process closes it. Calls are made from the callers' own tasks through the shared session
(concurrent requests are what JSON-RPC ids are for), so cancelling a caller cancels its request the SDK's way: a
``notifications/cancelled`` on stdio and 2025-era HTTP, the request's POST aborted on 2026-era HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, Tool

from agents.tools.calls import clip
from agents.tools.http_tool import ToolFailure
from agents.tools.spec import McpServerSpec, read_env
from common.clock import MONOTONIC, Clock
from common.log_text import printable

log = logging.getLogger("voi.tools")

RETRY_AFTER_S = 30.0  # after a failed start or connect, new conversations go without the server for this long
CLOSE_GRACE_S = 8.0  # a clean close: stdin closed, the SDK waits 2 s, then SIGTERM, 2 s, SIGKILL, 2 s
CALL_BACKSTOP_S = 2.0  # beyond a call's own timeout (the SDK's read timeout), in case a write itself is stuck
MAX_LIST_PAGES = 100


class McpUnavailable(Exception):
    """The server could not be started, reached or listed; the message is safe for a log line."""


class McpConnection:
    def __init__(self, spec: McpServerSpec, *, retry_after_s: float = RETRY_AFTER_S,
                 errlog: TextIO | None = None, clock: Clock = MONOTONIC) -> None:
        self.spec = spec
        self._clock = clock  # the retry back-off (its connect and close timeouts are real I/O: loop time)
        self._retry_after_s = retry_after_s
        self._errlog = errlog  # a stdio server's stderr (default: this process's)
        self._lock = asyncio.Lock()
        self._client: Client | None = None
        self._tools: tuple[Tool, ...] = ()
        self._owner: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._ended = asyncio.Event()  # the current connection is over (or there is none yet)
        self._ended.set()
        self._failed_at: float | None = None
        self._failure = ""
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._ended.is_set()

    async def tools(self) -> tuple[Tool, ...]:
        """The server's tools (all pages), listed when it was started or connected; connects if it is not."""
        await self._connect()
        return self._tools

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float, max_chars: int) -> str:
        """The tool's result as text for the LLM; ToolFailure for what the LLM should hear about."""
        try:
            client = await self._connect()
        except McpUnavailable:
            raise ToolFailure("error: the tool's server is not available right now", "MCP server unavailable") from None
        ended = self._ended  # this connection's (a later one has its own)
        try:
            async with asyncio.timeout(timeout_s + CALL_BACKSTOP_S):
                result = await client.call_tool(name, arguments, read_timeout_seconds=timeout_s)
        except TimeoutError:
            raise ToolFailure(f"error: the tool did not answer within {timeout_s:g} s", "timeout") from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ToolFailure(f"error: the tool did not answer within {timeout_s:g} s", "timeout") from None
            if exc.code == CONNECTION_CLOSED:
                ended.set()  # the next use starts (or reconnects) it afresh
                log.warning("MCP server %s: the connection closed during a call of %s", self.spec.name, name)
                raise ToolFailure("error: the tool's server went away during the call", "MCP server went away") from None
            message = printable(exc.message, 300)
            raise ToolFailure(f"error: {message}", f"MCP error {exc.code}") from None
        if result.is_error:
            raise ToolFailure(f"error: {result_text(result, max_chars)}", "tool error")
        return result_text(result, max_chars)

    async def _connect(self) -> Client:
        async with self._lock:
            if self._closed:
                raise McpUnavailable(f"MCP server {self.spec.name}: closed")
            if self.connected:
                assert self._client is not None
                return self._client
            if self._owner is not None:  # the last connection ended: let its owner finish leaving the client
                await _settle(self._owner, CLOSE_GRACE_S)
                self._owner = None
            if self._failed_at is not None and self._clock.now() - self._failed_at < self._retry_after_s:
                raise McpUnavailable(self._failure)
            ready: asyncio.Future[tuple[Client, tuple[Tool, ...]]] = asyncio.get_running_loop().create_future()
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, even when nobody waits any more
            self._ended = asyncio.Event()
            self._owner = asyncio.create_task(self._own(ready, self._ended), name=f"mcp-{self.spec.name}")
            try:
                # the owner's own deadline bounds the start; this bound is for a shutdown that overruns it
                client, tools = await asyncio.wait_for(asyncio.shield(ready), self.spec.connect_timeout_s + CLOSE_GRACE_S)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    self._ended.set()
                    raise
                self._failed_at = self._clock.now()
                self._failure = f"MCP server {self.spec.name}: {describe_failure(exc, self.spec)}"
                self._ended.set()
                log.warning("%s; its tools are unavailable (next try in %.0f s)", self._failure, self._retry_after_s)
                raise McpUnavailable(self._failure) from None
            self._failed_at = None
            self._client, self._tools = client, tools
            return client

    async def _own(self, ready: asyncio.Future[tuple[Client, tuple[Tool, ...]]], ended: asyncio.Event) -> None:
        """Enter the client, list the tools, hand them over and wait for the end; all in this one task."""
        spec = self.spec
        mine: Client | None = None
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + spec.connect_timeout_s) as scope:
                self._scope = scope
                async with Client(self._transport(ended), mode="auto", cache=None) as client:
                    tools = await _list_tools(client)
                    scope.deadline = math.inf
                    mine = client
                    ready.set_result((client, tools))
                    await ended.wait()
            if not ready.done():
                ready.set_exception(TimeoutError() if scope.cancelled_caught else McpUnavailable("ended before listing"))
        except Exception as exc:  # an ExceptionGroup from the SDK's task groups included
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("MCP server %s: the connection ended: %s", spec.name, describe_failure(exc, spec))
        finally:
            ended.set()
            if not ready.done():  # this task was cancelled
                ready.set_exception(McpUnavailable("the connection ended before its tools were listed"))
            if mine is not None and self._client is mine:
                self._client = None

    @asynccontextmanager
    async def _transport(self, ended: asyncio.Event) -> AsyncIterator[Any]:
        """The SDK transport with its read stream watched: its end (EOF, a dead server) ends the connection."""
        spec = self.spec
        if spec.command is not None:
            params = StdioServerParameters(command=spec.command[0], args=spec.command[1:], env=read_env(spec.env))
            async with stdio_client(params, errlog=self._errlog or sys.stderr) as (read, write):
                yield _WatchedReadStream(read, ended), write
        else:
            assert spec.url is not None
            timeout = httpx2.Timeout(30.0, connect=spec.connect_timeout_s, read=300.0)
            async with httpx2.AsyncClient(headers=read_env(spec.secret_headers), timeout=timeout) as http:
                async with streamable_http_client(spec.url, http_client=http) as (read, write):
                    yield _WatchedReadStream(read, ended), write

    async def aclose(self) -> None:
        """Stop the server (or hang up); bounded: a clean close, then cancellation, then the task abandoned."""
        self._closed = True
        self._ended.set()
        owner, self._owner = self._owner, None
        self._client = None
        if owner is None:
            return
        if not await _settle(owner, CLOSE_GRACE_S):
            if self._scope is not None:
                self._scope.cancel()
            if not await _settle(owner, CLOSE_GRACE_S):
                owner.cancel()
                log.warning("MCP server %s: did not close within %.0f s; abandoned", self.spec.name, 2 * CLOSE_GRACE_S)


class _WatchedReadStream:
    """A transport's read stream that reports its end (the dispatcher only stops reading, nobody else hears it)."""

    def __init__(self, inner: Any, ended: asyncio.Event) -> None:
        self._inner = inner
        self._ended = ended

    @property
    def last_context(self) -> Any:  # the sender's context, which the dispatcher restores per message
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended.set()
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


async def _list_tools(client: Client) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tuple(tools)


async def _settle(task: asyncio.Task[None], timeout: float) -> bool:
    """Wait (bounded) for ``task`` to finish; True when it did."""
    if not task.done():
        await asyncio.wait({task}, timeout=timeout)
    return task.done()


def result_text(result: CallToolResult, max_chars: int) -> str:
    """A tool result as one text for the LLM: its text blocks (structured content when there are none), other
    blocks named, cut to ``max_chars``."""
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)  # type: ignore[union-attr]
        elif kind == "resource" and hasattr(block.resource, "text"):  # type: ignore[union-attr]
            parts.append(block.resource.text)  # type: ignore[union-attr]
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")  # type: ignore[union-attr]
        else:
            parts.append(f"[{kind or 'content'} omitted]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":")))
    return clip("\n".join(parts), max_chars) if parts else "(empty result)"


def describe_failure(exc: BaseException, spec: McpServerSpec) -> str:
    """Why a start or connect failed, in one short line (never a traceback, never a header value)."""
    exc = _leaf(exc)
    if isinstance(exc, TimeoutError):
        return f"did not list its tools within {spec.connect_timeout_s:g} s"
    if isinstance(exc, FileNotFoundError):
        return f"no such command {printable(exc.filename or spec.command and spec.command[0], 100)!r}"
    if isinstance(exc, PermissionError):
        return f"cannot run {printable(exc.filename or spec.command and spec.command[0], 100)!r}: permission denied"
    if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
        return "exited (or hung up) before listing its tools" if spec.command else "hung up before listing its tools"
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {printable(exc.message, 200)}"
    if isinstance(exc, httpx2.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx2.HTTPError):
        return f"HTTP failure ({type(exc).__name__})"
    if isinstance(exc, McpUnavailable):
        return str(exc)
    return f"{type(exc).__name__}: {printable(exc, 200)}"


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the exception groups of the SDK's task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        real = [e for e in exc.exceptions if not isinstance(e, (asyncio.CancelledError, anyio.get_cancelled_exc_class()))]
        exc = (real or exc.exceptions)[0]
    return exc
