"""scripts/setup.sh's GPU choice, without building anything (RAMP_SETUP_PLAN=1 prints what it would build)."""

import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parent.parent / "scripts" / "setup.sh"


def _plan(tmp_path, env: dict, tools: dict) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, output in tools.items():   # stand-ins for nvcc / nvidia-smi on a machine without a GPU
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho '{output}'\n")
        tool.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"
    run = subprocess.run(["bash", str(SETUP)], env={"PATH": path, "RAMP_SETUP_PLAN": "1", **env},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip() + "\n" + run.stderr


def test_cpu_by_default(tmp_path):
    plan = _plan(tmp_path, {}, {})
    assert "cuda=0" in plan and "GGML_CUDA" not in plan and "torch=torch==2.13.0" in plan


def test_nvcc_found_builds_cuda_for_the_local_architecture(tmp_path):
    plan = _plan(tmp_path, {}, {"nvcc": "nvcc 12", "nvidia-smi": "9.0"})
    assert "cuda=1" in plan and "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" in plan
    assert "nvcc found at" in plan   # it says why


def test_nvcc_without_a_gpu_stays_on_the_cpu(tmp_path):
    """A CUDA toolkit on a machine with no GPU (as on these CI machines) must not switch the build to CUDA."""
    plan = _plan(tmp_path, {}, {"nvcc": "nvcc 12"})
    assert "cuda=0" in plan and "GGML_CUDA" not in plan and "nvcc found but no GPU" in plan


@pytest.mark.parametrize("value, expect", [("1", "cuda=1"), ("0", "cuda=0")])
def test_ramp_cuda_decides(tmp_path, value, expect):
    plan = _plan(tmp_path, {"RAMP_CUDA": value, "RAMP_TORCH": "torch"}, {"nvcc": "nvcc 12"})
    assert expect in plan and "torch=torch " in plan
    assert ("GGML_CUDA=on" in plan) == (value == "1") and ("RAMP_CUDA=1" in plan) == (value == "1")
    if value == "1":
        assert "the llama.cpp default, native" in plan   # no nvidia-smi: llama.cpp picks

