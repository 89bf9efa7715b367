"""halo.qtypes: RAMP's bits -> type map and llama.cpp's shape fallback, with llama-quantize as the oracle.

The oracle tests write tiny F32 llama GGUFs with gguf-py, quantize them with llama.cpp's own
`llama_model_quantize` (pure recipe, so every matrix gets the recipe's type before the shape
fallback), and read back which type llama.cpp chose for each tensor and the bytes it wrote.
"""

import ctypes
import re

import gguf
import llama_cpp
import numpy as np
import pytest

from halo import ggml, qtypes
from ramputils.errors import UserError

QType = gguf.GGMLQuantizationType

# Two shapes: SmolLM2-135M's widths (576 falls back from 256-blocks to 32-blocks), and a width
# that not even 32 divides (F16 fallback) beside a 256-wide down projection.
MODELS = {
    "smollm2_widths": dict(hidden=576, ff=1536, heads=9, kv_heads=3),
    "odd_width": dict(hidden=100, ff=256, heads=4, kv_heads=2),
}
# llama-quantize recipes with a single base type each (pure=True), covering every quantized type.
RECIPES = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0",
           "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS"]


def write_f32_llama(path, hidden, ff, heads, kv_heads, vocab=32, seed=0):
    """A one-block llama GGUF with random F32 weights: the metadata llama.cpp's loader requires."""
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    shapes = {  # numpy order (rows, cols); cols is GGUF ne[0]
        "token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,), "output.weight": (vocab, hidden),
        "blk.0.attn_norm.weight": (hidden,), "blk.0.ffn_norm.weight": (hidden,),
        "blk.0.attn_q.weight": (hidden, hidden), "blk.0.attn_k.weight": (kv_heads * head_dim, hidden),
        "blk.0.attn_v.weight": (kv_heads * head_dim, hidden), "blk.0.attn_output.weight": (hidden, hidden),
        "blk.0.ffn_gate.weight": (ff, hidden), "blk.0.ffn_up.weight": (ff, hidden),
        "blk.0.ffn_down.weight": (hidden, ff),
    }
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, shape in shapes.items():
        writer.add_tensor(name, (rng.standard_t(4, shape) * 0.02).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def llama_quantize(src, dst, recipe: str) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{recipe}")
    params.pure = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0


def recipe_type(recipe: str) -> QType:
    """The base type of a recipe: Q4_K_M -> Q4_K (llama.cpp's llama_ftype_get_default_type)."""
    return QType[re.sub(r"_[SML]$", "", recipe) if "_K_" in recipe else recipe]


@pytest.fixture(scope="module")
def f32_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("f32_llama")
    paths = {}
    for name, dims in MODELS.items():
        paths[name] = root / f"{name}.gguf"
        write_f32_llama(paths[name], **dims)
    return paths


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("recipe", RECIPES)
def test_llama_quantize_chooses_resolve_types_and_writes_halo_bytes(f32_models, model, recipe, tmp_path):
    out = tmp_path / "out.gguf"
    llama_quantize(f32_models[model], out, recipe)
    base = {t.name: t for t in gguf.GGUFReader(f32_models[model]).tensors}
    requested = recipe_type(recipe)
    chosen = set()
    for t in gguf.GGUFReader(out).tensors:
        if len(t.shape) < 2:
            continue  # norms stay F32 in any recipe
        cols = int(t.shape[0])
        assert qtypes.resolve_type(requested.name, cols) == (requested, t.tensor_type), t.name
        assert qtypes.tensor_bytes(t.tensor_type, tuple(reversed(t.shape.tolist()))) == t.n_bytes
        data = ggml.quantize(np.asarray(base[t.name].data), t.tensor_type)
        np.testing.assert_array_equal(data, np.asarray(t.data).view(np.uint8).reshape(data.shape), err_msg=t.name)
        chosen.add(t.tensor_type)
    assert requested in chosen or gguf.GGML_QUANT_SIZES[requested][0] == 32  # the 256-wide down keeps it
    if model == "odd_width":
        assert QType.F16 in chosen


@pytest.mark.parametrize("cols", [256, 1536])
def test_divisible_rows_keep_the_requested_type(cols):
    for qtype in qtypes.NOMINAL_BITS:
        assert qtypes.resolve_type(qtype.name, cols) == (qtype, qtype)


def test_576_wide_rows_fall_back_to_a_32_block_type_with_more_bits():
    for qtype in qtypes.NOMINAL_BITS:
        requested, actual = qtypes.resolve_type(qtype.name, 576)
        assert 576 % ggml.block_size(actual) == 0
        if actual != requested:
            assert ggml.block_size(requested) == 256 and ggml.block_size(actual) == 32
            assert qtypes.nominal_bits(actual) >= qtypes.nominal_bits(requested)


def test_rows_not_divisible_by_32_fall_back_to_f16():
    for qtype in qtypes.NOMINAL_BITS:
        expected = qtype if qtype in qtypes.UNQUANTIZED else QType.F16
        assert qtypes.resolve_type(qtype, 100)[1] == expected


def test_ramp_eq_23_bits_map():
    for bits in range(2, 7):
        assert qtypes.nominal_bits(qtypes.resolve_type(bits, 1536)[0]) == bits
        assert ggml.block_size(qtypes.resolve_type(bits, 1536)[0]) == 256  # the K-quant family
    for bits in range(7, 17):
        assert qtypes.resolve_type(bits, 1536) == (QType.Q8_0, QType.Q8_0)
    assert qtypes.resolve_type("5", 576) == qtypes.resolve_type(5, 576) == qtypes.resolve_type(np.int64(5), 576)
    assert qtypes.resolve_type("iq4_nl", 576) == (QType.IQ4_NL, QType.IQ4_NL)
    assert qtypes.resolve_type("F16", 100) == (QType.F16, QType.F16)


@pytest.mark.parametrize("qtype", list(qtypes.NOMINAL_BITS), ids=lambda t: t.name)
def test_bits_per_weight_and_tensor_bytes_are_real_storage(qtype):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    assert qtypes.bits_per_weight(qtype) == size * 8 / block
    assert qtypes.bits_per_weight(qtype) >= qtypes.nominal_bits(qtype)
    cols = 1536
    assert qtypes.tensor_bytes(qtype, (576, cols)) == ggml.quantize(np.zeros((576, cols), np.float32), qtype).nbytes


@pytest.mark.parametrize("bad, message", [
    (1, "2..16"), (17, "2..16"), (4.5, "whole number"), (True, "bit width or a type name"),
    ("Q4_K_M", "recipe; its tensor type is Q4_K"), ("IQ2_XXS", "unknown tensor type"), ("fp8", "unknown tensor type"),
    (None, "bit width or a type name"),
])
def test_bad_requests_are_user_errors(bad, message):
    with pytest.raises(UserError, match=re.escape(message)):
        qtypes.resolve_type(bad, 576)


def test_bad_shapes_are_user_errors():
    with pytest.raises(UserError, match="in_features"):
        qtypes.resolve_type(4, 0)
    with pytest.raises(UserError, match="divisible by 256"):
        qtypes.tensor_bytes(QType.Q4_K, (10, 576))
    with pytest.raises(UserError, match="shape"):
        qtypes.tensor_bytes(QType.Q4_K, ())
