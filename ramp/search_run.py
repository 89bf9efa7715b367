"""`ramp search`: learn a per-layer bit allocation under a budget (SAC), or compute a baseline one.

Stages, each reusable: calibrate (artifact reused when inputs match) -> build the evaluator (exact
libggml weights, cached) -> episodes -> outputs.  The SAC loop checkpoints after every episode, so a
killed search resumes with `--resume` and ends exactly where an uninterrupted run would.
"""

import json
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from calibration import artifact
from calibration.errors import UserError
from calibration.memory import load_within
from calibration.models import resolve
from calibration.pipeline import CalibrationConfig, calibrate
from halo import allocation as alloc_mod

from . import __version__, checkpoint
from .budget import allocation_bpw, make_budget
from .defaults import EVAL_SAMPLES, EVAL_SEQ_LEN, UPDATES_PER_EPISODE
from .env import AllocationEnv, Outcome
from .evaluator import make_evaluator
from .policy_io import save_policy
from .replay import ReplayBuffer
from .reward import reward_terms
from .sac import SAC, SACConfig


@dataclass
class SearchConfig:
    """Everything `ramp search` reads; saved as config.json in the output directory."""

    model: str = "default"
    algo: str = "sac"                     # sac | ppo | greedy | uniform
    actions: tuple = (3, 4, 5, 6)          # bit widths; bitsandbytes format names with reward "dynaquant"
    budget: float | None = None           # target bpw of the quantizable layers (default 4.5, real bytes)
    ceiling: float | None = None          # default budget + 0.25
    nominal_bits: bool = False            # count the paper's nominal bits instead of real bytes
    target_size: int | None = None        # bytes of the whole file instead of --budget
    episodes: int = 200
    warmup_episodes: int = 20
    updates_per_episode: int | None = UPDATES_PER_EPISODE  # None: one per layer (CleanRL's ratio)
    reward: str = "quality-first"         # quality-first (eq. 19-21) | linear | naive (table 20's ablation) | dynaquant
    budget_mode: str = "reward"           # reward: eq. 20 steers (the paper); repair: lowered to budget, then scored
    quality: str = "ppl"                  # ppl: eq. 19 on the evaluator's perplexity (the paper); kld: on exp(KLD)
    credit: str = "episode"               # episode: every layer gets the final reward; terminal: the paper's
    eval_samples: int = EVAL_SAMPLES
    eval_seq_len: int = EVAL_SEQ_LEN
    calibration: str | None = None        # artifact directory; default: OUT/calibration
    calib_samples: int = 128
    calib_seq_len: int = 512
    imatrix: bool = True
    scale_fold: bool = False
    seed: int = 0
    plan: str = "auto"                    # evaluator memory plan
    max_memory: int | None = None         # bytes the model may take (default half the free memory); more: streamed
    workers: int = 0                      # SAC episodes on this many Ray workers (0: in this process)
    ray_address: str | None = None        # an existing Ray cluster; default: start a local one
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self) | {"actions": list(self.actions)}


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


@dataclass
class Context:
    """What every algorithm works with."""

    config: SearchConfig
    out: Path
    source: object
    calibration: object
    layers: list
    evaluator: object
    budget: object
    base: object
    scored: dict = field(default_factory=dict)
    eval_seconds: float = 0.0             # time spent in the evaluator so far (forward passes + scoring)
    offload: object = None                # the folder a streamed model's weights live in (removed with the run)

    def outcome(self, bits: list) -> tuple[alloc_mod.Allocation, Outcome]:
        """The allocation and its evaluation; an allocation seen before (finish() revisits the chosen and
        the uniform ones) is not evaluated again, since the evaluator is deterministic."""
        key = tuple(int(b) for b in bits)
        alloc = alloc_mod.resolve(self.layers, key)
        if key not in self.scored:
            result = self.evaluator.evaluate_allocation(alloc)
            self.eval_seconds += result.seconds
            self.scored[key] = Outcome(ppl=result.ppl, kld=result.kld, bpw=allocation_bpw(alloc, self.budget.nominal),
                                       real_bpw=alloc.bpw, nominal_bpw=alloc.nominal_bpw)
        return alloc, self.scored[key]

    def feasible(self, outcome: Outcome) -> bool:
        return outcome.bpw <= self.budget.target + 1e-9

    def loss(self, outcome: Outcome) -> float:
        """What the search minimises among feasible allocations: perplexity, or KL divergence to the base."""
        return outcome.kld if self.config.quality == "kld" else outcome.ppl


