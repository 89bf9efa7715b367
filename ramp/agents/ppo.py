"""Proximal Policy Optimisation with a categorical policy over the action set (claim C4; DynaQuant's agent).

Actor: state -> logits over the n bit widths; critic: state -> V(s); two small tanh MLPs (CleanRL's PPO).
After each batch of episodes, generalised advantage estimation

    delta_t = r_t + gamma (1 - done_t) V(s_t+1) - V(s_t),   A_t = delta_t + gamma lambda (1 - done_t) A_t+1,

returns R_t = A_t + V(s_t), then `epochs` passes over shuffled minibatches minimising

    -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) + c_v (V - R)^2 - c_e H(pi),   ratio = pi(a|s) / pi_old(a|s),

advantages normalised once over the whole batch (not per minibatch: RAMP pays one reward per episode, so within
an episode every A_t is roughly R - V, and centring a minibatch of one episode's steps would subtract exactly the
signal that says whether this allocation was better than expected), gradients clipped by norm.  Every random
draw (initialisation, action sampling, minibatch shuffles) comes from the agent's own seeded generators, and
`state_dict()` holds them: a restored agent continues exactly as the original would have.
"""

import copy
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from ..config.agents import PPOConfig
from .threads import single_thread

FIELDS = ("obs", "action", "logp", "value", "reward", "done")  # one row per step of an episode


def tanh_mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, out_gain: float) -> nn.Sequential:
    """FC-tanh layers with orthogonal initialisation (gain sqrt 2), a linear head with gain `out_gain`."""
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            gain = out_gain if layer is layers[-1] else np.sqrt(2)
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, gamma: float, lam: float):
    """(advantages, returns) of one batch of consecutive transitions; the batch ends with an episode end."""
    n = len(rewards)
    assert values.shape == dones.shape == (n,) and dones[-1], (values.shape, dones.shape)
    adv = np.zeros(n, dtype=np.float64)
    running = 0.0
    for t in reversed(range(n)):
        next_value = 0.0 if dones[t] else values[t + 1]
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * (0.0 if dones[t] else running)
        adv[t] = running
    return adv, adv + values


