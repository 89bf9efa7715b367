#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv (or $RAMP_VENV) holding torch, then this package with [dev].
# torch is installed first so its build fits the machine: RAMP_TORCH (default torch==2.13.0, the local
# CPU wheel on these machines) names it; a GPU user sets RAMP_TORCH=torch or brings a venv with torch.
# llama-cpp-python is built from source on first install (minutes); pip caches the wheel afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RAMP_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv" >&2
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "setup: installing ${RAMP_TORCH:-torch==2.13.0}" >&2
  "$py" -m pip install -q "${RAMP_TORCH:-torch==2.13.0}"
fi
stamp="$venv/.ramp-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing ramp-quant and its dependencies (first time: builds llama.cpp, ~7 min)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$py" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
