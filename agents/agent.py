"""An agent: its config as written (``AgentConfig``) and as resolved (``Agent``), what a conversation runs.

Everything a config leaves open is settled here, so consumers never branch on it again: prompt templates
rendered, the system prompt one string, examples as chat messages, a ``control_agent`` named by reference
replaced by that agent's settings, greetings all of one shape, the character voice always set (the first
TTS model of models.yaml when the agent names none). Errors name the file, the agent and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from agents.control import ControlAgentConfig
from agents.prompts import Persona, TemplateError, example_messages, join_prompt, render, wants_json
from agents.recording_settings import RecordingConfig, RecordingSettings, resolve_recording
from agents.tools.spec import HttpToolSpec, McpServerSpec, check_tools
from agents.turns import check_turn_taking
from common.config_errors import ConfigError, describe_validation_error
from common.knobs import home_default
from speech.models_config import ModelsConfig

ECHO_MODEL = "echo"
DEFAULT_TOOL_FILLERS = ("One moment, let me check.",)


class VoiceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str
    voice: str | None = None
    speed: float = Field(default=1.0, gt=0.25, le=4.0)
    leading_silence: float = Field(default=0.0, ge=0.0, le=5.0)
    trailing_silence: float = Field(default=0.0, ge=0.0, le=5.0)


class Voices(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    character: VoiceSpec | None = None
    narrator: VoiceSpec | None = None

    def for_role(self, role: str) -> VoiceSpec | None:
        """The narrator's voice for asides when there is one; else the character speaks them."""
        if role == "narrator" and self.narrator is not None:
            return self.narrator
        return self.character


class GreetingFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    content: str
    file: str | None = None


class Greetings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    choices: list[str | GreetingFile] = Field(default_factory=list)
    voice_tone: str | None = None


# The original Voi's fields that are not AgentConfig's own, and the only ones accepted besides them. In an
# old agents.json a control agent is an entry of its own that other agents name in ``control_agent``: it holds
# that control agent's settings and names its LLM ``model`` (not ``llm_model``). Any other unknown field is an
# error that names the file, the agent and the field (a typo such as ``voices.character.sped`` included).
CONTROL_ENTRY_FIELDS = ("model", "denial_phrases", "denial_classes", "temperature_multiplier", "giveup_after",
                        "giveup_response")


class AgentConfig(BaseModel):
    """One agent as written in agents.yaml (or sent by a client), before it is resolved."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    _control_entry: dict[str, Any] = PrivateAttr(default_factory=dict)  # CONTROL_ENTRY_FIELDS it carries

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
    recording: RecordingConfig | None = None  # over the server-wide recording settings (server agents only)
    turn_taking: dict[str, Any] | None = None  # over the server-wide TurnConfig fields (server agents only)
    tools: list[Any] | None = None  # server-side http tools (server agents only): agents/tools/spec.py
    mcp_servers: list[Any] | None = None  # MCP servers whose tools the agent may call (server agents only)
    max_tool_rounds: int = Field(default=4, ge=1, le=16)  # LLM rounds with tool calls in one reply (the last: none)
    tool_filler_after_s: float = Field(default=1.0, ge=0.0, le=30.0)  # server tools still running: say a filler, once
    tool_fillers: list[str] = Field(default_factory=lambda: list(DEFAULT_TOOL_FILLERS))

    @field_validator("llm_model")
    @classmethod
    def _model_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model ('echo' for the echo agent)")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _control_entry_fields(cls, data: Any, handler: ModelWrapValidatorHandler[AgentConfig]) -> AgentConfig:
        """Set CONTROL_ENTRY_FIELDS aside (checked when another agent names this one as its control agent);
        the original's ``model`` stands for ``llm_model`` when that is missing."""
        carried: dict[str, Any] = {}
        if isinstance(data, dict):
            carried = {key: data[key] for key in CONTROL_ENTRY_FIELDS if key in data}
            data = {key: value for key, value in data.items() if key not in carried}
            if "llm_model" not in data and isinstance(carried.get("model"), str):
                data["llm_model"] = carried["model"]
        agent = handler(data)
        agent._control_entry = carried
        return agent

    def as_control_agent(self) -> dict[str, Any]:
        """This entry's settings as a control agent's (``ControlAgentConfig`` fields)."""
        return {"model": self.llm_model, "system_prompt": self.system_prompt, "examples": self.examples,
                **self._control_entry}




