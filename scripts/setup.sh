#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv (or $RAMP_VENV) holding torch, then this package with [dev].
# torch is installed first so its build fits the machine: RAMP_TORCH (default torch==2.13.0, the local
# CPU wheel on these machines) names it; a GPU user sets RAMP_TORCH=torch or brings a venv with torch.
# llama-cpp-python is built from source on first install (minutes); pip caches the wheel afterwards.
# GPU: RAMP_CUDA=1 (or, with RAMP_CUDA unset, an nvcc on PATH and a GPU nvidia-smi sees) builds llama.cpp with GGML_CUDA=on for the local
# GPU's architecture only (nvidia-smi's compute capability; llama.cpp's default when it cannot tell), never from the
# CPU wheel in pip's cache; RAMP_CUDA=0 forces the CPU build.  Bring a CUDA torch with RAMP_TORCH.
# RAMP_SETUP_PLAN=1 prints the choices and builds nothing.
set -euo pipefail
if [ "$(uname -m)" = x86_64 ]; then
  # llama.cpp's AMX kernels (built by -march=native on Sapphire Rapids and later) segfault on the first
  # decode (llama.cpp issue 20824); explicit -mno-* flags win over -march=native in GCC and Clang
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CFLAGS="${CFLAGS:-} $no_amx" CXXFLAGS="${CXXFLAGS:-} $no_amx"
fi
cd "$(dirname "$0")/.."
cuda=${RAMP_CUDA:-}
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '. ' || true)
if [ -z "$cuda" ]; then   # nvcc alone is not enough: a CUDA toolkit without a GPU builds nothing that runs
  if command -v nvcc >/dev/null 2>&1 && [ -n "$arch" ]; then
    cuda=1; why="nvcc found at $(command -v nvcc) and a GPU of compute capability $arch"
  else
    cuda=0
    command -v nvcc >/dev/null 2>&1 && echo "setup: nvcc found but no GPU (nvidia-smi): CPU build" >&2
  fi
else
  why="RAMP_CUDA=$cuda"
fi
if [ "$cuda" = 1 ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_CUDA=on${arch:+ -DCMAKE_CUDA_ARCHITECTURES=$arch}"
  echo "setup: llama.cpp with CUDA ($why; architecture ${arch:-the llama.cpp default, native: no nvidia-smi})" >&2
fi
if [ "${RAMP_SETUP_PLAN:-0}" = 1 ]; then   # say what would be built, build nothing
  echo "cuda=$cuda cmake_args=${CMAKE_ARGS:-} torch=${RAMP_TORCH:-torch==2.13.0} venv=${RAMP_VENV:-.venv}"
  exit 0
fi
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
offloads() { "$py" -c "import llama_cpp; raise SystemExit(0 if llama_cpp.llama_supports_gpu_offload() else 1)" \
  2>/dev/null; }
if [ "$cuda" = 1 ] && ! offloads; then   # the CUDA build first, so that the package's install keeps it
  echo "setup: building llama-cpp-python with GGML_CUDA=on (~10 min)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$py" -m pip install -q --force-reinstall --no-deps --no-cache-dir \
    "llama-cpp-python>=0.3.0"
  offloads || { echo "setup: error: the CUDA build of llama-cpp-python cannot offload to a GPU" >&2; exit 1; }
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
