"""HALO on the default model: export time, llama.cpp PPL/KLD/size of uniform types and llama.cpp presets,
and generation speed of a mixed file against Q4_K_M measured in the same run.

    python benchmarks/halo_baselines.py [--model default] [--max-chunks 40] [--quick]

Every file is measured by `halo bench` (llama.cpp) on WikiText-2 raw test, ctx 512, against the base
model (the source GGUF run as is: for the default model a Q4_1 file, so "base" is not FP16).  Results
go to benchmarks/results/halo_baselines.json and .md; finished rows are reused when re-run (resume).
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calibration.models import load_model, resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo.exporter import export
from halo.llama_quantize import quantize_file
from halo.measure.run import bench
from halo.writer import write_base_gguf

PRESETS = ["Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"]
UNIFORM = ["Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--max-chunks", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="2 chunks, 2 presets, 2 uniform types (smoke run)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="llama.cpp presets to measure (comma list)")
    parser.add_argument("--uniform", default=",".join(UNIFORM), help="HALO uniform types to measure (comma list)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "halo_baselines")
    parser.add_argument("--calibration", type=Path, default=ROOT / "runs" / "default" / "calibration",
                        help="calibration artifact of the model (computed there if missing; reused if identical)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    presets, uniform = [p for p in args.presets.split(",") if p], [u for u in args.uniform.split(",") if u]
    chunks = args.max_chunks
    if args.quick:
        presets, uniform, chunks = ["Q4_K_M", "Q8_0"], ["Q4_K", "Q8_0"], 2
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "halo_baselines" + ("_quick" if args.quick else "")
    result_path = args.out / f"{name}.json"
    results = json.loads(result_path.read_text()) if result_path.exists() else {"rows": {}}
    results.update({"model": args.model, "max_chunks": chunks, "text": "wikitext-2 raw test, ctx 512"})

    source = resolve(args.model)
    cal = calibrate(CalibrationConfig(model=args.model, samples=16 if args.quick else 128,
                                      seq_len=128 if args.quick else 512),
                    args.work / "calibration" if args.quick else args.calibration)
    model = load_model(source)
    base_gguf = source.path if source.kind == "gguf" else write_base_gguf(model, source, args.work / "base-f32.gguf")
    f32 = args.work / "base-f32.gguf"
    if not f32.exists():
        write_base_gguf(model, source, f32)

    def measure(label, path, extra):
        if label in results["rows"]:
            return
        row = bench(path, base=base_gguf, max_chunks=chunks, speed=True) | extra
        results["rows"][label] = row
        result_path.write_text(json.dumps(results, indent=1))
        print(f"{label:24s} {row['size_mb']:8.2f} MB  ppl {row['perplexity']['ppl']:.3f}  "
              f"kld {row['kld']['kld_mean']:.4f}", flush=True)

    measure("base (source GGUF)", base_gguf, {"kind": "base"})
    for preset in presets:
        path = args.work / f"preset-{preset}.gguf"
        if not path.exists():
            quantize_file(f32, path, preset)
        measure(f"llama.cpp {preset}", path, {"kind": "preset"})
    for qtype in uniform:
        path = args.work / f"uniform-{qtype}.gguf"
        started = time.time()
        if not path.exists():
            report = export(args.model, qtype, path, calibration_dir=cal.path, model=load_model(source))
            results.setdefault("export_seconds", {})[qtype] = round(report.seconds, 2)
        measure(f"HALO uniform {qtype} (imatrix)", path, {"kind": "uniform", "wall": time.time() - started})
    mixed = args.work / "mixed-q4k-q6k.gguf"
    if not mixed.exists():
        from calibration.layers import layer_table
        from halo import allocation

        layers = layer_table(model, source.gguf_arch)
        picks = [6 if layer.role in ("v", "down") else 4 for layer in layers]
        report = export(args.model, allocation.resolve(layers, picks, {"method": "v/down 6, rest 4"}), mixed,
                        calibration_dir=cal.path, model=load_model(source))
        results.setdefault("export_seconds", {})["mixed"] = round(report.seconds, 2)
    measure("HALO mixed (v/down 6 bits, rest 4)", mixed, {"kind": "mixed"})
    result_path.write_text(json.dumps(results, indent=1))
    write_markdown(results, args.out / f"{name}.md")


def write_markdown(results: dict, path: Path) -> None:
    lines = [(f"# HALO baselines on `{results['model']}` (llama.cpp, {results['text']}, "
             f"first {results['max_chunks']} windows)"), "",
             "Base = the source model run as is (for the default model a Q4_1 GGUF, not FP16).", "",
             "| file | MB | bpw | PPL | KLD vs base | same top | pp t/s | tg t/s |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in results["rows"].items():
        kld, speed = row.get("kld", {}), row.get("speed") or {}
        lines.append(f"| {label} | {row['size_mb']:.2f} | {row['bpw']:.3f} | {row['perplexity']['ppl']:.3f} | "
                     f"{kld.get('kld_mean', float('nan')):.4f} | {100 * kld.get('same_top', float('nan')):.1f}% | "
                     f"{speed.get('pp512', float('nan')):.0f} | {speed.get('tg128', float('nan')):.1f} |")
    if "export_seconds" in results:
        lines += ["", "Export wall time (s): " + ", ".join(f"{k} {v}" for k, v in results["export_seconds"].items())]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
