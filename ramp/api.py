"""RAMP from Python: `ramp.search(...)` and `ramp.transfer(...)` return result objects; the CLI calls these.

    import calibration, halo, ramp

    cal = calibration.calibrate("default", "runs/x/calibration")
    found = ramp.search("default", "runs/x/search", budget=4.5, calibration=cal.path)
    report = halo.export("default", found.allocation_path, "runs/x/ramp.gguf", calibration=cal.path)
    result = halo.bench(report.path, base=calibration.default_model_path(), max_chunks=40)

Heavy modules (torch, transformers, llama.cpp) are imported when a function runs, not by `import ramp`.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SearchResult:
    """What `ramp search` wrote into `path`, read back."""

    path: Path
    summary: dict                       # summary.json
    export: object | None = None        # halo.exporter.ExportReport when export= was given

    @property
    def allocation_path(self) -> Path:
        return self.path / "allocation.json"

    @property
    def policy_path(self) -> Path | None:
        found = self.path / "policy.safetensors"
        return found if found.exists() else None

    @property
    def chosen(self) -> dict:
        """The chosen allocation's evaluator numbers (PPL, KLD, bpw, ...); DynaQuant: its final rollout."""
        if "allocations" in self.summary:
            return self.summary["allocations"][self.summary["chosen"]]
        return self.summary["deterministic"]

    def allocation(self, model=None):
        """The chosen allocation as a `halo.allocation.Allocation`, resolved against the model's layer table."""
        from calibration.layers import layer_table
        from calibration.models import load_model, resolve
        from halo import allocation as alloc_mod

        source = resolve(self.summary["model"] if model is None else model)
        return alloc_mod.load(self.allocation_path, layer_table(load_model(source), source.gguf_arch))


@dataclass
class TransferResult:
    path: Path
    summary: dict                       # transfer.json: bpw, repaired layers, evaluator PPL/KLD when evaluated
    export: object | None = None

    @property
    def allocation_path(self) -> Path:
        return self.path / "allocation.json"


def search(model: str = "default", out: str | Path = "runs/search", *, export: str | Path | None = None,
           resume: bool = False, **options) -> SearchResult:
    """Search a per-layer allocation for `model` into the run folder `out`.

    `options` are `ramp search`'s options as keywords, checked the same way: `--algo ppo --ppo-batch 4` is
    `algo="ppo", ppo_batch=4`, `--eval-samples 8` is `eval_samples=8`, `--no-imatrix` is `imatrix=False`
    (`ramp search --help` lists them; `ramp.config.options.option_table()` maps each to its config field).
    With `export` the chosen allocation is also written as that GGUF file (loaded and run in llama.cpp before
    this returns).
    """
    from .config.options import search_config
    from .engine.run import run

    config = search_config(model=model, **options)
    out = Path(out)
    summary = run(config, out, resume=resume)
    report = None
    if export is not None:
        from halo.api import export as halo_export

        cal = summary.get("calibration") or config.calibration
        report = halo_export(model, out / "allocation.json", export, calibration=cal,
                             scale_fold=config.scale_fold, imatrix=config.imatrix and cal is not None)
        summary["export"] = report.to_dict()
    return SearchResult(out, summary, report)


def transfer(policy: str, target: str, out: str | Path, *, budget: float | None = None,
             ceiling: float | None = None, nominal_bits: bool = False, calibration: str | Path | None = None,
             evaluate: bool = True, eval_samples: int | None = None, eval_seq_len: int | None = None,
             imatrix: bool = True, scale_fold: bool = False, seed: int = 0,
             export: str | Path | None = None) -> TransferResult:
    """Apply a trained policy (file or shipped name) zero-shot to `target`; see `ramp transfer --help`."""
    from .config.options import budget_options, eval_windows
    from .transfer_run import transfer as run

    out = Path(out)
    summary = run(policy, target, out, budget_options(budget=budget, ceiling=ceiling, nominal_bits=nominal_bits),
                  None if calibration is None else str(calibration), evaluate,
                  eval_windows(eval_samples=eval_samples, eval_seq_len=eval_seq_len), imatrix, scale_fold, seed)
    report = None
    if export is not None:
        from halo.api import export as halo_export

        cal = str(calibration) if calibration else str(out / "calibration")
        report = halo_export(target, out / "allocation.json", export, calibration=cal, scale_fold=scale_fold,
                             imatrix=imatrix)
        summary["export"] = report.to_dict()
    return TransferResult(out, summary, report)
