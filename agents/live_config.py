"""Agents updated while the server runs: a new agents config is checked whole, then swapped in, or refused.

The Ingress holds one ``LiveAgents``. Its agents come from the agents file (builder arg ``agents``) or, once
an operator deploys one, from the Ingress's Ray Serve ``user_config`` (the agents file's content, inline in a
serve config: ``serve deploy`` applies it in place through ``reconfigure``, no replica restarts). Either way
the new config goes through ``apply``: loaded and checked like a file at start (errors name the source, the
agent and the field), then swapped in one assignment. A conversation resolved its ``Agent`` when it started
and keeps it, so live calls keep the agent they started with (also a removed one); new callers get the new.

Refusal keeps the old config (``apply`` raises and changes nothing). Why the Ingress does not let that
error escape ``reconfigure`` after its first config: Ray Serve stops a replica whose ``reconfigure`` raises
and starts another with the same config, which cannot start either; the live calls would be cut for a typo.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.agent import Agent
from agents.config import AgentsConfig
from common.config_errors import ConfigError
from llm.names import LOCAL_PROVIDER

Load = Callable[[Any, str], AgentsConfig]  # (content or None for the agents file, source) -> checked agents


def uses_local_llm(agents: AgentsConfig) -> bool:
    """The LocalLLM joins the graph only when an agent (or what clients may pick) names a voi-local model."""
    return bool(local_llm_users(agents))


def local_llm_users(agents: AgentsConfig) -> list[str]:
    """Where a config names a voi-local model, as ``agent 'name': field 'x'`` (or the client policy's field)."""
    found = []
    for name, agent in agents.agents.items():
        if agent.llm_model.startswith(f"{LOCAL_PROVIDER}/"):
            found.append(f"agent '{name}': field 'llm_model'")
        if agent.control is not None and agent.control.model.startswith(f"{LOCAL_PROVIDER}/"):
            found.append(f"agent '{name}': field 'control_agent.model'")
    policy = agents.client_agent_config
    for field_name in ("allowed_llm_models", "invoke_llm_models"):
        if any(model.startswith(f"{LOCAL_PROVIDER}/") for model in getattr(policy, field_name)):
            found.append(f"settings: field 'client_agent_config.{field_name}'")
    return found


def content_version(text: str) -> str:
    """A short fingerprint: the same agents are the same version on every replica."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class AgentsUpdate:
    """What one accepted config changed, for the log and the operator."""

    version: str
    source: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def summary(self) -> str:
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if names]
        return f"agents version {self.version} from {self.source}: {'; '.join(parts) or 'no agent changed'}"


def diff_agents(old: dict[str, Agent], new: dict[str, Agent]) -> tuple[tuple[str, ...], ...]:
    """(added, removed, changed) agent names."""
    added = tuple(sorted(set(new) - set(old)))
    removed = tuple(sorted(set(old) - set(new)))
    changed = tuple(sorted(name for name in set(old) & set(new) if old[name] != new[name]))
    return added, removed, changed


class LiveAgents:
    """The Ingress's agents: ``current`` is what new sessions resolve against."""

    def __init__(self, load: Load, *, has_local_llm: bool) -> None:
        self._load = load
        self._has_local_llm = has_local_llm
        self.current: AgentsConfig | None = None
        self.version = ""
        self.source = ""
        self.refused: str | None = None  # the last refused config's error, until a config is accepted

    def apply(self, content: Any, source: str) -> AgentsUpdate:
        """Check ``content`` (None: the agents file) whole and swap it in; ConfigError leaves everything as it was."""
        try:
            agents = self._load(content, source)
            if not self._has_local_llm and (users := local_llm_users(agents)):
                raise ConfigError(f"{source}: {users[0]}: names a {LOCAL_PROVIDER}/ model, but this graph was "
                                  "deployed without the LocalLLM; deploy the application again to add it")
        except ConfigError as exc:
            self.refused = str(exc)
            raise
        except Exception as exc:  # a check that broke (an MCP server's SDK, a file system error): refused the same way
            self.refused = f"{source}: the check failed: {type(exc).__name__}: {exc}"
            raise ConfigError(self.refused) from exc
        old = self.current.agents if self.current is not None else {}
        added, removed, changed = diff_agents(old, agents.agents)
        version = content_version(repr(agents))  # resolved agents: a file and the same content inline agree
        self.current, self.version, self.source, self.refused = agents, version, source, None
        return AgentsUpdate(version, source, added, removed, changed)

    def status(self) -> dict[str, Any]:
        """For operators: the version in force, where it came from, its agents, and the last refusal."""
        return {"version": self.version, "source": self.source,
                "agents": sorted(self.current.agents) if self.current is not None else [], "refused": self.refused}


def files_fingerprint(path: str | Path) -> tuple[tuple[str, int, int], ...]:
    """What ``--watch-agents`` compares: each agents file's name, size and modification time (a directory of agent
    files: every file in it). A file being rewritten may be caught half-written; its reload is refused and the
    next change (the write's end) is loaded."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    found = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:  # removed meanwhile (an editor's save replaces the file)
            continue
        found.append((file.name, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def with_agents(serve_config: dict[str, Any], content: Any, app_name: str = "voi") -> dict[str, Any]:
    """A copy of ``serve_config`` whose application ``app_name`` gives its Ingress ``content`` (an agents file's
    content) as ``user_config``: what ``serve deploy`` then applies in place (docs/deploying.md)."""
    config = copy.deepcopy(serve_config)
    apps = [app for app in config.get("applications", []) if app.get("name") == app_name]
    if len(apps) != 1:
        raise ConfigError(f"the serve config has no application named {app_name!r}")
    deployments = apps[0].setdefault("deployments", [])
    ingress = next((d for d in deployments if d.get("name") == "Ingress"), None)
    if ingress is None:
        ingress = {"name": "Ingress"}
        deployments.append(ingress)
    ingress["user_config"] = content
    return config
