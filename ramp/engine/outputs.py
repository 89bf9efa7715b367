"""What every search method's result becomes: the allocation files, plots, summary.json, and the policy file.

`finish` takes a method's labelled allocations (`{"allocations": {label: bits}, "chosen": label, ...}`), picks
the feasible one lowest in loss, repairs when none is within the budget (never handing out anything worse than a
uniform allocation that fits), writes allocation.json (the chosen one) and allocation-LABEL.json for each,
bits-LABEL.png, learning.png, size-ppl.png and summary.json.
"""

import platform
from dataclasses import asdict

from halo import allocation as alloc_mod
from ramputils import __version__
from ramputils.atomic import write_json

from ..agents.policy_io import save_policy
from ..mdp.repair import repair
from . import log, plots
from .context import say


def lowest_feasible(ctx, result: dict) -> str:
    """Of the loop's answers (the best episode seen, the final deterministic rollout), the feasible one lowest in
    loss; ties and an all-infeasible set keep the loop's own choice.  The final policy's rollout is never an
    episode of the search, so it can beat every allocation the search tried."""
    chosen = result["chosen"]
    if result.get("keep_choice"):   # chosen on a confirmation split, which the search's own windows must not undo
        return chosen
    losses = {}
    for label, bits in result["allocations"].items():
        outcome = ctx.outcome(bits)[1]
        if ctx.feasible(outcome):
            losses[label] = ctx.loss(outcome)
    if not losses:
        return chosen
    label = min(sorted(losses, key=lambda lab: lab != chosen), key=losses.get)
    if label != chosen:
        say(f"the {label} allocation is within the budget and lower in loss than the {chosen} one; it is chosen")
    return label


def finish(ctx, result: dict) -> dict:
    """Write the allocation files, plots and summary; every method lands in the same outputs."""
    result["chosen"] = chosen = lowest_feasible(ctx, result)
    if not ctx.feasible(ctx.outcome(result["allocations"][chosen])[1]):
        bits, lowered = repair(result["allocations"][chosen], ctx.layers, ctx.config.actions, ctx.budget)
        label = f"{chosen}-repaired"
        result["allocations"][label], result["chosen"] = bits, label
        say(f"no allocation within the budget was found; the {chosen} one was repaired by lowering {lowered} layers")
        # never hand out something worse than a uniform allocation that fits the same budget
        best_loss = ctx.loss(ctx.outcome(bits)[1])
        for b in ctx.config.actions:
            outcome = ctx.outcome([b] * len(ctx.layers))[1]
            if ctx.feasible(outcome) and ctx.loss(outcome) < best_loss:
                best_loss, result["chosen"] = ctx.loss(outcome), f"uniform-{b}"
                result["allocations"][f"uniform-{b}"] = [b] * len(ctx.layers)
        if result["chosen"] != label:
            say(f"uniform {result['chosen'][8:]} bits beats the repaired allocation within the budget; it is chosen")

    summary = {"method": ctx.config.algo, "model": str(ctx.source.path), "budget": asdict(ctx.budget),
               "calibration": str(ctx.calibration.path),
               "base": {"ppl": ctx.base.ppl}, "seed": ctx.config.seed, "version": __version__,
               "python": platform.python_version(), "allocations": {}}
    for label, bits in result["allocations"].items():
        alloc, outcome = ctx.outcome(bits)
        alloc.meta = {"method": ctx.config.algo, "label": label, "seed": ctx.config.seed,
                      "budget": asdict(ctx.budget), "predicted": {"ppl": outcome.ppl, "kld": outcome.kld},
                      "base_ppl": ctx.base.ppl, "model": str(ctx.source.path),
                      "calibration": str(ctx.calibration.path), "imatrix": ctx.config.imatrix,
                      "scale_fold": ctx.config.scale_fold}
        name = "allocation.json" if label == result["chosen"] else f"allocation-{label}.json"
        alloc_mod.save(alloc, ctx.out / name)
        if label == result["chosen"]:
            alloc_mod.save(alloc, ctx.out / f"allocation-{label}.json")
        summary["allocations"][label] = {"file": name, "ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw,
                                         "real_bpw": alloc.bpw, "bytes": alloc.bytes,
                                         "feasible": ctx.feasible(outcome)}
        plots.bits_per_layer(ctx.layers, bits, ctx.out / f"bits-{label}.png",
                             f"{ctx.config.algo} {label}: PPL {outcome.ppl:.3f} at {outcome.bpw:.3f} bpw")
    summary["chosen"] = result["chosen"]
    summary |= {k: v for k, v in result.items() if k not in ("allocations", "chosen", "keep_choice")}
    summary["uniform_baselines"] = {}
    for bits in ctx.config.actions:
        _, outcome = ctx.outcome([bits] * len(ctx.layers))
        summary["uniform_baselines"][str(bits)] = {"ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw}
    records = log.read(ctx.out)
    if records:
        plots.learning_curves(records, ctx.out / "learning.png", ctx.budget.target, ctx.budget.ceiling)
    points = {f"uniform {b}": (v["bpw"], v["ppl"]) for b, v in summary["uniform_baselines"].items()}
    points |= {f"{ctx.config.algo} {label}": (v["bpw"], v["ppl"]) for label, v in summary["allocations"].items()}
    plots.size_ppl_plane(records, points, ctx.out / "size-ppl.png")
    write_json(ctx.out / "summary.json", summary)
    return summary


def policy_card(ctx, agent, episodes: int) -> dict:
    """The policy file's card: what it was trained on and how, so `ramp transfer` can check and apply it."""
    import torch
    import transformers

    cal = ctx.calibration
    return {"action_bits": list(ctx.config.actions), "architecture": cal.manifest["model"]["architecture"],
            "training_model": str(ctx.source.path), "training_model_sha256": cal.manifest["model"]["sha256"],
            "standardisation": cal.manifest["standardisation"], "budget": asdict(ctx.budget), "episodes": episodes,
            "seed": ctx.config.seed, "algo": ctx.config.algo, ctx.config.algo: asdict(agent.config),
            "versions": {"ramp": __version__, "torch": torch.__version__, "transformers": transformers.__version__},
            "obs_dim": agent.obs_dim}


def write_policy(ctx, agent, episodes: int, extra: dict | None = None):
    """policy.safetensors and its card (`extra`: what a mode adds, e.g. the guided SAC's state features)."""
    return save_policy(ctx.out, "policy", agent.policy_state_dict(), policy_card(ctx, agent, episodes) | (extra or {}))
