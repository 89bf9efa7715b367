"""`ramp search`: learn a per-layer bit allocation under a budget (SAC, PPO), or compute a baseline one.

Stages, each reusable: calibrate (artifact reused when inputs match) -> prepare the context (model, budget,
evaluator on exactly the exported weights) -> the method (`TRAINERS`) -> outputs.  The learning methods
checkpoint after every episode, so a killed search resumes with `--resume` and ends exactly where an
uninterrupted run would.  A new search that is refused (a budget the model cannot reach, a missing file) leaves
no config.json behind, and no run folder unless it holds a finished calibration worth reusing.
"""

import json
import shutil
from pathlib import Path

from ramputils.atomic import write_json
from ramputils.errors import UserError

from ..config.options import check, guided
from ..config.search import SearchConfig
from . import checkpoint, evo, guided_train, knapsack, ppo_train, sac_train, uniform
from .context import prepare
from .outputs import finish

# algo -> train(ctx, resume) -> {"allocations": {label: bits}, "chosen": label, ...}; "sac" is the paper's search,
# its default guided mode is `guided_train`
TRAINERS = {"sac": sac_train.train, "ppo": ppo_train.train, "knapsack": knapsack.train, "evo": evo.train,
            "uniform": uniform.train}
CONFIG = "config.json"


def run(config: SearchConfig, out: Path, resume: bool = False) -> dict:
    """Run the configured search into `out`; returns the summary written to summary.json."""
    out = Path(out)
    if resume:
        config = _resumed(config, out)
    elif (out / checkpoint.NAME).exists():
        raise UserError(f"{out} holds a search already; use --resume to continue it or choose another --out")
    check(config)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(out / CONFIG, config.to_json())
    try:
        return _dispatch(config, out, resume)
    except UserError:
        if not resume and not (out / checkpoint.NAME).exists():
            _clean(out, created)
        raise


def _clean(out: Path, created: bool) -> None:
    """After a refused new search: no config.json; a folder this run created keeps only a finished calibration."""
    (out / CONFIG).unlink(missing_ok=True)
    if created:
        for path in out.iterdir():
            if path.name != "calibration":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        if not any(out.iterdir()):
            out.rmdir()


def _resumed(config: SearchConfig, out: Path) -> SearchConfig:
    """The saved configuration of the search in `out`; only where the Ray cluster is may change."""
    path = out / CONFIG
    if not path.exists():
        raise UserError(f"nothing to resume in {out}: no {CONFIG}")
    try:
        saved = SearchConfig.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"cannot resume from {path}: {exc.__class__.__name__}; start a new search") from None
    saved.ray_address = config.ray_address or saved.ray_address
    return saved


def _dispatch(config: SearchConfig, out: Path, resume: bool) -> dict:
    if config.reward == "dynaquant":  # its own environment: bitsandbytes formats, fine-tuning, per-step reward
        from ..dynaquant.loop import run as run_dynaquant

        return run_dynaquant(config, out, resume)
    if config.workers:
        try:
            from . import ray_train
        except ImportError:
            raise UserError("--workers needs Ray: pip install 'ray>=2.9'") from None
        return ray_train.run(config, out, resume)
    ctx = prepare(config, out)
    train = guided_train.train if guided(config) else TRAINERS[config.algo]
    return finish(ctx, train(ctx, resume))
