"""The Ingress's side of live agent updates (agents/live_config.py holds the rules): Serve's ``reconfigure``
with a ``user_config``, the reload of the agents file that ``python serve_app.py`` asks for (SIGHUP,
``--watch-agents``), and the new greetings rendered into the Synthesizer's cache.

The first config a replica gets must be valid (a refusal raises: the replica does not start, and Serve says
why in ``serve status``); later ones are refused without raising (agents/live_config.py says why), logged
with the file, agent and field, and shown to operators on ``GET /sessions`` (``agents.refused``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ray.serve.handle import DeploymentHandle

from agents.agent import Agent
from agents.config import AgentsConfig, agents_from_mapping, load_agents_config
from agents.greeting import greeting_renders
from agents.live_config import AgentsUpdate, LiveAgents
from common.config_errors import ConfigError
from speech.models_config import ModelsConfig

log = logging.getLogger("ray.serve")

USER_CONFIG_SOURCE = "the Ingress's user_config"


class AgentUpdates:
    def __init__(self, agents_path: str, models: ModelsConfig, synthesizer: DeploymentHandle,
                 has_local_llm: bool) -> None:
        self._agents_path = agents_path
        self._models = models
        self._synthesizer = synthesizer
        self._from_user_config = False  # once a user_config is in force, the file is no longer the source
        self._configured = False  # Serve's first reconfigure (right after __init__) has come
        self._one_at_a_time = asyncio.Lock()
        self.live = LiveAgents(self._load, has_local_llm=has_local_llm)
        self.live.apply(None, agents_path)  # at start: a bad file fails the replica (and the builder before it)

    @property
    def agents(self) -> AgentsConfig:
        assert self.live.current is not None
        return self.live.current

    def _load(self, content: Any, source: str) -> AgentsConfig:
        if content is None:
            return load_agents_config(self._agents_path, self._models)
        # Greeting recordings and recording directories stay relative to the agents file's folder.
        path = Path(self._agents_path)
        return agents_from_mapping(content, self._models, source=source, base_dir=path if path.is_dir() else path.parent)

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Serve's ``reconfigure``: the user_config is an agents file's content (``agents:``, ``prompt_patterns:``,
        ``client_agent_config:``, ...); an empty one means the agents file. A refusal raises only at the replica's
        first call (right after ``__init__``): a replica never starts with other agents than it was given."""
        first, self._configured = not self._configured, True
        if not user_config and not self._from_user_config:
            return  # the file loaded in __init__ is in force
        try:
            await self._apply(user_config or None, USER_CONFIG_SOURCE if user_config else self._agents_path)
        except ConfigError:
            if first:
                raise

    async def reload_file(self) -> dict[str, Any]:
        """``python serve_app.py`` was asked to reload the agents file: the outcome, for its log line."""
        if self._from_user_config:
            return {"ok": False, "error": f"this Ingress takes its agents from {USER_CONFIG_SOURCE}: deploy a new "
                    "serve config instead", **self.live.status()}
        try:
            update = await self._apply(None, self._agents_path)
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), **self.live.status()}
        return {"ok": True, "summary": update.summary(), **self.live.status()}

    async def _apply(self, content: Any, source: str) -> AgentsUpdate:
        """One update at a time; the check runs in a thread (it reads files and may start an MCP server to list
        its tools), so the replica's sockets are served meanwhile. The swap itself is one assignment."""
        async with self._one_at_a_time:
            old = dict(self.agents.agents)
            try:
                update = await asyncio.to_thread(self.live.apply, content, source)
            except ConfigError as exc:
                log.error("agents update refused, still serving version %s: %s", self.live.version, exc)
                raise
            self._from_user_config = content is not None
        log.info("agents updated: %s", update.summary())
        self._render_greetings({name: agent for name, agent in self.agents.agents.items() if old.get(name) != agent})
        return update

    def _render_greetings(self, agents: dict[str, Agent]) -> None:
        """New and changed agents' greetings into the cache, in the background: a caller who comes first gets
        them synthesized (and stored) on the way."""
        renders = greeting_renders(agents)
        if renders:
            self._synthesizer.prerender.remote(renders)
