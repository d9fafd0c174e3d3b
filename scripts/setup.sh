#!/usr/bin/env bash
# Creates .venv at the repo root and installs requirements.txt into it (and, with --with-openai-whisper,
# the PyTorch backend of requirements-openai-whisper.txt). Idempotent: it reinstalls only when a
# requirements file changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements.txt into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--with-openai-whisper" ]; then
  extra_stamp=.venv/.requirements-openai-whisper.sha256
  extra_want=$(sha256sum requirements-openai-whisper.txt | cut -d' ' -f1)
  if [ "$(cat "$extra_stamp" 2>/dev/null)" != "$extra_want" ]; then
    echo "setup: installing the openai-whisper backend (torch CPU) into .venv"
    .venv/bin/python -m pip install --quiet -r requirements-openai-whisper.txt
    .venv/bin/python -m pip install --quiet --no-deps openai-whisper==20250625
    echo "$extra_want" > "$extra_stamp"
  fi
fi
