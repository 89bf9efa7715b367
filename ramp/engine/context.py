"""What every search method works with (`Context`) and how it is prepared: calibrate (or reuse the artifact),
load the model, check the budget, build the evaluator on exactly the exported weights, score the base."""

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from calibration import artifact
from calibration.memory import load_within
from calibration.models import resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo import allocation as alloc_mod
from ramputils.errors import UserError

from ..config.search import SearchConfig
from ..evaluation.evaluator import check_device, make_evaluator
from ..mdp.budget import allocation_bpw, make_budget
from ..mdp.env import AllocationEnv, Outcome
from ..mdp.repair import repair


def say(message: str) -> None:
    """A line on stderr that does not break the progress bars."""
    tqdm.write(message, file=sys.stderr)


@dataclass
class Context:
    """The run's configuration, its model and layers, the evaluator and the budget, and every score so far."""

    config: SearchConfig
    out: Path
    source: object
    calibration: object
    layers: list
    evaluator: object
    budget: object
    base: object
    scored: dict = field(default_factory=dict)
    eval_seconds: float = 0.0             # time spent in the evaluator so far (forward passes + scoring)
    offload: object = None                # the folder a streamed model's weights live in (removed with the run)

    def outcome(self, bits: list) -> tuple[alloc_mod.Allocation, Outcome]:
        """The allocation and its evaluation; an allocation seen before (the outputs revisit the chosen and
        the uniform ones) is not evaluated again, since the evaluator is deterministic."""
        key = tuple(int(b) for b in bits)
        alloc = alloc_mod.resolve(self.layers, key)
        if key not in self.scored:
            result = self.evaluator.evaluate_allocation(alloc)
            self.eval_seconds += result.seconds
            self.scored[key] = Outcome(ppl=result.ppl, kld=result.kld, bpw=allocation_bpw(alloc, self.budget.nominal),
                                       real_bpw=alloc.bpw, nominal_bpw=alloc.nominal_bpw)
        return alloc, self.scored[key]

    def feasible(self, outcome: Outcome) -> bool:
        """Within the budget itself (b <= target), not merely under eq. 20's ceiling."""
        return outcome.bpw <= self.budget.target + 1e-9

    def loss(self, outcome: Outcome) -> float:
        """What the search minimises among feasible allocations: perplexity, or KL divergence to the base."""
        return outcome.kld if self.config.quality == "kld" else outcome.ppl

    def new_env(self) -> AllocationEnv:
        """The MDP over this model's layers, scoring through `outcome`."""
        config, cal = self.config, self.calibration
        constrain = None
        if config.budget_mode == "repair":
            def constrain(bits):
                return repair(bits, self.layers, config.actions, self.budget)
        return AllocationEnv(cal.embedding, cal.tensors["embedding_mean"], cal.tensors["embedding_std"],
                             config.actions, lambda bits: self.outcome(bits)[1], self.base.ppl, self.budget,
                             config.reward, constrain, config.quality)


def prepare(config: SearchConfig, out: Path, evaluator_factory=None) -> Context:
    """Calibrate (or reuse), load, fold if asked, check the budget, build the evaluator.

    `evaluator_factory(calibration)`, when given, supplies the evaluator instead of a local one (the Ray
    search's driver scores on a worker's replica and loads no model of its own unless the budget needs it)."""
    source = resolve(config.model)
    if evaluator_factory is None:
        check_device(config.device)   # before minutes of calibration
    cal_dir = Path(config.calibration) if config.calibration else out / "calibration"
    if config.calibration and not (cal_dir / artifact.MANIFEST).exists():
        raise UserError(f"calibration artifact not found: {cal_dir}")
    cal = artifact.read(cal_dir) if config.calibration else calibrate(
        CalibrationConfig(model=config.model, samples=config.calib_samples, seq_len=config.calib_seq_len,
                          seed=config.windows.seed, max_memory=config.max_memory), cal_dir)
    layers = cal.layers
    spec = config.budget
    if spec.target_size is None:  # a bpw budget needs only the layer table: refuse a bad one before loading
        budget = make_budget(layers, config.actions, spec.budget, spec.ceiling, spec.nominal_bits)
    offload = tempfile.TemporaryDirectory(prefix=".offload-", dir=out)  # used only if the model must stream
    model = None
    if spec.target_size or evaluator_factory is None:
        model = load_within(source, "cpu", "float32", Path(offload.name), config.max_memory, say)
    if spec.target_size is not None:
        if getattr(model, "hf_device_map", None) is not None:
            raise UserError("--target-size needs the whole model in memory; give --budget (bits per weight) "
                            "for a model that is streamed from disk")
        from halo.file_size import bytes_besides_layers

        other = bytes_besides_layers(model, source, [layer.gguf_name for layer in layers])
        budget = make_budget(layers, config.actions, spec.budget, spec.ceiling, spec.nominal_bits,
                             spec.target_size, other)
    if evaluator_factory is not None:
        evaluator = evaluator_factory(cal)
    else:
        evaluator = make_evaluator(model, source, cal, [str(b) for b in config.actions], config.windows,
                                   config.windows.seed, config.imatrix, config.scale_fold, device=config.device,
                                   plan=config.plan, dtype=config.dtype)
    base = evaluator.evaluate([None] * len(layers))
    say(f"base model ({source.weights_name}): PPL {base.ppl:.3f} on {config.windows.samples} x "
        f"{config.windows.seq_len} held-out validation tokens; budget {budget.target:.3f} (ceiling "
        f"{budget.ceiling:.3f}) {'nominal bits' if budget.nominal else 'bpw, real bytes'}")
    return Context(config, out, source, cal, layers, evaluator, budget, base, offload=offload)
