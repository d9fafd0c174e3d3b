"""An ASGI app served on a free loopback port by uvicorn in a thread of the test process: the fixture servers
(tool_server, mcp_test_server) are objects the test reads directly (what was asked, when, whether it was cancelled)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
