"""Per-layer sensitivities: what quantizing one layer alone at one width costs, in KL divergence from the base.

Three ways to get the table (`ramp search --algo knapsack --sensitivity ...`): `fisher` (the default: one backward
pass over calibration text), `measured` (one evaluator pass per layer and width, exact) and `noise` (one pass per
layer).  Every table is cached beside the calibration (`ramp.sensitivity.cache`).
"""

import sys

from tqdm.auto import tqdm

from . import cache, fisher, measured, noise

# one per name of ramp.config.search.SENSITIVITIES (the --sensitivity choices)
_COMPUTE = {"fisher": fisher.estimate, "measured": measured.measure, "noise": noise.estimate}


def table(ctx, method: str) -> cache.Record:
    """The finished `method` table for `ctx`'s model, calibration and settings: cached, resumed or computed."""
    path = cache.path_for(ctx, method)
    record = cache.load(path, method, cache.settings(ctx, method))
    if record.complete:
        tqdm.write(f"sensitivities ({method}) reused from {path}", file=sys.stderr)
        return record
    record = _COMPUTE[method](ctx, record, path)
    tqdm.write(f"sensitivities ({method}) in {record.seconds:.0f} s ({record.evaluations} evaluations), saved to "
               f"{path}", file=sys.stderr)
    return record
