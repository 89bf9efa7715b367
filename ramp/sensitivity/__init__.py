"""Per-layer sensitivities: what quantizing one layer alone at one width costs, in KL divergence from the base.

Three ways to get the table (`ramp search --algo knapsack --sensitivity ...`): `fisher` (the default: one backward
pass over calibration text), `measured` (one evaluator pass per layer and width, exact) and `noise` (one pass per
layer).  Every table is cached beside the calibration (`ramp.sensitivity.cache`).
"""

import sys

from tqdm.auto import tqdm

from . import cache, fisher, measured, noise

# architectures whose projections feed a normalization (Gemma's post-FFN norm after ffn_down, q_norm/k_norm after
# attn_q/attn_k): the diagonal Fisher misjudges those layers, measured on Gemma 3 270M (benchmarks/RESULTS.md,
# "Sensitivities in minutes")
POST_NORM_ARCHS = ("gemma2", "gemma3")
POST_NORM_NOTE = ("note: on {arch} the fisher table's knapsack files scored 1.28-1.51x the measured table's test KLD "
                  "below Q4_K_M's size (Gemma 3 270M); --sensitivity measured gives the better file in ~10x the time")
# one per name of ramp.config.search.SENSITIVITIES (the --sensitivity choices)
_COMPUTE = {"fisher": fisher.estimate, "measured": measured.measure, "noise": noise.estimate}


def table(ctx, method: str) -> cache.Record:
    """The finished `method` table for `ctx`'s model, calibration and settings: cached, resumed or computed."""
    arch = getattr(ctx.source, "gguf_arch", None)
    if method == "fisher" and arch in POST_NORM_ARCHS:
        tqdm.write(POST_NORM_NOTE.format(arch=arch), file=sys.stderr)
    path = cache.path_for(ctx, method)
    record = cache.load(path, method, cache.settings(ctx, method))
    if record.complete:
        tqdm.write(f"sensitivities ({method}) reused from {path}", file=sys.stderr)
        return record
    record = _COMPUTE[method](ctx, record, path)
    tqdm.write(f"sensitivities ({method}) in {record.seconds:.0f} s ({record.evaluations} evaluations), saved to "
               f"{path}", file=sys.stderr)
    return record
