"""`ramp search --workers N [--ray-address ADDR]`: SAC episodes rolled out on Ray actors, the learner central.

The shape is Ape-X / distributed SAC.  Each of the N `RolloutWorker` actors holds one model replica and its
weight cache (its own evaluator, one GPU each when the cluster has N GPUs, else CPU threads) and rolls whole
episodes out with the actor weights it was sent.  The learner — `SACLearner`'s agent and replay buffer, in this
process — keeps N episodes in flight: when episode e comes back it is stored, the agent takes its gradient
steps, and episode e + N is sent out with the weights as they are now.  Episodes are consumed in episode
order (a result that arrives early waits for the ones before it), which costs a little learner idle time and
buys reproducibility: an episode's actions depend only on the weights it was sent and its own random stream
(`ramp.agents.behaviour`), so a given seed and N always give the same search, and N = 1 is the in-process loop.
Floating-point sums may differ between N (each worker's evaluator runs with its own number of threads).

Checkpoints hold the weights every in-flight episode was sent, so a killed search resumes exactly.  A
worker that dies is restarted by Ray (it rebuilds its replica) and its episode is run again — identically,
since the episode is a pure function of its inputs.  The driver loads no model unless the budget is a file
size: its evaluations (the base, the final answers) are sent to worker 0.
"""

import os
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import ray
import torch
from tqdm.auto import tqdm

from ramputils.atomic import write_json
from ramputils.errors import UserError

from ..config.search import SearchConfig
from ..evaluation.evaluator import allocation_types
from ..mdp.env import rollout
from .context import prepare
from .loop import run_episodes
from .outputs import finish
from .sac_train import SACLearner, act_fn

RESTARTS = 3   # times Ray restarts a dead worker, and retries the episode it was running


@ray.remote
class RolloutWorker:
    """One model replica with its evaluator; rolls episodes out and scores allocations."""

    def __init__(self, config: dict, out: str, threads: int):
        torch.set_num_threads(threads)
        self.ctx = prepare(SearchConfig.from_json(config), Path(out))
        self.env = self.ctx.new_env()

    def rollout(self, weights: dict | None, episode: int) -> tuple[float, dict, float]:
        """(reward, info, seconds in the evaluator) of episode `episode` acting with `weights`."""
        eval_before = self.ctx.eval_seconds
        _, reward, info = rollout(self.env, act_fn(self.ctx, weights, episode))
        return reward, info, self.ctx.eval_seconds - eval_before

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


class RayLearner(SACLearner):
    """`SACLearner` whose rollouts run on `workers`, N episodes in flight."""

    def __init__(self, ctx, workers: list):
        super().__init__(ctx)
        self.workers, self.pending, self.sent = workers, deque(), {}
        self.waited = 0.0
        self.desc = f"search ({len(workers)} workers)"

    def send(self, index: int) -> None:
        weights = self.sent.pop(index) if index in self.sent else self.acting_weights(index)
        worker = self.workers[index % len(self.workers)]
        self.pending.append((index, weights, worker.rollout.remote(weights, index)))

    def restore(self, state: dict | None) -> None:
        super().restore(state)
        self.sent = {int(e): w for e, w in (state or {}).get("in_flight", {}).items()}  # weights of in-flight episodes
        start = int(state["episode"]) if state is not None else 0
        for index in range(start, min(start + len(self.workers), self.ctx.config.episodes)):
            self.send(index)

    def rollout(self, index: int) -> tuple[float, dict]:
        episode, _, future = self.pending.popleft()
        assert episode == index, (episode, index)
        wait_start = time.perf_counter()
        reward, info, eval_seconds = ray.get(future)
        self.waited += time.perf_counter() - wait_start
        self.ctx.scored[tuple(int(b) for b in info["bits"])] = info["outcome"]
        self.ctx.eval_seconds += eval_seconds
        return reward, info

    def learn(self, index: int, reward: float, info: dict) -> dict:
        fields = super().learn(index, reward, info)
        if index + len(self.workers) < self.ctx.config.episodes:
            self.send(index + len(self.workers))
        return fields

    def agent_state(self) -> dict:
        return super().agent_state() | {"in_flight": {e: w for e, w, _ in self.pending}}


def train(ctx, resume: bool, workers: list) -> dict:
    """The learner over `workers`; the same answers as `sac_train.train`, plus the Ray timing."""
    learner = RayLearner(ctx, workers)
    began = time.perf_counter()
    start = run_episodes(ctx.out, ctx.config.episodes, learner, resume)
    elapsed = time.perf_counter() - began
    answers = learner.answers()
    done = ctx.config.episodes - start
    answers["ray"] = {"workers": len(workers), "episodes": done, "seconds": elapsed,
                      "episodes_per_minute": 60 * done / elapsed if elapsed else None,
                      "learner_wait_share": learner.waited / elapsed if elapsed else None}
    write_json(ctx.out / "ray.json", answers["ray"])
    return answers


def run(config: SearchConfig, out: Path, resume: bool) -> dict:
    """The whole Ray search: workers started, the driver prepared on worker 0's evaluator, trained, outputs."""
    workers = []

    def remote_evaluator(cal):
        workers.extend(start_workers(config, out, cal, config.ray_address))
        return RemoteEvaluator(workers[0], cal.layers)

    try:
        ctx = prepare(config, out, remote_evaluator)
        return finish(ctx, train(ctx, resume, workers))
    finally:
        stop_workers(workers)
