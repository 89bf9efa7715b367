"""The SAC episode loop of `ramp search`: act, store, update, log, checkpoint — resumable.

Per episode: roll the policy out over every layer (random actions during warm-up), store each
transition with its continuous action, run the gradient updates, append one line to log.jsonl and
save a checkpoint.  The final answers are the deterministic rollout (mean action) and the best
feasible allocation seen (b_avg within the budget); both are kept and labelled.
"""

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint, episode_log
from .replay import store_episode
from .search_run import Context, new_agent, new_env, rollout, write_policy


def _mean_losses(losses: list[dict]) -> dict:
    if not losses:
        return {}
    return {key: float(np.mean([entry[key] for entry in losses])) for key in losses[0]}


def _updates(agent, buffer, n: int) -> list[dict]:
    """`n` gradient steps, single-threaded on CPU: the networks are small, and on a few cores thread
    hand-offs cost more than they save (measured 30-45 ms per step on one thread, far more on two busy ones)."""
    threads = torch.get_num_threads()
    if agent.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return [agent.update(buffer.sample(agent.config.batch_size)) for _ in range(n)]
    finally:
        torch.set_num_threads(threads)


def train(ctx: Context, resume: bool) -> dict:
    config = ctx.config
    agent, buffer = new_agent(ctx)
    env = new_env(ctx)
    state = checkpoint.load(ctx.out) if resume else None
    if state is not None:
        agent.load_state_dict(state["agent"])
        buffer.load_state_dict(state["buffer"])
    start, best = episode_log.restart(ctx, state)
    updates = config.updates_per_episode or len(ctx.layers)
    bar = tqdm(range(start, config.episodes), initial=start, total=config.episodes, desc="search", unit="ep")
    for episode in bar:
        started, eval_before = time.perf_counter(), ctx.eval_seconds
        warm = episode < config.warmup_episodes
        _, reward, info = rollout(env, (lambda obs: agent.random_action()) if warm else agent.act)
        store_episode(buffer, info["transitions"], config.credit)
        losses, update_start = [], time.perf_counter()
        if not warm:  # sampling is with replacement, so even a short warm-up suffices
            losses = _updates(agent, buffer, updates)
        update_seconds = time.perf_counter() - update_start
        best, feasible = episode_log.track_best(ctx, best, info, episode)
        episode_log.append(ctx, episode, reward, info, feasible,
                           {"warmup": warm, "alpha": agent.alpha, **_mean_losses(losses)},
                           time.perf_counter() - started, ctx.eval_seconds - eval_before, update_seconds)
        checkpoint.save(ctx.out, {"agent": agent.state_dict(), "buffer": buffer.state_dict(),
                                  "episode": episode + 1, "best": best})
        episode_log.postfix(bar, info, best)
    deterministic, _, _ = rollout(env, lambda obs: agent.act(obs, deterministic=True))
    write_policy(ctx, agent, config.episodes)
    return episode_log.answers(ctx, deterministic, best)
