"""Soft Actor-Critic for the one-dimensional bit-allocation action (RAMP section 3.3, appendix B).

Actor: state -> (mean, log std) of a Gaussian whose sample u is squashed by tanh into [-1, 1]; the
environment bins that action into a bit width.  Critics: two Q networks on (state, action) with
Polyak-averaged targets; the soft target is (eq. 18)

    y = r + gamma (1 - done) [ min_i Q_target_i(s', a') - alpha log pi(a' | s') ],   a' ~ pi(. | s').

Critics minimise the squared error to y, the actor minimises E[alpha log pi(a|s) - min_i Q_i(s, a)],
and the temperature minimises E[-alpha (log pi(a|s) + target_entropy)] (eq. 17).  All three use Adam
at the same learning rate and the networks' gradients are clipped by norm.

Every random draw of the agent (network initialisation, the reparameterised samples in `update`, and
`act` when called) comes from the agent's own seed and `torch.Generator`, never from
torch's global generator, and `state_dict()` includes that generator: a restored agent acts and learns
exactly as the original would have.  The search's episodes act through `ramp.agents.behaviour` instead (one
random stream per episode), so that any process can roll an episode out.
"""

import copy
import math
from dataclasses import asdict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config.agents import SACConfig
from .replay import Batch


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """FC-LN-ReLU for every hidden layer but the last, FC-ReLU for the last, then a linear head."""
    layers, width = [], in_dim
    for i, h in enumerate(hidden):
        layers.append(nn.Linear(width, h))
        if i < len(hidden) - 1:
            layers.append(nn.LayerNorm(h))
        layers.append(nn.ReLU())
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy with one action dimension; the head outputs (mean, raw log std)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.net = mlp(obs_dim, tuple(hidden), 2)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log std) of the pre-tanh Gaussian, each of shape (n,)."""
        out = self.net(obs)
        mean, raw = out[:, 0], out[:, 1]
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action a = tanh(mean + std * eps) and its log density, each (n,)."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        # log N(u; mean, std) minus log |d tanh(u) / du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))
        log_prob = -0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        log_prob = log_prob - 2 * (math.log(2) - u - F.softplus(-2 * u))
        return torch.tanh(u), log_prob

    @torch.no_grad()
    def deterministic(self, obs) -> np.ndarray:
        """tanh(mean) for a batch of observations (numpy in, numpy out): the policy's greedy actions."""
        param = next(self.parameters())
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=param.device).reshape(-1, self.obs_dim)
        return torch.tanh(self(x)[0]).cpu().numpy()

    @property
    def obs_dim(self) -> int:
        return self.net[0].in_features


def load_policy(tensors: dict[str, torch.Tensor], device: str = "cpu", log_std_min: float = -5.0,
                log_std_max: float = 2.0) -> Actor:
    """An inference-only actor from `SAC.policy_state_dict()` (e.g. read back from safetensors).

    The widths are read from the weight shapes: `net.{k}.weight` of every nn.Linear, in order.
    """
    linear = sorted((int(name.split(".")[1]), t.shape) for name, t in tensors.items()
                    if name.endswith(".weight") and t.dim() == 2)
    hidden = tuple(shape[0] for _, shape in linear[:-1])
    actor = Actor(linear[0][1][1], hidden, log_std_min, log_std_max)
    actor.load_state_dict(tensors)
    return actor.to(device).eval()


