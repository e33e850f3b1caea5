"""Paired comparisons with 95% confidence intervals: a bootstrap over samples, with DeLong as a cross-check.

"A beats B" is a claim only when A and B were scored on the same samples and their difference is larger than what
resampling those samples produces. Here every method is aligned on sample_id (never on row position), and one set
of bootstrap draws over those sample ids is applied to every method, and to every seed of a seed-averaged method,
so the shared difficulty of the samples cancels out of a difference.

A bootstrap draw is stored as how often each sample was drawn (counts ~ Multinomial(n, 1/n), the same distribution
as n indices drawn with replacement), so a statistic of a draw is a weighted statistic of the original samples: the
AUC needs one sort of the scores for all 2,000 draws instead of one per draw. For a seed-averaged method the
statistic is the mean over seeds of the per-seed value, recomputed on each draw. Intervals are percentile intervals.

Also here: `mean_std`, the summary over seeds (standard deviation with ddof = 1: the seeds are a sample of the
seeds one could have run, not the whole population).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import norm, rankdata

RESAMPLES = 2000
LEVEL = 0.95
_CHUNK = 250  # draws per block, so (draws x samples) temporaries stay small on the full test sets


def mean_std(frame: pl.DataFrame, column: str) -> dict | None:
    """Mean and standard deviation (ddof = 1; None for a single seed) of `column` over the rows (one per seed)."""
    values = frame[column].drop_nulls().to_numpy().astype(np.float64) if column in frame.columns else np.empty(0)
    if len(values) == 0:
        return None
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return {"mean": float(values.mean()), "std": std, "n_seeds": len(values)}


def weighted_auc(labels, scores, weights) -> np.ndarray:
    """ROC AUC of `scores` (n,) against binary `labels` (n,) for each row of `weights` (draws, n), each sample
    counted `weight` times: P(positive outscores negative), ties counting one half (Mann-Whitney), which is what
    sklearn's roc_auc_score computes for unit weights. NaN for a row without positive or without negative weight."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # one group per distinct score
    w = weights[:, order]
    pos, neg = w * labels[order], w * ~labels[order]
    if len(starts) < len(ordered):  # tied scores: one column per distinct score (without ties it is the identity)
        pos, neg = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)


@dataclass(frozen=True)
class Scored:
    """One method's values on one evaluation set, aligned on sample_id: ids sorted, labels (None for per-list
    metrics such as NDCG), and a (n_seeds, n) matrix; a method without seeds has one row."""

    sample_ids: np.ndarray
    labels: np.ndarray | None
    values: np.ndarray
    seeds: tuple[int, ...]

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, value: str = "score", label: str | None = "label") -> Scored:
        """From rows (sample_id, value[, label][, seed]) in any order. Every seed must cover the same samples,
        each once, with the same label."""
        if frame.height == 0:
            raise ValueError("no rows")
        if "seed" not in frame.columns:
            frame = frame.with_columns(pl.lit(0).alias("seed"))
        seeds = tuple(sorted(frame["seed"].unique().to_list()))
        parts = [frame.filter(pl.col("seed") == s).sort("sample_id") for s in seeds]
        ids = parts[0]["sample_id"].to_numpy()
        if len(np.unique(ids)) != len(ids):
            raise ValueError("a sample_id appears twice for one seed")
        labels = parts[0][label].to_numpy().astype(np.int64) if label else None
        for s, part in zip(seeds, parts, strict=True):
            if not np.array_equal(part["sample_id"].to_numpy(), ids):
                raise ValueError(f"seed {s} was scored on other samples than seed {seeds[0]}")
            if label and not np.array_equal(part[label].to_numpy().astype(np.int64), labels):
                raise ValueError(f"seed {s} has other labels than seed {seeds[0]}")
        values = np.stack([p[value].to_numpy().astype(np.float64) for p in parts])
        return cls(ids, labels, values, seeds)


