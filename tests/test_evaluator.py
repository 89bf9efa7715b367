"""The search's evaluator against hand-quantized models (libggml the oracle) and against llama.cpp itself."""

import logging

import numpy as np
import pytest
import torch

from calibration.layers import Layer
from calibration.models import load_model, resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo import allocation, ggml, qtypes
from halo.imatrix import layer_imatrix
from ramp.config.search import EvalWindows
from ramp.evaluation import prefix as prefix_mod
from ramp.evaluation.evaluator import Evaluator, make_evaluator
from ramp.evaluation.fidelity import fidelity
from ramp.evaluation.weight_cache import PLANS, check_candidates, choose_plan
from ramputils.errors import UserError

QT = qtypes.QType
ACTIONS = ["Q3_K", "Q4_K", "Q6_K", "Q8_0"]
N, T = 4, 64
MIXED = [QT.Q3_K, QT.Q8_0, None, QT.Q4_K, QT.Q6_K, QT.Q3_K, QT.Q4_K] * 2


@pytest.fixture(scope="module")
def cal(tiny_llama_dir, tiny_text, tmp_path_factory):
    config = CalibrationConfig(model=str(tiny_llama_dir), data=str(tiny_text), samples=2, seq_len=64)
    return calibrate(config, tmp_path_factory.mktemp("cal") / "cal")


def _evaluator(tiny_llama_dir, tiny_text, cal, **kwargs):
    source = resolve(str(tiny_llama_dir))
    return make_evaluator(load_model(source), source, cal, ACTIONS, EvalWindows(N, T), seed=0, data=str(tiny_text),
                          device="cpu", batch_size=3, progress=False, **kwargs)


@pytest.fixture(scope="module")
def ev(tiny_llama_dir, tiny_text, cal):
    """Imatrix on, no folding; batches of 3 windows (so batching is exercised: 3 + 1)."""
    return _evaluator(tiny_llama_dir, tiny_text, cal)


def _reference(model, windows, types=None, cal=None, layers=None):
    """float64 (log-probs, PPL) of `model` with layers replaced by ggml.quantize_dequantize by hand."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for layer, qtype in zip(layers or [], types or []):
            if qtype is not None:
                weight = modules[layer.name].weight
                imatrix = layer_imatrix(cal, layer) if cal is not None else None
                weight.copy_(torch.from_numpy(ggml.quantize_dequantize(weight.numpy(), qtype, imatrix)))
        logits = model(input_ids=windows, use_cache=False).logits[:, :-1].double()
    logprobs = torch.log_softmax(logits, -1)
    nll = -logprobs.gather(-1, windows[:, 1:, None]).mean()
    return logprobs, float(torch.exp(nll))


def test_base_is_the_plain_model(ev, tiny_llama_dir):
    plain = load_model(resolve(str(tiny_llama_dir)))
    _, ppl = _reference(plain, ev.windows)
    result = ev.evaluate([None] * len(ev.layers))
    assert ev.windows.shape == (N, T) and ev.positions == N * (T - 1)
    assert result.ppl == pytest.approx(ppl, rel=1e-6) and ev.base.ppl == pytest.approx(ppl, rel=1e-6)
    assert abs(result.kld) < 1e-9 and ev.base.kld == 0.0
    assert ev.base_logit_bytes == 4 * N * (T - 1) * plain.config.vocab_size


def test_allocation_equals_hand_quantized_model(ev, tiny_llama_dir, cal):
    source = resolve(str(tiny_llama_dir))
    base_lp, _ = _reference(load_model(source), ev.windows)
    quant_lp, ppl = _reference(load_model(source), ev.windows, MIXED, cal, ev.layers)
    kld = float((base_lp.exp() * (base_lp - quant_lp)).sum(-1).mean())
    result = ev.evaluate(MIXED)
    assert result.ppl == pytest.approx(ppl, rel=1e-6)
    assert result.kld == pytest.approx(kld, rel=1e-4) and kld > 1e-5


def test_small_kld_survives_the_cancellation(ev, tiny_llama_dir, cal):
    """KL is formed as sum p log p - p . z + lse: at Q8_0 (the smallest KLD) it must still match float64."""
    source = resolve(str(tiny_llama_dir))
    q8 = [QT.Q8_0] * len(ev.layers)
    base_lp, _ = _reference(load_model(source), ev.windows)
    quant_lp, _ = _reference(load_model(source), ev.windows, q8, cal, ev.layers)
    kld = float((base_lp.exp() * (base_lp - quant_lp)).sum(-1).mean())
    assert 0 < kld < 1e-3
    assert ev.evaluate(q8).kld == pytest.approx(kld, rel=1e-3)


def test_score_of_hand_made_logits_matches_float64():
    """The small-difference scoring against log-softmax in float64, including a logit jump beyond exp's range."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(5, 300, generator=gen) * 4
    targets = torch.randint(0, 300, (5,), generator=gen)
    for quant in (base + 0.01 * torch.randn(5, 300, generator=gen), base.clone().index_fill_(1, targets, 200.0)):
        lse = torch.logsumexp(base.double(), -1)
        nll, kld = Evaluator._score(quant, base, lse, targets)
        log_q, log_p = torch.log_softmax(quant.double(), -1), torch.log_softmax(base.double(), -1)
        assert nll == pytest.approx(float(-log_q.gather(-1, targets[:, None]).sum()), rel=1e-6)
        assert kld == pytest.approx(float((log_p.exp() * (log_p - log_q)).sum()), rel=1e-4)


