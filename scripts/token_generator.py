"""Print an access token for an app: ``python scripts/token_generator.py APP --expire N_DAYS``.

The signing key is TOKEN_SECRET_KEY from the environment or the repo's .env.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _repo_path import ROOT

from common.settings import MissingSecretError, load_secrets
from protocol.tokens import issue_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="the app (integration) name the token is for")
    parser.add_argument("--expire", type=float, default=1.0, metavar="N_DAYS", help="days until it expires (default 1)")
    parser.add_argument("--env-file", default=str(ROOT / ".env"))
    args = parser.parse_args(argv)
    try:
        secrets = load_secrets(dotenv_path=Path(args.env_file), required=("TOKEN_SECRET_KEY",))
        print(issue_token(secrets.token_secret_key, args.app, days=args.expire))
    except (MissingSecretError, ValueError) as exc:
        print(f"token_generator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
