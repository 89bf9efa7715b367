"""The prepared GPU check (scripts/gpu_check.sh runs it): calibrate, a short search, export and a llama.cpp bench
of one model on one GPU, every number into one JSON file.

    python scripts/gpu_check.py [--model default|tiny|PATH] [--device cuda|cpu] [--quick] --out FILE.json

Steps, each the real command line, each timed: `ramp calibrate` (32 x 512 tokens), `ramp search --algo knapsack`
(Fisher sensitivities) at 4.5 bpw, `halo export`, `halo bench` against the base with every layer on the GPU
(`--gpu-layers all`; on the CPU 0), and in-process the evaluator's fidelity for each dtype (float32, bfloat16: its
PPL against llama.cpp's of the exported file on the same windows).  `--model tiny` builds a random 2-block Llama
with SmolLM2's tokenizer (`--tokenizer DIR`), for a machine where the default model's package cannot travel; the
JSON says which model ran.  `--device cpu --quick` runs the same plumbing on small settings without a GPU.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ramputils.atomic import write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="default, tiny, or a .gguf / HF directory")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / ".whl" / "tokenizer",
                        help="tokenizer folder for --model tiny (scripts/gpu_pack.sh writes one)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="small settings (a CPU smoke run of the plumbing)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA GPU (use --device cpu for the plumbing alone)")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        work = Path(work)
        model = tiny_model(work / "tiny", args.tokenizer) if args.model == "tiny" else args.model
        result = {"model": args.model, "device": args.device, "quick": args.quick, "torch": torch.__version__,
                  "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
                  "base_note": "KLD against the source's dequantized weights (the default model is a Q4_1 file)",
                  "seconds": {}}
        small = ["--samples", "4", "--seq-len", "64"] if args.quick else ["--samples", "32", "--seq-len", "512"]
        evals = ["--eval-samples", "2", "--eval-seq-len", "64"] if args.quick else []
        cal, search, gguf = work / "cal", work / "search", work / "check.gguf"
        step(result, "calibrate", ["-m", "ramp", "calibrate", "--model", model, "--device", args.device,
                                   *small, "--out", cal])
        step(result, "search", ["-m", "ramp", "search", "--model", model, "--calibration", cal, "--algo",
                                "knapsack", "--budget", "4.5", "--device", args.device, *evals, "--out", search])
        step(result, "export", ["-m", "halo", "export", "--model", model, "--allocation",
                                search / "allocation.json", "--calibration", cal, "--out", gguf])
        base = work / "base.gguf"
        step(result, "base", ["-m", "halo", "base", "--model", model, "--out", base])
        bench = work / "bench.json"
        step(result, "bench", ["-m", "halo", "bench", gguf, "--base", base, "--max-chunks", "2" if args.quick
                               else "10", "--gpu-layers", "all" if args.device == "cuda" else "0",
                               "--json", bench])
        result["bench"] = json.loads(bench.read_text())
        result["fidelity"] = fidelity(model, cal, search / "allocation.json", work, args.device, args.quick)
    result["seconds"]["total"] = time.perf_counter() - started
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("model", "device", "gpu", "seconds")}, indent=1))


def step(result: dict, name: str, argv: list) -> None:
    start = time.perf_counter()
    print(f"[{name}] {' '.join(map(str, argv))}", flush=True)
    run = subprocess.run([sys.executable, *map(str, argv)], env={**os.environ, "PYTHONPATH": _pythonpath()})
    if run.returncode:
        sys.exit(f"gpu_check: step {name} failed (exit {run.returncode})")
    result["seconds"][name] = time.perf_counter() - start


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def tiny_model(path: Path, tokenizer: Path) -> str:
    """A random 2-block Llama (hidden 256: every row a multiple of 256) with the tokenizer in `tokenizer`."""
    import torch
    import transformers

    if not (tokenizer / "tokenizer.json").exists():
        sys.exit(f"gpu_check: no tokenizer in {tokenizer} (run scripts/gpu_pack.sh, or give --tokenizer)")
    tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=1024, tie_word_embeddings=True,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    transformers.LlamaForCausalLM(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def fidelity(model: str, cal_dir: Path, allocation: Path, work: Path, device: str, quick: bool) -> dict:
    """Evaluator PPL against llama.cpp's on the same windows, per evaluator dtype (and the time of one evaluation)."""
    from calibration import artifact
    from calibration.models import load_model, resolve
    from halo import allocation as alloc_mod
    from ramp.config.search import EvalWindows
    from ramp.evaluation.evaluator import make_evaluator
    from ramp.evaluation.fidelity import fidelity as run

    source, cal, found = resolve(model), artifact.read(cal_dir), {}
    for dtype in ("float32", "bfloat16"):
        evaluator = make_evaluator(load_model(source), source, cal, ["3", "4", "5", "6"],
                                   EvalWindows(2, 64) if quick else None, device=device, dtype=dtype)
        alloc = alloc_mod.load(allocation, evaluator.layers)
        seconds = min(evaluator.evaluate_allocation(alloc).seconds for _ in range(3))
        fid = run(evaluator, alloc, model, work / f"fidelity-{dtype}.gguf", cal)
        found[dtype] = {"device": str(evaluator.device), "evaluate_s": seconds, "ppl_evaluator": fid.ppl_evaluator,
                        "kld_evaluator": fid.kld_evaluator, "ppl_llama_cpp": fid.ppl_llama, "gap": fid.gap}
        del evaluator
    return found


if __name__ == "__main__":
    main()
