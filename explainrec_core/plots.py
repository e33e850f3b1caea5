"""Plots people look at: training curves (loss per optimizer step, validation metric)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from explainrec_core.io import atomic_path  # noqa: E402


def plot_training(losses: list, evals: list, title: str, target: Path, metric_name: str = "valid AUC") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    if losses:
        steps, values = zip(*losses, strict=True)
        ax.plot(steps, values, color="tab:blue", marker=".", label="training loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss", color="tab:blue")
    if evals:
        other = ax.twinx()
        steps, values = zip(*evals, strict=True)
        other.plot(steps, values, color="tab:orange", marker="o", label=metric_name)
        other.set_ylabel(metric_name, color="tab:orange")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(target)
