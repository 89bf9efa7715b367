"""The DynaQuant mode's settings and the names they use (formats, eq. 5's weights); no torch, so the command line
reads them for --help."""

from dataclasses import dataclass

from ramputils.errors import UserError

from .fields import option

FORMATS = ("nf4", "fp4", "int8", "fp16")
DEFAULT_WEIGHTS = (6.0, 5.0, 0.8, 4.0)


def check_format(name: str) -> str:
    """The canonical lowercase format name, or a UserError listing FORMATS."""
    canon = name.strip().lower() if isinstance(name, str) else name
    if canon not in FORMATS:
        raise UserError(f"unknown weight format {name!r}; choose one of: {', '.join(FORMATS)}")
    return canon


def parse_weights(text) -> tuple[float, float, float, float]:
    """`--reward-weights w_perf,w_KL,w_ent,w_mem` (four numbers)."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UserError(f"--reward-weights needs four numbers w_perf,w_KL,w_ent,w_mem, got {text!r}") from None
    if len(values) != 4:
        raise UserError(f"--reward-weights needs four numbers w_perf,w_KL,w_ent,w_mem, got {len(values)}")
    return values


def positive_float(text) -> float:
    """A number above 0 (the fine-tuning learning rate)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(f"--ft-lr must be a number, got {text!r}") from None
    if not value > 0:
        raise UserError(f"--ft-lr must be positive, got {text}")
    return value


@dataclass
class DQConfig:
    """The DynaQuant mode's settings (config.json's `dynaquant` section)."""

    formats: tuple[str, ...] = FORMATS
    """The action set, bitsandbytes formats."""
    granularity: str = option("block", "dynaquant: one step per transformer block (the paper) or per linear layer",
                              choices=("block", "layer"))
    """block: one step per transformer block, all its linears take the action (the paper); layer: one per linear."""
    weights: tuple[float, ...] = option(DEFAULT_WEIGHTS, "dynaquant: w_perf,w_KL,w_ent,w_mem of eq. 5",
                                        name="reward_weights", parse=parse_weights)
    """w_perf, w_KL, w_ent, w_mem of eq. 5 (the DynaQuant README's values)."""
    ft_steps: int = option(2, "dynaquant: AdamW steps per model after each step", positive=True)
    """AdamW steps per model after each action (algorithm 1's short fine-tuning)."""
    ft_lr: float = option(5e-5, "dynaquant: fine-tuning learning rate", parse=positive_float)
    """Fine-tuning learning rate."""
    ft_batch: int = option(2, "dynaquant: calibration windows per fine-tuning mini-batch", positive=True)
    """Calibration windows per fine-tuning mini-batch."""
    ema_decay: float = 0.9
    """Decay of the reward-term EMAs in the state."""