class CategoricalActor(nn.Module):
    """Logits over the action set; `deterministic` returns the centre of the argmax action's bin in [-1, 1],
    so a PPO policy rolls out through the same environment (and `ramp transfer`) as a SAC one."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], n_actions: int):
        super().__init__()
        self.net = tanh_mlp(obs_dim, tuple(hidden), n_actions, out_gain=0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    @torch.no_grad()
    def deterministic(self, obs) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(-1, self.obs_dim)
        index = self(x).argmax(dim=1).numpy()
        return -1.0 + (2 * index + 1) / self.n_actions

    @property
    def obs_dim(self) -> int:
        return self.net[0].in_features

    @property
    def n_actions(self) -> int:
        return self.net[-1].out_features


def load_policy(tensors: dict[str, torch.Tensor], device: str = "cpu") -> CategoricalActor:
    """An inference-only actor from `PPO.policy_state_dict()`; widths read from the weight shapes."""
    linear = sorted((int(name.split(".")[1]), t.shape) for name, t in tensors.items()
                    if name.endswith(".weight") and t.dim() == 2)
    actor = CategoricalActor(linear[0][1][1], tuple(shape[0] for _, shape in linear[:-1]), linear[-1][1][0])
    actor.load_state_dict(tensors)
    return actor.to(device).eval()


class PPO:
    """Actor, critic, one optimiser and the agent's generators."""

    def __init__(self, obs_dim: int, n_actions: int, config: PPOConfig | None = None, seed: int = 0):
        self.config = config = config or PPOConfig()
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.device = torch.device(config.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = CategoricalActor(obs_dim, tuple(config.hidden), n_actions).to(self.device)
            self.critic = tanh_mlp(obs_dim, tuple(config.hidden), 1, out_gain=1.0).to(self.device)
        self.opt = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()], lr=config.lr, eps=1e-5)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)
        self.updates = 0

    def _obs(self, obs) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).reshape(-1, self.obs_dim)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> tuple[int, float, float]:
        """(action index, its log probability, V(s)) for one observation."""
        x = self._obs(obs)
        logits = self.actor(x)[0]
        if deterministic:
            index = int(logits.argmax())
        else:
            index = int(torch.multinomial(logits.softmax(-1), 1, generator=self.generator))
        return index, float(logits.log_softmax(-1)[index]), float(self.critic(x)[0, 0])

    def update(self, obs, actions, logp_old, advantages, returns) -> dict[str, float]:
        """`epochs` passes of clipped-objective minibatch steps over one batch; the mean losses."""
        c = self.config
        obs, returns_t = self._obs(obs), torch.as_tensor(returns, dtype=torch.float32, device=self.device)
        actions_t = torch.as_tensor(actions, dtype=torch.long, device=self.device)
        logp_old_t = torch.as_tensor(logp_old, dtype=torch.float32, device=self.device)
        adv_t = torch.as_tensor(advantages, dtype=torch.float32, device=self.device)
        if len(adv_t) > 1:
            adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)
        stats = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [], "clipfrac": []}
        n = len(actions_t)
        for _ in range(c.epochs):
            order = torch.randperm(n, generator=self.generator, device=self.device)
            for start in range(0, n, c.minibatch):
                idx = order[start:start + c.minibatch]
                logits = self.actor(obs[idx])
                logp_all = logits.log_softmax(-1)
                logp = logp_all.gather(1, actions_t[idx, None])[:, 0]
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                log_ratio = logp - logp_old_t[idx]
                ratio = log_ratio.exp()
                adv = adv_t[idx]
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - c.clip, 1 + c.clip) * adv).mean()
                value_loss = 0.5 * ((self.critic(obs[idx])[:, 0] - returns_t[idx]) ** 2).mean()
                loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
                self.opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_([*self.actor.parameters(), *self.critic.parameters()], c.max_grad_norm)
                self.opt.step()
                with torch.no_grad():
                    stats["policy_loss"].append(float(policy_loss))
                    stats["value_loss"].append(float(value_loss))
                    stats["entropy"].append(float(entropy))
                    stats["approx_kl"].append(float(((ratio - 1) - log_ratio).mean()))
                    stats["clipfrac"].append(float(((ratio - 1).abs() > c.clip).float().mean()))
        self.updates += 1
        return {key: float(np.mean(values)) for key, values in stats.items()}

    def state_dict(self) -> dict:
        return copy.deepcopy({"obs_dim": self.obs_dim, "n_actions": self.n_actions, "config": asdict(self.config),
                              "updates": self.updates, "actor": self.actor.state_dict(),
                              "critic": self.critic.state_dict(), "opt": self.opt.state_dict(),
                              "generator": self.generator.get_state()})

    def load_state_dict(self, state: dict) -> None:
        theirs = (state["obs_dim"], state["n_actions"], tuple(state["config"]["hidden"]))
        ours = (self.obs_dim, self.n_actions, tuple(self.config.hidden))
        if theirs != ours:
            raise ValueError(f"agent state is for obs_dim, n_actions, hidden = {theirs}; this agent has {ours}")
        for name in ("actor", "critic", "opt"):
            getattr(self, name).load_state_dict(state[name])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])

    def policy_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous().clone() for k, v in self.actor.state_dict().items()}


def stack_episode(rows: list[tuple]) -> dict[str, np.ndarray]:
    """An episode's steps, each (obs, action, logp, value, reward, done), as one array per field of `FIELDS`."""
    return {name: np.array([row[i] for row in rows]) for i, name in enumerate(FIELDS)}


def update_on_episodes(agent: PPO, batch: list[dict]) -> dict:
    """GAE over the batch's episodes (`stack_episode` each), then the PPO update, single-threaded on a CPU."""
    data = {name: np.concatenate([episode[name] for episode in batch]) for name in FIELDS}
    adv, returns = gae(data["reward"], data["value"], data["done"], agent.config.gamma, agent.config.lam)
    with single_thread(agent.device):
        return agent.update(data["obs"], data["action"], data["logp"], adv, returns)
