"""The final answer of a joint search (`--algo evo`, guided `--algo sac`), picked on a confirmation split.

The lowest loss on the search's own windows is biased low: it was selected on them.  So the search keeps its
lowest-loss distinct allocations (`keep`), and `choose` scores them, the knapsack's allocation always among them,
on `--confirm-samples` further validation windows, disjoint from the search's; the lowest there is the answer, and
`outputs.finish` keeps that choice.
"""

from halo import allocation as alloc_mod

from ..evaluation.evaluator import validation_windows
from ..mdp.env import Outcome
from .context import say


def keep(finalists: list, loss: float, bits: list[int], size: int) -> list:
    """`finalists` ([(loss, bits)], lowest first) with (loss, bits) added when new, cut to `size`."""
    if any(bits == kept for _, kept in finalists):
        return finalists
    return sorted(finalists + [(loss, bits)], key=lambda item: item[0])[:size]


def confirmation(ctx):
    """An evaluator on the confirmation split: `confirm_samples` validation windows drawn after the search's own
    from the same permutation (so disjoint from them), sharing the search evaluator's model and weight cache."""
    w = ctx.config.windows
    windows = validation_windows(ctx.source, w.confirm_samples, w.seq_len, w.seed, skip=w.samples)
    return ctx.evaluator.sibling(windows)


def choose(ctx, candidates: list[list[int]], start: list[int], extra: dict | None = None) -> dict:
    """The answer among `candidates` (`start`, the knapsack's allocation, is scored too): the result dict
    `outputs.finish` takes, with every candidate's search and confirmation scores.  `extra` ({label: bits}) marks
    candidates of a kind (the policy's deterministic rollout) in the rows and the allocation files."""
    extra = extra or {}
    if start not in candidates:
        candidates = candidates + [start]
    judge = confirmation(ctx)
    rows = []
    for bits in candidates:
        result = judge.evaluate_allocation(alloc_mod.resolve(ctx.layers, bits))
        search = ctx.outcome(bits)[1]
        confirmed = Outcome(result.ppl, result.kld, search.bpw, search.real_bpw, search.nominal_bpw)
        rows.append({"bits": bits, "search_kld": search.kld, "search_ppl": search.ppl,
                     "confirm_kld": result.kld, "confirm_ppl": result.ppl, "loss": ctx.loss(confirmed),
                     "knapsack": bits == start} | {label: bits == other for label, other in extra.items()})
    chosen = min(rows, key=lambda row: row["loss"])
    start_row = next(row for row in rows if row["knapsack"])
    say(f"confirmation split ({ctx.config.windows.confirm_samples} windows): chosen KLD {chosen['confirm_kld']:.5f}"
        f", knapsack's {start_row['confirm_kld']:.5f}")
    return {"allocations": {"confirmed": chosen["bits"], "knapsack": start} | extra,
            "chosen": "confirmed", "keep_choice": True, "episodes": ctx.config.episodes,
            "confirmation": [{k: v for k, v in row.items() if k != "bits"} for row in rows]}
