"""``agents.yaml``: agent personas, and the policy for agent configs sent by clients.

The file is either the new layout (top-level ``agents:`` plus optional ``prompt_patterns:`` and
``client_agent_config:``) or an old ``agents.json`` (a mapping of agent name to agent; JSON is YAML).
A directory of ``*.json`` / ``*.yaml`` files (the old ``agents/*.json``) loads too, one agent per file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.control import ControlAgentConfig
from agents.prompts import BUILTIN_PATTERNS, TemplateError, example_messages, join_prompt, render
from common.config_errors import ConfigError, describe_validation_error
from common.yaml_files import read_yaml
from speech.models_config import ModelsConfig

log = logging.getLogger(__name__)

ECHO_MODEL = "echo"
UI_ONLY_FIELDS = ("title", "description")


class VoiceSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    voice: str | None = None
    speed: float = Field(default=1.0, gt=0.25, le=4.0)
    leading_silence: float = Field(default=0.0, ge=0.0, le=5.0)
    trailing_silence: float = Field(default=0.0, ge=0.0, le=5.0)


class Voices(BaseModel):
    model_config = ConfigDict(extra="allow")

    character: VoiceSpec | None = None
    narrator: VoiceSpec | None = None

    def for_role(self, role: str) -> VoiceSpec | None:
        """The narrator's voice for asides when there is one; else the character speaks them."""
        if role == "narrator" and self.narrator is not None:
            return self.narrator
        return self.character


class GreetingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str
    file: str | None = None


class Greetings(BaseModel):
    model_config = ConfigDict(extra="allow")

    choices: list[Union[str, GreetingFile]] = Field(default_factory=list)
    voice_tone: str | None = None


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    title: str | None = None
    description: str | None = None
    llm_model: str
    control_agent: ControlAgentConfig | str | None = None  # a config, or the name of another agent that is one
    temperature: float = Field(default=0.5, ge=0.0, le=2.0)  # of the first attempt (a control agent raises it)
    max_tokens: int | None = Field(default=None, ge=1)
    context_tokens: int = Field(default=3000, ge=200)  # system prompt + examples + recent turns (estimated)
    llm_timeout_s: float = Field(default=30.0, gt=0)  # until the first token, and between tokens
    voices: Voices = Field(default_factory=Voices)
    system_prompt: str | list[str] | None = None
    vars: dict[str, str] = Field(default_factory=dict)
    examples: list[Any] = Field(default_factory=list)
    greetings: Greetings | None = None

    @field_validator("llm_model")
    @classmethod
    def _model_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model ('echo' for the echo agent)")
        return value

    @property
    def is_echo(self) -> bool:
        return self.llm_model == ECHO_MODEL

    def unknown_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class ClientAgentPolicy(BaseModel):
    """What a client's ``init.agent_config`` and ``invoke_llm`` may do. The defaults are the safe choice."""

    model_config = ConfigDict(extra="forbid")

    allow_new_agents: bool = False  # may a client define an agent the server does not know?
    allow_override: bool = False  # may a client's config replace a server-defined agent?
    allowed_llm_models: list[str] = Field(default_factory=lambda: [ECHO_MODEL])  # for client-defined agents
    invoke_llm_models: list[str] = Field(default_factory=list)  # invoke_llm may name these (and its agent's own)


class AgentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: dict[str, AgentConfig]
    prompt_patterns: dict[str, str] = Field(default_factory=dict)
    client_agent_config: ClientAgentPolicy = Field(default_factory=ClientAgentPolicy)
    source: str = "agents.yaml"
    base_dir: str = "."


def _read_yaml(path: Path) -> Any:
    return read_yaml(path)


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
        data = _read_yaml(file)
        if isinstance(data, dict) and "llm_model" in data:
            raw_agents[file.stem] = (file, data)
        elif isinstance(data, dict):
            raw_agents.update({name: (file, entry) for name, entry in data.items()})
        else:
            raise ConfigError(f"{file}: must hold one agent or a mapping of agents")
    return raw_agents


def load_agents_config(path: str | Path, models: ModelsConfig) -> AgentsConfig:
    path = Path(path)
    extra: dict[str, Any] = {}
    if path.is_dir():
        sourced = _agents_from_directory(path)
        base_dir = path
    else:
        data = _read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must be a mapping of agents (or have a top-level 'agents:' mapping)")
        if isinstance(data.get("agents"), dict):
            extra = {k: v for k, v in data.items() if k != "agents" and v is not None}
            data = data["agents"]
        sourced = {name: (path, entry) for name, entry in data.items()}
        base_dir = path.parent
    if not sourced:
        raise ConfigError(f"{path}: defines no agents")
    agents = {str(name): parse_agent(entry, source=src, name=str(name)) for name, (src, entry) in sourced.items()}
    try:
        config = AgentsConfig(agents=agents, source=str(path), base_dir=str(base_dir), **extra)
    except ValidationError as exc:
        raise describe_validation_error(exc, source=path, entry="settings") from None
    patterns = {**BUILTIN_PATTERNS, **config.prompt_patterns}
    for name, agent in config.agents.items():
        resolve_control_agent(agent, config.agents, source=sourced[name][0], name=name)
        resolve_templates(agent, patterns, source=sourced[name][0], name=name)
        check_agent_against_models(agent, models, source=sourced[name][0], name=name, base_dir=base_dir)
        if agent.unknown_fields():
            log.warning("%s: agent '%s': ignoring unknown fields %s", path, name, agent.unknown_fields())
    return config


