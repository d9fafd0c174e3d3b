"""``python serve_app.py`` reloads its agents file on SIGHUP, or by itself when the file changes
(``--watch-agents``): the Ingress checks and swaps it as it does a ``serve deploy`` update
(deployments/agent_updates.py), and the outcome is printed in one line.

``python serve_app.py`` runs one Ingress replica, which one handle call reaches. A replica that restarts later
reads the same file, so it starts with what was last reloaded.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from ray import serve

from agents.live_config import files_fingerprint

RELOAD_TIMEOUT_S = 120.0  # an MCP server named by a new agent is started and listed by the check


class AgentReloads:
    def __init__(self, app_name: str, agents_path: str, watch: bool, every_s: float = 1.0) -> None:
        self._app_name = app_name
        self._path = agents_path
        self._watch = watch
        self._every_s = every_s
        self._asked = threading.Event()
        self._seen = files_fingerprint(agents_path)
        signal.signal(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self._asked.set()

    def wait(self) -> None:
        """Block until a reload is due (SIGHUP, or a change of the file when watching), then run it."""
        while True:
            asked = self._asked.wait(self._every_s)  # a timeout: SIGTERM's handler must get to run
            if not asked:
                if not self._watch:
                    continue
                now = files_fingerprint(self._path)
                if now == self._seen:
                    continue
                self._seen = now
            self._asked.clear()
            self.reload()

    def reload(self) -> None:
        self._seen = files_fingerprint(self._path)
        try:
            outcome = serve.get_app_handle(self._app_name).reload_agents.remote().result(timeout_s=RELOAD_TIMEOUT_S)
        except Exception as exc:  # the Ingress is being replaced, or did not answer in time
            print(f"voi: agents not reloaded: the Ingress did not answer ({type(exc).__name__})", flush=True)
            return
        if outcome["ok"]:
            print(f"voi: agents reloaded: {outcome['summary']}", flush=True)
        else:
            print(f"voi: agents reload refused, still serving version {outcome['version']}: {outcome['error']}",
                  flush=True)
