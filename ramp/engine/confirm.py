"""The final answer of a joint search (`--algo evo`, guided `--algo sac`), picked on a confirmation split.

The lowest loss on the search's own windows is biased low: it was selected on them.  So the search keeps its
lowest-loss distinct allocations (`keep`), and `choose` scores them, the knapsack's allocation always among them,
on `--confirm-samples` further validation windows, disjoint from the search's; the lowest there is the answer, and
`outputs.finish` keeps that choice.  A candidate replaces the knapsack's allocation only when it beats it by more
than `--confirm-margin` standard errors of their per-window difference on that split (paired, windows as the
samples): a gain of a few percent on ~2k tokens is within their noise, and it did not carry over to test text.
"""

import math
import statistics

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
    rows, windows = [], []   # windows: each candidate's per-window loss, in row order
    for bits in candidates:
        result = judge.evaluate_allocation(alloc_mod.resolve(ctx.layers, bits))
        search = ctx.outcome(bits)[1]
        confirmed = Outcome(result.ppl, result.kld, search.bpw, search.real_bpw, search.nominal_bpw)
        windows.append(result.window_kld if ctx.config.quality == "kld" else result.window_nll)
        rows.append({"bits": bits, "search_kld": search.kld, "search_ppl": search.ppl,
                     "confirm_kld": result.kld, "confirm_ppl": result.ppl, "loss": ctx.loss(confirmed),
                     "knapsack": bits == start} | {label: bits == other for label, other in extra.items()})
    start_index = next(i for i, row in enumerate(rows) if row["knapsack"])
    margin = ctx.config.windows.confirm_margin
    for row, scores in zip(rows, windows):
        row["gain_se"] = gain_in_se(windows[start_index], scores)
        row["eligible"] = row["knapsack"] or row["gain_se"] > margin
    chosen = min((row for row in rows if row["eligible"]), key=lambda row: row["loss"])
    start_row, best = rows[start_index], min(rows, key=lambda row: row["loss"])
    say(f"confirmation split ({ctx.config.windows.confirm_samples} windows): chosen KLD {chosen['confirm_kld']:.5f}"
        f", knapsack's {start_row['confirm_kld']:.5f}")
    if best is not chosen:
        say(passed_over(best, chosen, margin))
    return {"allocations": {"confirmed": chosen["bits"], "knapsack": start} | extra,
            "chosen": "confirmed", "keep_choice": True, "episodes": ctx.config.episodes,
            "confirmation": [{k: v for k, v in row.items() if k != "bits"} for row in rows]}


def passed_over(best: dict, chosen: dict, margin: float) -> str:
    """Why the lowest candidate on the confirmation split (`best`) is not the answer (`chosen`): its gain over the
    knapsack's allocation is within the margin, so the knapsack's is kept, or the lowest candidate that clears the
    margin is chosen instead."""
    outcome = ("the knapsack's allocation is kept" if chosen["knapsack"] else
               f"the lowest candidate beyond it is chosen ({chosen['confirm_kld']:.5f}, "
               f"{chosen['gain_se']:.1f} standard errors)")
    return (f"the lowest candidate ({best['confirm_kld']:.5f}) beats the knapsack's allocation by "
            f"{best['gain_se']:.1f} standard errors, within --confirm-margin {margin:g}: {outcome}")


def gain_in_se(reference: tuple, other: tuple) -> float:
    """How far `other` is below `reference`, in standard errors of their mean per-window difference (paired);
    0 for the same scores, +-inf when every window moves by the same amount."""
    assert len(reference) == len(other) and reference, "paired scores need the same, non-empty windows"
    gains = [r - o for r, o in zip(reference, other)]
    mean = statistics.fmean(gains)
    se = statistics.stdev(gains) / math.sqrt(len(gains)) if len(gains) > 1 else 0.0
    if se == 0.0:
        return 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    return mean / se
