"""The learners: SAC (with its replay buffer and per-episode behaviour policy), PPO, and policy files."""
