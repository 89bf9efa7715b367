"""DynaQuant mode: reward terms on hand-made tensors, the straight-through fine-tuning, and a tiny-model PPO search
end to end (resume, export to a GGUF file llama.cpp runs, types read back by gguf-py)."""

import json
import math

import numpy as np
import pytest
import torch

from ramp.cli import main as ramp_main
from ramp.config.dynaquant import parse_weights
from ramp.dynaquant import formats
from ramp.dynaquant.env import step_groups
from ramp.dynaquant.finetune import (
    clear_formats,
    finetune,
    make_optimizer,
    master_weight,
    set_format,
)
from ramp.dynaquant.reward import (
    StepMeasure,
    attention_entropy,
    kl_quant_ref,
    reward_parts,
)
from ramputils.errors import UserError, run_cli


def test_attention_entropy_of_uniform_and_one_hot_rows():
    uniform = torch.full((1, 2, 3, 8), 1 / 8)
    assert attention_entropy(uniform) == pytest.approx(math.log(8), rel=1e-12)
    one_hot = torch.zeros(1, 1, 4, 5)
    one_hot[..., 2] = 1.0
    assert attention_entropy(one_hot) == 0.0
    mixed = torch.tensor([0.5, 0.5, 0.0, 0.0]).reshape(1, 1, 1, 4)  # log 2, and a row of a causal mask
    assert attention_entropy(mixed) == pytest.approx(math.log(2), rel=1e-12)


def test_kl_quant_ref_by_hand():
    p_q, p_r = torch.tensor([0.25, 0.75], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    kl = kl_quant_ref(p_q.log()[None] + 3.0, p_r.log()[None] - 1.0)  # logits: log-probs plus any constant
    assert float(kl[0]) == pytest.approx(expected, rel=1e-12)
    same = torch.randn(5, 7)
    assert torch.all(kl_quant_ref(same, same).abs() < 1e-12)
    assert float(kl_quant_ref(p_r.log()[None], p_q.log()[None])[0]) != pytest.approx(expected)  # not symmetric


def test_reward_parts_follow_eq_5():
    m = StepMeasure(ppl_ref=20.0, ppl_quant=21.5, kl=0.02, entropy_ref=1.25, entropy_quant=1.0)
    parts = reward_parts(m, bits=4, step_params=300, model_params=1200, weights=(6.0, 5.0, 0.8, 4.0))
    assert parts["perf"] == pytest.approx(6.0 * -1.5)
    assert parts["kl"] == pytest.approx(-5.0 * 0.02)
    assert parts["entropy"] == pytest.approx(0.8 * -0.25)
    assert parts["memory"] == pytest.approx(4.0 * (12 / 16) * 0.25)
    assert reward_parts(m, 16, 300, 1200, (1, 1, 1, 1))["memory"] == 0.0


def test_parse_weights():
    assert parse_weights("6,5,0.8,4") == (6.0, 5.0, 0.8, 4.0)
    for bad in ("1,2,3", "a,b,c,d"):
        with pytest.raises(UserError, match="four numbers"):
            parse_weights(bad)


def test_straight_through_fine_tuning_updates_the_master_weight():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64, bias=False))
    layer = model[0]
    master = layer.weight
    optimizer = make_optimizer(model, lr=1e-2)
    set_format(layer, "nf4")
    assert master_weight(layer) is master  # the optimizer still holds the trained tensor
    assert torch.allclose(layer.weight, formats.quantize(master.detach(), "nf4"), atol=1e-7)
    x = torch.randn(4, 128)
    loss = model(x).pow(2).mean()
    loss.backward()
    expected_grad = (2 * model(x) / model(x).numel()).T @ x  # d loss / d W through the identity
    assert torch.allclose(master.grad, expected_grad.detach(), rtol=1e-4, atol=1e-7)
    before = master.detach().clone()
    optimizer.step()
    assert not torch.equal(master.detach(), before)
    assert torch.allclose(layer.weight, formats.quantize(master.detach(), "nf4"), atol=1e-7)
    clear_formats(model)
    assert layer.weight is master


