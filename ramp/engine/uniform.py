"""The uniform baseline (`ramp search --algo uniform`): every uniform allocation of the action set; the best one
within the budget is the answer."""

from .context import say


def train(ctx, resume: bool = False) -> dict:
    """Every uniform allocation of the action set; the one within the budget lowest in loss is the answer."""
    rows = []
    for bits in ctx.config.actions:
        alloc, outcome = ctx.outcome([bits] * len(ctx.layers))
        rows.append({"bits": bits, "ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw,
                     "feasible": ctx.feasible(outcome), "loss": ctx.loss(outcome)})
        say(f"uniform {bits}: PPL {outcome.ppl:.3f}, KLD {outcome.kld:.4f}, {outcome.bpw:.3f} bpw")
    feasible = [r for r in rows if r["feasible"]]
    best = min(feasible, key=lambda r: r["loss"]) if feasible else min(rows, key=lambda r: r["bpw"])
    return {"allocations": {"best": [best["bits"]] * len(ctx.layers)}, "chosen": "best", "uniform": rows}
