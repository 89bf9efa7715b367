"""The calibration pass on a tiny model: artifact contents, every embedding dim, reuse, atomicity."""

import json
import math

import numpy as np
import pytest

from calibration import artifact
from calibration.embedding import STD_FLOOR, position_bucket, standardise
from calibration.models import load, resolve
from calibration.pipeline import CalibrationConfig, calibrate
from ramp.cli import main as ramp_main
from ramputils.errors import UserError, run_cli


@pytest.fixture(scope="module")
def tiny_artifact(tiny_llama_dir, tiny_text, tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "artifact"
    config = CalibrationConfig(model=str(tiny_llama_dir), data=str(tiny_text), samples=4, seq_len=64, seed=1)
    return calibrate(config, out), config


def test_every_embedding_dim_equals_its_formula(tiny_artifact, tiny_llama_dir):
    cal, _ = tiny_artifact
    model, _ = load(resolve(str(tiny_llama_dir)))
    modules = dict(model.named_modules())
    role_scalar = {"q": 0.0, "k": 0.0, "v": 0.0, "o": 0.25, "gate": 0.5, "up": 0.6, "down": 0.75}
    assert cal.embedding.shape == (14, 11)
    for layer, row in zip(cal.layers, cal.embedding.astype(np.float64)):
        w = modules[layer.name].weight.detach().double()
        act = cal.channel(layer.gguf_name, "act_max").astype(np.float64)
        expected = [layer.block / 1, math.log2(layer.in_features / 16), math.log2(layer.out_features / 16),
                    min(float(w.std()) * 10, 1), min(float(w.abs().mean()) * 10, 1), role_scalar[layer.role],
                    0.0 if layer.block == 0 else 1.0, min(act.mean() * 100, 1), min(act.max() * 1000, 1), 0, 0]
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-6)


def test_position_buckets():
    assert [position_bucket(b, 30) for b in (0, 2, 3, 15, 26, 27, 29)] == [0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0]


def test_standardisation_statistics(tiny_artifact):
    cal, _ = tiny_artifact
    emb = cal.embedding.astype(np.float64)
    mean, std = cal.tensors["embedding_mean"], cal.tensors["embedding_std"]
    np.testing.assert_allclose(mean[:9], emb[:, :9].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std[:9], emb[:, :9].std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean[9:], 4.5 / 8)  # bits uniform over {3, 4, 5, 6}
    z = standardise(emb, mean, std)
    varying = std[:9] > STD_FLOOR
    np.testing.assert_allclose(z[:, :9][:, varying].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :9][:, varying].std(0), 1, atol=1e-4)


def test_channel_statistics_are_consistent(tiny_artifact):
    cal, _ = tiny_artifact
    for layer in cal.layers:
        mx, ma, ms = (cal.channel(layer.gguf_name, s) for s in ("act_max", "act_mean_abs", "act_mean_sq"))
        assert (mx >= ma - 1e-6).all() and (ms <= mx ** 2 + 1e-6).all() and (ma ** 2 <= ms + 1e-5).all()


def test_manifest_records_inputs(tiny_artifact, tiny_llama_dir):
    cal, config = tiny_artifact
    m = cal.manifest
    assert m["model"]["architecture"] == "llama" and m["model"]["weights"] == "base"
    assert m["inputs"]["samples"] == 4 and m["inputs"]["seq_len"] == 64 and m["inputs"]["seed"] == 1
    assert len(m["data"]["sha256"]) == 64 and len(m["model"]["sha256"]) == 64
    assert [row["gguf_name"] for row in m["layers"]][:2] == ["blk.0.attn_q.weight", "blk.0.attn_k.weight"]
    assert {"torch", "transformers", "gguf", "ramp"} <= set(m["versions"])


def test_identical_inputs_reuse_the_artifact(tiny_artifact, capsys):
    cal, config = tiny_artifact
    before = (cal.path / artifact.TENSORS).stat().st_mtime_ns
    again = calibrate(config, cal.path)
    assert "reusing" in capsys.readouterr().err
    assert (cal.path / artifact.TENSORS).stat().st_mtime_ns == before
    np.testing.assert_array_equal(again.embedding, cal.embedding)


def test_calibration_is_reproducible(tiny_artifact, tmp_path):
    cal, config = tiny_artifact
    second = calibrate(config, tmp_path / "again")
    for name, value in cal.tensors.items():
        np.testing.assert_array_equal(second.tensors[name], value)


def test_failure_leaves_nothing_behind(tiny_llama_dir, tiny_text, tmp_path, monkeypatch):
    import calibration.pipeline as pipeline

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted mid-way")

    monkeypatch.setattr(pipeline, "collect", boom)
    config = CalibrationConfig(model=str(tiny_llama_dir), data=str(tiny_text), samples=2, seq_len=32)
    with pytest.raises(RuntimeError):
        calibrate(config, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_artifact_is_one_clear_error(tiny_artifact, tmp_path):
    cal, config = tiny_artifact
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / artifact.MANIFEST).write_text((cal.path / artifact.MANIFEST).read_text())
    (broken / artifact.TENSORS).write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="corrupt"):
        calibrate(config, broken)
    manifest = json.loads((cal.path / artifact.MANIFEST).read_text())
    manifest["layers"] = manifest["layers"][:3]
    (broken / artifact.MANIFEST).write_text(json.dumps(manifest))
    (broken / artifact.TENSORS).write_bytes((cal.path / artifact.TENSORS).read_bytes())
    with pytest.raises(UserError, match="corrupt"):
        artifact.read(broken)


def test_a_model_over_its_memory_limit_is_streamed_with_identical_results(tiny_artifact, tmp_path, capsys):
    """Forced to stream (--max-memory far below the model), calibration gives the in-memory artifact's numbers."""
    cal, config = tiny_artifact
    out = tmp_path / "streamed"
    argv = ["calibrate", "--model", config.model, "--data", config.data, "--samples", "4", "--seq-len", "64",
            "--seed", "1", "--max-memory", "1MB", "--out", str(out)]
    assert run_cli(ramp_main, argv) == 0
    assert "streaming its blocks from disk" in capsys.readouterr().err
    streamed = artifact.read(out)
    assert streamed.manifest["key"] == cal.manifest["key"]   # the same inputs: either artifact serves the other
    assert set(streamed.tensors) == set(cal.tensors)
    for name, tensor in cal.tensors.items():
        np.testing.assert_array_equal(streamed.tensors[name], tensor, err_msg=name)
    assert not any(p.name.startswith(".offload-") for p in tmp_path.iterdir())   # the offload folder is removed
    argv[argv.index("1MB")] = "lots"
    assert run_cli(ramp_main, argv[:-1] + [str(tmp_path / "bad")]) != 0
    assert "cannot read 'lots' as a size" in capsys.readouterr().err
