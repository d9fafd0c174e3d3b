"""Reading a YAML config file (JSON is YAML too) with errors that name the file.

agents.yaml, models.yaml and the original Voi's agents/*.json and tts_models.json are all read here, so a missing
or malformed file gives one kind of error, a ConfigError that starts with the file's path, instead of a parser's
traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from common.config_errors import ConfigError


def read_yaml(path: Path) -> Any:
    """The document in ``path`` (None for an empty file); ConfigError when it is missing or not YAML/JSON."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from None


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The mapping in ``path``; anything else is a ConfigError ``<path>: <what>`` (what it must be instead)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {what}")
    return raw
