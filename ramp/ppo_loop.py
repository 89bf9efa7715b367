"""The PPO episode loop of `ramp search --algo ppo`: sample, evaluate, update, log, checkpoint — resumable.

Per episode the categorical policy picks a bit width for every layer (sampled, on-policy; no warm-up), the
allocation is scored by the same evaluator and reward as SAC's, and after every `episodes_per_update` episodes
the collected transitions go through GAE and the clipped PPO update.  Same outputs as the SAC loop: log.jsonl,
checkpoint after every episode, the deterministic (argmax) rollout and the best feasible allocation seen.
"""

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint, episode_log
from .env import index_to_action
from .ppo import PPO, PPOConfig, gae
from .search_run import Context, new_env, write_policy

FIELDS = ("obs", "action", "logp", "value", "reward", "done")


def _episode(env, agent: PPO, deterministic: bool = False) -> tuple[dict, dict]:
    """One rollout; (transitions as arrays, the last step's info)."""
    obs, rows = env.reset(), []
    while True:
        index, logp, value = agent.act(obs, deterministic)
        next_obs, reward, done, info = env.step(index_to_action(index, agent.n_actions))
        rows.append((obs, index, logp, value, reward, done))
        obs = next_obs
        if done:
            return {name: np.array([row[i] for row in rows]) for i, name in enumerate(FIELDS)}, info


def _update(agent: PPO, batch: list[dict]) -> dict:
    """GAE over the batch's episodes, then the PPO update, single-threaded on CPU like SAC's updates."""
    data = {name: np.concatenate([episode[name] for episode in batch]) for name in FIELDS}
    adv, returns = gae(data["reward"], data["value"], data["done"], agent.config.gamma, agent.config.lam)
    threads = torch.get_num_threads()
    if agent.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return agent.update(data["obs"], data["action"], data["logp"], adv, returns)
    finally:
        torch.set_num_threads(threads)


def collect(env, agent: PPO, batch: list[dict]) -> tuple[dict, dict, dict, float]:
    """One sampled episode appended to `batch`; when the batch holds `episodes_per_update` episodes, the update runs
    and the batch is emptied in place.  (transitions, last info, losses or {}, seconds spent updating)."""
    transitions, info = _episode(env, agent)
    batch.append(transitions)
    losses, started = {}, time.perf_counter()
    if len(batch) >= agent.config.episodes_per_update:
        losses = _update(agent, batch)
        batch.clear()
    return transitions, info, losses, time.perf_counter() - started


def new_ppo(ctx: Context) -> PPO:
    return PPO(11, len(ctx.config.actions), PPOConfig(**ctx.config.extra.get("ppo", {})), seed=ctx.config.seed)


def train(ctx: Context, resume: bool) -> dict:
    config = ctx.config
    agent, env = new_ppo(ctx), new_env(ctx)
    state = checkpoint.load(ctx.out) if resume else None
    batch = []
    if state is not None:
        agent.load_state_dict(state["agent"])
        batch = state["batch"]
    start, best = episode_log.restart(ctx, state)
    bar = tqdm(range(start, config.episodes), initial=start, total=config.episodes, desc="search (ppo)", unit="ep")
    for episode in bar:
        started, eval_before = time.perf_counter(), ctx.eval_seconds
        transitions, info, losses, update_seconds = collect(env, agent, batch)
        best, feasible = episode_log.track_best(ctx, best, info, episode)
        episode_log.append(ctx, episode, float(transitions["reward"].sum()), info, feasible,
                           {"warmup": False, **losses}, time.perf_counter() - started,
                           ctx.eval_seconds - eval_before, update_seconds)
        checkpoint.save(ctx.out, {"agent": agent.state_dict(), "episode": episode + 1, "best": best,
                                  "batch": batch})
        episode_log.postfix(bar, info, best)
    _, info = _episode(env, agent, deterministic=True)
    write_policy(ctx, agent, config.episodes)
    return episode_log.answers(ctx, info["bits"], best)
