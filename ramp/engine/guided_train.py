"""Guided SAC (`ramp search --algo sac`, the default `--sac-mode guided`): RAMP's SAC on budget-exact episodes.

The MDP is `ramp.engine.guided`: one continuous action per layer rescales its sensitivity row, a knapsack decodes
the allocation, and that allocation is scored on the joint KL divergence from the base.  An episode's reward is
log(L_knapsack / L): 0 for the knapsack's own allocation (episode 0, all actions 0), positive for anything better
on the search's windows.  Every layer's transition carries the episode's reward with done = True (credit
"episode", the only one that learned on the paper's MDP too), so the twin critics learn Q(state of layer i,
action i) and the actor with the learned temperature follows them; replay buffer, auto-alpha and updates are SAC's
as in `ramp.engine.sac_train`.

The actor's mean head starts at zero, so the untrained policy is the knapsack plus exploration noise: warm-up
episodes sample that initial actor (not uniform actions, which would throw the knapsack's answer away).  Each
episode samples from its own stream seeded by (seed, episode), so a resumed search repeats exactly.  The answer is
chosen on the confirmation split (`ramp.engine.confirm`) among the lowest-loss allocations seen, the policy's
deterministic rollout and the knapsack's.
"""

import math

import numpy as np
import torch

from .. import sensitivity
from ..agents.behaviour import episode_generator
from ..agents.replay import ReplayBuffer
from ..agents.sac import SAC, load_policy
from ..agents.threads import single_thread
from .confirm import choose, keep
from .guided import OBS_DIM, SENSITIVITY_FEATURES, Decoder, observations
from .knapsack import problem
from .learner import AllocationLearner
from .loop import run_episodes
from .outputs import write_policy
from .sac_train import _mean_losses

FINALISTS = 4       # lowest-loss distinct allocations the confirmation split chooses among (with the policy's)
LOSS_FLOOR = 1e-12  # a loss of 0 (the base model itself) would make the log-ratio reward infinite


def start_at_zero(agent: SAC) -> None:
    """Zero the actor's mean head: the untrained policy's mean action is 0 for every layer (the knapsack)."""
    head = agent.actor.net[-1]
    with torch.no_grad():
        head.weight[0].zero_()
        head.bias[0].zero_()


def sample_actions(weights: dict, obs: np.ndarray, seed: int, episode: int, config) -> np.ndarray:
    """Episode `episode`'s actions for every layer: samples of the actor `weights` from the episode's own stream."""
    actor = load_policy(weights, "cpu", config.log_std_min, config.log_std_max)
    with torch.no_grad():
        action, _ = actor.sample(torch.from_numpy(obs), episode_generator(seed, episode))
    return action.numpy().astype(np.float64)


class GuidedSACLearner(AllocationLearner):
    desc = "sac (guided)"

    def __init__(self, ctx):
        super().__init__(ctx)
        config = ctx.config
        record = sensitivity.table(ctx, config.sensitivity)
        self.table_cost = record.cost()
        actions = list(config.actions)
        costs, weights, capacity = problem(ctx.layers, actions, record.table, ctx.budget)
        self.decoder = Decoder(costs, weights, capacity, actions, config.sac.guide_scale)
        start = self.decoder.choice(np.zeros(len(ctx.layers)))
        self.start = [actions[k] for k in start]
        cal = ctx.calibration
        self.obs = observations(cal.embedding, cal.tensors["embedding_mean"], cal.tensors["embedding_std"], costs,
                                weights, start, actions)
        self.agent = SAC(OBS_DIM, config.sac, seed=config.seed)
        start_at_zero(self.agent)
        self.buffer = ReplayBuffer(config.sac.buffer_capacity, OBS_DIM, seed=config.seed + 2)
        self.reference = None   # the knapsack's loss on the search's windows (episode 0)
        self.finalists = []     # [(loss, bits)], the lowest-loss distinct allocations seen

    def rollout(self, index: int) -> tuple[float, dict]:
        n = len(self.ctx.layers)
        if index == 0:
            action = np.zeros(n)
        else:
            action = sample_actions(self.agent.policy_state_dict(), self.obs, self.ctx.config.seed, index,
                                    self.ctx.config.sac)
        bits = self.decoder.bits(action)
        outcome = self.ctx.outcome(bits)[1]
        loss = self.ctx.loss(outcome)
        if index == 0:
            self.reference = loss
        reward = math.log(max(self.reference, LOSS_FLOOR) / max(loss, LOSS_FLOOR))
        moved = int(sum(b != s for b, s in zip(bits, self.start)))
        return reward, {"outcome": outcome, "bits": bits, "action": action, "loss": loss, "r_quality": reward,
                        "r_budget": 0.0, "repaired_layers": 0, "moved_layers": moved}

    def learn(self, index: int, reward: float, info: dict) -> dict:
        config = self.ctx.config.sac
        self.finalists = keep(self.finalists, info["loss"], info["bits"], FINALISTS)
        for obs, action in zip(self.obs, info["action"]):
            self.buffer.add(obs, float(action), reward, obs, True)
        warm = index < config.warmup_episodes
        losses = []
        if not warm:
            n = config.updates_per_episode or len(self.ctx.layers)
            with single_thread(self.agent.device):
                losses = [self.agent.update(self.buffer.sample(config.batch_size)) for _ in range(n)]
        return {"warmup": warm, "alpha": self.agent.alpha, "loss": info["loss"], "knapsack_loss": self.reference,
                "moved_layers": info["moved_layers"], "mean_abs_action": float(np.mean(np.abs(info["action"]))),
                **_mean_losses(losses)}

    def agent_state(self) -> dict:
        return {"agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(), "reference": self.reference,
                "finalists": self.finalists}

    def restore_agent(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"])
        self.reference = state["reference"]
        self.finalists = [(loss, list(bits)) for loss, bits in state["finalists"]]

    def postfix(self, record: dict) -> dict:
        best = self.finalists[0][0] if self.finalists else float("nan")
        return {"kld" if self.ctx.config.quality == "kld" else "ppl": f"{record['loss']:.4f}",
                "knapsack": f"{record['knapsack_loss']:.4f}", "best": f"{best:.4f}", "moved": record["moved_layers"]}

    def conclude(self) -> list[int]:
        """The policy's deterministic allocation (mean actions), and the policy file with its card."""
        bits = self.decoder.bits(self.agent.actor.deterministic(self.obs).astype(np.float64))
        write_policy(self.ctx, self.agent, self.ctx.config.episodes,
                     {"sac_mode": "guided", "guide_scale": self.ctx.config.sac.guide_scale,
                      "sensitivity": self.ctx.config.sensitivity, "extra_features": list(SENSITIVITY_FEATURES)})
        return bits

    def answers(self) -> dict:
        policy = self.conclude()
        candidates = [bits for _, bits in self.finalists]
        if policy not in candidates:
            candidates.append(policy)
        return choose(self.ctx, candidates, self.start, {"policy": policy}) | {"sensitivity": self.table_cost}


def train(ctx, resume: bool) -> dict:
    learner = GuidedSACLearner(ctx)
    run_episodes(ctx.out, ctx.config.episodes, learner, resume)
    return learner.answers()