def resolve_control_agent(agent: AgentConfig, agents: dict[str, AgentConfig], *, source: str | Path, name: str) -> None:
    """A ``control_agent`` named by string is another agent entry (the old ``*_agent`` reference)."""
    ref = agent.control_agent
    if isinstance(ref, str):
        other = agents.get(ref)
        if other is None:
            raise ConfigError(f"{source}: agent '{name}': field 'control_agent': no agent named {ref!r}")
        raw = other.model_dump(exclude_none=True)
        raw.setdefault("model", other.llm_model)
        agent.control_agent = ControlAgentConfig.model_validate(raw)
    if isinstance(agent.control_agent, ControlAgentConfig):
        try:
            agent.control_agent.check()
        except ValueError as exc:
            raise ConfigError(f"{source}: agent '{name}': field 'control_agent': {exc}") from None


def resolve_templates(agent: AgentConfig, patterns: dict[str, str], *, source: str | Path, name: str) -> None:
    """Resolve ``{prompt_pattern:...}``, ``{vars:...}`` and the older ``{pattern_name}`` form in place."""
    field = "system_prompt"
    try:
        agent.system_prompt = render(join_prompt(agent.system_prompt), patterns, agent.vars) or None
        field = "examples"
        agent.examples = [
            {**ex, "content": render(ex["content"], patterns, agent.vars) if isinstance(ex["content"], str) else ex["content"]}
            for ex in example_messages(agent.examples)
        ]
        if agent.greetings is not None:
            field = "greetings.choices"
            agent.greetings.choices = [
                GreetingFile(content=render(c.content, patterns, agent.vars), file=c.file) if isinstance(c, GreetingFile)
                else render(c, patterns, agent.vars)
                for c in agent.greetings.choices
            ]
        control = agent.control_agent
        if isinstance(control, ControlAgentConfig) and control.system_prompt is not None:
            field = "control_agent.system_prompt"
            control.system_prompt = render(join_prompt(control.system_prompt), patterns, agent.vars)
    except TemplateError as exc:
        raise ConfigError(f"{source}: agent '{name}': field '{field}': {exc}") from None


def check_agent_against_models(
    agent: AgentConfig, models: ModelsConfig, *, source: str | Path, name: str, base_dir: Path | None
) -> None:
    """Cross-check voices against models.yaml and greeting files against the disk (server agents only).

    An agent without a character voice gets the first TTS model of models.yaml, with its default voice.
    """
    if agent.voices.character is None:
        agent.voices.character = VoiceSpec(model=next(iter(models.tts)))
    for role in ("character", "narrator"):
        spec: VoiceSpec | None = getattr(agent.voices, role)
        if spec is None:
            continue
        if spec.model not in models.tts:
            raise ConfigError(
                f"{source}: agent '{name}': field 'voices.{role}.model': unknown TTS model {spec.model!r} "
                f"(models.yaml has {sorted(models.tts)})"
            )
        voices = models.tts_voice_names(spec.model)
        if spec.voice is not None and spec.voice not in voices:
            raise ConfigError(
                f"{source}: agent '{name}': field 'voices.{role}.voice': unknown voice {spec.voice!r} "
                f"of model {spec.model!r} (it has {voices})"
            )
    if agent.greetings is None:
        return
    for index, choice in enumerate(agent.greetings.choices):
        if isinstance(choice, GreetingFile) and choice.file is not None:
            if base_dir is None:
                raise ConfigError(f"{source}: agent '{name}': field 'greetings.choices.{index}.file': not allowed here")
            file = (base_dir / choice.file).resolve()
            if not file.is_file():
                raise ConfigError(
                    f"{source}: agent '{name}': field 'greetings.choices.{index}.file': no such file {file}"
                )


class AgentRefused(Exception):
    """A client's agent request that the policy refuses; the message is safe to send to the client."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_agent(
    config: AgentsConfig, models: ModelsConfig, name: str, client_config: dict[str, Any] | None
) -> AgentConfig:
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
    if agent.greetings and any(isinstance(c, GreetingFile) and c.file for c in agent.greetings.choices):
        raise AgentRefused(f"{source}: agent '{name}': field 'greetings': a client may not name server files", "file_not_allowed")
    control = agent.control_agent
    if isinstance(control, str):
        raise AgentRefused(f"{source}: agent '{name}': field 'control_agent': a client may not reference other agents", "bad_agent_config")
    if isinstance(control, ControlAgentConfig) and not control.is_pattern_matching and control.model not in policy.allowed_llm_models:
        raise AgentRefused(
            f"{source}: agent '{name}': field 'control_agent.model': {control.model[:60]!r} is not an allowed model", "model_not_allowed"
        )
    try:
        resolve_control_agent(agent, {}, source=source, name=name)
        resolve_templates(agent, {**BUILTIN_PATTERNS, **config.prompt_patterns}, source=source, name=name)
        check_agent_against_models(agent, models, source=source, name=name, base_dir=None)
    except ConfigError as exc:
        raise AgentRefused(str(exc), "bad_agent_config") from None
    return agent
