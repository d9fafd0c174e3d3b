#!/usr/bin/env bash
# Sets everything up and starts the server with the embedded defaults on 127.0.0.1:8000.
# Arguments go to serve_app.py: --host, --port, --ssl-certfile/--ssl-keyfile (TLS), --watch-agents, key=value builder args.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${TOKEN_SECRET_KEY:-}" ] || [ -z "${API_KEY:-}" ]; then
  .venv/bin/python - <<'PY'
from pathlib import Path
from common.settings import write_first_run_dotenv
if write_first_run_dotenv(Path(".env")):
    print("run: first run: wrote .env with a random TOKEN_SECRET_KEY and API_KEY (edit or delete it to change them)")
PY
fi
exec .venv/bin/python serve_app.py "$@"
