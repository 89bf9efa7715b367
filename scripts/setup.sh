#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv (or $RAMP_VENV) holding torch, then this package with [dev].
# torch is installed first so its build fits the machine: RAMP_TORCH (default torch==2.13.0, the local
# CPU wheel on these machines) names it; a GPU user sets RAMP_TORCH=torch or brings a venv with torch.
# llama-cpp-python is built from source on first install (minutes); pip caches the wheel afterwards.
set -euo pipefail
if [ "$(uname -m)" = x86_64 ]; then
  # llama.cpp's AMX kernels (built by -march=native on Sapphire Rapids and later) segfault on the first
  # decode (llama.cpp issue 20824); explicit -mno-* flags win over -march=native in GCC and Clang
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CFLAGS="${CFLAGS:-} $no_amx" CXXFLAGS="${CXXFLAGS:-} $no_amx"
fi
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
# A llama.cpp built with AMX kernels (a wheel from pip's cache or an older set-up) is rebuilt without them.
if "$py" -c "import llama_cpp; from halo.llama_build import amx_compiled as a
raise SystemExit(0 if a(llama_cpp.llama_print_system_info().decode()) else 1)"; then
  echo "setup: rebuilding llama-cpp-python without llama.cpp's AMX kernels (~7 min)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$py" -m pip install -q --force-reinstall --no-deps --no-cache-dir \
    "llama-cpp-python==$("$py" -c 'import llama_cpp; print(llama_cpp.__version__)')"
fi
