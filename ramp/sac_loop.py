"""The SAC episode loop of `ramp search`: act, store, update, log, checkpoint — resumable.

Per episode: roll the policy out over every layer (random actions during warm-up; the episode's own random
stream, `ramp.behaviour`), store each transition with its continuous action, run the gradient updates, append
one line to log.jsonl and save a checkpoint.  `restore`, `consume`, `save` and `conclude` are the learner's
steps, shared with the Ray search (`ramp.ray_search`), whose workers roll the episodes out instead.  The final
answers are the deterministic rollout (mean action) and the best feasible allocation seen (b_avg within the
budget); both are kept and labelled, and `search_run.finish` chooses the one within budget lower in loss.
"""

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint, episode_log
from .behaviour import behaviour
from .replay import store_episode
from .search_run import Context, new_agent, new_env, rollout, sac_config, write_policy


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


def restore(ctx: Context, resume: bool):
    """(agent, buffer, first episode, best so far, checkpoint state or None) — fresh, or from the checkpoint."""
    agent, buffer = new_agent(ctx)
    state = checkpoint.load(ctx.out) if resume else None
    if state is not None:
        agent.load_state_dict(state["agent"])
        buffer.load_state_dict(state["buffer"])
    start, best = episode_log.restart(ctx, state)
    return agent, buffer, start, best, state


def acting_weights(ctx: Context, agent, episode: int) -> dict | None:
    """The actor weights episode `episode` acts with: None during warm-up (uniform actions)."""
    return None if episode < ctx.config.warmup_episodes else agent.policy_state_dict()


def act_fn(ctx: Context, weights: dict | None, episode: int):
    """`act(obs)` of episode `episode` with the actor `weights` (None: warm-up) — the same in any process."""
    config = sac_config(ctx)
    return behaviour(weights, ctx.config.seed, episode, config.log_std_min, config.log_std_max)


def consume(ctx: Context, agent, buffer, episode: int, reward: float, info: dict, best: dict | None,
            seconds: float, eval_seconds: float) -> dict | None:
    """The learner's part of one episode: store, update (after warm-up), log; returns the best feasible so far."""
    store_episode(buffer, info["transitions"], ctx.config.credit)
    warm = episode < ctx.config.warmup_episodes
    losses, update_start = [], time.perf_counter()
    if not warm:  # sampling is with replacement, so even a short warm-up suffices
        losses = _updates(agent, buffer, ctx.config.updates_per_episode or len(ctx.layers))
    update_seconds = time.perf_counter() - update_start
    best, feasible = episode_log.track_best(ctx, best, info, episode)
    episode_log.append(ctx, episode, reward, info, feasible, {"warmup": warm, "alpha": agent.alpha,
                                                             **_mean_losses(losses)},
                       seconds + update_seconds, eval_seconds, update_seconds)
    return best


def save(ctx: Context, agent, buffer, episodes_done: int, best: dict | None, **extra) -> None:
    checkpoint.save(ctx.out, {"agent": agent.state_dict(), "buffer": buffer.state_dict(), "episode": episodes_done,
                              "best": best, **extra})


def conclude(ctx: Context, agent, env) -> dict:
    """The deterministic rollout, the policy file and the loop's answers."""
    deterministic, _, _ = rollout(env, lambda obs: agent.act(obs, deterministic=True))
    write_policy(ctx, agent, ctx.config.episodes)
    return deterministic


def train(ctx: Context, resume: bool) -> dict:
    agent, buffer, start, best, _ = restore(ctx, resume)
    env = new_env(ctx)
    bar = tqdm(range(start, ctx.config.episodes), initial=start, total=ctx.config.episodes, desc="search", unit="ep")
    for episode in bar:
        started, eval_before = time.perf_counter(), ctx.eval_seconds
        act = act_fn(ctx, acting_weights(ctx, agent, episode), episode)
        _, reward, info = rollout(env, act)
        best = consume(ctx, agent, buffer, episode, reward, info, best, time.perf_counter() - started,
                       ctx.eval_seconds - eval_before)
        save(ctx, agent, buffer, episode + 1, best)
        episode_log.postfix(bar, info, best)
    return episode_log.answers(ctx, conclude(ctx, agent, env), best)