@dataclass(frozen=True)
class ToolSpecs:
    """An agent's server-side tools as checked at load: http tools and MCP servers (agents/tools/spec.py)."""

    http: tuple[HttpToolSpec, ...] = ()
    mcp: tuple[McpServerSpec, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.http or self.mcp)


@dataclass(frozen=True)
class GreetingChoice:
    content: str
    file: str | None = None  # a recording beside agents.yaml, played instead of synthesizing ``content``


@dataclass(frozen=True)
class Agent:
    llm_model: str
    voices: Voices  # ``character`` is always set
    persona: Persona
    control: ControlAgentConfig | None = None  # resolved: its system prompt rendered, its examples messages
    greetings: tuple[GreetingChoice, ...] = ()
    greeting_tone: str | None = None
    # The settings an agent copies from its AgentConfig: their defaults (and comments) are AgentConfig's.
    temperature: float = home_default(AgentConfig, "temperature")
    max_tokens: int | None = home_default(AgentConfig, "max_tokens")
    context_tokens: int = home_default(AgentConfig, "context_tokens")
    llm_timeout_s: float = home_default(AgentConfig, "llm_timeout_s")
    title: str | None = home_default(AgentConfig, "title")
    description: str | None = home_default(AgentConfig, "description")
    recording: RecordingSettings = RecordingSettings()
    turn_taking: Mapping[str, Any] = field(default_factory=dict)  # TurnConfig fields over the server's (checked)
    tools: ToolSpecs = ToolSpecs()
    max_tool_rounds: int = home_default(AgentConfig, "max_tool_rounds")
    tool_filler_after_s: float = home_default(AgentConfig, "tool_filler_after_s")
    tool_fillers: tuple[str, ...] = DEFAULT_TOOL_FILLERS

    @property
    def is_echo(self) -> bool:
        return self.llm_model == ECHO_MODEL

    @property
    def character(self) -> VoiceSpec:
        assert self.voices.character is not None
        return self.voices.character


def build_agent(config: AgentConfig, *, patterns: Mapping[str, str], others: Mapping[str, AgentConfig],
                models: ModelsConfig | None, source: str | Path, name: str, base_dir: Path | None,
                recording: RecordingSettings = RecordingSettings()) -> Agent:
    """Resolve ``config``. ``others`` are the agents a ``control_agent`` may name; ``models`` (None in tests
    that give every voice) checks voices and gives the default one; ``base_dir`` None forbids greeting files
    (and a ``recording`` of its own); ``recording`` is the server-wide setting."""
    where = f"{source}: agent '{name}'"
    control = _control(config.control_agent, others, patterns, config.vars, where)
    part = "system_prompt"
    try:
        system_prompt = render(join_prompt(config.system_prompt), patterns, config.vars)
        part = "examples"
        examples = tuple(
            {**ex, "content": render(ex["content"], patterns, config.vars) if isinstance(ex["content"], str) else ex["content"]}
            for ex in example_messages(config.examples))
        part = "greetings.choices"
        raw_choices = config.greetings.choices if config.greetings else []
        greetings = tuple(GreetingChoice(render(c.content, patterns, config.vars), c.file) if isinstance(c, GreetingFile)
                          else GreetingChoice(render(c, patterns, config.vars)) for c in raw_choices)
    except TemplateError as exc:
        raise ConfigError(f"{where}: field '{part}': {exc}") from None
    voices = _voices(config.voices, models, where)
    _check_greeting_files(greetings, base_dir, where)
    if config.recording is not None:
        if base_dir is None:
            raise ConfigError(f"{where}: field 'recording': not allowed here")
        recording = resolve_recording(recording, config.recording, base_dir)
    for server_only in ("turn_taking", "tools", "mcp_servers"):  # a client's agent_config: never (tools: SSRF)
        if getattr(config, server_only) is not None and base_dir is None:
            raise ConfigError(f"{where}: field '{server_only}': not allowed here")
    tools = ToolSpecs(*check_tools(config.tools or [], config.mcp_servers or [], where))
    return Agent(llm_model=config.llm_model, voices=voices, control=control,
                 persona=Persona(system_prompt, examples, wants_json(system_prompt)), greetings=greetings,
                 greeting_tone=config.greetings.voice_tone if config.greetings else None,
                 temperature=config.temperature, max_tokens=config.max_tokens, context_tokens=config.context_tokens,
                 llm_timeout_s=config.llm_timeout_s, title=config.title, description=config.description,
                 recording=recording, turn_taking=check_turn_taking(config.turn_taking or {}, where), tools=tools,
                 max_tool_rounds=config.max_tool_rounds, tool_filler_after_s=config.tool_filler_after_s,
                 tool_fillers=tuple(config.tool_fillers) or DEFAULT_TOOL_FILLERS)


