"""The quality-first reward with the budget cliff (RAMP eq. 19-21), paid once at the end of an episode.

    r_q = +10 (1 - PPL/PPL_base)   if PPL <= PPL_base        (eq. 19)
          -5  (PPL/PPL_base - 1)   otherwise
    r_b = 0                        if b <= target            (eq. 20)
          -2  (b - target)         if target < b <= ceiling
          -20 (b - ceiling)^2      if b > ceiling
    R   = r_q + r_b                                          (eq. 21)

Implemented exactly as the paper writes it.  Note what that implies: just above the ceiling the
quadratic is near 0, so r_b jumps *up* from -2 (ceiling - target) to about 0 there; it falls below
the linear value again once b - ceiling > sqrt((ceiling - target) / 10).  The search therefore keeps
the best *feasible* allocation (b <= target: within the budget itself, not merely under the ceiling) apart from
whatever the policy prefers (`ramp.engine.context.Context.feasible`).
"""

from ramputils.errors import UserError


def quality_reward(ppl: float, ppl_base: float) -> float:
    """Eq. 19."""
    ratio = ppl / ppl_base
    return 10.0 * (1.0 - ratio) if ratio <= 1.0 else -5.0 * (ratio - 1.0)


def budget_reward(bits: float, target: float, ceiling: float) -> float:
    """Eq. 20 with the paper's 4.0 / 4.25 replaced by `target` / `ceiling`."""
    if bits <= target:
        return 0.0
    if bits <= ceiling:
        return -2.0 * (bits - target)
    return -20.0 * (bits - ceiling) ** 2


def reward(ppl: float, ppl_base: float, bits: float, target: float, ceiling: float) -> float:
    """Eq. 21."""
    return quality_reward(ppl, ppl_base) + budget_reward(bits, target, ceiling)


# The two rewards RAMP's table 20 compares against (for the C5 ablation, `ramp search --reward`).  The paper names
# them only; these are our readings, with eq. 19-20's scales so that only the shape differs:
#   linear: r_q = 10 (1 - PPL/PPL_base) on both sides (no asymmetry), r_b = -2 max(0, b - target) (no cliff)
#   naive:  "accuracy - lambda bits": r_q as linear, r_b = -2 (b - target) everywhere (bits always cost, no budget)
def linear_quality(ppl: float, ppl_base: float) -> float:
    return 10.0 * (1.0 - ppl / ppl_base)


def linear_budget(bits: float, target: float, ceiling: float) -> float:
    return -2.0 * max(0.0, bits - target)


def naive_budget(bits: float, target: float, ceiling: float) -> float:
    return -2.0 * (bits - target)


REWARDS = {"quality-first": (quality_reward, budget_reward), "linear": (linear_quality, linear_budget),
           "naive": (linear_quality, naive_budget)}


def reward_terms(name: str):
    """(quality term, budget term) of the reward called `name`."""
    if name not in REWARDS:
        raise UserError(f"unknown reward {name!r}; use one of {', '.join(REWARDS)}")
    return REWARDS[name]
