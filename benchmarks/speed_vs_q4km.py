"""llama.cpp generation and prompt speed of mixed-precision files against Q4_K_M, measured in one run.

    python benchmarks/speed_vs_q4km.py FILE [FILE ...] --reference runs/halo_baselines/preset-Q4_K_M.gguf

Files are measured in interleaved rounds (reference, file 1, ..., reference, file 1, ...) so that machine
noise hits all of them alike; the result is each file's median tokens/s and its ratio to the reference.
Writes benchmarks/results/speed_vs_q4km.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from halo.measure.backend import describe, gpu_layers, parse  # noqa: E402
from halo.measure.run import block_count  # noqa: E402
from halo.measure.speed import speed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpu-layers", type=parse, default=None, metavar="N|all",
                        help="layers offloaded to the GPU (default: all when llama.cpp has a GPU backend, else 0)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed_vs_q4km.json")
    args = parser.parse_args()
    n_gpu = gpu_layers(args.gpu_layers)
    files = [args.reference, *args.files]
    runs = {str(f): {"pp512": [], "tg128": []} for f in files}
    for _ in range(args.rounds):
        for f in files:
            result = speed(f, reps=2, progress=False, gpu_layers=n_gpu)
            runs[str(f)]["pp512"].append(result["pp512"])
            runs[str(f)]["tg128"].append(result["tg128"])
    ref = {k: float(np.median(v)) for k, v in runs[str(args.reference)].items()}
    table = {}
    for f in files:
        med = {k: float(np.median(v)) for k, v in runs[str(f)].items()}
        table[str(f)] = {"size_mb": f.stat().st_size / 1e6, **med,
                         "pp512_ratio": med["pp512"] / ref["pp512"], "tg128_ratio": med["tg128"] / ref["tg128"]}
        print(f"{f.name:40s} {table[str(f)]['size_mb']:7.2f} MB  pp512 {med['pp512']:7.1f} t/s "
              f"({table[str(f)]['pp512_ratio']:.3f}x)  tg128 {med['tg128']:6.1f} t/s "
              f"({table[str(f)]['tg128_ratio']:.3f}x)")
    args.out.write_text(json.dumps({"reference": str(args.reference), "rounds": args.rounds,
                                    "backend": describe(n_gpu, block_count(args.reference)), "files": table,
                                    "raw": runs}, indent=1))


if __name__ == "__main__":
    main()
