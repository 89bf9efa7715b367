"""HALO export against llama.cpp itself: byte identity with llama_model_quantize, fallbacks, recipes, bad input."""

import json

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from calibration.layers import layer_table
from calibration.models import load_model, resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo import allocation, ggml, qtypes
from halo.cli import main as halo_main
from halo.exporter import ExportOptions, export
from halo.layout import from_gguf_layout
from halo.llama_quantize import quantize_file
from halo.recipe import recipe_entries
from halo.writer import write_base_gguf
from ramputils.errors import run_cli

QT = qtypes.QType


def _tensors(path):
    return {t.name: t for t in GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def tiny_f32(tiny_llama_dir, tmp_path_factory):
    source = resolve(str(tiny_llama_dir))
    return write_base_gguf(load_model(source), source, tmp_path_factory.mktemp("f32") / "tiny-f32.gguf")


@pytest.mark.parametrize("qtype", ["Q4_K", "Q3_K", "Q6_K"])
def test_uniform_export_is_byte_identical_to_llama_quantize_pure(qtype, tiny_llama_dir, tiny_f32, tmp_path):
    ours = export(str(tiny_llama_dir), qtype, tmp_path / "halo.gguf",
                  options=ExportOptions(token_embd_type=qtype)).path
    theirs = quantize_file(tiny_f32, tmp_path / "llama.gguf", "Q4_K_M", pure=True,
                           overrides=[(".*", int(QT[qtype]))])
    a, b = _tensors(ours), _tensors(theirs)
    assert sorted(a) == sorted(b)  # llama.cpp writes tensors in its own order
    for name in a:
        assert a[name].tensor_type == b[name].tensor_type, name
        assert np.array_equal(np.asarray(a[name].data), np.asarray(b[name].data)), name
    assert a["blk.0.attn_q.weight"].tensor_type == QT[qtype]


def test_default_model_fallback_types_and_bytes(tmp_path):
    """576-wide rows take llama.cpp's fallback; the byte count matches the file, tensor by tensor."""
    source = resolve("default")
    model = load_model(source)
    layers = layer_table(model, source.gguf_arch)
    picks = [3, 4, 5, 6, 8, 4, 5] * 30
    alloc = allocation.resolve(layers, picks)
    report = export("default", alloc, tmp_path / "mixed.gguf", model=model)
    tensors = _tensors(report.path)
    for choice, layer in zip(alloc.choices, layers):
        t = tensors[choice.tensor]
        assert t.tensor_type == choice.actual
        assert int(t.n_bytes) == choice.bytes == qtypes.tensor_bytes(choice.actual, (layer.out_features,
                                                                                    layer.in_features))
    q = {c.tensor: c.actual for c in alloc.choices}
    assert q["blk.0.attn_q.weight"] == QT.Q4_0 and q["blk.0.attn_k.weight"] == QT.Q5_0   # 3, 4 bits @ 576
    assert q["blk.0.attn_v.weight"] == QT.Q5_1 and q["blk.0.attn_output.weight"] == QT.Q8_0  # 5, 6 bits
    assert q["blk.0.ffn_down.weight"] == QT.Q5_K  # 1536-wide rows keep the K-quant
    assert tensors["token_embd.weight"].tensor_type == QT.Q8_0  # tied head: Q6_K -> Q8_0 on 576 rows
    assert report.layer_bytes == sum(int(tensors[c.tensor].n_bytes) for c in alloc.choices)
    assert report.file_bytes == report.path.stat().st_size
    meta = GGUFReader(report.path).fields
    assert json.loads(meta["halo.allocation"].contents())[0]["gguf_type"] == "Q4_0"


def test_round_trip_and_recipe_rebuild(tiny_llama_dir, tiny_f32, tiny_text, tmp_path):
    """Dequantized file tensors equal libggml's output in llama.cpp's layout; the recipe rebuilds the file."""
    cal = calibrate(CalibrationConfig(model=str(tiny_llama_dir), data=str(tiny_text), samples=2, seq_len=64),
                    tmp_path / "cal")
    source = resolve(str(tiny_llama_dir))
    model = load_model(source)
    layers = layer_table(model, source.gguf_arch)
    alloc = allocation.resolve(layers, [3, 4, 5, 6, 8, 4, 3] * 2)
    out = export(str(tiny_llama_dir), alloc, tmp_path / "mix.gguf", calibration_dir=cal.path,
                 options=ExportOptions(imatrix=False)).path
    tensors = _tensors(out)
    modules = dict(model.named_modules())
    for layer, choice in zip(layers, alloc.choices):
        w = modules[layer.name].weight.detach().numpy()
        want = ggml.quantize_dequantize(w, choice.actual)
        got = dequantize(tensors[layer.gguf_name].data, tensors[layer.gguf_name].tensor_type)
        got = from_gguf_layout(layer.gguf_name, got, source.gguf_arch, model.config)  # undo q/k rope order
        np.testing.assert_array_equal(got, want)
    # stock llama.cpp with the recipe writes the same types and, without imatrix, the same bytes
    from halo.export_cli import tensor_types_of

    types = tensor_types_of(out, None)
    rebuilt = quantize_file(tiny_f32, tmp_path / "rebuilt.gguf", "Q4_K_M",
                            overrides=[(p, int(q)) for p, q in recipe_entries(types)])
    again = _tensors(rebuilt)
    for name, t in tensors.items():
        assert again[name].tensor_type == t.tensor_type, name
        assert np.array_equal(np.asarray(again[name].data), np.asarray(t.data)), name


def test_scale_folded_export_runs_and_records_it(tiny_llama_dir, tiny_text, tmp_path):
    cal = calibrate(CalibrationConfig(model=str(tiny_llama_dir), data=str(tiny_text), samples=2, seq_len=64),
                    tmp_path / "cal")
    report = export(str(tiny_llama_dir), "Q4_K", tmp_path / "fold.gguf", calibration_dir=cal.path,
                    options=ExportOptions(scale_fold=True))
    fields = GGUFReader(report.path).fields
    assert fields["halo.scale_folding"].contents() is True and fields["halo.imatrix"].contents() is True
    norm = _tensors(report.path)["blk.0.attn_norm.weight"]
    assert not np.allclose(np.asarray(norm.data), 1.0)  # the fold divided the (all-ones) norm by s


def _cli(argv, capsys):
    code = run_cli(halo_main, argv)
    return code, capsys.readouterr().err.strip().splitlines()


def _one_error(code, lines, pattern):
    assert code == 2 and lines and lines[-1].startswith("error:") and pattern in lines[-1], lines
    assert not any("Traceback" in line for line in lines)


def test_bad_input(tiny_llama_dir, tiny_text, tmp_path, capsys):
    model = ["--model", str(tiny_llama_dir)]
    out = tmp_path / "o.gguf"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"layers": [{"tensor": "blk.0.attn_q.weight", "bits": 4}]}))
    _one_error(*_cli(["export", *model, "--allocation", str(other), "--out", str(out)], capsys), "another model")
    _one_error(*_cli(["export", *model, "--uniform", "Q7_K", "--out", str(out)], capsys), "unknown tensor type")
    _one_error(*_cli(["export", *model, "--uniform", "1", "--out", str(out)], capsys), "2..16")
    _one_error(*_cli(["export", *model, "--uniform", "4", "--scale-fold", "--out", str(out)], capsys),
               "--calibration")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    _one_error(*_cli(["export", "--model", str(corrupt), "--uniform", "4", "--out", str(out)], capsys),
               "not a readable GGUF")
    _one_error(*_cli(["export", *model, "--uniform", "4", "--out", str(tmp_path / "no" / "o.gguf")], capsys),
               "does not exist")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.gguf", "other.json"]
