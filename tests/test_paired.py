"""Paired bootstrap comparisons: the vectorised AUC, interval coverage, pairing by sample_id, seed averaging."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from explainrec_core.evaluation.paired import (
    Difference,
    Estimate,
    PairedBootstrap,
    Scored,
    auc_difference,
    auc_with_ci,
    delong_difference,
    mean_difference,
    mean_std,
    weighted_auc,
)


def _frame(labels, scores, ids=None, seed=None) -> pl.DataFrame:
    ids = np.arange(len(labels)) if ids is None else ids
    frame = pl.DataFrame({"sample_id": ids, "label": labels, "score": scores})
    return frame if seed is None else frame.with_columns(pl.lit(seed).alias("seed"))


def _synthetic(n: int, shift_a: float, shift_b: float, seed: int = 0):
    """Two scorers of the same samples: Gaussian scores, positives shifted by `shift`, with shared sample noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    common = rng.normal(size=n)  # per-sample difficulty both scorers see: what pairing cancels
    a = common + shift_a * labels + rng.normal(scale=0.7, size=n)
    b = common + shift_b * labels + rng.normal(scale=0.7, size=n)
    return labels, a, b


def test_weighted_auc_equals_sklearn_with_ties_and_resampled_counts():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes many ties
    assert weighted_auc(labels, scores, np.ones(300))[0] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    idx = rng.integers(0, 300, size=(5, 300))
    counts = np.stack([np.bincount(row, minlength=300) for row in idx])
    vectorised = weighted_auc(labels, scores, counts)
    for row, value in zip(idx, vectorised, strict=True):
        assert value == pytest.approx(roc_auc_score(labels[row], scores[row]), abs=1e-12)
    assert np.isnan(weighted_auc(labels, scores, (labels == 1)[None, :].astype(float)))[0]  # no negatives drawn


def test_ci_contains_the_true_difference():
    # the population AUC difference, estimated on a huge sample; the CI of a 1,000-sample draw must contain it
    labels, a, b = _synthetic(200_000, 1.0, 0.6, seed=99)
    truth = roc_auc_score(labels, a) - roc_auc_score(labels, b)
    labels, a, b = _synthetic(1000, 1.0, 0.6, seed=3)
    diff = auc_difference(_frame(labels, a), _frame(labels, b), resamples=1000, seed=0)
    assert diff.ci95[0] < truth < diff.ci95[1]
    assert diff.delta == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    # DeLong's asymptotic interval agrees with the bootstrap's
    delong = delong_difference(labels, a, b)
    assert delong.delta == pytest.approx(diff.delta)
    width, delong_width = diff.ci95[1] - diff.ci95[0], delong.ci95[1] - delong.ci95[0]
    assert abs(width - delong_width) < 0.2 * delong_width


def test_clearly_better_excludes_zero_and_same_plus_noise_includes_it():
    labels, a, b = _synthetic(600, 2.0, 0.3, seed=4)
    better = auc_difference(_frame(labels, a), _frame(labels, b), resamples=500)
    assert better.ci95[0] > 0 and better.verdict == "better"
    worse = auc_difference(_frame(labels, b), _frame(labels, a), resamples=500)
    assert worse.ci95[1] < 0 and worse.verdict == "worse"
    rng = np.random.default_rng(5)
    same = auc_difference(_frame(labels, a), _frame(labels, a + rng.normal(scale=0.05, size=len(a))), resamples=500)
    assert same.ci95[0] < 0 < same.ci95[1] and same.verdict == "no detectable difference"


def test_pairing_is_by_sample_id_not_row_position():
    labels, a, b = _synthetic(400, 1.0, 0.8, seed=6)
    ids = np.arange(1000, 1400)
    reference = auc_difference(_frame(labels, a, ids), _frame(labels, b, ids), resamples=300, seed=2)
    order = np.random.default_rng(0).permutation(400)
    shuffled = auc_difference(_frame(labels, a, ids), _frame(labels[order], b[order], ids[order]), resamples=300,
                              seed=2)
    assert shuffled == reference
    with pytest.raises(ValueError, match="not the same samples"):
        auc_difference(_frame(labels, a, ids), _frame(labels, b, ids + 1), resamples=10)
    with pytest.raises(ValueError, match="other labels"):
        auc_difference(_frame(labels, a, ids), _frame(1 - labels, b, ids), resamples=10)


def test_seed_averaged_statistic_uses_the_same_draws_for_every_seed():
    labels, a, b = _synthetic(300, 1.0, 0.5, seed=7)
    rng = np.random.default_rng(8)
    seeds = [a + rng.normal(scale=0.3, size=300) for _ in range(3)]
    multi = pl.concat([_frame(labels, s, seed=i) for i, s in enumerate(seeds)])
    estimate = auc_with_ci(multi, resamples=200)
    per_seed = [roc_auc_score(labels, s) for s in seeds]
    assert estimate.value == pytest.approx(np.mean(per_seed))
    assert list(estimate.per_seed.values()) == pytest.approx(per_seed)
    # the interval is over the mean of per-seed AUCs on each draw, with one draw shared by all seeds
    scored = Scored.from_frame(multi)
    boot = PairedBootstrap(scored, 200, 0)
    draws = np.stack([weighted_auc(labels, s, boot.counts) for s in seeds], axis=1).mean(axis=1)
    assert estimate.ci95 == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    diff = auc_difference(_frame(labels, b), multi, resamples=200)  # one run vs three seeds
    assert diff.per_seed == pytest.approx({i: roc_auc_score(labels, b) - v for i, v in enumerate(per_seed)})
    with pytest.raises(ValueError, match="other samples"):
        Scored.from_frame(multi.filter(~((pl.col("seed") == 1) & (pl.col("sample_id") == 0))))


def test_mean_difference_over_the_same_lists():
    rng = np.random.default_rng(9)
    base = rng.uniform(size=500)
    a = pl.DataFrame({"sample_id": np.arange(500), "ndcg": np.clip(base + 0.1, 0, 1)})
    b = pl.DataFrame({"sample_id": np.arange(500), "ndcg": base})
    diff = mean_difference(a, b, "ndcg", resamples=300)
    assert diff.delta == pytest.approx(a["ndcg"].mean() - b["ndcg"].mean())
    assert diff.verdict == "better"
    noisy = b.with_columns(pl.col("ndcg") + pl.Series(rng.normal(scale=0.01, size=500)))
    assert mean_difference(noisy, b.sample(fraction=1, shuffle=True, seed=1), "ndcg",
                           resamples=300).verdict == "no detectable difference"


def test_mean_std_uses_ddof_1():
    frame = pl.DataFrame({"x": [0.70, 0.72, 0.74]})
    assert mean_std(frame, "x")["std"] == pytest.approx(0.02)  # ddof = 0 would give 0.0163
    assert mean_std(frame.head(1), "x") == {"mean": 0.70, "std": None, "n_seeds": 1}


def test_text_prints_the_value_and_interval_as_the_notes_do():
    assert Estimate(0.7004, (0.6791, 0.7226), 2000, {}).text() == "0.700 [0.679, 0.723]"
    # a difference is signed, its bounds too, so an interval straddling 0 reads as one
    assert Difference(0.0081, (-0.0064, 0.0241), 2000, {}).text() == "+0.008 [-0.006, +0.024]"
