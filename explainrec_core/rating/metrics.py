"""RMSE / MAE of predicted ratings with 95% intervals, every method paired with the reference on the same samples."""

from __future__ import annotations

import polars as pl

from explainrec_core.evaluation.paired import PairedBootstrap, Scored

REFERENCE = "biased_mf"


def error_summary(scores: pl.DataFrame, reference: str = REFERENCE, resamples: int = 2000) -> dict:
    """Per set and method: RMSE and MAE with 95% intervals and, against `reference`, the paired differences.
    `scores`: rows (method, set, sample_id, rating, prediction)."""
    summary: dict = {}
    for name in scores["set"].unique(maintain_order=True).to_list():
        part = scores.filter(pl.col("set") == name).with_columns(
            (pl.col("prediction") - pl.col("rating")).pow(2).alias("sq"),
            (pl.col("prediction") - pl.col("rating")).abs().alias("abs"))
        scored = {m: part.filter(pl.col("method") == m) for m in part["method"].unique(maintain_order=True)}
        boot = PairedBootstrap(Scored.from_frame(next(iter(scored.values())), "sq", label=None), resamples)
        dists = {m: {"rmse": boot.root_mean(Scored.from_frame(f, "sq", label=None)),
                     "mae": boot.mean(Scored.from_frame(f, "abs", label=None))} for m, f in scored.items()}
        out = {}
        for m, d in dists.items():
            out[m] = {k: {"value": e.value, "ci95": list(e.ci95)} for k, e in
                      ((k, v.estimate()) for k, v in d.items())}
            if reference in dists and m != reference:
                out[m]["vs_" + reference] = {k: _error_verdict(d[k].minus(dists[reference][k]).to_dict()) for k in d}
        summary[name] = {"n": boot.n, "methods": out}
    return summary


def _error_verdict(diff: dict) -> dict:
    """For an error metric a positive difference is worse: say "higher error" / "lower error" (interval excludes 0)
    instead of the AUC-minded "better" / "worse" of paired.Difference."""
    verdict = {"better": "higher error", "worse": "lower error"}.get(diff["verdict"], diff["verdict"])
    return {**diff, "verdict": verdict}