class SAC:
    """Actor, twin critics with targets, learned temperature, their optimisers and the agent's RNG."""

    def __init__(self, obs_dim: int, config: SACConfig | None = None, seed: int = 0):
        self.config = config = config or SACConfig()
        self.obs_dim = int(obs_dim)
        self.device = torch.device(config.device)
        hidden = tuple(config.hidden)
        with torch.random.fork_rng(devices=[]):     # seeded initialisation that leaves the global RNG alone
            torch.manual_seed(seed)
            self.actor = Actor(obs_dim, hidden, config.log_std_min, config.log_std_max)
            self.q1 = mlp(obs_dim + 1, hidden, 1)
            self.q2 = mlp(obs_dim + 1, hidden, 1)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for net in (self.actor, self.q1, self.q2, self.q1_target, self.q2_target):
            net.to(self.device)
        for p in [*self.q1_target.parameters(), *self.q2_target.parameters()]:
            p.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.init_alpha), device=self.device, requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr, foreach=True)
        self.critic_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=config.lr, foreach=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)
        self.updates = 0

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    # ---- acting -------------------------------------------------------------------------------------

    def act_batch(self, obs, deterministic: bool = False) -> np.ndarray:
        """Actions in [-1, 1] for a batch of observations (n, obs_dim); deterministic = tanh(mean)."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).reshape(-1, self.obs_dim)
        with torch.no_grad():
            if deterministic:
                action = torch.tanh(self.actor(x)[0])
            else:
                action = self.actor.sample(x, self.generator)[0]
        return action.cpu().numpy()

    def act(self, obs, deterministic: bool = False) -> float:
        """One action in [-1, 1] for one observation."""
        return float(self.act_batch(obs, deterministic)[0])

    # ---- learning -----------------------------------------------------------------------------------

    def _q(self, net: nn.Sequential, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([obs, action[:, None]], dim=1))[:, 0]

    def _tensors(self, batch: Batch):
        def t(x):
            return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)
        return t(batch.obs), t(batch.action), t(batch.reward), t(batch.next_obs), t(batch.done)

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step of critics, actor and temperature, then the Polyak update of the targets."""
        c = self.config
        obs, action, reward, next_obs, done = self._tensors(batch)
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs, self.generator)
            next_q = torch.min(self._q(self.q1_target, next_obs, next_action),
                               self._q(self.q2_target, next_obs, next_action))
            target = reward + c.gamma * (1 - done) * (next_q - alpha * next_log_prob)
        q1, q2 = self._q(self.q1, obs, action), self._q(self.q2, obs, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_([*self.q1.parameters(), *self.q2.parameters()], c.grad_clip)
        self.critic_opt.step()

        new_action, log_prob = self.actor.sample(obs, self.generator)
        q_new = torch.min(self._q(self.q1, obs, new_action), self._q(self.q2, obs, new_action))
        actor_loss = (alpha * log_prob - q_new).mean()
        actor_params = list(self.actor.parameters())   # gradients for the actor only, none for the critics
        for p, g in zip(actor_params, torch.autograd.grad(actor_loss, actor_params)):
            p.grad = g
        nn.utils.clip_grad_norm_(self.actor.parameters(), c.grad_clip)
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha.exp() * (log_prob.detach() + c.target_entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for online, target_net in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, tp in zip(online.parameters(), target_net.parameters()):
                    tp.lerp_(p, c.tau)
        self.updates += 1
        with torch.no_grad():
            return {"critic_loss": float(critic_loss), "actor_loss": float(actor_loss), "alpha": float(alpha),
                    "alpha_loss": float(alpha_loss), "q_mean": float(0.5 * (q1 + q2).mean()),
                    "entropy": float(-log_prob.mean())}

    # ---- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: networks, targets, optimisers, log alpha, RNG (a deep copy)."""
        return copy.deepcopy({
            "obs_dim": self.obs_dim, "config": asdict(self.config), "updates": self.updates,
            "actor": self.actor.state_dict(), "q1": self.q1.state_dict(), "q2": self.q2.state_dict(),
            "q1_target": self.q1_target.state_dict(), "q2_target": self.q2_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(), "log_alpha": self.log_alpha.detach(),
            "generator": self.generator.get_state()})

    def load_state_dict(self, state: dict) -> None:
        theirs, ours = (state["obs_dim"], tuple(state["config"]["hidden"])), (self.obs_dim, tuple(self.config.hidden))
        if theirs != ours:
            raise ValueError(f"agent state is for obs_dim, hidden = {theirs}; this agent has {ours}")
        for name in ("actor", "q1", "q2", "q1_target", "q2_target", "actor_opt", "critic_opt", "alpha_opt"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])

    def policy_state_dict(self) -> dict[str, torch.Tensor]:
        """The actor's weights as contiguous CPU tensors (safetensors-ready); rebuild with `load_policy`."""
        return {k: v.detach().cpu().contiguous().clone() for k, v in self.actor.state_dict().items()}