def _control(ref: ControlAgentConfig | str | None, others: Mapping[str, AgentConfig], patterns: Mapping[str, str],
             variables: Mapping[str, Any], where: str) -> ControlAgentConfig | None:
    """A ``control_agent`` named by string is another agent entry (the old ``*_agent`` reference)."""
    if ref is None:
        return None
    if isinstance(ref, str):
        other = others.get(ref)
        if other is None:
            raise ConfigError(f"{where}: field 'control_agent': no agent named {ref!r}")
        try:
            ref = ControlAgentConfig.model_validate(other.as_control_agent())
        except ValidationError as exc:
            raise describe_validation_error(exc, source=where, entry=f"control agent '{ref}'") from None
    try:
        ref.check()
    except ValueError as exc:
        raise ConfigError(f"{where}: field 'control_agent': {exc}") from None
    try:
        prompt = render(join_prompt(ref.system_prompt), patterns, variables) if ref.system_prompt is not None else None
        examples = example_messages(ref.examples)
    except TemplateError as exc:
        raise ConfigError(f"{where}: field 'control_agent.system_prompt': {exc}") from None
    return ref.model_copy(update={"system_prompt": prompt, "examples": examples})


def _voices(voices: Voices, models: ModelsConfig | None, where: str) -> Voices:
    """Check the voices against models.yaml; without a character voice, the first TTS model's default voice."""
    if models is None:
        if voices.character is None:
            raise ConfigError(f"{where}: field 'voices.character': required")
        return voices
    if voices.character is None:
        voices = voices.model_copy(update={"character": VoiceSpec(model=next(iter(models.tts)))})
    for role in ("character", "narrator"):
        spec: VoiceSpec | None = getattr(voices, role)
        if spec is None:
            continue
        if spec.model not in models.tts:
            raise ConfigError(f"{where}: field 'voices.{role}.model': unknown TTS model {spec.model!r} "
                              f"(models.yaml has {sorted(models.tts)})")
        known = models.tts_voice_names(spec.model)
        if spec.voice is not None and spec.voice not in known:
            raise ConfigError(f"{where}: field 'voices.{role}.voice': unknown voice {spec.voice!r} "
                              f"of model {spec.model!r} (it has {known})")
    return voices


def _check_greeting_files(greetings: tuple[GreetingChoice, ...], base_dir: Path | None, where: str) -> None:
    for index, choice in enumerate(greetings):
        if choice.file is None:
            continue
        if base_dir is None:
            raise ConfigError(f"{where}: field 'greetings.choices.{index}.file': not allowed here")
        file = (base_dir / choice.file).resolve()
        if not file.is_file():
            raise ConfigError(f"{where}: field 'greetings.choices.{index}.file': no such file {file}")
