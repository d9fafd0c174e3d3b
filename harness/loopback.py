"""An ASGI app served on a free loopback port by uvicorn in a thread of the test process: the fixture servers
(scripted_llm, tool_server, mcp_test_server) are objects the test reads directly (what was asked, when, whether it
was cancelled)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from harness.server import free_port


class LoopbackServer:
    def __init__(self, app: Any, *, name: str, lifespan: str = "off") -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=lifespan)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self._server.started, f"{self._thread.name} did not start"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)


class Served:
    """A fixture server object: ``serve`` starts its app on loopback (``port``), ``stop`` ends it."""

    port = 0
    _server: LoopbackServer | None = None

    def serve(self, app: Any, *, name: str, lifespan: str = "off") -> None:
        self._server = LoopbackServer(app, name=name, lifespan=lifespan)
        self.port = self._server.port
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