@dataclass(frozen=True)
class Estimate:
    value: float
    ci95: tuple[float, float]
    n: int
    per_seed: dict[int, float]

    def to_dict(self) -> dict:
        return {"value": _num(self.value), "ci95": [_num(x) for x in self.ci95], "n": self.n,
                "per_seed": {str(s): _num(v) for s, v in self.per_seed.items()}}

    def text(self) -> str:
        """'0.700 [0.679, 0.723]': how scripts and notes print an estimate."""
        return f"{self.value:.3f} [{self.ci95[0]:.3f}, {self.ci95[1]:.3f}]"


@dataclass(frozen=True)
class Difference:
    """A - B on the same samples, with the per-seed differences of seed-averaged methods."""

    delta: float
    ci95: tuple[float, float]
    n: int
    per_seed: dict[int, float]

    @property
    def verdict(self) -> str:
        """'better' / 'worse' only when the 95% interval excludes 0."""
        lo, hi = self.ci95
        if np.isnan(lo) or np.isnan(hi):
            return "undefined"
        if lo > 0:
            return "better"
        if hi < 0:
            return "worse"
        return "no detectable difference"

    def text(self) -> str:
        """'+0.008 [-0.006, +0.024]': how scripts and notes print a difference."""
        return f"{self.delta:+.3f} [{self.ci95[0]:+.3f}, {self.ci95[1]:+.3f}]"

    def to_dict(self) -> dict:
        return {"delta": _num(self.delta), "ci95": [_num(x) for x in self.ci95], "n": self.n,
                "per_seed": {str(s): _num(v) for s, v in self.per_seed.items()}, "verdict": self.verdict}


def _num(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


@dataclass(frozen=True)
class Distribution:
    """A statistic of one method: its value per seed on the samples, and per seed on every bootstrap draw."""

    point: np.ndarray  # (n_seeds,)
    draws: np.ndarray  # (resamples, n_seeds)
    seeds: tuple[int, ...]
    n: int

    def estimate(self) -> Estimate:
        return Estimate(float(self.point.mean()), _interval(self.draws.mean(axis=1)), self.n,
                        dict(zip(self.seeds, self.point.tolist(), strict=True)))

    def minus(self, other: Distribution) -> Difference:
        """The paired difference self - other: mean over seeds of each, on the same draws."""
        if other.draws.shape[0] != self.draws.shape[0] or other.n != self.n:
            raise ValueError("distributions come from different bootstrap draws")
        delta = self.draws.mean(axis=1) - other.draws.mean(axis=1)
        return Difference(float(self.point.mean() - other.point.mean()), _interval(delta), self.n,
                          _per_seed_deltas(self, other))


def _per_seed_deltas(a: Distribution, b: Distribution) -> dict[int, float]:
    """Seed by seed when both ran the same seeds; against each seed of the other when one side has a single run."""
    if a.seeds == b.seeds and len(a.seeds) > 1:
        return {s: float(x - y) for s, x, y in zip(a.seeds, a.point, b.point, strict=True)}
    if len(a.seeds) == 1 and len(b.seeds) > 1:
        return {s: float(a.point[0] - y) for s, y in zip(b.seeds, b.point, strict=True)}
    if len(b.seeds) == 1 and len(a.seeds) > 1:
        return {s: float(x - b.point[0]) for s, x in zip(a.seeds, a.point, strict=True)}
    return {}


def _interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    draws = draws[~np.isnan(draws)]
    if len(draws) == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


class PairedBootstrap:
    """One set of bootstrap draws over a fixed set of samples (or candidate lists), shared by every method scored
    on them. Build it from one method's `Scored`; every other method must have the same sample ids (and labels)."""

    def __init__(self, reference: Scored, resamples: int = RESAMPLES, seed: int = 0):
        if resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {resamples}")
        self.sample_ids, self.labels = reference.sample_ids, reference.labels
        n = len(self.sample_ids)
        rng = np.random.default_rng(seed)
        self.counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.int32)

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    def _check(self, scored: Scored, needs_labels: bool) -> None:
        if not np.array_equal(scored.sample_ids, self.sample_ids):
            raise ValueError(f"not the same samples: {len(scored.sample_ids)} sample ids vs {self.n} "
                             f"({len(np.setxor1d(scored.sample_ids, self.sample_ids))} differ)")
        if needs_labels and (scored.labels is None or self.labels is None
                             or not np.array_equal(scored.labels, self.labels)):
            raise ValueError("the same sample ids carry other labels")

    def _distribution(self, scored: Scored, statistic: Callable[[np.ndarray, np.ndarray], np.ndarray]
                      ) -> Distribution:
        ones = np.ones((1, self.n))
        point = np.array([statistic(row, ones)[0] for row in scored.values])
        draws = np.empty((len(self.counts), len(scored.seeds)))
        for start in range(0, len(self.counts), _CHUNK):
            block = self.counts[start: start + _CHUNK]
            draws[start: start + _CHUNK] = np.stack([statistic(row, block) for row in scored.values], axis=1)
        return Distribution(point, draws, scored.seeds, self.n)

    def auc(self, scored: Scored) -> Distribution:
        self._check(scored, needs_labels=True)
        return self._distribution(scored, lambda scores, w: weighted_auc(self.labels, scores, w))

    def mean(self, scored: Scored) -> Distribution:
        """The mean of a per-sample value (e.g. NDCG@10 of each candidate list)."""
        self._check(scored, needs_labels=False)
        return self._distribution(scored, lambda values, w: (w @ values) / w.sum(axis=1))

    def root_mean(self, scored: Scored) -> Distribution:
        """The square root of the mean of a per-sample value: RMSE from per-sample squared errors."""
        self._check(scored, needs_labels=False)
        return self._distribution(scored, lambda values, w: np.sqrt((w @ values) / w.sum(axis=1)))


