#!/usr/bin/env bash
# The prepared GPU check (issue 32), for a machine with one NVIDIA GPU, no internet and this tree:
#   bash scripts/gpu_check.sh [OUT.json] [gpu_check.py options]      (default OUT: benchmarks/results/gpu.json)
# Python: .venv when scripts/setup.sh made one (RAMP_CUDA=1), else the machine's python3 with its CUDA torch,
# completed offline from the folder scripts/gpu_pack.sh fills here ($RAMP_WHEELS, default .whl): gguf-py and
# the other pure-Python packages, then llama-cpp-python built from its carried source with GGML_CUDA=on for this
# GPU's architecture only.  Then scripts/gpu_check.py: calibrate, a short knapsack search, export, a GPU bench
# and the evaluator's fidelity per dtype, all in one JSON.  The default model when its package is installed,
# else (as on a machine the 98 MB package cannot reach) a tiny random Llama with SmolLM2's tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/gpu.json
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out=$1; shift; fi
wheels=${RAMP_WHEELS:-.whl}
if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=${PYTHON:-python3}; fi
site=${RAMP_SITE:-/tmp/ramp-site}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import llama_cpp, gguf" 2>/dev/null; then
  [ -d "$wheels" ] || { echo "gpu_check: error: llama_cpp or gguf missing and no $wheels (run scripts/gpu_pack.sh where pip works)" >&2; exit 2; }
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$PYTHONPATH:$site"
  if ! "$py" -c "import llama_cpp" 2>/dev/null; then
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '. ' || true)
    echo "gpu_check: building llama-cpp-python with CUDA for sm_${arch:-all} from $wheels" >&2
    CMAKE_ARGS="-DGGML_CUDA=on${arch:+ -DCMAKE_CUDA_ARCHITECTURES=$arch} -DLLAMA_BUILD_TESTS=off" \
      CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$py" -m pip install -q --no-index --no-deps --no-build-isolation \
      --no-cache-dir --target "$site" "$wheels"/llama_cpp_python-*.tar.gz
  fi
fi
[ -d "$wheels/data" ] && [ -z "${RAMP_DATA_DIR:-}" ] && ! [ -d ../shared/data ] && export RAMP_DATA_DIR="$PWD/$wheels/data"
model=${RAMP_GPU_CHECK_MODEL:-default}
[ "$model" != default ] || "$py" -c "from calibration.models import default_gguf; default_gguf()" 2>/dev/null || model=tiny
device=cuda
"$py" -c "import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)" || device=cpu
exec "$py" scripts/gpu_check.py --model "$model" --device "$device" --tokenizer "$wheels/tokenizer" --out "$out" "$@"
