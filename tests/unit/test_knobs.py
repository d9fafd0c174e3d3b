"""One home per setting: a setting's default is written once; every other place reads it from there
(common/knobs.py). These tests fail when a setting is defined twice."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from agents.agent import Agent, AgentConfig
from agents.listener import Listener
from agents.recording import Recorder
from agents.services import SessionPolicy
from agents.turns import TurnConfig
from common.knobs import HOME_KEY, borrowed_from, home_default
from deployments.connection import IngressOptions
from deployments.placement import HostOptions
from deployments.transcriber import Batching
from protocol.limits import AdmissionLimits, ClientLimits
from protocol.twilio_voice import PhoneOptions
from serve_app import AppArgs

ROOT = Path(__file__).resolve().parents[2]
HOMES = (TurnConfig, SessionPolicy, HostOptions, IngressOptions, AdmissionLimits, ClientLimits, Batching, PhoneOptions)
# Every class that declares settings with defaults; a name with a written-out default in two of them is a
# setting defined twice.
SETTING_CLASSES = (*HOMES, AppArgs, AgentConfig, Agent, Listener)
# Same name, not the same setting: an Agent holds the resolved form (greetings: a tuple of choices, always;
# recording: the server-wide settings with the agent's over them; ...).
RESOLVED = {"greetings", "tool_fillers", "voices", "recording", "turn_taking", "tools"}


def literal_defaults(cls: type) -> dict[str, object]:
    """The fields of ``cls`` whose default is written out in its body (a literal, or Field(default=literal)),
    as opposed to read from elsewhere."""
    tree = ast.parse(inspect.getsource(cls))
    found: dict[str, object] = {}
    for node in tree.body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None):
            continue
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Field":
            value = next((k.value for k in value.keywords if k.arg == "default"), None)
        try:
            found[node.target.id] = ast.literal_eval(value) if value is not None else None
        except ValueError:
            continue  # a name, a call: read from elsewhere
        if value is None:
            del found[node.target.id]
    return found


def field_names(cls: type) -> set[str]:
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return set(cls.model_fields)


def test_no_setting_has_two_written_defaults():
    seen: dict[str, str] = {}
    twice = []
    for cls in SETTING_CLASSES:
        for name in literal_defaults(cls):
            if name in seen and not (name in RESOLVED and cls is Agent):
                twice.append(f"{name}: {seen[name]} and {cls.__name__}")
            seen[name] = cls.__name__
    assert not twice, "defined twice (borrow one from the other, common/knobs.py): " + "; ".join(twice)


def test_the_scanner_sees_written_defaults():
    assert literal_defaults(TurnConfig)["end_of_turn_s"] == 0.7
    assert literal_defaults(HostOptions)["sessions_per_host"] == 64
    assert "end_of_turn_s" not in literal_defaults(AppArgs)  # borrowed
    assert "temperature" not in literal_defaults(Agent)  # read from AgentConfig


def test_builder_args_borrow_what_they_configure():
    """An AppArgs field named like a field of a class it configures is borrowed from it, with its default."""
    for home in HOMES:
        borrowed = borrowed_from(AppArgs, home)
        for field, home_field in borrowed.items():
            assert AppArgs.model_fields[field].get_default(call_default_factory=True) == home_default(home, home_field)
        same_name = field_names(home) & set(AppArgs.model_fields)
        assert same_name <= set(borrowed), f"AppArgs repeats {sorted(same_name - set(borrowed))} of {home.__name__}"


def test_every_home_is_used_by_the_builder():
    for home in HOMES:
        assert borrowed_from(AppArgs, home), home.__name__
    marked = {f for f, info in AppArgs.model_fields.items()
              if isinstance(info.json_schema_extra, dict) and HOME_KEY in info.json_schema_extra}
    own = set(AppArgs.model_fields) - marked
    assert own == {"agents", "models", "env_file", "local_llm_threads"}, own


def test_a_borrowed_field_keeps_its_homes_checks():
    with pytest.raises(ValueError):
        AppArgs(end_of_turn_s=0)  # TurnConfig: gt=0
    with pytest.raises(ValueError):
        AppArgs(turn_detection="psychic")


def test_an_agent_starts_from_its_configs_defaults():
    config = AgentConfig(llm_model="echo")
    for item in dataclasses.fields(Agent):
        if item.name in AgentConfig.model_fields and item.default is not dataclasses.MISSING:
            if item.name not in RESOLVED:
                assert item.default == getattr(config, item.name), item.name


def test_the_turn_length_limit_is_defined_once():
    assert Listener.__dataclass_fields__["max_turn_s"].default == SessionPolicy.max_turn_seconds
    assert inspect.signature(Recorder).parameters["max_turn_seconds"].default == SessionPolicy.max_turn_seconds
    written = [path for path in (ROOT / "agents").rglob("*.py")
               if "max_turn_s: float = 1" in path.read_text() or "max_turn_seconds: float = 1" in path.read_text()]
    assert [p.name for p in written] == ["services.py"], written
