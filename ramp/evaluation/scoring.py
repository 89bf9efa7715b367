"""`ramp evaluate ALLOCATION`: an allocation file scored by the search's evaluator on held-out tokens."""

from pathlib import Path

from calibration import artifact
from calibration.models import load_model, resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo import allocation as alloc_mod

from ..config.search import EvalWindows
from .evaluator import make_evaluator


def score_allocation(path: Path, model_spec: str, calibration: str | None, windows: EvalWindows | None = None,
                     imatrix: bool = True, scale_fold: bool = False, seed: int = 0) -> dict:
    windows = windows or EvalWindows()
    source = resolve(model_spec)
    model = load_model(source)
    cal = artifact.read(calibration) if calibration else None
    if cal is None and (imatrix or scale_fold):
        cal = calibrate(CalibrationConfig(model=model_spec, seed=seed), Path(path).parent / "calibration")
    from calibration.layers import layer_table

    alloc = alloc_mod.load(Path(path), layer_table(model, source.gguf_arch))
    actions = sorted({c.requested.name for c in alloc.choices})
    evaluator = make_evaluator(model, source, cal, actions, windows, seed, imatrix, scale_fold)
    base = evaluator.evaluate([None] * len(alloc.choices))
    result = evaluator.evaluate_allocation(alloc)
    return {"allocation": str(path), "ppl": result.ppl, "kld": result.kld, "base_ppl": base.ppl, "bpw": alloc.bpw,
            "nominal_bpw": alloc.nominal_bpw, "bytes": alloc.bytes,
            "tokens": f"{windows.samples} x {windows.seq_len} held-out validation tokens"}
