"""DynaQuant's pictures, like the paper's figures 2-5: return, final PPLs and PPO losses per episode, and the
format chosen for every step in every episode as a heatmap."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

from ..engine.plots import save


def learning(records: list[dict], path: Path) -> Path:
    episodes = [r["episode"] for r in records]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot(episodes, [r["return"] for r in records], ".-", ms=3, label="return")
    for term in ("perf", "kl", "entropy", "memory"):
        axes[0].plot(episodes, [r[f"r_{term}"] for r in records], lw=0.8, label=term)
    axes[0].set_ylabel("reward per episode")
    axes[0].legend(fontsize=7, ncol=5)
    axes[1].plot(episodes, [r["ppl_quant"] for r in records], ".-", ms=3, label="quantized (after fine-tuning)")
    axes[1].plot(episodes, [r["ppl_ref"] for r in records], lw=1, label="reference (after fine-tuning)")
    axes[1].set_ylabel("held-out PPL at episode end")
    axes[1].legend(fontsize=7)
    updated = [r for r in records if "policy_loss" in r]
    axes[2].plot([r["episode"] for r in updated], [r["policy_loss"] for r in updated], ".-", ms=3, label="policy loss")
    axes[2].plot([r["episode"] for r in updated], [r["value_loss"] for r in updated], lw=0.8, label="value loss")
    axes[2].set_yscale("symlog", linthresh=1e-2)
    axes[2].set_xlabel("episode")
    axes[2].legend(fontsize=7)
    return save(fig, path)


def format_heatmap(records: list[dict], formats: tuple[str, ...], n_steps: int, groups: list[list[int]],
                   path: Path) -> Path:
    """Episodes (rows) x steps (columns), coloured by the chosen format."""
    index = {f: i for i, f in enumerate(formats)}
    grid = np.array([[index[r["formats"][g[0]]] for g in groups] for r in records]).reshape(-1, n_steps)
    fig, ax = plt.subplots(figsize=(max(6, n_steps * 0.25), max(3, len(records) * 0.08)))
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0, 1, len(formats))))
    image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-0.5, vmax=len(formats) - 0.5)
    bar = fig.colorbar(image, ticks=range(len(formats)))
    bar.ax.set_yticklabels(formats)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step (transformer block or layer)")
    ax.set_ylabel("episode")
    ax.set_title("format chosen per step")
    return save(fig, path)
