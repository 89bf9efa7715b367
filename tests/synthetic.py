"""A cheap synthetic allocation problem with a known optimum, to check that the shipped SAC and PPO searches learn.

The "model" has `n_blocks` blocks of the seven roles q, k, v, o, gate, up, down (hidden 256, k/v 64
wide as with grouped-query attention, intermediate 640), so parameter counts are multiples of
256 x 64 ("units": q, o 4; k, v 1; gate, up, down 10).  Its 11-column embedding is built like
`calibration.embedding` builds a real one; the weight and activation columns are drawn once from
`seed`.  Each layer's sensitivity is a fixed function of its own embedding row (role, depth, act_max),
so a policy that reads the state can learn it:

    s_i   = scale * ROLE_WEIGHT[role] * (1 + 2 |2 depth - 1|) * (0.25 + act_max)
    PPL   = ppl_base * (1 + sum_i s_i 4^-(b_i - 3))                  (error falls 4x per bit)
    bpw   = sum_i n_i b_i / sum_i n_i  (+ 0.5 for the scales unless the budget is nominal)

The reward is `ramp.mdp.env`'s (eq. 19-21).  Quality depends on the allocation only through
E = sum_i s_i 4^-(b_i - 3) and the budget only through the weighted bit total T = sum_i units_i b_i,
so a knapsack DP over T (minimum E for every reachable T) gives the exact optimum: the best reward
over all allocations and over the feasible ones (bpw <= ceiling).
"""

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from calibration.embedding import ROLE_SCALAR, position_bucket, standardisation
from ramp.mdp.budget import Budget
from ramp.mdp.env import AllocationEnv, Outcome, rollout
from ramp.mdp.reward import budget_reward, quality_reward

ROLES = ("q", "k", "v", "o", "gate", "up", "down")
UNITS = {"q": 4, "k": 1, "v": 1, "o": 4, "gate": 10, "up": 10, "down": 10}      # params / (256 * 64)
SHAPE = {"q": (256, 256), "k": (256, 64), "v": (256, 64), "o": (256, 256),
         "gate": (256, 640), "up": (256, 640), "down": (640, 256)}           # (in, out)
ROLE_WEIGHT = {"q": 0.2, "k": 3.0, "v": 6.0, "o": 1.0, "gate": 0.1, "up": 0.1, "down": 1.0}
SCALE_BITS = 0.5   # real bpw = nominal + this (block scales)


def layer_error(bits) -> np.ndarray:
    """Relative error of a layer at `bits`: 1 at 3 bits, falling 4x per extra bit."""
    return 4.0 ** -(np.asarray(bits, dtype=np.float64) - 3)


@dataclass
class Optimum:
    """The best allocation and its reward."""

    bits: list[int]
    reward: float
    bpw: float


