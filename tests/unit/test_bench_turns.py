"""What scripts/bench_turns.py relies on without a graph: its agents file loads with the settings it names (rules
off / on / on without speculation), and it tells an abandoned reply from the one that answered."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agents.config import load_agents_config
from agents.turns import TurnConfig
from protocol.client import Received
from speech.models_config import load_models_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_turns  # noqa: E402  (a script: its folder holds _repo_path)


@pytest.fixture(scope="module")
def models():
    return load_models_config(ROOT / "models.yaml")


def test_the_agents_file_carries_each_setting(tmp_path, models):
    agents = load_agents_config(bench_turns.agents_file(tmp_path, ["off", "on", "timer"]), models).agents
    assert {"echo_off", "llm_off", "echo_on", "llm_on", "echo_timer", f"llm_{bench_turns.NO_SPECULATION}"} <= set(agents)
    assert agents["echo_off"].is_echo and not agents["llm_on"].is_echo

    def config(name: str) -> TurnConfig:
        return TurnConfig().with_agent(agents[name].turn_taking)

    off, on = config("echo_off"), config("llm_on")
    assert off.resume_window_s == 0 and not off.speculate and off.sentence_max_wait_s == off.turn_max_wait_s
    assert on == TurnConfig(), "'on' is the server's defaults"
    assert not config(f"llm_{bench_turns.NO_SPECULATION}").speculate
    assert config("echo_timer").turn_detection == "timer" and config("llm_off").speculate is False


def _status(value: str, at: float) -> Received:
    return Received({"type": "status", "status": value}, b"", at)


def _assistant(message_id: int, text: str, at: float) -> Received:
    return Received({"type": "message", "role": "assistant", "id": message_id, "content": [{"type": "text", "text": text}]},
                    b"", at)


def test_an_abandoned_reply_is_told_from_the_answer():
    items = [_status("response_created", 1.0), _assistant(2, "I would like", 1.1),
             Received({"type": "audio", "speech_id": "2"}, b"\0\0", 1.3), _status("user_interrupt", 1.5),
             _assistant(2, "I would ... (interrupted)", 1.6),
             _status("response_created", 3.0), _assistant(4, "I would like a table.", 3.1),
             Received({"type": "audio", "speech_id": "4"}, b"\0\0", 3.4), _status("response_done", 3.2)]
    abandoned, answer = bench_turns.replies(items)
    assert abandoned.stopped and abandoned.first_audio_at == 1.3 and abandoned.stopped_at == 1.5
    assert not answer.stopped and answer.text == "I would like a table." and answer.first_audio_at == 3.4
    cut_only = [_status("response_created", 1.0), _assistant(2, "Hello ... (interrupted)", 1.1)]
    assert bench_turns.replies(cut_only)[0].stopped, "a reply whose text was cut counts as stopped"
