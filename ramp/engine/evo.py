"""(1 + lambda) evolution on the joint KL (`ramp search --algo evo`): the baseline any learned search must beat.

The knapsack (`ramp.engine.knapsack`) is exact when the layers' damage adds up; what it cannot see is the joint
loss of a whole allocation.  This search looks only at that, on the same evaluator as every other method:

* episode 0 scores the knapsack's allocation for the budget (from the same sensitivity table) and makes it the
  parent;
* every later episode scores one child of the parent, made by a budget-preserving level switch (EvoPress's
  mutation for layers of unequal sizes): `--evo-raises` random layers go one real type up, then random other
  layers go one type down until the allocation is within the budget again;
* after every `--evo-offspring` children the best of the parent and its children becomes the parent.
The search spends `--episodes` evaluations, the same count SAC is given.  Children are drawn from a stream seeded
by (seed, episode), so a resumed search repeats exactly what an uninterrupted one does.

The winner on the search's own windows is biased low (it was selected on them), so the answer is picked on a
confirmation split (`ramp.engine.confirm`): the `--evo-finalists` lowest-loss distinct allocations seen (the
knapsack's always among them) are scored on `--confirm-samples` further validation windows, disjoint from the
search's, and the lowest there is the answer.  The loss is the KL divergence from the base unless `--quality ppl` is given.
"""

import numpy as np

from halo import allocation as alloc_mod

from .. import sensitivity
from .confirm import choose, keep
from .knapsack import allocate
from .learner import AllocationLearner
from .loop import run_episodes


def levels(layer, actions, nominal: bool) -> tuple[list[tuple[int, float]], dict[int, int]]:
    """A layer's distinct real types as (the smallest width that gives it, its cost in bits), cheapest first (two
    widths that llama.cpp's fallback turns into one type are one level), and every width's level index."""
    by_type, type_of = {}, {}
    for bits in sorted(actions):
        choice = alloc_mod.choice(layer, bits)
        cost = bits * layer.params if nominal else choice.bytes * 8
        by_type.setdefault(choice.actual, (bits, cost))
        type_of[bits] = choice.actual
    ordered = sorted(by_type, key=lambda qtype: by_type[qtype][1])
    return [by_type[qtype] for qtype in ordered], {b: ordered.index(qtype) for b, qtype in type_of.items()}


class Mutator:
    """Budget-preserving level switches over per-layer level indices."""

    def __init__(self, layers, actions, budget, raises: int):
        pairs = [levels(layer, actions, budget.nominal) for layer in layers]
        self.levels, self.level_of = [p[0] for p in pairs], [p[1] for p in pairs]
        self.capacity = budget.target * sum(layer.params for layer in layers) + 1e-6
        self.raises = raises

    def index(self, bits: list[int]) -> list[int]:
        """Level indices of an allocation (a width maps to the level of its real type)."""
        return [of[int(b)] for of, b in zip(self.level_of, bits)]

    def bits(self, index: list[int]) -> list[int]:
        return [self.levels[i][k][0] for i, k in enumerate(index)]

    def cost(self, index: list[int]) -> float:
        return sum(self.levels[i][k][1] for i, k in enumerate(index))

    def child(self, parent: list[int], rng: np.random.Generator, tries: int = 20) -> tuple[list[int], int] | None:
        """(a mutated copy within the budget, layers lowered), or None when no switch fits."""
        n = len(parent)
        for _ in range(tries):
            index = list(parent)
            up = [i for i in range(n) if index[i] + 1 < len(self.levels[i])]
            if not up:
                return None
            raised = set(rng.choice(up, size=min(self.raises, len(up)), replace=False).tolist())
            for i in raised:
                index[i] += 1
            lowered = 0
            while self.cost(index) > self.capacity:
                down = [i for i in range(n) if i not in raised and index[i] > 0]
                if not down:
                    break
                index[int(rng.choice(down))] -= 1
                lowered += 1
            if self.cost(index) <= self.capacity and index != list(parent):
                return index, lowered
        return None


class EvoLearner(AllocationLearner):
    desc = "evo"

    def __init__(self, ctx):
        super().__init__(ctx)
        config = ctx.config
        record = sensitivity.table(ctx, config.sensitivity)
        self.table_cost = record.cost()
        self.start = allocate(ctx.layers, list(config.actions), record.table, ctx.budget)
        self.mutator = Mutator(ctx.layers, config.actions, ctx.budget, config.evo.raises)
        self.parent = {"index": self.mutator.index(self.start), "loss": None}
        self.generation_best = None   # (loss, index) of the best child of the current generation
        self.finalists = []           # [(loss, bits)], the lowest-loss distinct allocations seen

    def rollout(self, index: int) -> tuple[float, dict]:
        lowered = 0
        if index == 0:
            genome = self.parent["index"]
        else:
            rng = np.random.default_rng([self.ctx.config.seed, index])
            made = self.mutator.child(self.parent["index"], rng)
            genome, lowered = made if made is not None else (self.parent["index"], 0)
        bits = self.mutator.bits(genome)
        outcome = self.ctx.outcome(bits)[1]
        loss = self.ctx.loss(outcome)
        info = {"outcome": outcome, "bits": bits, "index": genome, "loss": loss, "r_quality": -loss,
                "r_budget": 0.0, "repaired_layers": lowered}
        return -loss, info

    def learn(self, index: int, reward: float, info: dict) -> dict:
        loss, genome = info["loss"], info["index"]
        self._keep(loss, info["bits"])
        if index == 0:
            self.parent = {"index": genome, "loss": loss}
            return {"parent_loss": loss, "generation": 0}
        if self.generation_best is None or loss < self.generation_best[0]:
            self.generation_best = (loss, genome)
        offspring = self.ctx.config.evo.offspring
        if index % offspring == 0:   # the generation is complete: the best of parent and children goes on
            if self.generation_best[0] < self.parent["loss"]:
                self.parent = {"index": self.generation_best[1], "loss": self.generation_best[0]}
            self.generation_best = None
        return {"parent_loss": self.parent["loss"], "generation": (index - 1) // offspring + 1}

    def _keep(self, loss: float, bits: list[int]) -> None:
        self.finalists = keep(self.finalists, loss, bits, self.ctx.config.evo.finalists)

    def agent_state(self) -> dict:
        return {"parent": self.parent, "generation_best": self.generation_best, "finalists": self.finalists}

    def restore_agent(self, state: dict) -> None:
        self.parent, self.finalists = state["parent"], [tuple(item) for item in state["finalists"]]
        self.generation_best = tuple(state["generation_best"]) if state["generation_best"] else None

    def postfix(self, record: dict) -> dict:
        return {"loss": f"{record['r_quality'] * -1:.4f}", "parent": f"{record['parent_loss']:.4f}"}

    def answers(self) -> dict:
        """The finalists (the knapsack's among them) scored on the confirmation split (`ramp.engine.confirm`)."""
        candidates = [bits for _, bits in self.finalists]
        if self.start not in candidates and len(candidates) >= self.ctx.config.evo.finalists:
            candidates = candidates[:-1]   # the knapsack's takes the last place
        return choose(self.ctx, candidates, self.start) | {"sensitivity": self.table_cost}


def train(ctx, resume: bool) -> dict:
    learner = EvoLearner(ctx)
    run_episodes(ctx.out, ctx.config.episodes, learner, resume)
    return learner.answers()