@dataclass
class SyntheticProblem:
    """Layers, their parameter units and sensitivities, the reward's constants; `score` plugs into AllocationEnv."""

    embedding: np.ndarray           # (L, 11), columns 10-11 zero
    units: np.ndarray               # (L,) int, parameter count / (256 * 64)
    sensitivity: np.ndarray         # (L,)
    budget: Budget
    action_bits: tuple[int, ...] = (3, 4, 5, 6)
    ppl_base: float = 10.0
    roles: list[str] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.units)

    def _bpw(self, total: np.ndarray | int) -> np.ndarray | float:
        """Bits per weight, as the budget counts them, from the weighted bit total T."""
        nominal = np.asarray(total, dtype=np.float64) / self.units.sum()
        return nominal if self.budget.nominal else nominal + SCALE_BITS

    def score(self, bits: list[int]) -> Outcome:
        bits = np.asarray(bits)
        ppl = self.ppl_base * (1 + float(self.sensitivity @ layer_error(bits)))
        nominal = float(self.units @ bits) / self.units.sum()
        return Outcome(ppl=ppl, kld=float(np.log(ppl / self.ppl_base)), bpw=float(self._bpw(self.units @ bits)),
                       real_bpw=nominal + SCALE_BITS, nominal_bpw=nominal)

    def reward(self, bits: list[int]) -> float:
        """Eq. 21 of the allocation, exactly as the environment pays it."""
        o = self.score(bits)
        return quality_reward(o.ppl, self.ppl_base) + budget_reward(o.bpw, self.budget.target, self.budget.ceiling)

    def feasible(self, bits: list[int]) -> bool:
        return self.score(bits).bpw <= self.budget.ceiling

    def env(self) -> AllocationEnv:
        mean, std = standardisation(self.embedding, self.action_bits)
        return AllocationEnv(self.embedding, mean, std, self.action_bits, self.score, self.ppl_base, self.budget)

    def optimum(self, feasible_only: bool = False) -> Optimum:
        """Exact argmax of the reward (over feasible allocations only if asked) by a DP over the bit total."""
        bits = np.asarray(self.action_bits)
        top = int(self.units.sum() * bits.max())
        best = np.full(top + 1, np.inf)             # best[T]: least error sum of the layers so far at total T
        best[0] = 0.0
        choice = np.zeros((self.n_layers, top + 1), dtype=np.int8)
        for i, (u, s) in enumerate(zip(self.units, self.sensitivity)):
            new = np.full(top + 1, np.inf)
            for k, (b, e) in enumerate(zip(bits, s * layer_error(bits))):
                shifted = np.full(top + 1, np.inf)
                shifted[u * b:] = best[:top + 1 - u * b] + e
                better = shifted < new
                new[better], choice[i, better] = shifted[better], k
            best = new
        totals = np.flatnonzero(np.isfinite(best))
        ppl = self.ppl_base * (1 + best[totals])
        bpw = self._bpw(totals)
        rewards = np.array([quality_reward(p, self.ppl_base) + budget_reward(b, self.budget.target,
                                                                                self.budget.ceiling)
                            for p, b in zip(ppl, bpw)])
        if feasible_only:
            rewards = np.where(bpw <= self.budget.ceiling, rewards, -np.inf)
        t = int(totals[np.argmax(rewards)])
        allocation = []
        for i in reversed(range(self.n_layers)):
            b = int(bits[choice[i, t]])
            allocation.append(b)
            t -= int(self.units[i]) * b
        assert t == 0
        allocation.reverse()
        return Optimum(allocation, self.reward(allocation), float(self.score(allocation).bpw))

    def random_rewards(self, n: int, seed: int) -> np.ndarray:
        """Rewards of `n` allocations with bits drawn uniformly from the action set (the warm-up policy)."""
        rng = np.random.default_rng(seed)
        draws = rng.choice(self.action_bits, size=(n, self.n_layers))
        return np.array([self.reward(list(b)) for b in draws])


def make_problem(n_blocks: int = 2, seed: int = 0, scale: float = 0.04, target: float = 4.5,
                 ceiling: float = 4.75, nominal: bool = False) -> SyntheticProblem:
    """The synthetic model with `n_blocks` * 7 layers; target/ceiling in real bpw unless `nominal`."""
    rng = np.random.default_rng(seed)
    rows, units, sens, roles = [], [], [], []
    for block in range(n_blocks):
        depth = block / max(n_blocks - 1, 1)
        for role in ROLES:
            n_in, n_out = SHAPE[role]
            w_std, act_mean, act_max = rng.uniform(0.1, 0.9, size=3)
            rows.append([depth, np.log2(n_in / 16), np.log2(n_out / 16), w_std, 0.8 * w_std, ROLE_SCALAR[role],
                         position_bucket(block, n_blocks), act_mean, act_max, 0.0, 0.0])
            units.append(UNITS[role])
            sens.append(scale * ROLE_WEIGHT[role] * (1 + 2 * abs(2 * depth - 1)) * (0.25 + act_max))
            roles.append(role)
    return SyntheticProblem(np.array(rows), np.array(units), np.array(sens), Budget(target, ceiling, nominal),
                            roles=roles)


class SyntheticContext:
    """What `ramp.engine`'s learners read of a search context, over a synthetic problem instead of a model: the
    shipped SAC and PPO learners run on it through `ramp.engine.loop.run_episodes`, unchanged."""

    def __init__(self, problem: SyntheticProblem, out: Path, seed: int = 0, sac: dict | None = None, **options):
        from ramp.config.options import search_config

        self.problem, self.out = problem, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.config = search_config(seed=seed, actions=problem.action_bits, **options)
        self.config.sac = replace(self.config.sac, **(sac or {}))  # settings no option exposes (buffer size)
        self.budget, self.eval_seconds = problem.budget, 0.0

    def outcome(self, bits: list[int]) -> tuple[None, Outcome]:
        return None, self.problem.score(bits)

    def feasible(self, outcome: Outcome) -> bool:
        return outcome.bpw <= self.budget.target + 1e-9

    def loss(self, outcome: Outcome) -> float:
        return outcome.ppl

    def new_env(self) -> AllocationEnv:
        return self.problem.env()


def deterministic_allocation(problem: SyntheticProblem, act) -> list[int]:
    """The allocation of `act(obs)` (a deterministic policy) on the problem."""
    bits, _, _ = rollout(problem.env(), act)
    return bits
