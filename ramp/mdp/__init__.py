"""The bit-allocation MDP: the environment and its rollout, the reward, the budget and the repair that meets it."""
