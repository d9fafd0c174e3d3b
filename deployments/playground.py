"""The browser playground's HTTP side: its static files, the agent list it picks from, and the (ext) turn
metrics it draws. Ray-free helpers the Ingress routes call.

The page is plain HTML, CSS and JavaScript modules kept in ``playground/`` at the repo root (no build step,
nothing fetched from the network). The files are read once when the Ingress starts, so a request can only
ever get one of them (no path from the URL reaches the filesystem) and a missing file fails at start-up.
The page holds no secret: the token comes from the URL ``scripts/run.sh`` prints, from the user, or from
``POST /integrations/playground`` with the API key the operator types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.config import AgentsConfig
from agents.timeline import TurnReport
from common.errors import CodedError
from protocol import messages as m

PLAYGROUND_DIR = Path(__file__).resolve().parents[1] / "playground"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# Served with every file: the page may talk only to its own origin and load nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
                               "media-src 'self' blob:; style-src 'self'; script-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",  # the token in the page's URL never leaves in a Referer header
    "X-Content-Type-Options": "nosniff",
}


class PlaygroundMissing(CodedError):
    default_code = "playground_missing"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


def load_static_files(directory: Path = PLAYGROUND_DIR) -> dict[str, StaticFile]:
    """Every file under ``directory`` by its relative URL path (``index.html``, ``js/app.js``, ...)."""
    if not (directory / "index.html").is_file():
        raise PlaygroundMissing(f"the playground page {directory / 'index.html'} is missing")
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.rglob("*")):
        kind = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and kind is not None:
            files[path.relative_to(directory).as_posix()] = StaticFile(path.read_bytes(), kind)
    return files


def wants_html(accept: str | None) -> bool:
    """A browser navigating to ``/`` asks for text/html first; API clients (curl, httpx, probes) do not."""
    return bool(accept) and "text/html" in accept.split(",")[0].lower()


def agent_list(agents: AgentsConfig) -> list[dict[str, Any]]:
    """What the page's agent picker shows: name, title and description of each server agent."""
    return [{"name": name, "title": agent.title or name, "description": agent.description or ""}
            for name, agent in sorted(agents.agents.items())]


def turn_metrics_message(report: TurnReport) -> m.ServerMessage:
    """(ext) ``turn_metrics``: one answered turn's stage times, for clients whose ``init`` asked for them."""
    return m.turn_metrics(report.speech_id, report.mode, report.stages_ms, voice_to_voice_ms=report.voice_to_voice_ms,
                          stt_final_ms=report.stt_final_ms, llm_first_token_ms=report.llm_first_token_ms,
                          tts_first_audio_ms=report.tts_first_audio_ms, tool_ms=report.tool_ms, reopened=report.reopened,
                          speculation=report.speculation, discarded_llm_calls=report.discarded_llm_calls,
                          discarded_llm_tokens=report.discarded_llm_tokens, discarded_tts_s=report.discarded_tts_s)