def test_evaluate_restores_base_weights(ev):
    modules = dict(ev.model.named_modules())
    before = [modules[layer.name].weight.data for layer in ev.layers]
    copies = [w.clone() for w in before]
    uniform = [QT.Q3_K] * len(ev.layers)
    first, other, again = ev.evaluate(MIXED), ev.evaluate(uniform), ev.evaluate(MIXED)
    assert (first.ppl, first.kld) == (again.ppl, again.kld) != (other.ppl, other.kld)
    after = [modules[layer.name].weight.data for layer in ev.layers]
    assert all(a.data_ptr() == b.data_ptr() and torch.equal(a, c) for a, b, c in zip(after, before, copies))
    assert ev.evaluate([None] * len(ev.layers)).kld == 0.0


def test_untouched_first_blocks_are_replayed_not_computed(ev, monkeypatch):
    """A layer of block 1 quantized alone: block 0's base output is replayed (its forward never runs) and the
    scores are bit-identical to computing every block; the confirmation sibling records its own windows."""
    blocks = ev.prefix.blocks
    assert len(blocks) == 2 and ev.prefix.ready and len(ev.prefix.outputs) == 2   # batches of 3 + 1 windows
    late = next(i for i, layer in enumerate(ev.layers) if layer.block == 1)
    types = [None] * len(ev.layers)
    types[late] = QT.Q3_K
    assert ev.first_block(types) == 1 and ev.first_block(MIXED) == 0 and ev.first_block([None] * 14) == 2
    calls = []
    block_forward = type(blocks[0]).forward

    def counted(module, *args, **kwargs):
        calls.append(blocks.index(module))
        return block_forward(module, *args, **kwargs)

    monkeypatch.setattr(type(blocks[0]), "forward", counted)
    replayed = ev.evaluate(types)
    assert calls == [1, 1]   # two batches, block 1 only
    prefix, ev.prefix = ev.prefix, prefix_mod.BlockPrefix(ev.model)   # nothing recorded: every block computes
    try:
        computed = ev.evaluate(types)
    finally:
        ev.prefix = prefix
    assert calls[2:] == [0, 1, 0, 1]
    assert (replayed.ppl, replayed.kld, replayed.window_kld) == (computed.ppl, computed.kld, computed.window_kld)
    assert replayed.kld > 0 and not any(hasattr(b, "__dict__") and "forward" in b.__dict__ for b in blocks)
    sibling = ev.sibling(ev.windows[:2])
    assert sibling.prefix is not ev.prefix and len(sibling.prefix.outputs) == 1 and len(ev.prefix.outputs) == 2
    monkeypatch.setattr(prefix_mod, "MAX_BYTES", ev.prefix.nbytes // 2)   # too big to record: every block computes
    capped = ev.sibling(ev.windows)
    assert not capped.prefix.ready and capped.prefix.nbytes <= ev.prefix.nbytes // 2
    assert capped.evaluate(types).window_kld == replayed.window_kld


def test_kld_grows_as_bits_fall(ev):
    klds = [ev.evaluate([qtype] * len(ev.layers)).kld for qtype in (QT.Q8_0, QT.Q6_K, QT.Q4_K, QT.Q3_K)]
    assert 0 < klds[0] < klds[1] < klds[2] < klds[3]


def test_three_plans_give_identical_results(ev, tiny_llama_dir, caplog):
    results = {}
    for plan in PLANS:
        model = load_model(resolve(str(tiny_llama_dir)))
        with caplog.at_level(logging.INFO, logger="ramp.evaluation.weight_cache"):
            evaluator = Evaluator(model, ev.layers, ev.cache.candidates, ev.windows, ev.cache.imatrix, "cpu", plan,
                                  batch_size=3, progress=False)
        assert evaluator.cache.plan == plan and f"plan {plan}" in caplog.text
        results[plan] = [(r.ppl, r.kld) for r in (evaluator.evaluate(MIXED), evaluator.evaluate([QT.Q4_K] * 14))]
    assert results["dequantized"] == results["bytes"] == results["on-the-fly"] == [
        (r.ppl, r.kld) for r in (ev.evaluate(MIXED), ev.evaluate([QT.Q4_K] * 14))]


def test_plan_choice_and_bad_input(ev):
    need = {"dequantized": 100, "bytes": 30, "on-the-fly": 0}
    assert choose_plan(need, free_device=1000, free_host=1000) == ("dequantized", "device")
    assert choose_plan(need, free_device=100, free_host=1000) == ("dequantized", "host")
    assert choose_plan(need, free_device=100, free_host=100) == ("bytes", "host")
    assert choose_plan(need, free_device=10, free_host=10) == ("on-the-fly", "host")
    assert ev.cache.plan == "dequantized"  # a tiny model always fits
    assert ev.cache.candidates["blk.0.attn_q.weight"] == [QT.Q3_K, QT.Q4_K, QT.Q6_K, QT.Q8_0]
    with pytest.raises(UserError, match="entries"):
        ev.evaluate([None])
    with pytest.raises(UserError, match="not a candidate"):
        ev.evaluate([QT.Q5_0] * len(ev.layers))
    wide = Layer(0, "model.layers.0.self_attn.q_proj", "blk.0.attn_q.weight", 0, "q", 576, 576)
    with pytest.raises(UserError, match="writes Q4_K as Q5_0"):
        check_candidates([wide], {wide.gguf_name: [QT.Q4_K]})
    with pytest.raises(UserError, match="plan"):
        Evaluator(ev.model, ev.layers, ev.cache.candidates, ev.windows, plan="ram", device="cpu")


@pytest.mark.parametrize("imatrix, scale_fold", [(False, False), (True, True)])
def test_fidelity_to_llama_cpp(tiny_llama_dir, tiny_text, cal, tmp_path, imatrix, scale_fold):
    """llama.cpp's PPL of the exported file is the evaluator's to < 1 %, and far closer than the base's."""
    evaluator = _evaluator(tiny_llama_dir, tiny_text, cal, imatrix=imatrix, scale_fold=scale_fold)
    picks = [3, 4, 6, 8, 3, 4, 3] * 2
    alloc = allocation.resolve(evaluator.layers, picks)
    result = fidelity(evaluator, alloc, str(tiny_llama_dir), tmp_path / "mixed.gguf", cal, imatrix=imatrix,
                      scale_fold=scale_fold)
    assert result.path.is_file() and abs(result.gap) < 0.01
    effect = abs(np.log(result.ppl_evaluator / evaluator.base.ppl))
    assert abs(np.log(result.ppl_llama / result.ppl_evaluator)) < 0.2 * effect


def test_bfloat16_evaluator_quantizes_from_float32(ev, tiny_llama_dir, tiny_text, cal):
    """--dtype bfloat16: the forward passes run in bfloat16, but the candidates are libggml's quantization of the
    float32 weights (what the export writes), rounded after, not a quantization of bfloat16-rounded weights."""
    half = _evaluator(tiny_llama_dir, tiny_text, cal, dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    for i in (0, 5):
        exact = ev.cache.weights(i, QT.Q4_K)
        assert half.cache.weights(i, QT.Q4_K).dtype == torch.bfloat16
        assert torch.equal(half.cache.weights(i, QT.Q4_K), exact.to(torch.bfloat16))
    full, rounded = ev.evaluate(MIXED), half.evaluate(MIXED)
    assert half.evaluate([None] * len(MIXED)).kld == 0
    assert rounded.kld > 0 and abs(rounded.kld - full.kld) < 0.2 * full.kld
    assert abs(rounded.ppl - full.ppl) < 0.02 * full.ppl


def test_evaluator_dtype_and_device_errors(tiny_llama_dir, tiny_text, cal):
    with pytest.raises(UserError, match="unknown evaluator dtype"):
        _evaluator(tiny_llama_dir, tiny_text, cal, dtype="int8")
    if not torch.cuda.is_available():
        source = resolve(str(tiny_llama_dir))
        with pytest.raises(UserError, match="sees no CUDA GPU"):
            make_evaluator(load_model(source), source, cal, ACTIONS, EvalWindows(N, T), data=str(tiny_text),
                           device="cuda", progress=False)
