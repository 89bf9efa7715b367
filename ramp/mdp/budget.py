"""Budgets in the units a deployer means: bits per weight of the quantizable layers, or a file size.

Bits per weight are honest by default: real bytes after llama.cpp's fallbacks x 8 / weights of the
quantizable layers (Q4_K really costs 4.5 bpw).  `nominal=True` counts the paper's way (the mean of
the nominal bit widths) to reproduce it.  A `--target-size` in bytes of the whole file is turned into
the layers' bpw by taking off what the rest of the file costs (embeddings, head, norms, metadata).
"""

from dataclasses import dataclass

from halo import allocation as alloc_mod
from ramputils.errors import UserError

DEFAULT_BUDGET = 4.5
CEILING_MARGIN = 0.25


@dataclass(frozen=True)
class Budget:
    """Bits-per-weight target and ceiling of eq. 20, and how bits are counted."""

    target: float
    ceiling: float
    nominal: bool = False   # count the paper's nominal bits instead of real bytes


def allocation_bpw(alloc: alloc_mod.Allocation, nominal: bool) -> float:
    return alloc.nominal_bpw if nominal else alloc.bpw


def reachable(layers, action_bits, nominal: bool = False) -> tuple[float, float]:
    """(smallest, largest) bpw the action set can reach on these layers, layer by layer."""
    options = [alloc_mod.resolve(layers, [b] * len(layers)) for b in action_bits]
    if nominal:
        return min(action_bits), max(action_bits)
    params = sum(layer.params for layer in layers)
    per_layer = [[option.choices[i].bytes for option in options] for i in range(len(layers))]
    return sum(map(min, per_layer)) * 8 / params, sum(map(max, per_layer)) * 8 / params


def size_to_bpw(target_size: int, other_bytes: int, layer_params: int) -> float:
    """The quantizable layers' bpw that makes the whole file `target_size` bytes."""
    room = target_size - other_bytes
    if room <= 0:
        raise UserError(f"--target-size {target_size} is below what the file needs besides the quantizable "
                        f"layers ({other_bytes} bytes)")
    return room * 8 / layer_params


def make_budget(layers, action_bits, target: float | None = None, ceiling: float | None = None,
                nominal: bool = False, target_size: int | None = None, other_bytes: int = 0) -> Budget:
    """Check and build the budget; a target below the smallest reachable size is refused."""
    if target is not None and target_size is not None:
        raise UserError("give either --budget or --target-size, not both")
    if target_size is not None:
        if nominal:
            raise UserError("--target-size counts real bytes; it cannot be combined with --nominal-bits")
        target = size_to_bpw(target_size, other_bytes, sum(layer.params for layer in layers))
    target = DEFAULT_BUDGET if target is None else float(target)
    ceiling = target + CEILING_MARGIN if ceiling is None else float(ceiling)
    if ceiling < target:
        raise UserError(f"--ceiling {ceiling} is below --budget {target}")
    low, _ = reachable(layers, action_bits, nominal)
    if target < low - 1e-9:
        unit = "nominal bits" if nominal else "bpw (real bytes)"
        raise UserError(f"budget {target:.4f} {unit} is below the smallest reachable allocation "
                        f"{low:.4f} with actions {list(action_bits)}")
    return Budget(target=target, ceiling=ceiling, nominal=nominal)
