"""HALO from Python: `halo.export(...)` writes a GGUF file and returns its `ExportReport`; `halo.bench(...)`
measures a GGUF file in llama.cpp and returns a `BenchResult`.  Heavy modules load when a function runs."""

from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchResult:
    """`halo bench`'s measurements of one file; `raw` is the full dict (`halo bench --json` writes it)."""

    raw: dict

    @property
    def ppl(self) -> float:
        return self.raw["perplexity"]["ppl"]

    @property
    def kld(self) -> float | None:
        return self.raw["kld"]["kld_mean"] if "kld" in self.raw else None

    @property
    def size_bytes(self) -> int:
        return self.raw["size_bytes"]

    @property
    def bpw(self) -> float:
        return self.raw["bpw"]

    @property
    def tasks(self) -> dict[str, float]:
        """Accuracy per task (acc)."""
        return {name: t["acc"] for name, t in self.raw["tasks"].items()}

    def to_dict(self) -> dict:
        return self.raw


def export(model: str, allocation, out: str | Path, *, calibration: str | Path | None = None,
           scale_fold: bool = False, imatrix: bool = True, token_embd_type: str | None = None,
           output_type: str | None = None, verify: bool = True):
    """Write `allocation` (an Allocation, an allocation.json path, or a type name such as "Q4_K" for a uniform
    file) for `model` as the GGUF file `out`; returns `halo.exporter.ExportReport`.  With `calibration`, quantize
    with its importance matrix (and fold scales when `scale_fold`); `verify` loads and runs the file in llama.cpp."""
    from .exporter import ExportOptions
    from .exporter import export as run

    options = ExportOptions(scale_fold=scale_fold, imatrix=imatrix, token_embd_type=token_embd_type,
                            output_type=output_type, verify=verify)
    return run(model, allocation, Path(out), None if calibration is None else Path(calibration), options)


def bench(path: str | Path, *, base: str | Path | None = None, tasks=(), max_chunks: int | None = None,
          limit: int | None = None, threads: int | None = None, speed: bool = True, n_ctx: int = 512,
          progress: bool = True, base_cache: str | Path | None = None,
          gpu_layers: int | str | None = None) -> BenchResult:
    """Measure a GGUF file in llama.cpp: size, WikiText-2 raw test perplexity (ctx `n_ctx`, first `max_chunks`
    windows), KL divergence against `base`, accuracy on `tasks` (first `limit` items), pp512/tg128 speed;
    `base_cache`: a folder keeping the base's logits between runs (measuring many files against one base);
    `gpu_layers`: layers llama.cpp offloads to the GPU, a count or "all" (default: all when the llama.cpp build has
    a GPU backend, else 0; asking a CPU-only build for any is a UserError)."""
    from .measure.run import bench as run

    return BenchResult(run(path, base=base, tasks=tasks, max_chunks=max_chunks, limit=limit, threads=threads,
                           speed=speed, n_ctx=n_ctx, progress=progress, base_cache=base_cache,
                           gpu_layers=gpu_layers))