def test_finetune_on_a_tiny_model_lowers_its_loss(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    set_format(model.model.layers[0].mlp.down_proj, "fp4")
    batch = [torch.randint(0, 1000, (2, 32), generator=torch.Generator().manual_seed(1))] * 4
    optimizer = make_optimizer(model, lr=1e-3)
    first = finetune(model, optimizer, batch[:1], step=False)
    later = finetune(model, optimizer, batch)
    assert later < first and not model.training


def test_step_groups(tiny_llama_dir):
    from calibration.layers import layer_table
    from calibration.models import load_model, resolve

    source = resolve(str(tiny_llama_dir))
    layers = layer_table(load_model(source), source.gguf_arch)
    blocks = step_groups(layers, "block")
    assert len(blocks) == 2 and sum(len(g) for g in blocks) == len(layers) == 14
    assert all(layers[i].block == b for b, g in enumerate(blocks) for i in g)
    assert step_groups(layers, "layer") == [[i] for i in range(14)]


def _argv(model, out, episodes, *extra):
    return ["search", "--model", str(model), "--algo", "ppo", "--reward", "dynaquant", "--episodes", str(episodes),
            "--calib-samples", "8", "--calib-seq-len", "64", "--eval-samples", "2", "--eval-seq-len", "64",
            "--ft-steps", "1", "--ft-batch", "1", "--out", str(out), *extra]


def test_dynaquant_search_end_to_end(tiny_llama_dir, tmp_path, capsys):
    import gguf

    from halo.measure import Model

    out, gguf_path = tmp_path / "a", tmp_path / "dq.gguf"
    assert run_cli(ramp_main, _argv(tiny_llama_dir, out, 2, "--export", str(gguf_path))) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in records] == [0, 1]
    for r in records:
        assert r["return"] == pytest.approx(r["r_perf"] + r["r_kl"] + r["r_entropy"] + r["r_memory"])
        assert set(r["formats"]) <= set(formats.FORMATS) and len(r["formats"]) == 14
        assert all(np.isfinite(r[k]) for k in ("policy_loss", "value_loss", "ppl_quant", "kl"))
        blocks = [set(r["formats"][:7]), set(r["formats"][7:])]
        assert all(len(b) == 1 for b in blocks)  # block granularity: a block's linears share the format
    summary = json.loads((out / "summary.json").read_text())
    card = json.loads((out / "policy.json").read_text())
    assert card["reward"] == "dynaquant" and card["ppo"]["gamma"] == 0.99 and card["obs_dim"] == 12
    chosen = summary["deterministic"]["formats"]
    # the exported file holds the mapped GGUF types and runs in llama.cpp
    reader = gguf.GGUFReader(gguf_path)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    alloc = json.loads((out / "allocation.json").read_text())
    for row, fmt in zip(alloc["layers"], chosen):
        assert types[row["tensor"]] == formats.GGUF_TYPE[fmt]
    with Model(gguf_path, n_ctx=64) as model:
        logits = model.decode(model.tokenize("The quick brown fox"))
    assert np.isfinite(logits).all()
    # a DynaQuant policy is not a zero-shot transfer policy: one clear line
    argv = ["transfer", "--policy", str(out / "policy.safetensors"), "--target", str(tiny_llama_dir), "--no-eval",
            "--out", str(tmp_path / "t")]
    assert run_cli(ramp_main, argv) != 0
    assert "is a DynaQuant policy" in capsys.readouterr().err
    # 1 episode, then resume to 2: the same episodes as the straight run
    assert run_cli(ramp_main, _argv(tiny_llama_dir, tmp_path / "b", 1)) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    (tmp_path / "b" / "config.json").write_text(json.dumps(config | {"episodes": 2}))
    assert run_cli(ramp_main, _argv(tiny_llama_dir, tmp_path / "b", 2, "--resume")) == 0
    resumed = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [(r["formats"], r["return"]) for r in resumed] == [(r["formats"], r["return"]) for r in records]


@pytest.mark.parametrize("extra, message", [
    (["--algo", "sac"], "use --algo ppo"),
    (["--actions", "nf4,nf3"], "unknown weight format 'nf3'"),
    (["--reward-weights", "1,2"], "four numbers"),
])
def test_dynaquant_bad_options_are_one_line_errors(tmp_path, capsys, extra, message):
    argv = _argv("default", tmp_path / "x", 1) + extra
    assert run_cli(ramp_main, argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_torch_lm_matches_llama_cpp_on_the_same_weights(tiny_llama_dir, tmp_path):
    """HALO's perplexity protocol through the torch adapter agrees with llama.cpp on an F32 export of the model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from halo.exporter import export
    from halo.measure.run import bench
    from ramp.dynaquant.torch_lm import bench_torch

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    ours = bench_torch(model, tokenizer, max_chunks=2, tasks=("piqa",), limit=4, progress=False)
    export(str(tiny_llama_dir), "F32", tmp_path / "f32.gguf")
    theirs = bench(tmp_path / "f32.gguf", tasks=("piqa",), max_chunks=2, limit=4, speed=False, progress=False)
    assert ours["perplexity"]["ppl"] == pytest.approx(theirs["perplexity"]["ppl"], rel=1e-3)
    assert ours["tasks"]["piqa"]["n"] == theirs["tasks"]["piqa"]["n"] == 4
