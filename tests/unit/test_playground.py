"""The playground's server side without a graph: which requests get the page, the static files, the agent
list, the opt-in turn metrics and the URL run.sh prints."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agents.config import load_agents_config
from agents.timeline import TurnTimeline
from common.settings import Secrets
from deployments.playground import PLAYGROUND_DIR, PlaygroundMissing, agent_list, load_static_files, turn_metrics_message, wants_html
from protocol import messages as m
from protocol.framing import Frame
from protocol.tokens import verify_token
from serve_app import ROOT, playground_url
from speech.models_config import load_models_config


@pytest.mark.parametrize("accept, html", [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # a browser navigating
    ("*/*", False),  # curl
    (None, False),
    ("application/json", False),
    ("application/json, text/html", False),  # an API client that merely tolerates HTML
])
def test_only_a_browser_gets_the_page(accept, html):
    assert wants_html(accept) is html


def test_static_files_are_the_repo_folder_and_hold_no_secret_names():
    files = load_static_files()
    assert {"index.html", "style.css", "js/app.js", "js/capture-worklet.js", "js/player-worklet.js"} <= set(files)
    assert files["js/app.js"].content_type.startswith("text/javascript")  # module scripts need a JS type
    page = files["index.html"].body.decode()
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    for name, found in files.items():
        text = found.body.decode()
        assert "API_KEY=" not in text and "TOKEN_SECRET_KEY" not in text, name
        assert not re.search(r"""(src|href|import[^;]*from)\s*=?\s*["']https?:""", text), name


def test_missing_page_fails_at_start(tmp_path: Path):
    with pytest.raises(PlaygroundMissing) as caught:
        load_static_files(tmp_path)
    assert caught.value.code == "playground_missing" and "index.html" in str(caught.value)
    assert (PLAYGROUND_DIR / "index.html").is_file()


def test_agent_list_names_titles_descriptions():
    agents = load_agents_config(ROOT / "agents.yaml", load_models_config(ROOT / "models.yaml"))
    listed = {a["name"]: a for a in agent_list(agents)}
    assert set(listed) == set(agents.agents)
    assert all(set(a) == {"name", "title", "description"} and a["title"] for a in listed.values())


def test_turn_metrics_are_opt_in_and_carry_the_timeline():
    assert m.parse_client_message(Frame({"type": "init", "agent_name": "a"})).send_turn_metrics is False
    init = m.parse_client_message(Frame({"type": "init", "agent_name": "a", "send_turn_metrics": True}))
    assert init.send_turn_metrics is True
    timeline = TurnTimeline("a", "chat")
    for at, stage in enumerate(["speech_end", "transcript_final", "llm_first_token", "first_text_to_tts",
                                "first_tts_chunk", "first_audio_sent"]):
        timeline.mark(stage, at / 10)
    msg = turn_metrics_message(replace(timeline.report(), speech_id="4"))
    assert msg.header["type"] == "turn_metrics" and msg.header["speech_id"] == "4" and msg.payload == b""
    assert msg.header["stages_ms"]["first_audio_sent"] == pytest.approx(500)
    assert msg.header["voice_to_voice_ms"] == pytest.approx(500)
    assert msg.header["llm_first_token_ms"] == pytest.approx(100)


def test_the_printed_url_carries_a_short_lived_playground_token():
    secrets = Secrets(token_secret_key="k" * 40, api_key="a" * 20)
    url = playground_url("http://127.0.0.1:8000", secrets.token_secret_key, hours=8)
    assert url.startswith("http://127.0.0.1:8000/?token=")
    assert secrets.api_key not in url
    claims = verify_token(url.split("token=", 1)[1], secrets.token_secret_key)
    assert claims.app == "playground"
    assert 7.9 * 3600 < claims.expires_at - time.time() <= 8 * 3600
