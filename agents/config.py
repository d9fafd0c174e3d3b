"""``agents.yaml``: agent personas, and the policy for agent configs sent by clients.

The file is either the new layout (top-level ``agents:`` plus optional ``prompt_patterns:`` and
``client_agent_config:``) or an old ``agents.json`` (a mapping of agent name to agent; JSON is YAML).
A directory of ``*.json`` / ``*.yaml`` files (the old ``agents/*.json``) loads too, one agent per file.
Every agent is resolved once, here (agents/agent.py); sessions get the resolved, frozen ``Agent``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.agent import ECHO_MODEL, Agent, AgentConfig, build_agent
from agents.prompts import BUILTIN_PATTERNS
from agents.recording_settings import RecordingConfig, RecordingSettings, resolve_recording
from agents.tools.toolbox import probe_mcp_servers
from common.config_errors import ConfigError, describe_validation_error
from common.errors import CodedError
from common.yaml_files import read_yaml
from speech.models_config import ModelsConfig

log = logging.getLogger(__name__)

UI_ONLY_FIELDS = ("title", "description")


class ClientAgentPolicy(BaseModel):
    """What a client's ``init.agent_config`` and ``invoke_llm`` may do. The defaults are the safe choice."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    allow_new_agents: bool = False  # may a client define an agent the server does not know?
    allow_override: bool = False  # may a client's config replace a server-defined agent?
    allowed_llm_models: list[str] = Field(default_factory=lambda: [ECHO_MODEL])  # for client-defined agents
    invoke_llm_models: list[str] = Field(default_factory=list)  # invoke_llm may name these (and its agent's own)


class _Settings(BaseModel):
    """The file's settings beside its agents."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt_patterns: dict[str, str] = Field(default_factory=dict)
    client_agent_config: ClientAgentPolicy = Field(default_factory=ClientAgentPolicy)
    recording: RecordingConfig | None = None  # server-wide; off unless enabled


@dataclass(frozen=True)
class AgentsConfig:
    agents: dict[str, Agent]
    patterns: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_PATTERNS))  # built-in + prompt_patterns
    client_agent_config: ClientAgentPolicy = field(default_factory=ClientAgentPolicy)
    source: str = "agents.yaml"
    base_dir: str = "."
    recording: RecordingSettings = RecordingSettings()  # server-wide (each agent carries its own, resolved)


def parse_agent(raw: Any, *, source: str | Path, name: str) -> AgentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: agent '{name}': must be a mapping of fields, got {type(raw).__name__}")
    try:
        agent = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        raise describe_validation_error(exc, source=source, entry=f"agent '{name}'") from None
    return agent


def _agents_from_directory(directory: Path) -> dict[str, Any]:
    raw_agents: dict[str, Any] = {}
    for file in sorted([*directory.glob("*.json"), *directory.glob("*.yaml"), *directory.glob("*.yml")]):
        data = read_yaml(file)
        if isinstance(data, dict) and "llm_model" in data:
            raw_agents[file.stem] = (file, data)
        elif isinstance(data, dict):
            raw_agents.update({name: (file, entry) for name, entry in data.items()})
        else:
            raise ConfigError(f"{file}: must hold one agent or a mapping of agents")
    return raw_agents


def load_agents_config(path: str | Path, models: ModelsConfig) -> AgentsConfig:
    path = Path(path)
    if path.is_dir():
        return _build(_agents_from_directory(path), {}, models, source=path, base_dir=path)
    return agents_from_mapping(read_yaml(path), models, source=path, base_dir=path.parent)


def agents_from_mapping(data: Any, models: ModelsConfig, *, source: str | Path, base_dir: str | Path) -> AgentsConfig:
    """An agents file's content, already parsed (a file, or the Ingress's ``user_config``): errors name ``source``.
    Greeting recordings and recording directories are relative to ``base_dir``."""
    extra: dict[str, Any] = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping of agents (or have a top-level 'agents:' mapping)")
    if isinstance(data.get("agents"), dict):
        extra = {k: v for k, v in data.items() if k != "agents" and v is not None}
        data = data["agents"]
    sourced = {name: (source, entry) for name, entry in data.items()}
    return _build(sourced, extra, models, source=source, base_dir=Path(base_dir))


def _build(sourced: dict[str, Any], extra: dict[str, Any], models: ModelsConfig, *, source: str | Path,
           base_dir: Path) -> AgentsConfig:
    if not sourced:
        raise ConfigError(f"{source}: defines no agents")
    raw = {str(name): parse_agent(entry, source=src, name=str(name)) for name, (src, entry) in sourced.items()}
    try:
        settings = _Settings(**extra)
    except ValidationError as exc:
        raise describe_validation_error(exc, source=source, entry="settings") from None
    patterns = {**BUILTIN_PATTERNS, **settings.prompt_patterns}
    recording = resolve_recording(RecordingSettings(), settings.recording, base_dir)
    agents: dict[str, Agent] = {}
    for name, config in raw.items():
        where = sourced[name][0]
        agents[name] = build_agent(config, patterns=patterns, others=raw, models=models, source=where, name=name,
                                   base_dir=base_dir, recording=recording)
        probe_mcp_servers(agents[name].tools.mcp, f"{where}: agent '{name}'")  # a stdio server must start here
    return AgentsConfig(agents, patterns, settings.client_agent_config, str(source), str(base_dir), recording)


class AgentRefused(CodedError):
    """A client's agent request that the policy refuses; the message is safe to send to the client."""


