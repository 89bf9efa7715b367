"""Scale folding keeps the model's function: folded logits equal unfolded logits on real text."""

import copy

import numpy as np
import pytest
import torch

from calibration.data import calibration_windows, tokenize
from calibration.models import load, resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo.fold import fold_model, fold_scale, folded_imatrix
from ramputils.errors import UserError
from tests.conftest import build_tiny_llama


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_folded_logits_equal_unfolded(arch, tiny_text, tmp_path):
    model_dir = build_tiny_llama(tmp_path / arch, seed=3, arch=arch, vocab_size=None)
    cal = calibrate(CalibrationConfig(model=str(model_dir), data=str(tiny_text), samples=2, seq_len=64),
                    tmp_path / "cal")
    model, tokenizer = load(resolve(str(model_dir)))
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial norms, so a wrong compensation cannot hide behind ones/zeros
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(torch.randn_like(param) * 0.3 + (0.0 if arch == "gemma3" else 1.0))
    reference = copy.deepcopy(model)
    scales = fold_model(model, cal)
    assert len(scales.by_layer) == 2 * 5
    text = tokenize(tokenizer, tiny_text.read_text())
    ids = calibration_windows(text, samples=2, seq_len=96, seed=9)
    with torch.no_grad():
        want = reference(input_ids=ids).logits.double()
        got = model(input_ids=ids).logits.double()
    rel = float((got - want).norm() / want.norm())
    assert rel <= 1e-4, rel
    # the fold really changed the weights, and the embeddings (tied) are untouched
    q = cal.layers[0].name
    assert not torch.equal(dict(model.named_modules())[q].weight, dict(reference.named_modules())[q].weight)
    assert torch.equal(model.get_input_embeddings().weight, reference.get_input_embeddings().weight)


def test_fold_scale_and_imatrix():
    act = np.array([1.0, 4.0, 16.0, 0.0])
    s = fold_scale(act)
    np.testing.assert_allclose(s, np.array([1, 2, 4, 0]) / 1.75 + 1e-5)
    np.testing.assert_allclose(folded_imatrix(np.ones(4, np.float32), s), 1 / s ** 2, rtol=1e-6)
    with pytest.raises(UserError):
        fold_scale(np.zeros(3))


def test_fold_refuses_other_calibration(tiny_llama_dir, tiny_text, tmp_path):
    other = build_tiny_llama(tmp_path / "other", arch="qwen2", layers=3)
    cal = calibrate(CalibrationConfig(model=str(other), data=str(tiny_text), samples=1, seq_len=32), tmp_path / "c")
    model, _ = load(resolve(str(tiny_llama_dir)))
    with pytest.raises(UserError, match="calibrat"):
        fold_model(model, cal)
