"""The ranking protocol: hand-computed metrics, candidate sampling properties, and the real ML-100K test split."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from explainrec_core import paths
from explainrec_core.config import load_config
from explainrec_core.evaluation.ranking import (
    build_candidates,
    collect_scores,
    expand_candidates,
    llm_lists,
    positive_ranks,
    ranking_metrics,
    unseen_negatives,
)
from tests.conftest import write_params

# --- metrics -------------------------------------------------------------------------------------------------


def test_perfect_scorer_gets_every_metric_one():
    scores = np.tile(np.r_[1.0, np.linspace(0.9, 0.0, 99)], (4, 1))
    metrics = ranking_metrics(scores)
    assert metrics == {"hit@5": 1.0, "ndcg@5": 1.0, "hit@10": 1.0, "ndcg@10": 1.0, "hit@20": 1.0,
                       "ndcg@20": 1.0, "mrr": 1.0, "n": 4}


def test_positive_ranked_third():
    scores = np.array([[0.5, 0.9, 0.1, 0.7, 0.2, 0.3]])  # two negatives above the positive
    assert positive_ranks(scores).tolist() == [3]
    metrics = ranking_metrics(scores, ks=(2, 5))
    assert metrics["hit@5"] == 1.0
    assert metrics["ndcg@5"] == pytest.approx(1 / math.log2(4)) == 0.5
    assert metrics["hit@2"] == 0.0 and metrics["ndcg@2"] == 0.0
    assert metrics["mrr"] == pytest.approx(1 / 3)


def test_constant_scorer_gets_the_worst_rank():
    scores = np.full((3, 100), 0.5)  # 99 negatives, all tied with the positive
    assert positive_ranks(scores).tolist() == [100, 100, 100]
    metrics = ranking_metrics(scores)
    assert metrics["hit@5"] == metrics["hit@20"] == metrics["ndcg@20"] == 0.0
    assert metrics["mrr"] == pytest.approx(1 / 100)


def test_mixed_case_is_averaged_over_rows():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3, 0.4],  # rank 1
        [0.5, 0.6, 0.7, 0.1, 0.2],  # rank 3
        [0.1, 0.5, 0.5, 0.5, 0.5],  # rank 5
        [0.5, 0.5, 0.1, 0.1, 0.1],  # one tie: rank 2 (pessimistic)
    ])
    assert positive_ranks(scores).tolist() == [1, 3, 5, 2]
    metrics = ranking_metrics(scores, ks=(1, 3))
    assert metrics["hit@1"] == pytest.approx(1 / 4)
    assert metrics["hit@3"] == pytest.approx(3 / 4)
    assert metrics["ndcg@1"] == pytest.approx(1 / 4)
    assert metrics["ndcg@3"] == pytest.approx((1 + 0.5 + 0 + 1 / math.log2(3)) / 4)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 5 + 1 / 2) / 4)
    assert metrics["n"] == 4


def test_metrics_refuse_bad_scores():
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(np.array([[np.nan, 0.1, 0.2]]))
    with pytest.raises(ValueError, match="n_negatives"):
        ranking_metrics(np.array([0.1, 0.2]))


# --- candidates on hand-built frames ----------------------------------------------------------------------------

N_ITEMS = 300


def _interactions() -> pl.DataFrame:
    rows = [(9, i, 3.0, i) for i in range(1, N_ITEMS + 1)]  # user 9 rated every item: the item universe is 1..300
    rows += [(1, i, 4.0, 1000 + i) for i in range(1, 51)]  # user 1: items 1..50
    rows += [(2, i, 2.0, 2000 + i) for i in range(40, 61)]  # user 2: items 40..60
    rows += [(4, i, 5.0, 4000 + i) for i in range(1, 251)]  # user 4: only 50 unseen items
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64,
                                      "timestamp": pl.Int64}, orient="row")


def _samples(users=(1, 2)) -> pl.DataFrame:
    rows = []
    sid = 0
    for user in users:
        for item, label, split in ((45, 1, "test"), (46, 0, "test"), (47, 1, "test"), (48, 1, "train"),
                                   (49, 1, "test"), (50, 1, "valid")):
            rows.append((sid, user, item, 4.0 if label else 2.0, label, 100 + sid, [item - 2, item - 1],
                         [4.0, 2.0], split))
            sid += 1
    return pl.DataFrame(rows, schema={"sample_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64,
                                      "rating": pl.Float64, "label": pl.Int8, "timestamp": pl.Int64,
                                      "history_item_ids": pl.List(pl.Int64), "history_ratings": pl.List(pl.Float64),
                                      "split": pl.String}, orient="row")


def test_candidates_are_unseen_distinct_and_positive_first():
    interactions, samples = _interactions(), _samples()
    cands = build_candidates(samples, interactions, seed=3)
    assert cands.columns == ["sample_id", "user_id", "item_id", "candidates", "history_item_ids", "history_ratings",
                             "llm_order"]
    expected = samples.filter((pl.col("split") == "test") & (pl.col("label") == 1)).sort("sample_id")
    assert cands["sample_id"].to_list() == expected["sample_id"].to_list()
    assert cands["history_item_ids"].to_list() == expected["history_item_ids"].to_list()
    assert cands["history_ratings"].to_list() == expected["history_ratings"].to_list()
    seen = {u: set(g["item_id"].to_list()) for (u,), g in interactions.group_by("user_id")}
    for row in cands.iter_rows(named=True):
        candidates = row["candidates"]
        assert len(candidates) == 100 and candidates[0] == row["item_id"]
        negatives = candidates[1:]
        assert len(set(negatives)) == 99
        assert not set(negatives) & seen[row["user_id"]]
        assert all(1 <= item <= N_ITEMS for item in negatives)


def test_candidates_are_deterministic_and_order_independent():
    interactions, samples = _interactions(), _samples()
    first = build_candidates(samples, interactions, seed=3)
    again = build_candidates(samples.sample(fraction=1.0, shuffle=True, seed=1),
                             interactions.sample(fraction=1.0, shuffle=True, seed=2), seed=3)
    assert first.equals(again)
    other = build_candidates(samples, interactions, seed=4)
    assert first["candidates"].to_list() != other["candidates"].to_list()
    assert first["item_id"].to_list() == other["item_id"].to_list()


def test_max_positives_keeps_a_seeded_subset_with_the_same_candidates():
    interactions, samples = _interactions(), _samples()
    full = build_candidates(samples, interactions, seed=3)
    subset = build_candidates(samples, interactions, seed=3, max_positives=3)
    assert subset.height == 3 and subset["sample_id"].is_sorted()
    same_lists = full.filter(pl.col("sample_id").is_in(subset["sample_id"].implode()))
    assert subset.drop("llm_order").equals(same_lists.drop("llm_order"))
    assert subset.equals(build_candidates(samples, interactions, seed=3, max_positives=3))
    assert sorted(subset["llm_order"].to_list()) == [0, 1, 2]


def test_negatives_are_drawn_uniformly():
    # 600 positives of user 1 (250 unseen items, 99 drawn each): every unseen item is drawn ~600 * 99/250 times.
    interactions = _interactions()
    rows = [(s, 1, 10, 5.0, 1, s, [1], [5.0], "test") for s in range(600)]
    samples = pl.DataFrame(rows, schema=_samples().schema, orient="row")
    cands = build_candidates(samples, interactions)
    counts = np.bincount(np.concatenate([c[1:] for c in cands["candidates"].to_list()]), minlength=N_ITEMS + 1)
    assert counts[:51].sum() == 0 and (counts[51:] > 0).all()
    expected = 600 * 99 / 250
    assert abs(counts[51:].mean() - expected) < 1e-9
    assert np.abs(counts[51:] - expected).max() < 6 * math.sqrt(expected)  # loose: catches a biased sampler


def test_user_with_too_few_unseen_items_is_named():
    with pytest.raises(ValueError, match="user 4 has only 50 unseen items"):
        build_candidates(_samples(users=(4,)), _interactions())
    assert build_candidates(_samples(users=(4,)), _interactions(), n_negatives=50).height == 3


def test_expand_and_collect_round_trip():
    cands = build_candidates(_samples(), _interactions(), n_negatives=5)
    expanded = expand_candidates(cands)
    assert expanded.columns == ["sample_id", "position", "user_id", "item_id", "history_item_ids",
                                "history_ratings"]
    assert expanded.height == cands.height * 6
    assert expanded["item_id"].to_list() == [i for c in cands["candidates"].to_list() for i in c]
    # a scorer that returns the item id: collect_scores must give back the candidate lists
    scores = collect_scores(expanded, expanded["item_id"].to_numpy(), 6)
    assert scores.tolist() == [[float(i) for i in c] for c in cands["candidates"].to_list()]
    with pytest.raises(ValueError, match="order"):
        collect_scores(expanded.reverse(), expanded["item_id"].to_numpy(), 6)
    with pytest.raises(ValueError, match="scores for"):
        collect_scores(expanded, np.zeros(5), 6)


def test_empty_split_gives_an_empty_frame():
    cands = build_candidates(_samples(), _interactions(), split="nope")
    assert cands.height == 0 and cands.columns[3] == "candidates"


# --- the real ML-100K test split ---------------------------------------------------------------------------------


def test_real_test_split_candidates(processed_ml100k):
    folder = processed_ml100k / "data" / "processed"
    samples = pl.read_parquet(folder / "samples.parquet")
    interactions = pl.read_parquet(folder / "interactions.parquet")
    cands = build_candidates(samples, interactions, seed=0)
    positives = samples.filter((pl.col("split") == "test") & (pl.col("label") == 1))
    assert cands.height == positives.height > 5000
    assert (cands["candidates"].list.len() == 100).all()
    assert (cands["candidates"].list.first() == cands["item_id"]).all()
    assert (cands["candidates"].list.n_unique() == 100).all()
    expanded = expand_candidates(cands)
    assert set(expanded["item_id"].unique().to_list()) <= set(interactions["item_id"].unique().to_list())
    # every candidate the user interacted with (at any time) is the positive at position 0
    hits = expanded.join(interactions.select("user_id", "item_id").unique(), on=["user_id", "item_id"])
    assert hits.height == cands.height and (hits["position"] == 0).all()
    # a random scorer lands near the chance level Hit@10 = 10/100
    scores = collect_scores(expanded, np.random.default_rng(0).random(expanded.height), 100)
    assert abs(ranking_metrics(scores)["hit@10"] - 0.1) < 0.02
    subset = build_candidates(samples, interactions, seed=0, max_positives=200)
    same_lists = cands.filter(pl.col("sample_id").is_in(subset["sample_id"].implode()))
    assert subset.drop("llm_order").equals(same_lists.drop("llm_order"))


# --- the lists the LLM rankers take --------------------------------------------------------------------------


def _many_positives(n: int = 200) -> pl.DataFrame:
    rows = [(s, 1, 10, 5.0, 1, s, [1], [5.0], "test") for s in range(n)]
    return pl.DataFrame(rows, schema=_samples().schema, orient="row")


def test_llm_lists_are_a_seeded_random_draw_not_the_earliest_targets():
    interactions, samples = _interactions(), _many_positives()
    cands = build_candidates(samples, interactions, n_negatives=5, seed=3)
    assert sorted(cands["llm_order"].to_list()) == list(range(cands.height))  # a permutation of the lists
    drawn = llm_lists(cands, 10)
    assert drawn.height == 10 and drawn["llm_order"].to_list() == list(range(10))
    assert set(drawn["sample_id"]) != set(cands["sample_id"].head(10))  # not the earliest targets
    assert drawn["sample_id"].max() > 50  # drawn from the whole split (P(all 10 among the first 50) ~ 1e-6)
    # stable for a seed, another draw for another seed; a larger draw only adds lists
    assert drawn.equals(llm_lists(build_candidates(samples, interactions, n_negatives=5, seed=3), 10))
    assert set(llm_lists(build_candidates(samples, interactions, n_negatives=5, seed=4), 10)["sample_id"]) != set(
        drawn["sample_id"])
    assert llm_lists(cands, 25).head(10).equals(drawn)
    assert llm_lists(cands, 10_000).height == cands.height and llm_lists(cands, 0).height == 0
    # with max_positives, the LLM's lists are among the lists the baselines rank
    subset = build_candidates(samples, interactions, n_negatives=5, seed=3, max_positives=40)
    assert set(llm_lists(subset, 10)["sample_id"]) <= set(subset["sample_id"])
    with pytest.raises(ValueError, match="llm_order"):
        llm_lists(cands.drop("llm_order"), 10)


def test_both_llm_rankers_rank_the_same_drawn_lists(processed_copy, monkeypatch):
    """eval_steps.run_llm_ranking and explain_evaluation_steps._rank (the attributed variants) take the same lists: the
    seeded draw, not the first rows of ranking_candidates. Model calls are replaced by a stub that records."""
    from explainrec_core.models import adapters
    from explainrec_core.steps import eval_steps, explain_evaluation_steps

    root = processed_copy
    write_params(root, data={"raw_dir": "unused", "processed_dir": "data/processed"},
                 ranking={"max_positives": 200, "llm_positives": 6, "n_negatives": 9})
    cfg = load_config(root / "params.yaml")
    eval_steps.run_ranking_candidates(cfg, root)
    candidates = pl.read_parquet(root / paths.RANKING_CANDIDATES)
    scored: list[int] = []

    def fake_scores(model, tokenizer, prefix, suffixes, answer_ids, batch_size):
        scored.append(len(suffixes))
        return np.linspace(1.0, 0.0, len(suffixes))

    monkeypatch.setattr(eval_steps, "load_base", lambda root: ({"answer_token_ids": [1, 2]}, None, None))
    monkeypatch.setattr(adapters, "load_adapter", lambda model, path: model)
    monkeypatch.setattr(eval_steps, "score_shared_prefix", fake_scores)
    monkeypatch.setattr(explain_evaluation_steps, "score_shared_prefix", fake_scores)
    monkeypatch.setattr(explain_evaluation_steps, "prompt_parts",
                        lambda context, attributed, reasons: ("prefix", "suffix"))

    class Builder:
        def build(self, history_item_ids, history_ratings, item):
            return item

    eval_steps.run_llm_ranking(cfg, root)
    by_llm_ranking = pl.read_parquet(root / paths.LLM_RANKING)["sample_id"].to_list()
    by_explain, grid = explain_evaluation_steps._rank(root, cfg, None, None, [1, 2], Builder(), attributed=True)
    expected = llm_lists(candidates, 6)["sample_id"].to_list()
    assert by_llm_ranking == by_explain == expected and grid.shape == (6, 10) and scored == [10] * 12
    assert set(expected) != set(candidates["sample_id"].head(6))


def test_unseen_negatives_are_items_the_user_never_rated_seeded_per_sample():
    """The ranking protocol's training negatives: k catalogue items per row that the user did not rate in the
    training period, never the row's own item, the same draw for the same seed, another for another seed."""
    rated = pl.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [10, 11, 12, 10]})
    rows = pl.DataFrame({"sample_id": [5, 6, 7], "user_id": [1, 1, 2], "item_id": [12, 11, 13]})
    catalogue = np.arange(10, 30)
    drawn = unseen_negatives(rows, rated, catalogue, k=4, seed=0)
    assert drawn.columns == ["sample_id", "user_id", "item_id"] and drawn.height == 12
    for sample_id, user, target in rows.iter_rows():
        mine = drawn.filter(pl.col("sample_id") == sample_id)
        assert mine["user_id"].unique().to_list() == [user] and mine["item_id"].n_unique() == 4
        forbidden = set(rated.filter(pl.col("user_id") == user)["item_id"].to_list()) | {target}
        assert not forbidden & set(mine["item_id"].to_list())
        assert set(mine["item_id"].to_list()) <= set(catalogue.tolist())
    assert drawn.equals(unseen_negatives(rows, rated, catalogue, k=4, seed=0))
    assert not drawn.equals(unseen_negatives(rows, rated, catalogue, k=4, seed=1))
    with pytest.raises(ValueError, match="user 1 has only 2 unrated items"):
        unseen_negatives(rows.head(1), rated, np.arange(10, 15), k=3, seed=0)


def test_write_list_scores_saves_the_lists_and_returns_their_metrics(tmp_path):
    from explainrec_core.evaluation.ranking import write_list_scores

    rows = [{"sample_id": 3, "scores": [0.9, 0.1, 0.2]}, {"sample_id": 5, "scores": [0.1, 0.5, 0.3]}]
    metrics = write_list_scores(rows, tmp_path / "lists.parquet")
    assert metrics == ranking_metrics(np.array([r["scores"] for r in rows]))
    assert pl.read_parquet(tmp_path / "lists.parquet")["sample_id"].to_list() == [3, 5]
    assert write_list_scores([], tmp_path / "none.parquet") == {"n": 0}
    assert pl.read_parquet(tmp_path / "none.parquet").height == 0
