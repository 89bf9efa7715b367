#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M-Instruct): set up, then calibrate.
# Outputs land in runs/default/.  Extra arguments go to `ramp calibrate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ramp calibrate --model default --samples 128 --seq-len 512 --out runs/default/calibration "$@"
