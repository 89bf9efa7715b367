"""The bit-allocation MDP (RAMP section 3): one episode walks the quantizable layers in table order.

State: the layer's 11-dim embedding with columns 10-11 (previous bits / 8, running mean bits / 8)
filled as the episode goes, standardised per model (eq. 13).  Action: a continuous scalar in
[-1, 1] (the tanh-squashed SAC output) mapped to a bit width of the action set by equal-width bins.
Reward: 0 until the last layer, then eq. 21 from the allocation's perplexity and its bits per
weight — real bytes after llama.cpp's fallbacks unless the budget counts nominal bits.  With a
`constrain` function (budget mode "repair") an allocation over budget is first lowered to the budget
and the lowered one is scored, so every episode ends within budget (HAQ's way of enforcing a resource
constraint); eq. 20 then never charges anything.  With quality "kld" eq. 19 is fed PPL_base·exp(KLD)
instead of the measured perplexity: the KL divergence to the base on the same tokens is a far less
noisy signal than perplexity on a few hundred tokens (see benchmarks/RESULTS.md).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calibration.embedding import bit_feature_stats, standardise

from .budget import Budget
from .reward import reward_terms


def action_to_index(action: float, n_actions: int) -> int:
    """Equal-width bins over [-1, 1]: bin k covers [-1 + 2k/n, -1 + 2(k+1)/n)."""
    a = float(np.clip(action, -1.0, 1.0))
    return min(int((a + 1.0) / 2.0 * n_actions), n_actions - 1)


def index_to_action(index: int, n_actions: int) -> float:
    """The centre of bin `index` (used for random warm-up and tests)."""
    return -1.0 + (2 * index + 1) / n_actions


@dataclass
class Outcome:
    """What the evaluator says of one allocation."""

    ppl: float
    kld: float
    bpw: float            # as the budget counts it
    real_bpw: float
    nominal_bpw: float


class AllocationEnv:
    """Sequential allocation over `n_layers` layers; `score(bits) -> Outcome` evaluates a full allocation."""

    def __init__(self, embedding: np.ndarray, mean: np.ndarray, std: np.ndarray, action_bits: tuple[int, ...],
                 score: Callable[[list[int]], Outcome], ppl_base: float, budget: Budget,
                 reward: str = "quality-first", constrain: Callable[[list[int]], tuple[list[int], int]] | None = None,
                 quality: str = "ppl"):
        assert embedding.ndim == 2 and embedding.shape[1] == 11, embedding.shape
        self.embedding = np.asarray(embedding, dtype=np.float64).copy()
        self.mean = np.asarray(mean, dtype=np.float64).copy()
        self.std = np.asarray(std, dtype=np.float64).copy()
        self.mean[9:], self.std[9:] = bit_feature_stats(action_bits)  # columns 10-11 follow the action set
        self.action_bits = tuple(int(b) for b in action_bits)
        self.score = score
        self.ppl_base = float(ppl_base)
        self.budget = budget
        self.quality_term, self.budget_term = reward_terms(reward)
        self.n_layers = len(self.embedding)
        self.constrain = constrain  # budget mode "repair": (bits) -> (bits within budget, layers lowered)
        self.quality = quality      # "kld": eq. 19 sees PPL_base * exp(KLD) instead of the measured PPL
        self.bits: list[int] = []

    def observation(self) -> np.ndarray:
        """The standardised state of the next layer to decide."""
        row = self.embedding[len(self.bits)].copy()
        row[9] = self.bits[-1] / 8 if self.bits else 0.0
        row[10] = float(np.mean(self.bits)) / 8 if self.bits else 0.0
        return standardise(row, self.mean, self.std).astype(np.float32)

    def reset(self) -> np.ndarray:
        self.bits = []
        return self.observation()

    def step(self, action: float):
        """Returns (next observation, reward, done, info); info holds the Outcome on the last step."""
        self.bits.append(self.action_bits[action_to_index(action, len(self.action_bits))])
        if len(self.bits) < self.n_layers:
            return self.observation(), 0.0, False, {}
        bits, lowered = self.constrain(list(self.bits)) if self.constrain else (list(self.bits), 0)
        outcome = self.score(bits)
        ppl = outcome.ppl if self.quality == "ppl" else self.ppl_base * math.exp(outcome.kld)
        r_q = self.quality_term(ppl, self.ppl_base)
        r_b = self.budget_term(outcome.bpw, self.budget.target, self.budget.ceiling)
        info = {"outcome": outcome, "bits": bits, "policy_bits": list(self.bits), "repaired_layers": lowered,
                "r_quality": r_q, "r_budget": r_b}
        return np.zeros(11, dtype=np.float32), r_q + r_b, True, info


def rollout(env: AllocationEnv, act) -> tuple[list[int], float, dict]:
    """One episode with `act(obs) -> action`; returns (bits, reward, info) and the transitions in info."""
    obs, transitions = env.reset(), []
    while True:
        action = act(obs)
        next_obs, reward, done, info = env.step(action)
        transitions.append((obs, action, reward, next_obs, done))
        obs = next_obs
        if done:
            info["transitions"] = transitions
            return info["bits"], reward, info