def prepare(config: SearchConfig, out: Path, evaluator_factory=None) -> Context:
    """Calibrate (or reuse), load, fold if asked, check the budget, build the evaluator.

    `evaluator_factory(calibration)`, when given, supplies the evaluator instead of a local one (the Ray
    search's driver scores on a worker's replica and loads no model of its own unless the budget needs it)."""
    if config.episodes < 1 and config.algo in ("sac", "ppo"):
        raise UserError("--episodes must be at least 1")
    if len(set(config.actions)) != len(config.actions) or len(config.actions) < 2:
        raise UserError(f"--actions needs at least two distinct bit widths, got {list(config.actions)}")
    reward_terms(config.reward)  # an unknown reward fails before any work
    if config.quality not in ("ppl", "kld"):
        raise UserError(f"unknown --quality {config.quality!r}; use ppl or kld")
    if config.budget_mode not in ("reward", "repair"):
        raise UserError(f"unknown --budget-mode {config.budget_mode!r}; use reward or repair")
    source = resolve(config.model)
    cal_dir = Path(config.calibration) if config.calibration else out / "calibration"
    if config.calibration and not (cal_dir / artifact.MANIFEST).exists():
        raise UserError(f"calibration artifact not found: {cal_dir}")
    cal = artifact.read(cal_dir) if config.calibration else calibrate(
        CalibrationConfig(model=config.model, samples=config.calib_samples, seq_len=config.calib_seq_len,
                          seed=config.seed, max_memory=config.max_memory), cal_dir)
    offload = tempfile.TemporaryDirectory(prefix=".offload-", dir=out)  # used only if the model must stream
    model = None
    if config.target_size or evaluator_factory is None:
        model = load_within(source, "cpu", "float32", Path(offload.name), config.max_memory, _log)
        if config.target_size and getattr(model, "hf_device_map", None) is not None:
            raise UserError("--target-size needs the whole model in memory; give --budget (bits per weight) "
                            "for a model that is streamed from disk")
    layers = cal.layers
    other = _other_bytes(model, source, cal) if config.target_size else 0
    budget = make_budget(layers, config.actions, config.budget, config.ceiling, config.nominal_bits,
                         config.target_size, other)
    if evaluator_factory is not None:
        evaluator = evaluator_factory(cal)
    else:
        evaluator = make_evaluator(model, source, cal, [str(b) for b in config.actions], config.eval_samples,
                                   config.eval_seq_len, config.seed, config.imatrix, config.scale_fold,
                                   plan=config.plan)
    base = evaluator.evaluate([None] * len(layers))
    _log(f"base model ({source.weights_name}): PPL {base.ppl:.3f} on {config.eval_samples} x {config.eval_seq_len} "
         f"held-out validation tokens; budget {budget.target:.3f} (ceiling {budget.ceiling:.3f}) "
         f"{'nominal bits' if budget.nominal else 'bpw, real bytes'}")
    return Context(config, out, source, cal, layers, evaluator, budget, base, offload=offload)


def _other_bytes(model, source, cal) -> int:
    """Bytes of everything in the exported file but the quantizable layers' data: embeddings/head per Q4_K_M, F32
    rest, the header (the source's keys and HALO's own at their largest, and every tensor's info) and the worst
    alignment padding of every tensor — an upper bound, so a file budgeted to N bytes is never larger than N."""
    from calibration.layers import special_tensors
    from halo import qtypes
    from halo.exporter import metadata_extra_bound
    from halo.gguf_meta import source_metadata
    from halo.layout import gguf_tensors
    from halo.specials import special_types
    from halo.writer import header_bytes

    specials = special_types(special_tensors(model, source.gguf_arch))
    layer_names = [layer.gguf_name for layer in cal.layers]
    total = 0
    tensors = gguf_tensors(model, source)
    for name, array in tensors.items():
        if name in layer_names:
            continue
        qtype = specials.get(name, qtypes.QType.F32)
        total += qtypes.tensor_bytes(qtype, array.shape if array.ndim > 1 else (1, array.shape[0]))
    metadata = source_metadata(source, metadata_extra_bound(layer_names, list(specials)))
    total += header_bytes(metadata, {n: a.shape for n, a in tensors.items()})
    alignment = int(metadata.get("general.alignment") or 32)
    return total + (alignment - 1) * len(tensors)  # each tensor's data starts on an alignment boundary


