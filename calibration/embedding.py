"""The 11-dimensional RAMP layer embedding (paper appendix A, table 24) and its standardisation.

Columns, in order:
  1 depth       block / (n_blocks - 1)
  2 log_in      log2(in_features / 16)
  3 log_out     log2(out_features / 16)
  4 w_std       min(std(W) * 10, 1)
  5 w_mean_abs  min(mean|W| * 10, 1)
  6 layer_type  q/k/v 0.0, o 0.25, gate 0.5, up 0.6, down 0.75, other 1.0
  7 position    0.0 in the bottom 10 % of blocks, 1.0 in the top 10 %, else 0.5
  8 act_mean    min(mean(act_scale) * 100, 1)    act_scale = per-channel max |x| from calibration
  9 act_max     min(max(act_scale) * 1000, 1)
 10 prev_bits   previous layer's bits / 8         (filled by the search; 0 here)
 11 mean_bits   running mean of bits so far / 8   (filled by the search; 0 here)

Standardisation (paper eq. 13) is (s - mean) / max(std, STD_FLOOR) per column.  Columns 1-9 use
the mean and std over this model's layers.  Columns 10-11 are unknown before the search, so they
use the mean and std of bits/8 over the search's action set (uniform), see `bit_feature_stats`.
The floor keeps a column that is constant on one model (e.g. saturated activation scales) from
exploding on another model during transfer.
"""

import numpy as np

FEATURES = ("depth", "log_in", "log_out", "w_std", "w_mean_abs", "layer_type", "position",
            "act_mean", "act_max", "prev_bits", "mean_bits")
ROLE_SCALAR = {"q": 0.0, "k": 0.0, "v": 0.0, "o": 0.25, "gate": 0.5, "up": 0.6, "down": 0.75, "other": 1.0}
STD_FLOOR = 0.05
DEFAULT_ACTION_BITS = (3, 4, 5, 6)


def position_bucket(block: int, n_blocks: int) -> float:
    """0.0 for the bottom 10 % of blocks, 1.0 for the top 10 %, 0.5 between."""
    depth = block / max(n_blocks - 1, 1)
    if depth < 0.1:
        return 0.0
    if depth > 0.9:
        return 1.0
    return 0.5


def layer_embedding(layer, n_blocks: int, w_std: float, w_mean_abs: float, act_scale) -> np.ndarray:
    """One row of the embedding; `act_scale` is the layer's per-input-channel max |x|."""
    act_scale = np.asarray(act_scale, dtype=np.float64)
    return np.array([
        layer.block / max(n_blocks - 1, 1),
        np.log2(layer.in_features / 16),
        np.log2(layer.out_features / 16),
        min(w_std * 10, 1.0),
        min(w_mean_abs * 10, 1.0),
        ROLE_SCALAR[layer.role],
        position_bucket(layer.block, n_blocks),
        min(float(act_scale.mean()) * 100, 1.0),
        min(float(act_scale.max()) * 1000, 1.0),
        0.0,
        0.0,
    ], dtype=np.float64)


def bit_feature_stats(action_bits=DEFAULT_ACTION_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of bits/8 when bits are uniform over the action set (columns 10 and 11)."""
    values = np.asarray(action_bits, dtype=np.float64) / 8
    return np.full(2, values.mean()), np.full(2, values.std())


def standardisation(embedding: np.ndarray, action_bits=DEFAULT_ACTION_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (mean, std) for eq. 13: over layers for columns 1-9, over the action set for 10-11."""
    assert embedding.ndim == 2 and embedding.shape[1] == len(FEATURES), embedding.shape
    mean, std = embedding.mean(axis=0), embedding.std(axis=0)
    mean[9:], std[9:] = bit_feature_stats(action_bits)
    return mean, std


def standardise(embedding: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Eq. 13 with a floor on the std."""
    return (embedding - mean) / np.maximum(std, STD_FLOOR)
