"""Agents updated while the server runs (agents/live_config.py, the Ingress side in deployments/agent_updates.py):
a good config is swapped in whole, a bad one is refused naming its source, agent and field while the old one
stays, and a removed agent stays with the conversations that started with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents.config import AgentRefused, agents_from_mapping, load_agents_config, resolve_agent
from agents.greeting import greeting_renders
from agents.live_config import LiveAgents, files_fingerprint, uses_local_llm
from common.config_errors import ConfigError
from deployments.agent_updates import AgentUpdates
from speech.models_config import load_models_config

ROOT = Path(__file__).resolve().parents[2]
VOICE = {"character": {"model": "piper-joe", "voice": "joe"}}


@pytest.fixture(scope="module")
def models():
    return load_models_config(ROOT / "models.yaml")


def content(**agents: dict) -> dict:
    return {"agents": agents, "prompt_patterns": {"style": "Be brief."}}


@pytest.fixture
def live(models, tmp_path):
    file = tmp_path / "agents.yaml"
    file.write_text("agents:\n  first:\n    llm_model: echo\n")

    def load(data, source):
        if data is None:
            return load_agents_config(file, models)
        return agents_from_mapping(data, models, source=source, base_dir=tmp_path)

    agents = LiveAgents(load, has_local_llm=False)
    agents.apply(None, str(file))
    return agents


def test_a_good_config_is_swapped_in_and_says_what_changed(live, models):
    before = live.version
    update = live.apply(content(first={"llm_model": "echo", "temperature": 0.3}, second={"llm_model": "echo"}),
                        "user_config")
    assert (update.added, update.removed, update.changed) == (("second",), (), ("first",))
    assert set(live.current.agents) == {"first", "second"} and live.version == update.version != before
    assert live.current.patterns["style"] == "Be brief."  # prompt patterns come with it
    assert "added second" in update.summary() and live.status()["refused"] is None
    again = live.apply(content(first={"llm_model": "echo", "temperature": 0.3}, second={"llm_model": "echo"}), "user_config")
    assert again.version == update.version and not (again.added or again.removed or again.changed)


@pytest.mark.parametrize("bad, needles", [
    (content(first={"llm_model": "echo", "voices": {"character": {"model": "piper-joe", "speed": -1}}}),
     ["user_config", "agent 'first'", "voices.character.speed"]),
    (content(first={"llm_model": "echo", "system_prompt": "{prompt_pattern:missing}"}), ["agent 'first'", "missing"]),
    ({"agents": {"first": {"llm_model": "echo"}}, "client_agent_config": {"allow_everything": True}},
     ["settings", "allow_everything"]),
    ({"agents": {}}, ["defines no agents"]),
    (["not", "a", "mapping"], ["must be a mapping"]),
])
def test_a_bad_config_is_refused_naming_the_field_and_the_old_one_stays(live, bad, needles):
    before, version = live.current, live.version
    with pytest.raises(ConfigError) as refused:
        live.apply(bad, "user_config")
    assert all(needle in str(refused.value) for needle in needles), str(refused.value)
    assert live.current is before and live.version == version
    assert live.status()["refused"] == str(refused.value)
    live.apply(content(first={"llm_model": "echo"}), "user_config")  # the next good one clears the refusal
    assert live.status()["refused"] is None


def test_a_check_that_breaks_is_a_refusal_too(models):
    def load(data, source):
        raise OSError("disk gone")

    with pytest.raises(ConfigError, match="user_config: the check failed: OSError: disk gone"):
        LiveAgents(load, has_local_llm=False).apply({}, "user_config")


def test_a_local_model_is_refused_where_the_graph_has_no_local_llm(live):
    with pytest.raises(ConfigError, match=r"agent 'local': field 'llm_model'.*LocalLLM"):
        live.apply(content(first={"llm_model": "echo"}, local={"llm_model": "voi-local/smollm2"}), "user_config")
    assert set(live.current.agents) == {"first"}


def test_a_removed_agent_stays_with_its_live_conversation(live, models):
    live.apply(content(first={"llm_model": "echo"}, leaving={"llm_model": "echo", "greetings": {"choices": ["Bye"]}}),
               "user_config")
    in_use = resolve_agent(live.current, models, "leaving", None)  # a conversation started with it
    update = live.apply(content(first={"llm_model": "echo"}), "user_config")
    assert update.removed == ("leaving",)
    with pytest.raises(AgentRefused) as refused:  # a new caller cannot start it
        resolve_agent(live.current, models, "leaving", None)
    assert refused.value.code == "unknown_agent"
    assert in_use.greetings[0].content == "Bye" and in_use.is_echo  # the live one keeps its own, resolved agent


def test_new_greetings_are_rendered_for_the_cache(models, tmp_path):
    (tmp_path / "x.wav").write_bytes(b"")
    agents = agents_from_mapping(content(a={"llm_model": "echo", "voices": VOICE,
                                            "greetings": {"choices": ["Hello there.", {"content": "Hi", "file": "x.wav"}]}}),
                                 models, source="user_config", base_dir=tmp_path)
    assert greeting_renders(agents.agents) == [{"text": "Hello there.", "model": "piper-joe", "voice": "joe",
                                                "tone": None, "speed": 1.0}]  # a recording is played, not rendered


def test_the_shipped_agents_use_the_local_llm(models):
    assert uses_local_llm(load_agents_config(ROOT / "agents.yaml", models))


def test_the_watch_sees_a_change_of_the_file_or_the_directory(tmp_path):
    file = tmp_path / "agents.yaml"
    file.write_text("agents: {}\n")
    before = files_fingerprint(file)
    file.write_text("agents: {a: {llm_model: echo}}\n")
    assert files_fingerprint(file) != before
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "a.yaml").write_text("llm_model: echo\n")
    seen = files_fingerprint(folder)
    stat = (folder / "a.yaml").stat()
    os.utime(folder / "a.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert files_fingerprint(folder) != seen


class Synthesizer:
    """Stands in for the Synthesizer's deployment handle: records what it is asked to render."""

    def __init__(self) -> None:
        self.rendered: list[list[dict]] = []
        self.prerender = self

    def remote(self, renders: list[dict]) -> None:
        self.rendered.append(renders)


