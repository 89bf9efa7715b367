"""Bring an allocation within its budget by lowering bit widths, cheapest quality loss first when known.

Used when no feasible allocation was seen (a short search) and by `ramp transfer`.  Each step lowers
one layer to the next smaller bit width of the action set that really saves bytes; the layer is the
one with the lowest sensitivity per saved bit when sensitivities are given, else the one with the
highest bit width (ties: the largest layer, then the latest), so the result is deterministic.
"""

from halo import allocation as alloc_mod

from .budget import allocation_bpw


def repair(bits: list[int], layers, actions, budget, sensitivity: dict | None = None) -> tuple[list[int], int]:
    """(bits within budget.target, number of layers lowered)."""
    bits, actions, lowered = list(bits), sorted(actions), 0
    while allocation_bpw(alloc_mod.resolve(layers, bits), budget.nominal) > budget.target + 1e-9:
        best = None
        for i, layer in enumerate(layers):
            smaller = [b for b in actions if b < bits[i]]
            if not smaller:
                continue
            new = smaller[-1]
            saved = _cost(layer, bits[i], budget) - _cost(layer, new, budget)
            if saved <= 0:
                continue
            if sensitivity is not None:
                key = (sensitivity[layer.gguf_name][str(new)] / saved, i)
            else:
                key = (-bits[i], -layer.params, -i)
            if best is None or key < best[0]:
                best = (key, i, new)
        if best is None:
            break
        bits[best[1]] = best[2]
        lowered += 1
    return bits, lowered


def _cost(layer, bits: int, budget) -> float:
    return bits * layer.params if budget.nominal else alloc_mod.choice(layer, bits).bytes * 8
