"""Agent configs know their fields: an unknown one is an error naming the file, the agent and the field, and
the original Voi's extra fields (CONTROL_ENTRY_FIELDS, agents/agent.py) are the only ones accepted besides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.agent import CONTROL_ENTRY_FIELDS, AgentConfig
from agents.config import AgentRefused, load_agents_config, resolve_agent
from agents.control import ControlAgentConfig
from common.config_errors import ConfigError
from harness.speech import write_greeting_file
from speech.models_config import load_models_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models():
    return load_models_config(ROOT / "models.yaml")


def load(tmp_path, models, text, name="agents.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path, lambda: load_agents_config(path, models)


@pytest.mark.parametrize("body, field", [
    ("agents:\n  bob:\n    llm_model: echo\n    voices: {character: {model: piper-joe, sped: 1.2}}\n", "voices.character.sped"),
    ("agents:\n  bob:\n    llm_model: echo\n    voices: {charactr: {model: piper-joe}}\n", "voices.charactr"),
    ("agents:\n  bob:\n    llm_model: echo\n    greetings: {choices: [hi], voice_tone: warm, tone: sad}\n", "greetings.tone"),
    ("agents:\n  bob:\n    llm_model: echo\n    temprature: 0.9\n", "temprature"),
    ("agents:\n  bob:\n    llm_model: echo\n    control_agent: {model: pattern_matching, denial_phrases: [x], giveup: 2}\n",
     "control_agent.ControlAgentConfig.giveup"),
])
def test_an_unknown_field_names_file_agent_and_field(tmp_path, models, body, field):
    path, loading = load(tmp_path, models, body)
    with pytest.raises(ConfigError) as info:
        loading()
    message = str(info.value)
    assert str(path) in message and "agent 'bob'" in message and f"field '{field}'" in message, message


def test_the_original_voi_agents_json_loads(tmp_path, models):
    """The original's agents.example.json layout: a control agent is an entry of its own, named by reference,
    with ``model`` instead of ``llm_model`` and its settings beside."""
    path, loading = load(tmp_path, models, json.dumps({
        "my_bro": {"llm_model": "echo", "control_agent": "control_llama",
                   "voices": {"character": {"model": "piper-joe", "voice": "joe", "speed": 1.1},
                              "narrator": {"model": "piper-joe", "leading_silence": 0.1, "trailing_silence": 0.5}},
                   "system_prompt": ["You are friends.", "Speak simply."], "examples": [],
                   "greetings": {"choices": ["hey bro"], "voice_tone": "neutral"}},
        "control_llama": {"model": "pattern_matching", "denial_phrases": ["I cannot"], "giveup_after": 3,
                          "giveup_response": ["Mmm?", "Sorry, what?"]},
    }), name="agents.json")
    control = loading().agents["my_bro"].control
    assert control.is_pattern_matching and control.denial_phrases == ["I cannot"] and control.giveup_after == 3


def test_a_bad_value_in_a_referenced_control_entry_names_both_agents(tmp_path, models):
    path, loading = load(tmp_path, models, "agents:\n  bob:\n    llm_model: echo\n    control_agent: ctl\n"
                         "  ctl:\n    model: pattern_matching\n    denial_phrases: [x]\n    giveup_after: many\n")
    with pytest.raises(ConfigError, match=r"agent 'bob'.*control agent 'ctl'.*giveup_after"):
        loading()


def test_the_allow_list_is_the_control_agents_own_fields():
    assert set(CONTROL_ENTRY_FIELDS) == set(ControlAgentConfig.model_fields) - set(AgentConfig.model_fields)


@pytest.mark.parametrize("path", [ROOT / "agents.yaml", ROOT / "tests" / "integration" / "agents.yaml"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_agent_files_load(path, models):
    write_greeting_file()  # named by a test agent; on a fresh clone no integration test has written it yet
    models_file = path.parent / "models.yaml"
    assert load_agents_config(path, load_models_config(models_file) if models_file.exists() else models).agents


def test_a_client_config_with_an_unknown_field_is_refused(tmp_path, models):
    _, loading = load(tmp_path, models, "agents:\n  stt_test: {llm_model: echo}\n"
                      "client_agent_config: {allow_new_agents: true, allowed_llm_models: [echo]}\n")
    config = loading()
    with pytest.raises(AgentRefused) as info:
        resolve_agent(config, models, "mine", {"llm_model": "echo", "voices": {"character": {"model": "piper-joe",
                                                                                            "sped": 1.2}}})
    assert info.value.code == "bad_agent_config"
    assert "voices.character.sped" in str(info.value) and "agent 'mine'" in str(info.value)
    assert resolve_agent(config, models, "mine", {"title": "x", "description": "y", "llm_model": "echo"}).is_echo
