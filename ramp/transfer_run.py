"""`ramp transfer`: apply a trained policy zero-shot to another model.

The target is calibrated (or its artifact reused), its embedding standardised with its *own*
statistics (eq. 13), and the policy rolled out deterministically (mean action).  A guided policy (the default SAC
mode) acts on the target's own sensitivity table, computed as in its training (`--sensitivity` on its card), and
the knapsack decodes its actions, so its allocation is within the budget by construction.  If the result
exceeds the budget it is repaired (and the output says so).  The allocation is then scored by the
evaluator and, when asked, exported through HALO.
"""

import json
import sys
from pathlib import Path

import numpy as np

from calibration import artifact
from calibration.models import load_model, resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo import allocation as alloc_mod
from ramputils.errors import UserError

from .agents.policy_io import load_policy_card
from .agents.ppo import load_policy as load_ppo_policy
from .agents.sac import load_policy
from .config.search import BudgetOptions, EvalWindows
from .evaluation.evaluator import make_evaluator
from .mdp.budget import Budget, allocation_bpw, make_budget
from .mdp.env import AllocationEnv, Outcome, rollout
from .mdp.repair import repair


def policy_bits(actor, calibration, action_bits) -> list[int]:
    """The deterministic rollout of `actor` over the layers of `calibration` (no evaluation needed)."""
    placeholder = Outcome(ppl=1.0, kld=0.0, bpw=0.0, real_bpw=0.0, nominal_bpw=0.0)
    env = AllocationEnv(calibration.embedding, calibration.tensors["embedding_mean"],
                        calibration.tensors["embedding_std"], action_bits, lambda bits: placeholder, 1.0,
                        Budget(target=float("inf"), ceiling=float("inf")))
    if actor.obs_dim != len(env.observation()):
        raise UserError(f"the policy reads {actor.obs_dim} features; this RAMP's embedding has "
                        f"{len(env.observation())}")
    bits, _, _ = rollout(env, lambda obs: float(actor.deterministic(obs)[0]))
    return bits


def guided_context(card: dict, target: str, out: Path, budget: BudgetOptions, calibration: str | None,
                   windows: EvalWindows | None, imatrix: bool, scale_fold: bool):
    """The target's search context for a guided policy: its calibration, budget, evaluator and (next) its
    sensitivity table, by the method the policy was trained with."""
    from .config.options import search_config
    from .engine.context import prepare

    windows = windows or EvalWindows()
    options = {"model": target, "algo": "knapsack", "calibration": calibration, "sensitivity": card["sensitivity"],
               "budget": budget.budget, "nominal_bits": budget.nominal_bits, "actions": card["action_bits"],
               "eval_samples": windows.samples, "eval_seq_len": windows.seq_len, "imatrix": imatrix,
               "scale_fold": scale_fold}
    return prepare(search_config(**{k: v for k, v in options.items() if v is not None}), out)


def guided_bits(actor, ctx, card: dict) -> list[int]:
    """A guided policy's deterministic allocation on `ctx`'s model: the knapsack over the target's sensitivity
    table, each row scaled by the policy's action (`ramp.engine.guided`); within the budget by construction."""
    from . import sensitivity
    from .engine.guided import OBS_DIM, Decoder, observations
    from .engine.knapsack import problem

    if actor.obs_dim != OBS_DIM:
        raise UserError(f"the guided policy reads {actor.obs_dim} features; this RAMP's guided state has {OBS_DIM}")
    actions = list(card["action_bits"])
    record = sensitivity.table(ctx, card["sensitivity"])
    costs, weights, capacity = problem(ctx.layers, actions, record.table, ctx.budget)
    decoder = Decoder(costs, weights, capacity, actions, card["guide_scale"])
    start = decoder.choice(np.zeros(len(ctx.layers)))
    cal = ctx.calibration
    obs = observations(cal.embedding, cal.tensors["embedding_mean"], cal.tensors["embedding_std"], costs, weights,
                       start, actions)
    return decoder.bits(actor.deterministic(obs).astype(np.float64))


def transfer(policy: str, target: str, out: Path, budget: BudgetOptions | None = None, calibration: str | None = None,
             evaluate: bool = True, windows: EvalWindows | None = None, imatrix: bool = True,
             scale_fold: bool = False, seed: int = 0) -> dict:
    budget = budget or BudgetOptions()
    nominal_bits = budget.nominal_bits
    source = resolve(target)  # first: a target that is not on this machine says what to download
    tensors, card = load_policy_card(policy)
    actions = tuple(card["action_bits"])
    actor = (load_ppo_policy if card.get("algo") == "ppo" else load_policy)(tensors)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = None
    if card.get("sac_mode") == "guided":   # the knapsack decodes its actions: the target's sensitivities first
        ctx = guided_context(card, target, out, budget, calibration, windows, imatrix, scale_fold)
        cal, layers, the_budget = ctx.calibration, ctx.layers, ctx.budget
        bits = guided_bits(actor, ctx, card)
    else:
        cal_dir = Path(calibration) if calibration else out / "calibration"
        cal = artifact.read(cal_dir) if calibration else calibrate(CalibrationConfig(model=target, seed=seed),
                                                                   cal_dir)
        layers = cal.layers
        the_budget = make_budget(layers, actions, budget.budget, budget.ceiling, nominal_bits)
        bits = policy_bits(actor, cal, actions)
    raw_bpw = allocation_bpw(alloc_mod.resolve(layers, bits), nominal_bits)
    repaired = 0
    if raw_bpw > the_budget.target + 1e-9:
        bits, repaired = repair(bits, layers, actions, the_budget)
        print(f"the policy's allocation ({raw_bpw:.3f} bpw) exceeds the budget {the_budget.target:.3f}: "
              f"repaired by lowering {repaired} layers", file=sys.stderr)
    alloc = alloc_mod.resolve(layers, bits, {"method": "transfer", "policy": str(policy),
                                             "policy_training_model": card.get("training_model"),
                                             "budget": {"target": the_budget.target, "ceiling": the_budget.ceiling,
                                                        "nominal": nominal_bits},
                                             "repaired_layers": repaired, "model": str(source.path)})
    summary = {"policy": str(policy), "target": str(source.path), "bpw": allocation_bpw(alloc, nominal_bits),
               "policy_bpw": raw_bpw, "repaired_layers": repaired, "bits_histogram": {
                   str(b): int(np.sum(np.asarray(bits) == b)) for b in actions}}
    if evaluate:
        if ctx is not None:
            evaluator, base = ctx.evaluator, ctx.base
        else:
            model = load_model(source)
            evaluator = make_evaluator(model, source, cal, [str(b) for b in actions], windows, seed, imatrix,
                                       scale_fold)
            base = evaluator.evaluate([None] * len(layers))
        result = evaluator.evaluate_allocation(alloc)
        alloc.meta["predicted"] = {"ppl": result.ppl, "kld": result.kld}
        alloc.meta["base_ppl"] = base.ppl
        summary |= {"ppl": result.ppl, "kld": result.kld, "base_ppl": base.ppl}
    alloc_mod.save(alloc, out / "allocation.json")
    (out / "transfer.json").write_text(json.dumps(summary, indent=1))
    return summary
