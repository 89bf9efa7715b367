#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M-Instruct, a Q4_1 GGUF whose dequantized weights
# are the "base"): set up, calibrate, a short SAC search at the default budget, export the GGUF with HALO,
# and measure it in llama.cpp against the base.  Outputs land in runs/default/.  RAMP_EPISODES sets the
# search length (default 30 here; the full search is 200: see the README).  Re-running reuses finished work.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bin=.venv/bin
out=runs/default
$bin/ramp calibrate --model default --samples 128 --seq-len 512 --out $out/calibration
resume=()
[ -f $out/search/checkpoint.pt ] && resume=(--resume)
$bin/ramp search --model default --calibration $out/calibration --episodes "${RAMP_EPISODES:-30}" \
    --warmup-episodes 10 --out $out/search "${resume[@]}" \
    --export $out/ramp.gguf
base=$($bin/python -c 'from calibration.models import default_gguf; print(default_gguf())')
$bin/halo bench $out/ramp.gguf --base "$base" --max-chunks 40 --json $out/ramp-bench.json
