"""log.jsonl, one line per episode, and the bookkeeping of the allocation searches: the best feasible allocation
seen (ranked by the search's loss, `Context.loss`) and the answers handed to `ramp.engine.outputs.finish`.

On resume the log is cut back to the checkpoint's episode count (a killed episode may have left a line the
checkpoint does not know).
"""

import json
from pathlib import Path

NAME = "log.jsonl"


def reset(out: Path, start: int | None) -> None:
    """A fresh run (start None) removes an old log; a resumed one keeps its first `start` lines."""
    path = Path(out) / NAME
    if start is None:
        path.unlink(missing_ok=True)
        return
    lines = path.read_text().splitlines()[:start] if path.exists() else []
    path.write_text("".join(line + "\n" for line in lines))


def append(out: Path, record: dict) -> None:
    with open(Path(out) / NAME, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read(out: Path) -> list[dict]:
    path = Path(out) / NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def track_best(ctx, best: dict | None, info: dict, episode: int) -> tuple[dict | None, bool]:
    """(best feasible so far, whether this episode was feasible)."""
    outcome = info["outcome"]
    feasible = ctx.feasible(outcome)
    if feasible and (best is None or ctx.loss(outcome) < best["loss"]):
        best = {"ppl": outcome.ppl, "kld": outcome.kld, "loss": ctx.loss(outcome), "bpw": outcome.bpw,
                "episode": episode, "bits": info["bits"]}
    return best, feasible


def record(episode: int, reward: float, info: dict, feasible: bool, agent_fields: dict, seconds: float,
           eval_seconds: float, update_seconds: float) -> dict:
    """One log line of an allocation search: reward terms, the evaluator's outcome, the agent's own fields, wall
    times, bits."""
    outcome = info["outcome"]
    return {"episode": episode, "reward": reward, "r_quality": info["r_quality"], "r_budget": info["r_budget"],
            "ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw, "real_bpw": outcome.real_bpw,
            "nominal_bpw": outcome.nominal_bpw, "feasible": feasible, **agent_fields, "seconds": seconds,
            "eval_seconds": eval_seconds, "update_seconds": update_seconds, "bits": info["bits"],
            "repaired_layers": info["repaired_layers"]}


def answers(ctx, deterministic: list[int], best: dict | None) -> dict:
    """A learner's result for `outputs.finish`: the deterministic rollout and, when one was seen, the best
    feasible allocation."""
    allocations = {"deterministic": deterministic}
    if best is not None:
        allocations["best"] = best["bits"]
    return {"allocations": allocations, "chosen": "best" if best is not None else "deterministic",
            "episodes": ctx.config.episodes, "best_episode": best["episode"] if best else None}