def auc_with_ci(frame: pl.DataFrame, resamples: int = RESAMPLES, seed: int = 0, score: str = "score") -> Estimate:
    """AUC (mean over seeds) with its 95% bootstrap interval; rows (sample_id, label, score[, seed])."""
    scored = Scored.from_frame(frame, score)
    return PairedBootstrap(scored, resamples, seed).auc(scored).estimate()


def auc_difference(a: pl.DataFrame, b: pl.DataFrame, resamples: int = RESAMPLES, seed: int = 0,
                   score: str = "score") -> Difference:
    """AUC(a) - AUC(b) on the same samples, joined on sample_id; 95% paired bootstrap interval."""
    sa, sb = Scored.from_frame(a, score), Scored.from_frame(b, score)
    boot = PairedBootstrap(sa, resamples, seed)
    return boot.auc(sa).minus(boot.auc(sb))


def mean_difference(a: pl.DataFrame, b: pl.DataFrame, value: str, resamples: int = RESAMPLES,
                    seed: int = 0) -> Difference:
    """mean(a) - mean(b) of a per-sample value (e.g. per-list NDCG@10) over the same sample ids."""
    sa, sb = Scored.from_frame(a, value, label=None), Scored.from_frame(b, value, label=None)
    boot = PairedBootstrap(sa, resamples, seed)
    return boot.mean(sa).minus(boot.mean(sb))


def delong_difference(labels, scores_a, scores_b, level: float = LEVEL) -> Difference:
    """AUC(a) - AUC(b) with DeLong's asymptotic interval (fast form of Sun & Xu 2014), for one pair of single
    runs scored on the same samples in the same order: a cross-check of the bootstrap."""
    labels = np.asarray(labels).astype(bool)
    m, n = int(labels.sum()), int((~labels).sum())
    if m == 0 or n == 0:
        raise ValueError("DeLong needs positives and negatives")
    aucs, v10, v01 = [], [], []
    for s in (np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)):
        x, y = s[labels], s[~labels]
        tz = rankdata(np.concatenate([x, y]))
        tx, ty = rankdata(x), rankdata(y)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[:m] - tx) / n)  # per positive: share of negatives it outscores
        v01.append(1 - (tz[m:] - ty) / m)  # per negative: share of positives that outscore it
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    delta = float(aucs[0] - aucs[1])
    z = float(norm.ppf(0.5 + level / 2))
    return Difference(delta, (delta - z * se, delta + z * se), m + n, {})
