"""The knapsack allocator (`ramp search --algo knapsack`; its first name, `greedy`, still works): each layer's cost
alone, then the budget solved exactly.

Sensitivity of layer i at bit width b = KL divergence from the base model when only layer i is
quantized (at b's real type) and every other layer keeps its base weights: measured by the same
evaluator as the search, or estimated (`--sensitivity fisher|noise`, see `ramp.sensitivity`).
Assuming the damage adds up over layers, the best allocation within the budget is a multiple-choice
knapsack: minimise the summed sensitivity subject to the summed cost (real bytes, or nominal bits x
weights) staying within the budget.  It is solved exactly by dynamic programming over the cost:
exactly when the costs' common divisor leaves at most `MAX_UNITS` steps, else discretised to
`MAX_UNITS` steps rounding every cost up, so the answer is always within budget.  The table is cached
beside the calibration and reused for any budget; the run folder gets a copy (sensitivity.json).
"""

import numpy as np

from halo import allocation as alloc_mod
from ramputils.atomic import write_json
from ramputils.errors import UserError

from .. import sensitivity

MAX_UNITS = 200_000


def solve_knapsack(costs: np.ndarray, weights: np.ndarray, capacity: float) -> list[int]:
    """Choice index per row minimising sum(costs) with sum(weights) <= capacity (weights rounded up)."""
    costs, weights = np.asarray(costs, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    assert costs.shape == weights.shape and costs.ndim == 2, (costs.shape, weights.shape)
    unit = max(capacity / MAX_UNITS, 1e-12)
    if np.all(weights == np.round(weights)):  # integer costs (bytes, bits): exact when their gcd is coarse enough
        g = int(np.gcd.reduce(weights.astype(np.int64).ravel()))
        unit = max(unit, g) if capacity / g > MAX_UNITS else g
    w = np.ceil(weights / unit - 1e-9).astype(np.int64)
    cap = int(np.floor(capacity / unit + 1e-9))
    if w.min(axis=1).sum() > cap:
        raise UserError("no allocation fits the budget")
    dp = np.zeros(cap + 1)
    picks = np.zeros((len(costs), cap + 1), dtype=np.int16)
    for i in range(len(costs)):
        new = np.full(cap + 1, np.inf)
        for k in range(costs.shape[1]):
            shifted = np.full(cap + 1, np.inf)
            shifted[w[i, k]:] = dp[: cap + 1 - w[i, k]] + costs[i, k]
            better = shifted < new
            new[better], picks[i, better] = shifted[better], k
        dp = new
    c = int(np.argmin(dp))
    choice = []
    for i in range(len(costs) - 1, -1, -1):
        k = int(picks[i, c])
        choice.append(k)
        c -= w[i, k]
    return choice[::-1]


def problem(layers, actions, sensitivity: dict, budget) -> tuple[np.ndarray, np.ndarray, float]:
    """(costs, weights, capacity) of the knapsack: each layer's sensitivity and cost in bits per width, and the
    budget in bits (real bytes, or nominal bits x weights)."""
    costs = np.array([[sensitivity[layer.gguf_name][str(b)] for b in actions] for layer in layers])
    if budget.nominal:
        weights = np.array([[b * layer.params for b in actions] for layer in layers], dtype=np.float64)
    else:
        weights = np.array([[alloc_mod.choice(layer, b).bytes * 8 for b in actions] for layer in layers],
                           dtype=np.float64)
    return costs, weights, budget.target * sum(layer.params for layer in layers)


def allocate(layers, actions, sensitivity: dict, budget) -> list[int]:
    """The knapsack allocation for one budget (sensitivities measured once, reused for any budget)."""
    costs, weights, capacity = problem(layers, actions, sensitivity, budget)
    return [actions[k] for k in solve_knapsack(costs, weights, capacity)]


def train(ctx, resume: bool = False) -> dict:
    """The sensitivity table (cached beside the calibration, resumed when unfinished; a copy goes to the run's
    sensitivity.json), then the knapsack for the budget."""
    record = sensitivity.table(ctx, ctx.config.sensitivity)
    write_json(ctx.out / "sensitivity.json", record.to_json())
    bits = allocate(ctx.layers, list(ctx.config.actions), record.table, ctx.budget)
    return {"allocations": {"best": bits}, "chosen": "best",
            "sensitivity": record.cost()}
