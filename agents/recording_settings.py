"""``recording:`` settings: server-wide at the top of agents.yaml, overridable per agent; off by default.

A client's ``agent_config`` may not set them: what is recorded is the operator's decision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class RecordingConfig(BaseModel):
    """``recording:`` as written; in an agent, the fields it sets win over the server-wide ones."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None  # off by default
    audio: bool | None = None  # false: the transcript only; true: each user turn and each speech as Ogg/Opus too
    directory: str | None = None  # relative to the agents file; default "recordings" beside it
    retention_days: float | None = Field(default=None, gt=0)  # scripts/recordings.py purge deletes older ones


@dataclass(frozen=True)
class RecordingSettings:
    enabled: bool = False
    audio: bool = False
    directory: str = "recordings"  # absolute once resolved
    retention_days: float = 30.0


def resolve_recording(base: RecordingSettings, config: RecordingConfig | None, base_dir: str | Path) -> RecordingSettings:
    """``config``'s fields over ``base``; a relative directory is relative to ``base_dir``."""
    settings = replace(base, **(config.model_dump(exclude_none=True) if config is not None else {}))
    directory = (Path(base_dir) / Path(settings.directory).expanduser()).resolve()
    return replace(settings, directory=str(directory))


def recording_directories(agents_file: str | Path) -> list[Path]:
    """Every directory the agents file records into (server-wide and per agent), for scripts/recordings.py:
    read from the YAML as written, without loading the models."""
    from common.yaml_files import read_yaml

    path = Path(agents_file)
    data = read_yaml(path)
    if not isinstance(data, dict):
        return []
    server = resolve_recording(RecordingSettings(), RecordingConfig.model_validate(data.get("recording") or {}), path.parent)
    found = [Path(server.directory)]
    agents = data.get("agents") if isinstance(data.get("agents"), dict) else {}
    for entry in agents.values():
        if isinstance(entry, dict) and isinstance(entry.get("recording"), dict):
            own = resolve_recording(server, RecordingConfig.model_validate(entry["recording"]), path.parent)
            found.append(Path(own.directory))
    return list(dict.fromkeys(found))
