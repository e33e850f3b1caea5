"""Plots people look at: training curves (loss per optimizer step, validation metric), ROC curves and AUC with
confidence intervals for the evaluation report."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

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
    return _save(fig, target)


def _save(fig, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(target)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], target: Path, highlight: str | None = None) -> Path:
    """ROC curves of (labels, scores) per method, all on the same samples."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=name, linewidth=2 if name == highlight else 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    n = len(next(iter(curves.values()))[0]) if curves else 0
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, test subset (n={n})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, target)


def plot_auc_intervals(values: dict[str, dict[str, tuple[float, float, float] | None]], target: Path) -> Path:
    """AUC per method and set with its 95% bootstrap interval as error bars: values[set][method] = (auc, lo, hi)."""
    sets = list(values)
    methods = list(dict.fromkeys(m for per_set in values.values() for m in per_set))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    width = 0.8 / max(len(sets), 1)
    for i, name in enumerate(sets):
        triples = [values[name].get(m) or (np.nan, np.nan, np.nan) for m in methods]
        mid = np.array([t[0] for t in triples], dtype=float)
        err = np.abs(np.array([[t[0] - t[1], t[2] - t[0]] for t in triples], dtype=float).T)
        ax.bar(np.arange(len(methods)) + i * width, mid, width, yerr=err, label=name, capsize=2)
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_xticks(np.arange(len(methods)) + width * (len(sets) - 1) / 2, methods, rotation=20, fontsize=8)
    ax.set(ylabel="AUC", ylim=(0.3, 1.0), title="AUC per method (95% paired-bootstrap intervals)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, target)


def plot_modality_weights(weights: dict[str, dict[str, float]], target: Path) -> Path:
    """Mean fusion attention per modality of the target item's token: weights[item group][modality]."""
    groups = list(weights)
    modalities = list(dict.fromkeys(m for per_group in weights.values() for m in per_group))
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    width = 0.8 / max(len(groups), 1)
    for i, group in enumerate(groups):
        ax.bar(np.arange(len(modalities)) + i * width, [weights[group].get(m, 0.0) for m in modalities], width,
               label=group)
    ax.set_xticks(np.arange(len(modalities)) + width * (len(groups) - 1) / 2, modalities, fontsize=8)
    ax.set(ylabel="mean attention weight", ylim=(0, 1), title="Which modality the target's item token relies on")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, target)


def plot_cold_start_curve(curves: dict[str, dict[int, float | None]], target: Path) -> Path:
    """AUC against the number k of ratings a new user has: curves[method][k] (the same samples at every k)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for method, points in curves.items():
        ks = [k for k, v in points.items() if v is not None]
        ax.plot(ks, [points[k] for k in ks], marker="o", label=method)
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set(xlabel="ratings of the new user shown (k)", ylabel="AUC", title="True cold start: new users, AUC vs k")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, target)


def plot_task_weights(history: list[tuple[int, dict[str, float]]], title: str, target: Path) -> Path:
    """Each task's effective weight on its loss at every optimizer step (training/task_weights.py)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for task in history[0][1] if history else ():
        ax.plot([s for s, _ in history], [w[task] for _, w in history], marker=".", label=task)
    ax.set(xlabel="optimizer step", ylabel="weight", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, target)
