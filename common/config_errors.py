"""Turning pydantic validation errors into messages that name the file, the entry and the field."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class ConfigError(ValueError):
    """Bad configuration; the message names the file, the entry (agent or model) and the field."""


def describe_validation_error(exc: ValidationError, *, source: str | Path, entry: str) -> ConfigError:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"field '{field}': {err['msg']}")
    return ConfigError(f"{source}: {entry}: " + "; ".join(problems))
