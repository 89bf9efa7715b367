"""The Python API: calibrate -> search -> export -> bench on a tiny model, returning result objects that agree with
the files they describe; the same operations the CLI runs."""

import json

import gguf
import pytest

import calibration
import halo
import ramp


def test_api_calibrate_search_export_bench(tiny_llama_dir, tmp_path):
    model = str(tiny_llama_dir)
    cal = calibration.calibrate(model, tmp_path / "cal", samples=4, seq_len=64)
    assert cal.path == tmp_path / "cal" and len(cal.layers) == 14 and cal.embedding.shape == (14, 11)
    found = ramp.search(model, tmp_path / "search", algo="sac", episodes=3, warmup_episodes=2, updates_per_episode=2,
                        calibration=cal.path, eval_samples=2, eval_seq_len=64, export=tmp_path / "ramp.gguf")
    assert isinstance(found, ramp.SearchResult)
    assert found.summary == json.loads((found.path / "summary.json").read_text()) | {"export": found.export.to_dict()}
    alloc = found.allocation()
    assert alloc.bpw == pytest.approx(found.chosen["real_bpw"]) and found.policy_path.is_file()
    report = halo.export(model, found.allocation_path, tmp_path / "again.gguf", calibration=cal.path)
    assert report.file_bytes == found.export.file_bytes  # the same allocation, the same bytes
    written = {t.name: t.tensor_type.name for t in gguf.GGUFReader(report.path).tensors}
    assert all(written[c.tensor] == c.actual.name for c in alloc.choices)
    result = halo.bench(report.path, base=halo.export(model, "F32", tmp_path / "f32.gguf").path, max_chunks=2,
                        tasks=("piqa",), limit=2, speed=False, progress=False)
    assert isinstance(result, halo.BenchResult)
    assert result.size_bytes == report.file_bytes and result.ppl > 1 and result.kld >= 0
    assert set(result.tasks) == {"piqa"}


def test_import_is_light():
    import subprocess
    import sys

    code = ("import ramp, halo, calibration, sys; "
            "print(sorted(m for m in ('torch', 'transformers', 'llama_cpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
