#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (unit tests, then integration tests on a real graph).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-openai-whisper --with-xtts
exec .venv/bin/python -m pytest tests "$@"
