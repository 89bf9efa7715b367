"""The layer table of a tiny Llama: order, names, GGUF names, shapes."""

from calibration.layers import layer_table, special_tensors
from calibration.models import load, resolve


def test_tiny_llama_layer_table(tiny_llama_dir):
    source = resolve(str(tiny_llama_dir))
    assert source.kind == "hf" and source.architecture == "llama"
    model, _ = load(source)
    table = layer_table(model, source.gguf_arch)
    assert len(table) == 14
    roles = [layer.role for layer in table]
    assert roles == ["q", "k", "v", "o", "gate", "up", "down"] * 2
    assert [layer.block for layer in table] == [0] * 7 + [1] * 7
    assert [layer.index for layer in table] == list(range(14))
    expected_gguf = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
    assert [layer.gguf_name for layer in table[7:]] == [f"blk.1.{n}.weight" for n in expected_gguf]
    assert table[0].name == "model.layers.0.self_attn.q_proj"
    # hidden 256, 4 heads of 64, 2 kv heads -> k/v out 128; intermediate 512
    shapes = [(layer.in_features, layer.out_features) for layer in table[:7]]
    assert shapes == [(256, 256), (256, 128), (256, 128), (256, 256), (256, 512), (256, 512), (512, 256)]
    assert all(layer.params == layer.in_features * layer.out_features for layer in table)
    special = special_tensors(model, source.gguf_arch)
    assert special == [{"role": "token_embd", "gguf_name": "token_embd.weight",
                        "shape": [model.config.vocab_size, 256], "tied": True}]
