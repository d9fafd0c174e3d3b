"""Server secrets from the environment or a ``.env`` file: ``TOKEN_SECRET_KEY``, ``API_KEY`` and (optional) the
LiteLLM proxy of bare model names, ``LITELLM_API_BASE`` / ``LITELLM_API_KEY``, and (optional) ``TWILIO_AUTH_TOKEN``, with
which the phone webhook checks Twilio's signature (docs/telephony.md)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

REQUIRED = ("TOKEN_SECRET_KEY", "API_KEY")
OPTIONAL = ("LITELLM_API_BASE", "LITELLM_API_KEY", "TWILIO_AUTH_TOKEN")
MIN_SECRET_LENGTH = 32  # HS256 wants a key of at least 256 bits


class MissingSecretError(RuntimeError):
    pass


@dataclass(frozen=True)
class Secrets:
    token_secret_key: str
    api_key: str
    llm_api_base: str | None = None
    llm_api_key: str | None = None
    twilio_auth_token: str | None = None

    def __repr__(self) -> str:  # never print secrets, not even by accident in a log
        return (f"Secrets(token_secret_key=***, api_key=***, llm_api_base={self.llm_api_base!r}, llm_api_key=***, "
                f"twilio_auth_token={'***' if self.twilio_auth_token else None})")


def load_secrets(
    env: Mapping[str, str] | None = None, dotenv_path: Path | None = None, required: tuple[str, ...] = REQUIRED
) -> Secrets:
    """Environment variables win over ``.env``; raise MissingSecretError naming every missing or weak one."""
    values: dict[str, str | None] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        values.update(dotenv_values(dotenv_path))
    source = os.environ if env is None else env
    values.update({k: source[k] for k in REQUIRED + OPTIONAL if source.get(k)})
    missing = [k for k in required if not values.get(k)]
    if missing:
        where = f"the environment or {dotenv_path}" if dotenv_path else "the environment"
        raise MissingSecretError(
            f"missing {', '.join(missing)}: set {' and '.join(missing)} in {where} "
            "(scripts/run.sh writes a .env with random values on a first run)"
        )
    token_key = values.get("TOKEN_SECRET_KEY") or ""
    if len(token_key) < MIN_SECRET_LENGTH:
        raise MissingSecretError(f"TOKEN_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters long")
    return Secrets(token_secret_key=token_key, api_key=values.get("API_KEY") or "",
                   llm_api_base=values.get("LITELLM_API_BASE") or None, llm_api_key=values.get("LITELLM_API_KEY") or None,
                   twilio_auth_token=values.get("TWILIO_AUTH_TOKEN") or None)


def write_first_run_dotenv(path: Path) -> bool:
    """Create ``path`` with fresh random secrets unless it exists; return True when it was written."""
    if path.exists():
        return False
    path.write_text(
        "# Written by scripts/run.sh on a first run. Keep it private; delete it to get new secrets.\n"
        f"TOKEN_SECRET_KEY={secrets.token_urlsafe(48)}\n"
        f"API_KEY={secrets.token_urlsafe(24)}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return True
