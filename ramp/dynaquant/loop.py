"""`ramp search --algo ppo --reward dynaquant`: DynaQuant's PPO loop over bitsandbytes formats — resumable.

Per episode (algorithm 1): reset both models to the base, then one step per transformer block (or linear):
the policy samples a format, the environment quantizes, fine-tunes both models and pays eq. 5's reward.
After every episode (`episodes_per_update` 1) GAE (gamma 0.99, lambda 0.95) and the clipped PPO update run.
log.jsonl holds one line per episode (return, its four terms, final PPLs, memory, the formats, the PPO
losses); the checkpoint after each episode holds the agent, the state normaliser and the pending batch.
The answer is the deterministic (argmax) rollout after training, and the highest-return episode seen; each is
written as a HALO allocation (formats mapped to GGUF types, `formats.GGUF_TYPE`), so it exports to llama.cpp.
"""

import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from halo import allocation as alloc_mod
from ramputils.atomic import write_json

from ..agents.policy_io import save_policy
from ..agents.ppo import PPO, stack_episode, update_on_episodes
from ..engine import log
from ..engine.loop import run_episodes
from . import formats as fmt_mod
from .env import STATE_DIM, STATE_FEATURES, DynaQuantEnv
from .plots import format_heatmap, learning


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
            data = stack_episode(rows)
            summary = {"return": float(data["reward"].sum()),
                       **{f"r_{k}": float(sum(p[k] for p in parts)) for k in parts[0]},
                       "ppl_quant": info["measure"]["ppl_quant"], "ppl_ref": info["measure"]["ppl_ref"],
                       "kl": info["measure"]["kl"], "formats": info["formats"],
                       "memory_bytes": memory_bytes(env.layers, info["formats"])}
            return data, summary


def memory_bytes(layers, formats: list[str]) -> int:
    """Bytes of the quantizable layers as bitsandbytes stores them."""
    return sum(fmt_mod.storage_bytes(f, (layer.out_features, layer.in_features)) for layer, f in zip(layers, formats))


def build(config):
    """(env, agent, source) for a search configuration (its `dynaquant` and `ppo` sections)."""
    from calibration.data import (
        bos_id,
        calibration_windows,
        evaluation_windows,
        load_text,
        tokenize,
    )
    from calibration.layers import layer_table
    from calibration.models import load_model, load_tokenizer, resolve

    source = resolve(config.model)
    model, tokenizer = load_model(source), load_tokenizer(source)
    layers = layer_table(model, source.gguf_arch)
    tokens, bos = tokenize(tokenizer, load_text("wikitext2").text), bos_id(tokenizer)
    train = calibration_windows(tokens, config.calib_samples, config.calib_seq_len, config.seed, bos)
    held_out = evaluation_windows(tokens, config.windows.samples, config.windows.seq_len, config.seed, bos)
    env = DynaQuantEnv(model, layers, train, held_out, config.dynaquant, config.seed)
    agent = PPO(STATE_DIM, len(config.dynaquant.formats), config.ppo, seed=config.seed)
    return env, agent, source


class DynaQuantLearner:
    """The `ramp.engine.loop.Learner` of DynaQuant's mode: one episode of `episode`, a PPO update per batch."""

    desc = "search (dynaquant)"

    def __init__(self, env: DynaQuantEnv, agent: PPO):
        self.env, self.agent = env, agent
        self.batch, self.best = [], None

    def restore(self, state: dict | None) -> None:
        if state is not None:
            self.agent.load_state_dict(state["agent"])
            self.env.norm.load_state_dict(state["norm"])
            self.batch, self.best = state["batch"], state["best"]

    def episode(self, index: int) -> dict:
        started = time.perf_counter()
        data, summary = episode(self.env, self.agent, index)
        self.batch.append(data)
        losses = {}
        if len(self.batch) >= self.agent.config.episodes_per_update:
            losses, self.batch = update_on_episodes(self.agent, self.batch), []
        if self.best is None or summary["return"] > self.best["return"]:
            self.best = summary | {"episode": index}
        return {"episode": index, **summary, **losses, "seconds": time.perf_counter() - started}

    def state(self) -> dict:
        return {"agent": self.agent.state_dict(), "norm": self.env.norm.state_dict(), "best": self.best,
                "batch": self.batch}

    def postfix(self, record: dict) -> dict:
        return {"ret": f"{record['return']:.2f}", "ppl": f"{record['ppl_quant']:.2f}",
                "mb": f"{record['memory_bytes'] / 1e6:.1f}"}


def run(config, out: Path, resume: bool) -> dict:
    env, agent, source = build(config)
    tqdm.write(f"DynaQuant: {env.n_steps} steps per episode ({config.dynaquant.granularity}), formats "
               f"{','.join(config.dynaquant.formats)}", file=sys.stderr)
    learner = DynaQuantLearner(env, agent)
    run_episodes(out, config.episodes, learner, resume)
    _, final = episode(env, agent, config.episodes, deterministic=True)
    return finish(config, out, env, agent, source, final, learner.best)


def finish(config, out: Path, env, agent, source, final: dict, best: dict) -> dict:
    dq = config.dynaquant
    records = log.read(out)
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
    write_json(out / "summary.json", summary)
    return summary
