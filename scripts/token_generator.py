"""Print an access token for an app: ``python scripts/token_generator.py APP --expire N_DAYS``.

The signing key is TOKEN_SECRET_KEY from the environment or the repo's .env. The server refuses tokens
that live longer than its ``max_token_days`` (30 by default), so longer lifetimes are refused here too
unless ``--allow-long`` says the server was configured for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _repo_path import ROOT

from common.settings import MissingSecretError, load_secrets
from protocol.tokens import DEFAULT_MAX_DAYS, issue_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="the app (integration) name the token is for")
    parser.add_argument("--expire", type=float, default=1.0, metavar="N_DAYS", help="days until it expires (default 1)")
    parser.add_argument("--allow-long", action="store_true",
                        help=f"allow more than {DEFAULT_MAX_DAYS:g} days (the server must accept them: max_token_days)")
    parser.add_argument("--env-file", default=str(ROOT / ".env"))
    args = parser.parse_args(argv)
    if args.expire > DEFAULT_MAX_DAYS and not args.allow_long:
        print(f"token_generator: --expire {args.expire:g} is longer than the {DEFAULT_MAX_DAYS:g} days a server "
              "accepts by default; pass --allow-long if yours is set for more (max_token_days)", file=sys.stderr)
        return 2
    try:
        secrets = load_secrets(dotenv_path=Path(args.env_file), required=("TOKEN_SECRET_KEY",))
        print(issue_token(secrets.token_secret_key, args.app, days=args.expire))
    except (MissingSecretError, ValueError) as exc:
        print(f"token_generator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
