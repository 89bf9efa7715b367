"""The guided allocation MDP of `ramp search --algo sac` (the default mode; `--sac-mode paper` is RAMP's own).

An extension of the paper, built so that every episode is a real candidate: the agent's continuous action
a_i in [-1, 1] for layer i rescales that layer's row of the sensitivity table by exp(kappa a_i), and the
knapsack (`ramp.engine.knapsack`) decodes the rescaled table into an allocation.  So

* every episode's allocation is within the budget by construction and spends it as the knapsack does (no
  eq. 20 ceiling, no repair);
* all-zero actions decode to exactly the knapsack's allocation (episode 0 of the search);
* the agent can only move the allocation where the sensitivities' additive model is wrong about the joint loss.

State of layer i (15 numbers): the paper's 11-dim embedding, its columns 10-11 (previous bits, running mean bits)
read from the knapsack's allocation so that every layer's state is known before the episode, standardised as in
the paper (eq. 13); then four sensitivity features, z-scored over the model's layers: log S_i at the knapsack's
width, log of what one width up gains per bit spent, log of what one width down costs per bit saved, and the
knapsack's width / 8 (centred on the action set).
"""

import numpy as np

from calibration.embedding import bit_feature_stats, standardise

from .knapsack import solve_knapsack

SENSITIVITY_FEATURES = ("log_sensitivity", "log_gain_up_per_bit", "log_loss_down_per_bit", "knapsack_bits")
OBS_DIM = 11 + len(SENSITIVITY_FEATURES)


class Decoder:
    """Actions -> allocation: the knapsack over the rescaled sensitivity table, within `capacity` bits."""

    def __init__(self, costs: np.ndarray, weights: np.ndarray, capacity: float, actions, scale: float):
        assert costs.shape == weights.shape and costs.shape[1] == len(actions), (costs.shape, weights.shape)
        assert np.all(np.isfinite(costs)) and scale > 0, scale
        self.costs, self.weights, self.capacity = costs, weights, capacity
        self.actions, self.scale = tuple(int(b) for b in actions), float(scale)

    @property
    def n_layers(self) -> int:
        return len(self.costs)

    def choice(self, action: np.ndarray) -> list[int]:
        """The width index per layer the knapsack picks with every row i scaled by exp(scale * action_i)."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        assert a.shape == (self.n_layers,), a.shape
        return solve_knapsack(self.costs * np.exp(self.scale * a)[:, None], self.weights, self.capacity)

    def bits(self, action: np.ndarray) -> list[int]:
        return [self.actions[k] for k in self.choice(action)]


def _log_z(values: np.ndarray) -> np.ndarray:
    """log of positive values (zeros floored a millionth below the smallest positive one), z-scored."""
    positive = values[values > 0]
    floor = positive.min() * 1e-6 if positive.size else 1e-30
    logs = np.log(np.maximum(values, floor))
    std = logs.std()
    return (logs - logs.mean()) / (std if std > 1e-12 else 1.0)


def sensitivity_features(costs: np.ndarray, weights: np.ndarray, start: list[int], actions) -> np.ndarray:
    """(n_layers, 4): the features of `SENSITIVITY_FEATURES` at the knapsack's choice `start` (width indices)."""
    n, width = costs.shape
    rows, k = np.arange(n), np.asarray(start)
    here = costs[rows, k]
    up, down = np.minimum(k + 1, width - 1), np.maximum(k - 1, 0)
    gain = (here - costs[rows, up]) / np.maximum(weights[rows, up] - weights[rows, k], 1.0)
    loss = (costs[rows, down] - here) / np.maximum(weights[rows, k] - weights[rows, down], 1.0)
    bits = np.asarray(actions, dtype=np.float64)[k] / 8
    mean, std = bit_feature_stats(actions)
    features = np.stack([_log_z(here), _log_z(np.maximum(gain, 0)), _log_z(np.maximum(loss, 0)),
                         (bits - mean[0]) / max(std[0], 1e-12)], axis=1)
    assert np.all(np.isfinite(features)), features
    return features


def observations(embedding: np.ndarray, mean: np.ndarray, std: np.ndarray, costs: np.ndarray, weights: np.ndarray,
                 start: list[int], actions) -> np.ndarray:
    """(n_layers, OBS_DIM) float32 states: the standardised paper embedding with the knapsack's previous and
    running mean bits, then the sensitivity features."""
    assert embedding.ndim == 2 and embedding.shape[1] == 11 and len(embedding) == len(costs), embedding.shape
    bits = np.asarray(actions, dtype=np.float64)[np.asarray(start)] / 8
    rows = np.asarray(embedding, dtype=np.float64).copy()
    rows[1:, 9] = bits[:-1]
    rows[0, 9] = rows[0, 10] = 0.0   # the paper's first layer: nothing decided before it
    rows[1:, 10] = np.cumsum(bits)[:-1] / np.arange(1, len(bits))
    mean, std = np.asarray(mean, dtype=np.float64).copy(), np.asarray(std, dtype=np.float64).copy()
    mean[9:], std[9:] = bit_feature_stats(actions)
    paper = standardise(rows, mean, std)
    obs = np.concatenate([paper, sensitivity_features(costs, weights, start, actions)], axis=1)
    assert obs.shape == (len(costs), OBS_DIM) and np.all(np.isfinite(obs)), obs.shape
    return obs.astype(np.float32)