def run(config: SearchConfig, out: Path, resume: bool = False) -> dict:
    """Run the configured search into `out`; returns the summary written to summary.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    if resume:
        if not config_path.exists():
            raise UserError(f"nothing to resume in {out}: no config.json")
        saved = json.loads(config_path.read_text())
        address = config.ray_address  # where the cluster is may change between runs; nothing else may
        config = SearchConfig(**(saved | {"actions": tuple(saved["actions"])}))
        config.ray_address = address or config.ray_address
    elif (out / checkpoint.NAME).exists():
        raise UserError(f"{out} holds a search already; use --resume to continue it or choose another --out")
    else:
        config_path.write_text(json.dumps(config.to_json(), indent=1))
    if config.reward == "dynaquant":  # its own environment: bitsandbytes formats, fine-tuning, per-step reward
        from .dynaquant.loop import run as run_dynaquant

        return run_dynaquant(config, out, resume)
    if config.workers:
        return _run_on_ray(config, out, resume)
    ctx = prepare(config, out)
    if config.algo == "sac":
        from .sac_loop import train

        result = train(ctx, resume)
    elif config.algo == "ppo":
        from .ppo_loop import train

        result = train(ctx, resume)
    elif config.algo == "greedy":
        from .greedy import greedy_search

        result = greedy_search(ctx)
    elif config.algo == "uniform":
        result = uniform_search(ctx)
    else:
        raise UserError(f"unknown --algo {config.algo!r}; use sac, ppo, greedy or uniform")
    return finish(ctx, result)


def _run_on_ray(config: SearchConfig, out: Path, resume: bool) -> dict:
    """The SAC search with its episodes on `config.workers` Ray actors (`ramp.ray_search`)."""
    if config.algo != "sac" or config.workers < 1:
        raise UserError("--workers N (N >= 1) runs SAC episodes on Ray; use it with --algo sac")
    try:
        from . import ray_search
    except ImportError:
        raise UserError("--workers needs Ray: pip install 'ray>=2.9'") from None
    workers = []

    def remote_evaluator(cal):
        workers.extend(ray_search.start_workers(config, out, cal, config.ray_address))
        return ray_search.RemoteEvaluator(workers[0], cal.layers)

    try:
        ctx = prepare(config, out, remote_evaluator)
        return finish(ctx, ray_search.train(ctx, resume, workers))
    finally:
        ray_search.stop_workers(workers)


def uniform_search(ctx: Context) -> dict:
    """Every uniform allocation of the action set; the best one within the budget is the answer."""
    rows = []
    for bits in ctx.config.actions:
        alloc, outcome = ctx.outcome([bits] * len(ctx.layers))
        rows.append({"bits": bits, "ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw,
                     "feasible": ctx.feasible(outcome)})
        _log(f"uniform {bits}: PPL {outcome.ppl:.3f}, KLD {outcome.kld:.4f}, {outcome.bpw:.3f} bpw")
    feasible = [r for r in rows if r["feasible"]]
    best = min(feasible, key=lambda r: r["ppl"]) if feasible else min(rows, key=lambda r: r["bpw"])
    return {"allocations": {"best": [best["bits"]] * len(ctx.layers)}, "chosen": "best", "uniform": rows}


def _lowest_feasible(ctx: Context, result: dict) -> str:
    """Of the loop's answers (the best episode seen, the final deterministic rollout), the feasible one lowest in
    loss; ties and an all-infeasible set keep the loop's own choice.  The final policy's rollout is never an
    episode of the search, so it can beat every allocation the search tried."""
    chosen = result["chosen"]
    losses = {}
    for label, bits in result["allocations"].items():
        outcome = ctx.outcome(bits)[1]
        if ctx.feasible(outcome):
            losses[label] = ctx.loss(outcome)
    if not losses:
        return chosen
    label = min(sorted(losses, key=lambda lab: lab != chosen), key=losses.get)
    if label != chosen:
        _log(f"the {label} allocation is within the budget and lower in loss than the {chosen} one; it is chosen")
    return label


def finish(ctx: Context, result: dict) -> dict:
    """Write the allocation files, plots and summary; every method lands in the same outputs."""
    from . import plots
    from .repair import repair

    result["chosen"] = chosen = _lowest_feasible(ctx, result)
    if not ctx.feasible(ctx.outcome(result["allocations"][chosen])[1]):
        bits, lowered = repair(result["allocations"][chosen], ctx.layers, ctx.config.actions, ctx.budget)
        label = f"{chosen}-repaired"
        result["allocations"][label], result["chosen"] = bits, label
        _log(f"no allocation within the budget was found; the {chosen} one was repaired by lowering {lowered} layers")
        # never hand out something worse than a uniform allocation that fits the same budget
        best_loss = ctx.loss(ctx.outcome(bits)[1])
        for b in ctx.config.actions:
            outcome = ctx.outcome([b] * len(ctx.layers))[1]
            if ctx.feasible(outcome) and ctx.loss(outcome) < best_loss:
                best_loss, result["chosen"] = ctx.loss(outcome), f"uniform-{b}"
                result["allocations"][f"uniform-{b}"] = [b] * len(ctx.layers)
        if result["chosen"] != label:
            _log(f"uniform {result['chosen'][8:]} bits beats the repaired allocation within the budget; it is chosen")

    summary = {"method": ctx.config.algo, "model": str(ctx.source.path), "budget": asdict(ctx.budget),
               "calibration": str(ctx.calibration.path),
               "base": {"ppl": ctx.base.ppl}, "seed": ctx.config.seed, "version": __version__,
               "python": platform.python_version(), "allocations": {}}
    for label, bits in result["allocations"].items():
        alloc, outcome = ctx.outcome(bits)
        alloc.meta = {"method": ctx.config.algo, "label": label, "seed": ctx.config.seed,
                      "budget": asdict(ctx.budget), "predicted": {"ppl": outcome.ppl, "kld": outcome.kld},
                      "base_ppl": ctx.base.ppl, "model": str(ctx.source.path),
                      "calibration": str(ctx.calibration.path), "imatrix": ctx.config.imatrix,
                      "scale_fold": ctx.config.scale_fold}
        name = "allocation.json" if label == result["chosen"] else f"allocation-{label}.json"
        alloc_mod.save(alloc, ctx.out / name)
        if label == result["chosen"]:
            alloc_mod.save(alloc, ctx.out / f"allocation-{label}.json")
        summary["allocations"][label] = {"file": name, "ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw,
                                         "real_bpw": alloc.bpw, "bytes": alloc.bytes,
                                         "feasible": ctx.feasible(outcome)}
        plots.bits_per_layer(ctx.layers, bits, ctx.out / f"bits-{label}.png",
                             f"{ctx.config.algo} {label}: PPL {outcome.ppl:.3f} at {outcome.bpw:.3f} bpw")
    summary["chosen"] = result["chosen"]
    summary |= {k: v for k, v in result.items() if k not in ("allocations", "chosen")}
    summary["uniform_baselines"] = {}
    for bits in ctx.config.actions:
        _, outcome = ctx.outcome([bits] * len(ctx.layers))
        summary["uniform_baselines"][str(bits)] = {"ppl": outcome.ppl, "kld": outcome.kld, "bpw": outcome.bpw}
    log_path = ctx.out / "log.jsonl"
    records = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    if records:
        plots.learning_curves(records, ctx.out / "learning.png", ctx.budget.target, ctx.budget.ceiling)
    points = {f"uniform {b}": (v["bpw"], v["ppl"]) for b, v in summary["uniform_baselines"].items()}
    points |= {f"{ctx.config.algo} {label}": (v["bpw"], v["ppl"]) for label, v in summary["allocations"].items()}
    plots.size_ppl_plane(records, points, ctx.out / "size-ppl.png")
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def policy_card(ctx: Context, agent, episodes: int) -> dict:
    import torch
    import transformers

    cal = ctx.calibration
    return {"action_bits": list(ctx.config.actions), "architecture": cal.manifest["model"]["architecture"],
            "training_model": str(ctx.source.path), "training_model_sha256": cal.manifest["model"]["sha256"],
            "standardisation": cal.manifest["standardisation"], "budget": asdict(ctx.budget), "episodes": episodes,
            "seed": ctx.config.seed, "algo": ctx.config.algo, ctx.config.algo: asdict(agent.config),
            "versions": {"ramp": __version__, "torch": torch.__version__, "transformers": transformers.__version__},
            "obs_dim": agent.obs_dim}


def write_policy(ctx: Context, agent, episodes: int) -> Path:
    return save_policy(ctx.out, "policy", agent.policy_state_dict(), policy_card(ctx, agent, episodes))


def sac_config(ctx: Context) -> SACConfig:
    return SACConfig(warmup_episodes=ctx.config.warmup_episodes, updates_per_episode=ctx.config.updates_per_episode)


def new_agent(ctx: Context) -> tuple[SAC, ReplayBuffer]:
    config = sac_config(ctx)
    agent = SAC(11, config, seed=ctx.config.seed)
    return agent, ReplayBuffer(config.buffer_capacity, 11, seed=ctx.config.seed + 2)


def new_env(ctx: Context) -> AllocationEnv:
    from .repair import repair

    cal = ctx.calibration
    constrain = None
    if ctx.config.budget_mode == "repair":
        def constrain(bits):
            return repair(bits, ctx.layers, ctx.config.actions, ctx.budget)
    return AllocationEnv(cal.embedding, cal.tensors["embedding_mean"], cal.tensors["embedding_std"],
                         ctx.config.actions, lambda bits: ctx.outcome(bits)[1], ctx.base.ppl, ctx.budget,
                         ctx.config.reward, constrain, ctx.config.quality)


def rollout(env: AllocationEnv, act) -> tuple[list[int], float, dict]:
    """One episode with `act(obs) -> action`; returns (bits, reward, info) and the transitions in info."""
    obs, transitions = env.reset(), []
    while True:
        action = act(obs)
        next_obs, reward, done, info = env.step(action)
        transitions.append((obs, action, reward, next_obs, done))
        obs = next_obs
        if done:
            info["transitions"] = transitions
            return info["bits"], reward, info
