"""The part every learner of RAMP's allocation MDP shares (SAC, PPO, SAC on Ray): an episode is a rollout scored
by the search's evaluator, then the agent's update; the best feasible allocation seen is kept in the checkpoint.

A subclass says how it rolls an episode out (`rollout`), what it learns from it (`learn`), what its agent must
save (`agent_state`, `restore_agent`) and what its final deterministic answer is (`conclude`).
"""

import time

from . import log


class AllocationLearner:
    desc = "search"

    def __init__(self, ctx):
        self.ctx = ctx
        self.best: dict | None = None

    # -- what a learner supplies ---------------------------------------------------------------------------
    def rollout(self, index: int) -> tuple[float, dict]:
        """(reward, info) of episode `index`; info as `AllocationEnv.step` gives it on the last layer."""
        raise NotImplementedError

    def learn(self, index: int, reward: float, info: dict) -> dict:
        """Store and update after episode `index`; the agent's fields for the log line."""
        raise NotImplementedError

    def agent_state(self) -> dict:
        raise NotImplementedError

    def restore_agent(self, state: dict) -> None:
        raise NotImplementedError

    def conclude(self) -> list[int]:
        """The final deterministic allocation (and the policy file)."""
        raise NotImplementedError

    # -- the `Learner` protocol of `ramp.engine.loop` ------------------------------------------------------
    def restore(self, state: dict | None) -> None:
        if state is None:
            return
        self.restore_agent(state)
        self.best = state["best"]
        if self.best is not None:  # checkpoints from before --quality ranked by perplexity
            self.best.setdefault("loss", self.best["ppl"])

    def episode(self, index: int) -> dict:
        started, eval_before = time.perf_counter(), self.ctx.eval_seconds
        reward, info = self.rollout(index)
        learned = time.perf_counter()
        fields = self.learn(index, reward, info)
        update_seconds = time.perf_counter() - learned
        self.best, feasible = log.track_best(self.ctx, self.best, info, index)
        return log.record(index, reward, info, feasible, fields, time.perf_counter() - started,
                          self.ctx.eval_seconds - eval_before, update_seconds)

    def state(self) -> dict:
        return self.agent_state() | {"best": self.best}

    def postfix(self, record: dict) -> dict:
        best = self.best
        return {"ppl": f"{record['ppl']:.2f}", "bpw": f"{record['bpw']:.2f}",
                "best": f"{best['ppl']:.2f}" if best else "-"}

    def answers(self) -> dict:
        """The result `ramp.engine.outputs.finish` takes: the deterministic rollout and the best feasible."""
        return log.answers(self.ctx, self.conclude(), self.best)
