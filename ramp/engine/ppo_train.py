"""The PPO search (`ramp search --algo ppo`): the learner that `ramp.engine.loop.run_episodes` drives.

Per episode the categorical policy picks a bit width for every layer (sampled, on-policy; no warm-up), the
allocation is scored by the same evaluator and reward as SAC's, and after every `episodes_per_update` episodes
the collected transitions go through GAE and the clipped PPO update.  Same outputs as the SAC search: the
deterministic (argmax) rollout and the best feasible allocation seen.
"""

from ..agents.ppo import PPO, stack_episode, update_on_episodes
from ..mdp.env import index_to_action, rollout
from .learner import AllocationLearner
from .loop import run_episodes
from .outputs import write_policy

OBS_DIM = 11


def ppo_rollout(env, agent: PPO, deterministic: bool = False) -> tuple[dict, dict]:
    """One episode of `agent` on the allocation MDP: (transitions as arrays, the last step's info)."""
    picks = []

    def act(obs):
        index, logp, value = agent.act(obs, deterministic)
        picks.append((obs, index, logp, value))
        return index_to_action(index, agent.n_actions)

    _, _, info = rollout(env, act)
    steps = [pick + (reward, done) for pick, (_, _, reward, _, done) in zip(picks, info["transitions"])]
    return stack_episode(steps), info


class PPOLearner(AllocationLearner):
    desc = "search (ppo)"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.agent = PPO(OBS_DIM, len(ctx.config.actions), ctx.config.ppo, seed=ctx.config.seed)
        self.env = ctx.new_env()
        self.batch: list[dict] = []

    def rollout(self, index: int) -> tuple[float, dict]:
        transitions, info = ppo_rollout(self.env, self.agent)
        self.batch.append(transitions)
        return float(transitions["reward"].sum()), info

    def learn(self, index: int, reward: float, info: dict) -> dict:
        losses = {}
        if len(self.batch) >= self.agent.config.episodes_per_update:
            losses = update_on_episodes(self.agent, self.batch)
            self.batch = []
        return {"warmup": False, **losses}

    def agent_state(self) -> dict:
        return {"agent": self.agent.state_dict(), "batch": self.batch}

    def restore_agent(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.batch = state["batch"]

    def conclude(self) -> list[int]:
        _, info = ppo_rollout(self.env, self.agent, deterministic=True)
        write_policy(self.ctx, self.agent, self.ctx.config.episodes)
        return info["bits"]


def train(ctx, resume: bool) -> dict:
    learner = PPOLearner(ctx)
    run_episodes(ctx.out, ctx.config.episodes, learner, resume)
    return learner.answers()
