"""RAMP's SAC search (`ramp search --algo sac`): the learner that `ramp.engine.loop.run_episodes` drives.

Per episode: roll the policy out over every layer (uniform random actions during warm-up; the episode's own
random stream, `ramp.agents.behaviour`), store each transition with its continuous action, run the gradient
updates once warm-up is over, log.  The Ray search (`ramp.engine.ray_train`) is this learner with its rollouts
on workers.  The final answers are the deterministic rollout (mean action) and the best feasible allocation seen
(b_avg within the budget); both are kept and labelled, and `outputs.finish` chooses the one within budget lower
in loss.
"""

import numpy as np

from ..agents.behaviour import behaviour
from ..agents.replay import ReplayBuffer, store_episode
from ..agents.sac import SAC
from ..agents.threads import single_thread
from ..mdp.env import rollout
from .learner import AllocationLearner
from .loop import run_episodes
from .outputs import write_policy

OBS_DIM = 11


def _mean_losses(losses: list[dict]) -> dict:
    if not losses:
        return {}
    return {key: float(np.mean([entry[key] for entry in losses])) for key in losses[0]}


class SACLearner(AllocationLearner):
    def __init__(self, ctx):
        super().__init__(ctx)
        config = ctx.config.sac
        self.agent = SAC(OBS_DIM, config, seed=ctx.config.seed)
        self.buffer = ReplayBuffer(config.buffer_capacity, OBS_DIM, seed=ctx.config.seed + 2)
        self.env = ctx.new_env()

    def acting_weights(self, index: int) -> dict | None:
        """The actor weights episode `index` acts with: None during warm-up (uniform actions)."""
        return None if index < self.ctx.config.sac.warmup_episodes else self.agent.policy_state_dict()

    def rollout(self, index: int) -> tuple[float, dict]:
        _, reward, info = rollout(self.env, act_fn(self.ctx, self.acting_weights(index), index))
        return reward, info

    def learn(self, index: int, reward: float, info: dict) -> dict:
        config = self.ctx.config
        store_episode(self.buffer, info["transitions"], config.credit)
        warm = index < config.sac.warmup_episodes
        losses = []
        if not warm:  # sampling is with replacement, so even a short warm-up suffices
            n = config.sac.updates_per_episode or self.env.n_layers
            with single_thread(self.agent.device):
                losses = [self.agent.update(self.buffer.sample(config.sac.batch_size)) for _ in range(n)]
        return {"warmup": warm, "alpha": self.agent.alpha, **_mean_losses(losses)}

    def agent_state(self) -> dict:
        return {"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict()}

    def restore_agent(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"])

    def conclude(self) -> list[int]:
        deterministic, _, _ = rollout(self.env, lambda obs: self.agent.act(obs, deterministic=True))
        write_policy(self.ctx, self.agent, self.ctx.config.episodes)
        return deterministic


def act_fn(ctx, weights: dict | None, index: int):
    """`act(obs)` of episode `index` with the actor `weights` (None: warm-up) — the same in any process."""
    config = ctx.config
    return behaviour(weights, config.seed, index, config.sac.log_std_min, config.sac.log_std_max)


def train(ctx, resume: bool) -> dict:
    learner = SACLearner(ctx)
    run_episodes(ctx.out, ctx.config.episodes, learner, resume)
    return learner.answers()
