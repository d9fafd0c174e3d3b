#!/usr/bin/env bash
# Sets everything up, lints, and runs the whole test suite (unit tests, then integration tests on a real graph).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-openai-whisper --with-xtts --with-browser
.venv/bin/ruff check .   # lint (pyproject.toml): a new warning fails the run before any test
exec .venv/bin/python -m pytest tests "$@"
