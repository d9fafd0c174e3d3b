"""An MCP server for tool tests and benchmarks, written with the official ``mcp`` SDK (``MCPServer``).

Over stdio: ``python -m harness.mcp_test_server [--events FILE]``; over streamable HTTP:
``python -m harness.mcp_test_server --http PORT`` (endpoint ``/mcp``), or ``McpHttpServer().start()`` in a thread of
the test process. Its tools: ``lookup_order(order_id)``, ``get_time(city)``, ``slow(seconds)`` (records started /
finished / cancelled, so a test can see that a call was cancelled on the server), ``fail()`` (an MCP tool error),
``big(chars)`` (a long result), ``env_value(name)`` (what the server's environment holds) and, over stdio only,
``crash()`` (the process exits mid-call). Events go to the ``--events`` file (or ``$MCP_TEST_EVENTS``) as JSON
lines, and to ``McpHttpServer.events`` in-process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from harness.loopback import Served

EVENTS_ENV = "MCP_TEST_EVENTS"
ORDERS = {"A100": {"order_id": "A100", "status": "shipped", "items": 2},
          "B200": {"order_id": "B200", "status": "processing", "items": 1}}


def build_server(record: Callable[[dict[str, Any]], None], *, can_crash: bool) -> MCPServer:
    # MCPServer() calls logging.basicConfig: keep the host process's logging as it was (tests capture it)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    server = MCPServer("voi-test-tools", log_level="WARNING")
    root.handlers[:], root.level = handlers, level

    @server.tool()
    def lookup_order(order_id: str) -> str:
        """Look up an order by its id: its status and number of items."""
        record({"event": "call", "tool": "lookup_order", "order_id": order_id})
        if order_id not in ORDERS:
            raise ToolError(f"no order {order_id}")
        return json.dumps(ORDERS[order_id])

    @server.tool()
    def get_time(city: str) -> str:
        """The local time in a city."""
        record({"event": "call", "tool": "get_time", "city": city})
        return f"It is 12:00 in {city}."

    @server.tool()
    async def slow(seconds: float) -> str:
        """Wait ``seconds`` seconds, then answer."""
        record({"event": "started", "tool": "slow", "seconds": seconds})
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            record({"event": "cancelled", "tool": "slow", "seconds": seconds})
            raise
        record({"event": "finished", "tool": "slow", "seconds": seconds})
        return f"Waited {seconds:g} seconds."

    @server.tool()
    def fail() -> str:
        """Always fails (a tool error the model should read)."""
        record({"event": "call", "tool": "fail"})
        raise ToolError("the order system is down")

    @server.tool()
    def big(chars: int = 50_000) -> str:
        """A long text."""
        return "y" * chars

    @server.tool()
    def env_value(name: str) -> str:
        """The value of an environment variable of the server ('(unset)' when it is not set)."""
        return os.environ.get(name, "(unset)")

    if can_crash:
        @server.tool()
        def crash() -> str:
            """The server process exits at once."""
            record({"event": "crash", "tool": "crash"})
            os._exit(3)

    return server


def file_recorder(path: str | None) -> Callable[[dict[str, Any]], None]:
    def record(event: dict[str, Any]) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({**event, "pid": os.getpid(), "t": time.time()}) + "\n")

    return record


def read_events(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class McpHttpServer(Served):
    """The test server over streamable HTTP in a thread of this process; ``url`` is its MCP endpoint. Records the
    headers of every HTTP request (``headers``) and the tools' events (``events``)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> McpHttpServer:
        app = build_server(lambda e: self.events.append({**e, "t": time.time()}), can_crash=False).streamable_http_app()

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
            await app(scope, receive, send)

        self.serve(recording, name="mcp-http-server", lifespan="on")
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    parser.add_argument("--events", help=f"append the tools' events to this file (default ${EVENTS_ENV})")
    args = parser.parse_args()
    record = file_recorder(args.events or os.environ.get(EVENTS_ENV))
    if args.http:
        server = build_server(record, can_crash=False)
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        build_server(record, can_crash=True).run("stdio")


if __name__ == "__main__":
    main()
