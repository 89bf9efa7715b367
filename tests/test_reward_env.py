"""The MDP: reward at and around both budget boundaries, action bins, step/reset and state dims 10-11."""

import numpy as np
import pytest

from calibration.embedding import bit_feature_stats
from ramp.mdp.budget import Budget
from ramp.mdp.env import AllocationEnv, Outcome, action_to_index, index_to_action
from ramp.mdp.reward import budget_reward, quality_reward, reward


def test_quality_reward_eq19():
    assert quality_reward(20.0, 20.0) == 0.0
    assert quality_reward(19.0, 20.0) == pytest.approx(10 * 0.05)
    assert quality_reward(22.0, 20.0) == pytest.approx(-5 * 0.1)
    # asymmetric: being 5 % worse costs half as much per unit as being 5 % better earns
    assert quality_reward(21.0, 20.0) == pytest.approx(-0.5 * quality_reward(19.0, 20.0))


def test_budget_reward_eq20_at_and_around_boundaries():
    t, c = 4.5, 4.75
    assert budget_reward(4.0, t, c) == 0.0
    assert budget_reward(4.5, t, c) == 0.0                      # at the target: free
    assert budget_reward(4.5 + 1e-9, t, c) == pytest.approx(-2e-9)
    assert budget_reward(4.75, t, c) == pytest.approx(-0.5)     # at the ceiling: still linear
    assert budget_reward(4.75 + 1e-6, t, c) == pytest.approx(-2e-11)  # eq. 20 as written: the jump up
    assert budget_reward(5.25, t, c) == pytest.approx(-5.0)     # -20 * 0.5^2
    assert budget_reward(6.0, t, c) < budget_reward(5.25, t, c)
    assert reward(19.0, 20.0, 4.6, t, c) == pytest.approx(0.5 - 0.2)


def test_action_bins_are_equal_width():
    assert [action_to_index(a, 4) for a in (-1.0, -0.51, -0.5, -0.01, 0.0, 0.49, 0.5, 1.0)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [action_to_index(index_to_action(k, 5), 5) for k in range(5)] == list(range(5))
    assert action_to_index(7.0, 4) == 3 and action_to_index(-7.0, 4) == 0


def _env(n=3, bits=(3, 4, 5, 6), score=None):
    emb = np.tile(np.arange(11, dtype=np.float64), (n, 1)) * 0.1
    emb[:, 9:] = 0.0
    mean, std = np.zeros(11), np.ones(11)
    calls = []

    def default_score(chosen):
        calls.append(list(chosen))
        b = float(np.mean(chosen))
        return Outcome(ppl=20.0 + (6 - b), kld=0.1, bpw=b + 0.5, real_bpw=b + 0.5, nominal_bpw=b)

    return AllocationEnv(emb, mean, std, bits, score or default_score, 20.0, Budget(4.5, 4.75)), calls


def test_step_reset_and_dims_10_11():
    env, calls = _env()
    m, s = bit_feature_stats((3, 4, 5, 6))
    obs = env.reset()
    assert obs.shape == (11,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[9:], (0 - m) / s, rtol=1e-6)      # nothing chosen yet
    obs, r, done, info = env.step(-1.0)                                # 3 bits
    assert (r, done, info) == (0.0, False, {})
    np.testing.assert_allclose(obs[9:], ([3 / 8, 3 / 8] - m) / s, rtol=1e-6)
    obs, r, done, _ = env.step(1.0)                                    # 6 bits
    np.testing.assert_allclose(obs[9:], ([6 / 8, 4.5 / 8] - m) / s, rtol=1e-6)
    assert not done and calls == []
    _, r, done, info = env.step(0.1)                                   # 5 bits: episode ends, scored once
    assert done and calls == [[3, 6, 5]] and info["bits"] == [3, 6, 5]
    assert r == pytest.approx(reward(20.0 + 6 - 14 / 3, 20.0, 14 / 3 + 0.5, 4.5, 4.75))
    env.reset()
    assert env.bits == []


def test_ablation_rewards_differ_from_quality_first_only_in_shape():
    from ramp.mdp.reward import reward_terms
    from ramputils.errors import UserError

    q_lin, b_lin = reward_terms("linear")
    q_naive, b_naive = reward_terms("naive")
    assert q_lin(22.0, 20.0) == pytest.approx(-1.0) and quality_reward(22.0, 20.0) == pytest.approx(-0.5)
    assert q_lin(18.0, 20.0) == quality_reward(18.0, 20.0) == pytest.approx(1.0)   # same slope below the base
    assert b_lin(4.4, 4.5, 4.75) == 0.0 and b_lin(5.0, 4.5, 4.75) == pytest.approx(-1.0)   # no cliff
    assert budget_reward(5.0, 4.5, 4.75) == pytest.approx(-20 * 0.25 ** 2)
    assert b_naive(4.0, 4.5, 4.75) == pytest.approx(1.0) and b_naive(5.0, 4.5, 4.75) == pytest.approx(-1.0)
    with pytest.raises(UserError, match="unknown reward"):
        reward_terms("accuracy")


def test_env_pays_the_chosen_reward():
    env, _ = _env()
    linear = AllocationEnv(env.embedding, env.mean, env.std, env.action_bits, env.score, env.ppl_base, env.budget,
                           reward="linear")
    for e in (env, linear):
        e.reset()
        for a in (1.0, 1.0, 1.0):   # 6 bits everywhere: over the ceiling
            _, r, done, info = e.step(a)
        assert done
        if e is env:
            first = r
    assert r != first and info["r_budget"] == pytest.approx(-2.0 * (info["outcome"].bpw - 4.5))


def test_repair_mode_scores_the_lowered_allocation():
    env, calls = _env()
    lowered = AllocationEnv(env.embedding, env.mean, env.std, env.action_bits, env.score, env.ppl_base, env.budget,
                            constrain=lambda bits: ([min(b, 4) for b in bits], sum(b > 4 for b in bits)))
    lowered.reset()
    for a in (1.0, -1.0, 0.1):   # 6, 3, 5 bits
        _, r, done, info = lowered.step(a)
    assert done and calls == [[4, 3, 4]]          # only the lowered allocation is evaluated
    assert info["bits"] == [4, 3, 4] and info["policy_bits"] == [6, 3, 5] and info["repaired_layers"] == 2
    assert info["r_budget"] == 0.0 and r == pytest.approx(quality_reward(20.0 + 6 - 11 / 3, 20.0))


def test_kld_quality_feeds_eq19_the_divergence():
    env, _ = _env()
    kld = AllocationEnv(env.embedding, env.mean, env.std, env.action_bits, env.score, env.ppl_base, env.budget,
                        quality="kld")
    kld.reset()
    for a in (-1.0, -1.0, -1.0):
        _, r, _, info = kld.step(a)
    assert info["r_quality"] == pytest.approx(quality_reward(20.0 * np.exp(0.1), 20.0))   # the score's KLD is 0.1
    assert info["r_quality"] == pytest.approx(-5.0 * (np.exp(0.1) - 1))
