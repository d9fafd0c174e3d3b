"""One round of tool calls inside a reply: the server's calls run at once, side by side, the client's are
handed to the client, and a filler is said if the server's take long.

Every call ends with a result the LLM can read: a tool that fails, times out, gets arguments its schema
refuses, or does not exist gives an error text, never an exception. Cancelling the round (a barge-in, an
``interrupt``) cancels the calls themselves: the executors abort their HTTP requests and MCP calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agents.history import ToolStep
from agents.services import Emit
from agents.tools.calls import ToolCall, ToolResult
from common.clock import MONOTONIC, Clock, first_of
from protocol import events as ev
from protocol import messages as m


class ServerTools(Protocol):
    """The server-side tools of one conversation (agents/tools/toolbox.py)."""

    def definitions(self) -> list[dict[str, Any]]: ...

    def names(self) -> frozenset[str]: ...

    async def call(self, call: ToolCall) -> ToolResult: ...


@dataclass(frozen=True)
class TurnTools:
    """The tools one reply may call, and whether it must, may or may not (``choice``)."""

    server: ServerTools | None = None
    client: tuple[m.ClientTool, ...] = ()
    choice: str | None = None  # auto (None) | none | required

    def definitions(self) -> tuple[dict[str, Any], ...]:
        """The server's tools, then the client's (a client tool named like a server tool is the server's)."""
        server = self.server.definitions() if self.server is not None else []
        taken = self.server.names() if self.server is not None else frozenset()
        return (*server, *(t.definition() for t in self.client if t.name not in taken))

    def is_server(self, name: str) -> bool:
        return self.server is not None and name in self.server.names()

    def is_client(self, name: str) -> bool:
        return not self.is_server(name) and any(t.name == name for t in self.client)


@dataclass
class RoundOutcome:
    elapsed_ms: float
    client_calls: list[ToolCall]  # handed to the client: the reply waits for their results


async def run_round(step: ToolStep, tools: TurnTools, emit: Emit, *, message_id: int | None, filler_after_s: float,
                    say_filler: Callable[[], Awaitable[None]] | None, clock: Clock = MONOTONIC) -> RoundOutcome:
    """Run ``step.calls``: results land in ``step.results`` (the client's calls stay open there)."""
    started = clock.now()
    server = [c for c in step.calls if tools.is_server(c.name)]
    client = [c for c in step.calls if tools.is_client(c.name)]
    for call in step.calls:
        await emit(ev.ToolCallStarted(call.id, call.name, call.arguments, client=call in client, message_id=message_id))
    for call in step.calls:
        if call not in server and call not in client:
            result = ToolResult(call.id, call.name, f"error: there is no tool named {call.name!r}", ok=False,
                                elapsed_ms=0.0, error="unknown tool")
            await _record(step, result, emit)
    if server:
        assert tools.server is not None
        running = [asyncio.create_task(tools.server.call(c), name=f"tool:{c.name}") for c in server]
        try:
            await _await_with_filler(running, filler_after_s, say_filler, clock)
        finally:
            for task in running:
                task.cancel()  # a cancelled round cancels every call still running
            await asyncio.gather(*running, return_exceptions=True)
        for call, task in zip(server, running, strict=True):
            failure = task.exception()  # an executor's own bug: the LLM still gets an answer for the call
            await _record(step, task.result() if failure is None else ToolResult(
                call.id, call.name, "error: the tool failed", ok=False, elapsed_ms=0.0,
                error=f"tool failed: {type(failure).__name__}"), emit)
    return RoundOutcome((clock.now() - started) * 1000, client)


async def _await_with_filler(running: list[asyncio.Task[ToolResult]], filler_after_s: float,
                             say_filler: Callable[[], Awaitable[None]] | None, clock: Clock) -> None:
    if say_filler is not None and not await first_of(clock, filler_after_s, asyncio.wait(running)):
        await say_filler()
    await asyncio.wait(running)


async def _record(step: ToolStep, result: ToolResult, emit: Emit) -> None:
    step.results[result.call_id] = result.content
    await emit(ev.ToolCallDone(result.call_id, result.name, result.ok, result.content, result.elapsed_ms, result.error))
