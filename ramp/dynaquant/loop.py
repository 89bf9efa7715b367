"""`ramp search --algo ppo --reward dynaquant`: DynaQuant's PPO loop over bitsandbytes formats — resumable.

Per episode (algorithm 1): reset both models to the base, then one step per transformer block (or linear):
the policy samples a format, the environment quantizes, fine-tunes both models and pays eq. 5's reward.
After every episode (`episodes_per_update` 1) GAE (gamma 0.99, lambda 0.95) and the clipped PPO update run.
log.jsonl holds one line per episode (return, its four terms, final PPLs, memory, the formats, the PPO
losses); the checkpoint after each episode holds the agent, the state normaliser and the pending batch.
The answer is the deterministic (argmax) rollout after training, and the highest-return episode seen; each is
written as a HALO allocation (formats mapped to GGUF types, `formats.GGUF_TYPE`), so it exports to llama.cpp.
"""

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from calibration.errors import UserError
from halo import allocation as alloc_mod

from .. import checkpoint
from ..episode_log import reset_log
from ..ppo import PPO, PPOConfig
from ..ppo_loop import _update
from . import formats as fmt_mod
from .env import STATE_DIM, STATE_FEATURES, DQConfig, DynaQuantEnv
from .plots import format_heatmap, learning

FIELDS = ("obs", "action", "logp", "value", "reward", "done")


def episode(env: DynaQuantEnv, agent: PPO, index: int, deterministic: bool = False) -> tuple[dict, dict]:
    """One rollout; (transitions as arrays, summary of the episode)."""
    obs, rows, parts = env.reset(index, update_norm=not deterministic), [], []
    while True:
        action, logp, value = agent.act(obs, deterministic)
        next_obs, reward, done, info = env.step(action, update_norm=not deterministic)
        rows.append((obs, action, logp, value, reward, done))
        parts.append(info["parts"])
        obs = next_obs
        if done:
            data = {name: np.array([row[i] for row in rows]) for i, name in enumerate(FIELDS)}
            summary = {"return": float(data["reward"].sum()),
                       **{f"r_{k}": float(sum(p[k] for p in parts)) for k in parts[0]},
                       "ppl_quant": info["measure"]["ppl_quant"], "ppl_ref": info["measure"]["ppl_ref"],
                       "kl": info["measure"]["kl"], "formats": info["formats"],
                       "memory_bytes": memory_bytes(env.layers, info["formats"])}
            return data, summary


def memory_bytes(layers, formats: list[str]) -> int:
    """Bytes of the quantizable layers as bitsandbytes stores them."""
    return sum(fmt_mod.storage_bytes(f, (layer.out_features, layer.in_features)) for layer, f in zip(layers, formats))


def build(config, out: Path):
    """(env, agent, dq settings) for a search configuration."""
    from calibration.data import bos_id, calibration_windows, evaluation_windows, load_text, tokenize
    from calibration.layers import layer_table
    from calibration.models import load_model, load_tokenizer, resolve

    settings = config.extra.get("dynaquant", {})
    dq = DQConfig(**(settings | {"formats": tuple(fmt_mod.check_format(f) for f in config.actions)}))
    if dq.granularity not in ("block", "layer"):
        raise UserError(f"unknown --granularity {dq.granularity!r}; use block or layer")
    source = resolve(config.model)
    model, tokenizer = load_model(source), load_tokenizer(source)
    layers = layer_table(model, source.gguf_arch)
    tokens, bos = tokenize(tokenizer, load_text("wikitext2").text), bos_id(tokenizer)
    train = calibration_windows(tokens, config.calib_samples, config.calib_seq_len, config.seed, bos)
    held_out = evaluation_windows(tokens, config.eval_samples, config.eval_seq_len, config.seed, bos)
    env = DynaQuantEnv(model, layers, train, held_out, dq, config.seed)
    settings = {"gamma": 0.99, "lam": 0.95, "episodes_per_update": 1} | config.extra.get("ppo", {})  # per step
    agent = PPO(STATE_DIM, len(dq.formats), PPOConfig(**settings), seed=config.seed)
    return env, agent, dq, source


def run(config, out: Path, resume: bool) -> dict:
    env, agent, dq, source = build(config, out)
    state = checkpoint.load(out) if resume else None
    log_path, batch, best, start = out / "log.jsonl", [], None, 0
    if state is not None:
        agent.load_state_dict(state["agent"])
        env.norm.load_state_dict(state["norm"])
        batch, best, start = state["batch"], state["best"], int(state["episode"])
    reset_log(log_path, start if state is not None else None)
    tqdm.write(f"DynaQuant: {env.n_steps} steps per episode ({dq.granularity}), formats {','.join(dq.formats)}",
               file=sys.stderr)
    bar = tqdm(range(start, config.episodes), initial=start, total=config.episodes, desc="search (dynaquant)",
               unit="ep")
    for index in bar:
        started = time.perf_counter()
        data, summary = episode(env, agent, index)
        batch.append(data)
        losses = {}
        if len(batch) >= agent.config.episodes_per_update:
            losses, batch = _update(agent, batch), []
        if best is None or summary["return"] > best["return"]:
            best = summary | {"episode": index}
        with open(log_path, "a") as handle:
            handle.write(json.dumps({"episode": index, **summary, **losses,
                                     "seconds": time.perf_counter() - started}) + "\n")
        checkpoint.save(out, {"agent": agent.state_dict(), "norm": env.norm.state_dict(), "episode": index + 1,
                              "best": best, "batch": batch})
        bar.set_postfix(ret=f"{summary['return']:.2f}", ppl=f"{summary['ppl_quant']:.2f}",
                        mb=f"{summary['memory_bytes'] / 1e6:.1f}")
    _, final = episode(env, agent, config.episodes, deterministic=True)
    return finish(config, out, env, agent, dq, source, final, best)


def finish(config, out: Path, env, agent, dq, source, final: dict, best: dict) -> dict:
    from ..policy_io import save_policy

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    answers = {"deterministic": final, "best-return": best}
    for label, result in answers.items():
        types = [fmt_mod.GGUF_TYPE[f] for f in result["formats"]]
        meta = {"method": "ppo-dynaquant", "label": label, "seed": config.seed, "model": str(source.path),
                "dynaquant_formats": result["formats"], "memory_bytes_bnb": result["memory_bytes"],
                "return": result["return"], "imatrix": config.imatrix, "scale_fold": False}
        alloc = alloc_mod.resolve(env.layers, types, meta)
        alloc_mod.save(alloc, out / ("allocation.json" if label == "deterministic" else f"allocation-{label}.json"))
    learning(records, out / "learning.png")
    format_heatmap(records, dq.formats, env.n_steps, env.groups, out / "formats.png")
    card = {"algo": "ppo", "reward": "dynaquant", "features": list(STATE_FEATURES), "formats": list(dq.formats),
            "obs_dim": STATE_DIM,
            "training_model": str(source.path), "episodes": config.episodes, "seed": config.seed,
            "dynaquant": asdict(dq), "ppo": asdict(agent.config)}
    save_policy(out, "policy", agent.policy_state_dict(), card)
    summary = {"method": "ppo-dynaquant", "model": str(source.path), "dynaquant": asdict(dq), "seed": config.seed,
               "episodes": config.episodes, "model_params": env.model_params, "deterministic": final,
               "best_return": best, "chosen": "deterministic",
               "uniform_memory_bytes": {f: memory_bytes(env.layers, [f] * len(env.layers)) for f in dq.formats}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