def resolve_agent(
    config: AgentsConfig, models: ModelsConfig, name: str, client_config: dict[str, Any] | None
) -> Agent:
    """The agent a session runs: the server's, or the client's own when the policy allows it."""
    policy = config.client_agent_config
    server_agent = config.agents.get(name)
    client_fields = {k: v for k, v in (client_config or {}).items() if k not in UI_ONLY_FIELDS}
    if server_agent is not None and (not client_fields or not policy.allow_override):
        return server_agent  # the JS client always sends its own entry: ignore it unless overrides are allowed
    if server_agent is None and not policy.allow_new_agents:
        raise AgentRefused(f"unknown agent {name[:60]!r}", "unknown_agent")
    if server_agent is None and not client_fields:
        raise AgentRefused(f"unknown agent {name[:60]!r} and no agent_config to define it", "unknown_agent")
    source = "init.agent_config"
    try:
        agent = parse_agent(client_config, source=source, name=name)
    except ConfigError as exc:
        raise AgentRefused(str(exc), "bad_agent_config") from None
    if agent.llm_model not in policy.allowed_llm_models:
        raise AgentRefused(
            f"{source}: agent '{name}': field 'llm_model': {agent.llm_model[:60]!r} is not an allowed model", "model_not_allowed"
        )
    if agent.greetings and any(not isinstance(c, str) and c.file for c in agent.greetings.choices):
        raise AgentRefused(f"{source}: agent '{name}': field 'greetings': a client may not name server files", "file_not_allowed")
    if agent.recording is not None:
        raise AgentRefused(f"{source}: agent '{name}': field 'recording': what is recorded is the server's choice",
                           "bad_agent_config")
    if agent.turn_taking is not None:  # its cadences load the shared Transcriber: the server's to set
        raise AgentRefused(f"{source}: agent '{name}': field 'turn_taking': turn-taking is the server's choice",
                           "bad_agent_config")
    control = agent.control_agent
    if isinstance(control, str):
        raise AgentRefused(f"{source}: agent '{name}': field 'control_agent': a client may not reference other agents", "bad_agent_config")
    if control is not None and not control.is_pattern_matching and control.model not in policy.allowed_llm_models:
        raise AgentRefused(
            f"{source}: agent '{name}': field 'control_agent.model': {control.model[:60]!r} is not an allowed model", "model_not_allowed"
        )
    try:
        return build_agent(agent, patterns=config.patterns, others={}, models=models, source=source, name=name,
                           base_dir=None, recording=config.recording)
    except ConfigError as exc:
        raise AgentRefused(str(exc), "bad_agent_config") from None