def updates(tmp_path, models):
    file = tmp_path / "agents.yaml"
    file.write_text("agents:\n  first:\n    llm_model: echo\n")
    synthesizer = Synthesizer()
    return AgentUpdates(str(file), models, synthesizer, has_local_llm=False), synthesizer, file


async def test_serve_reconfigure_refuses_a_bad_update_without_raising_but_a_bad_first_config_fails_the_replica(tmp_path, models):
    ingress, synthesizer, _ = updates(tmp_path, models)
    await ingress.reconfigure(content(first={"llm_model": "echo"}, hello={"llm_model": "echo", "voices": VOICE,
                                                                    "greetings": {"choices": ["Welcome."]}}))
    assert set(ingress.agents.agents) == {"first", "hello"} and ingress.live.source == "the Ingress's user_config"
    assert [r["text"] for r in synthesizer.rendered[-1]] == ["Welcome."]  # only the new agent's greeting
    await ingress.reconfigure(content(first={"llm_model": "echo", "temperature": "hot"}))  # refused, no raise
    assert set(ingress.agents.agents) == {"first", "hello"} and "temperature" in ingress.live.refused
    (tmp_path / "fresh").mkdir()
    fresh, _, _ = updates(tmp_path / "fresh", models)
    with pytest.raises(ConfigError, match="temperature"):  # a replica that starts with a bad config does not start
        await fresh.reconfigure(content(first={"llm_model": "echo", "temperature": "hot"}))


async def test_the_file_reload_reports_and_stops_once_a_user_config_is_in_force(tmp_path, models):
    ingress, _, file = updates(tmp_path, models)
    file.write_text("agents:\n  first:\n    llm_model: echo\n  added:\n    llm_model: echo\n")
    outcome = (await ingress.reload_file())
    assert outcome["ok"] and "added added" in outcome["summary"] and outcome["agents"] == ["added", "first"]
    file.write_text("agents:\n  first:\n    llm_model: echo\n    max_tokens: -5\n")
    outcome = (await ingress.reload_file())
    assert not outcome["ok"] and "agent 'first'" in outcome["error"] and "max_tokens" in outcome["error"]
    assert outcome["agents"] == ["added", "first"]  # the old config stays
    await ingress.reconfigure(content(first={"llm_model": "echo"}))
    assert "user_config" in (await ingress.reload_file())["error"]
