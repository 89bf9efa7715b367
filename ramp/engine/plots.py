"""The search's pictures (PNG): learning curves, bits per layer by role, and the size-PPL plane."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROLE_COLOURS = {"q": "#1f77b4", "k": "#aec7e8", "v": "#ff7f0e", "o": "#ffbb78", "gate": "#2ca02c",
                "up": "#98df8a", "down": "#d62728", "other": "#7f7f7f"}


def learning_curves(records: list[dict], path: Path, budget: float, ceiling: float) -> Path:
    """Reward, PPL and b_avg per episode (from log.jsonl records)."""
    episodes = [r["episode"] for r in records]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot(episodes, [r["reward"] for r in records], ".", ms=3)
    axes[0].set_ylabel("reward")
    axes[1].plot(episodes, [r["ppl"] for r in records], ".", ms=3)
    axes[1].plot(episodes, _running_best(records), "-", label="best feasible")
    axes[1].set_ylabel("PPL (search eval)")
    axes[1].legend()
    axes[2].plot(episodes, [r["bpw"] for r in records], ".", ms=3)
    axes[2].axhline(budget, color="g", lw=1, label="budget")
    axes[2].axhline(ceiling, color="r", lw=1, label="ceiling")
    axes[2].set_ylabel("b_avg (bpw)")
    axes[2].set_xlabel("episode")
    axes[2].legend()
    return save(fig, path)


def _running_best(records: list[dict]) -> list[float]:
    best, out = float("inf"), []
    for r in records:
        if r.get("feasible"):
            best = min(best, r["ppl"])
        out.append(best if best < float("inf") else float("nan"))
    return out


def bits_per_layer(layers, bits: list[int], path: Path, title: str) -> Path:
    """One bar per layer, coloured by its role."""
    fig, ax = plt.subplots(figsize=(max(8, len(layers) / 12), 3.5))
    ax.bar(range(len(layers)), bits, color=[ROLE_COLOURS.get(layer.role, "#7f7f7f") for layer in layers], width=1.0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for role, c in ROLE_COLOURS.items()
               if any(layer.role == role for layer in layers)]
    ax.legend(handles, [role for role in ROLE_COLOURS if any(layer.role == role for layer in layers)],
              ncol=8, fontsize=7, loc="upper right")
    ax.set_xlabel("layer (table order)")
    ax.set_ylabel("bits")
    ax.set_title(title)
    return save(fig, path)


def size_ppl_plane(records: list[dict], baselines: dict[str, tuple[float, float]], path: Path) -> Path:
    """Visited episodes (bpw, PPL) with the baselines (red triangles) and results (blue stars) labelled."""
    fig, ax = plt.subplots(figsize=(7, 5))
    scatter = ax.scatter([r["bpw"] for r in records], [r["ppl"] for r in records],
                         c=[r["episode"] for r in records], s=8, cmap="viridis")
    fig.colorbar(scatter, label="episode")
    for label, (bpw, ppl) in baselines.items():
        ax.plot(bpw, ppl, "r^" if label.startswith("uniform") else "b*", ms=8)
        ax.annotate(label, (bpw, ppl), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("bits per weight of the quantizable layers (real bytes)")
    ax.set_ylabel("PPL (search eval)")
    return save(fig, path)


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
