"""scripts/gpu_check.sh on a machine without a GPU: the same steps (calibrate, knapsack search, export, bench,
fidelity per dtype) on the CPU with a tiny model, every number in its one JSON file."""

import json
import os
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_plumbing_on_cpu(tiny_llama_dir, tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "RAMP_GPU_CHECK_MODEL": "tiny"}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out), "--quick", "--tokenizer",
                          str(tiny_llama_dir)], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert result["model"] == "tiny" and result["device"] == device
    assert set(result["seconds"]) == {"calibrate", "search", "export", "base", "bench", "total"}
    backend = result["bench"]["backend"]
    assert backend["n_layer"] == 2 and (backend["gpu_layers"] == 3) == (device == "cuda")
    assert result["bench"]["kld"]["kld_mean"] > 0 and result["bench"]["speed"]["tg128"] > 0
    assert set(result["fidelity"]) == {"float32", "bfloat16"}
    for dtype, fid in result["fidelity"].items():
        assert fid["device"].startswith(device) and abs(fid["gap"]) < 0.01, (dtype, fid)
