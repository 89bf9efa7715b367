"""Bookkeeping the learning loops (SAC, PPO) share: log.jsonl, the best feasible allocation seen, the answers.

One line per episode goes to log.jsonl; on resume the log is cut back to the checkpoint's episode count
(a killed episode may have left a line the checkpoint does not know).  The best feasible allocation is
ranked by the search's loss (perplexity or KLD, `Context.loss`).
"""

import json

from tqdm.auto import tqdm


def reset_log(log_path, start: int | None) -> None:
    """A fresh run (start None) removes an old log; a resumed one keeps its first `start` lines (a killed
    episode may have left a line the checkpoint does not know)."""
    if start is None:
        log_path.unlink(missing_ok=True)
        return
    lines = log_path.read_text().splitlines()[:start] if log_path.exists() else []
    log_path.write_text("".join(line + "\n" for line in lines))


def restart(ctx, state: dict | None) -> tuple[int, dict | None]:
    """(first episode, best so far) from a checkpoint state, or (0, None) with any old log removed."""
    if state is None:
        reset_log(ctx.out / "log.jsonl", None)
        return 0, None
    start, best = int(state["episode"]), state["best"]
    reset_log(ctx.out / "log.jsonl", start)
    if best is not None:  # checkpoints from before --quality ranked by perplexity
        best.setdefault("loss", best["ppl"])
    tqdm.write(f"resuming at episode {start} of {ctx.config.episodes}")
    return start, best


def track_best(ctx, best: dict | None, info: dict, episode: int) -> tuple[dict | None, bool]:
    """(best feasible so far, whether this episode was feasible)."""
    outcome = info["outcome"]
    feasible = ctx.feasible(outcome)
    if feasible and (best is None or ctx.loss(outcome) < best["loss"]):
        best = {"ppl": outcome.ppl, "kld": outcome.kld, "loss": ctx.loss(outcome), "bpw": outcome.bpw,
                "episode": episode, "bits": info["bits"]}
    return best, feasible


def append(ctx, episode: int, reward: float, info: dict, feasible: bool, agent_fields: dict, seconds: float,
           eval_seconds: float, update_seconds: float) -> None:
    """One log.jsonl line: reward terms, the evaluator's outcome, the agent's own fields, wall times, bits."""
    outcome = info["outcome"]
    record = {"episode": episode, "reward": reward, "r_quality": info["r_quality"], "r_budget": info["r_budget"],
              "ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw, "real_bpw": outcome.real_bpw,
              "nominal_bpw": outcome.nominal_bpw, "feasible": feasible, **agent_fields, "seconds": seconds,
              "eval_seconds": eval_seconds, "update_seconds": update_seconds, "bits": info["bits"],
              "repaired_layers": info["repaired_layers"]}
    with open(ctx.out / "log.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def answers(ctx, deterministic: list[int], best: dict | None) -> dict:
    """The loop's result for `search_run.finish`: the deterministic rollout and, when one was seen, the best
    feasible."""
    allocations = {"deterministic": deterministic}
    if best is not None:
        allocations["best"] = best["bits"]
    return {"allocations": allocations, "chosen": "best" if best is not None else "deterministic",
            "episodes": ctx.config.episodes, "best_episode": best["episode"] if best else None}


def postfix(bar, info: dict, best: dict | None) -> None:
    outcome = info["outcome"]
    bar.set_postfix(ppl=f"{outcome.ppl:.2f}", bpw=f"{outcome.bpw:.2f}", best=f"{best['ppl']:.2f}" if best else "-")
