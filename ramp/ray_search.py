"""`ramp search --workers N [--ray-address ADDR]`: SAC episodes rolled out on Ray actors, the learner central.

The shape is Ape-X / distributed SAC.  Each of the N `RolloutWorker` actors holds one model replica and its
weight cache (its own evaluator, one GPU each when the cluster has N GPUs, else CPU threads) and rolls whole
episodes out with the actor weights it was sent.  The learner — the SAC agent and its replay buffer, in this
process — keeps N episodes in flight: when episode e comes back it is stored, the agent takes its gradient
steps, and episode e + N is sent out with the weights as they are now.  Episodes are consumed in episode
order (a result that arrives early waits for the ones before it), which costs a little learner idle time and
buys reproducibility: an episode's actions depend only on the weights it was sent and its own random stream
(`ramp.behaviour`), so a given seed and N always give the same search, and N = 1 is the in-process loop.
Floating-point sums may differ between N (each worker's evaluator runs with its own number of threads).

Checkpoints hold the weights every in-flight episode was sent, so a killed search resumes exactly.  A
worker that dies is restarted by Ray (it rebuilds its replica) and its episode is run again — identically,
since the episode is a pure function of its inputs.  The driver loads no model unless the budget is a file
size: its evaluations (the base, the final answers) are sent to worker 0.
"""

import json
import os
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import ray
import torch
from tqdm.auto import tqdm

from calibration.errors import UserError

from . import episode_log
from .evaluator import allocation_types
from .sac_loop import act_fn, acting_weights, conclude, consume, restore, save
from .search_run import Context, SearchConfig, new_env, prepare, rollout

RESTARTS = 3   # times Ray restarts a dead worker, and retries the episode it was running


@ray.remote
class RolloutWorker:
    """One model replica with its evaluator; rolls episodes out and scores allocations."""

    def __init__(self, config: dict, out: str, threads: int):
        torch.set_num_threads(threads)
        self.ctx = prepare(SearchConfig(**config), Path(out))
        self.env = new_env(self.ctx)

    def rollout(self, weights: dict | None, episode: int) -> tuple[float, dict, float, float]:
        """(reward, info, seconds in the evaluator, seconds in all) of episode `episode` acting with `weights`."""
        start, eval_before = time.perf_counter(), self.ctx.eval_seconds
        _, reward, info = rollout(self.env, act_fn(self.ctx, weights, episode))
        return reward, info, self.ctx.eval_seconds - eval_before, time.perf_counter() - start

    def evaluate(self, types: list):
        return self.ctx.evaluator.evaluate(types)

    def pid(self) -> int:
        return os.getpid()


class RemoteEvaluator:
    """The driver's evaluator: every call runs on one worker's replica."""

    def __init__(self, worker, layers):
        self.worker, self.layers = worker, list(layers)

    def evaluate(self, types):
        return ray.get(self.worker.evaluate.remote(list(types)))

    def evaluate_allocation(self, allocation):
        return self.evaluate(allocation_types(allocation, self.layers))


def worker_name(out: Path, index: int) -> str:
    """The Ray name of worker `index` of the search writing to `out` (unique while that search runs)."""
    return f"ramp-rollout-{index}@{Path(out).resolve()}"


def start_workers(config: SearchConfig, out: Path, calibration, address: str | None) -> list:
    """N named workers (restartable), each on CPUs / GPU shares of the cluster; Ray started here if need be."""
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                            f"{str(exc).splitlines()[0]}") from None
    resources = ray.cluster_resources()
    n = config.workers
    cpus = max(1, int(resources.get("CPU", 1) // n))
    gpus = 1 if resources.get("GPU", 0) >= n else 0
    worker_config = replace(config, calibration=str(calibration.path)).to_json()
    tqdm.write(f"Ray: {n} rollout workers, {cpus} CPU{'s' if cpus > 1 else ''}{' and 1 GPU' if gpus else ''} each")
    return [RolloutWorker.options(name=worker_name(out, i), num_cpus=cpus, num_gpus=gpus, max_restarts=RESTARTS,
                                  max_task_retries=RESTARTS).remote(worker_config, str(out), cpus)
            for i in range(n)]


def stop_workers(workers: list) -> None:
    for worker in workers:
        ray.kill(worker, no_restart=True)


def train(ctx: Context, resume: bool, workers: list) -> dict:
    """The learner loop over `workers`; the same answers as `sac_loop.train`, plus the Ray timing."""
    config, n = ctx.config, len(workers)
    agent, buffer, start, best, state = restore(ctx, resume)
    sent = {int(e): w for e, w in (state or {}).get("in_flight", {}).items()}  # weights of in-flight episodes
    pending: deque = deque()

    def send(episode: int) -> None:
        weights = sent.pop(episode) if episode in sent else acting_weights(ctx, agent, episode)
        pending.append((episode, weights, workers[episode % n].rollout.remote(weights, episode)))

    for episode in range(start, min(start + n, config.episodes)):
        send(episode)
    bar = tqdm(total=config.episodes, initial=start, desc=f"search ({n} workers)", unit="ep")
    began, waited = time.perf_counter(), 0.0
    while pending:
        episode, _, future = pending.popleft()
        wait_start = time.perf_counter()
        reward, info, eval_seconds, seconds = ray.get(future)
        waited += time.perf_counter() - wait_start
        ctx.scored[tuple(int(b) for b in info["bits"])] = info["outcome"]
        ctx.eval_seconds += eval_seconds
        best = consume(ctx, agent, buffer, episode, reward, info, best, seconds, eval_seconds)
        if episode + n < config.episodes:
            send(episode + n)
        save(ctx, agent, buffer, episode + 1, best, in_flight={e: w for e, w, _ in pending})
        episode_log.postfix(bar, info, best)
        bar.update()
    bar.close()
    elapsed = time.perf_counter() - began
    answers = episode_log.answers(ctx, conclude(ctx, agent, new_env(ctx)), best)
    done = config.episodes - start
    answers["ray"] = {"workers": n, "episodes": done, "seconds": elapsed,
                      "episodes_per_minute": 60 * done / elapsed if elapsed else None,
                      "learner_wait_share": waited / elapsed if elapsed else None}
    (ctx.out / "ray.json").write_text(json.dumps(answers["ray"], indent=1))
    return answers
