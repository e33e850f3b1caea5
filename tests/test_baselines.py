"""Baselines: the training-period cut, the shared interface on any batch, seeding, hand-computed scores, learning
on a synthetic world with obvious structure, and a cheap check on the real ML-100K validation split."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from explainrec_core import paths
from explainrec_core.baselines import BASELINES, Recommender, TrainingData
from explainrec_core.baselines import bpr as bpr_module
from explainrec_core.baselines.base import validate
from explainrec_core.baselines.bpr import BPR, BPRConfig
from explainrec_core.baselines.content import ContentBased, encode_texts
from explainrec_core.baselines.lightgcn import LightGCN, LightGCNConfig
from explainrec_core.baselines.popularity import Popularity
from explainrec_core.baselines.registry import PROTOCOLS, RANKING_CONFIGS, build_baseline
from explainrec_core.baselines.sasrec import SASRec, SASRecConfig
from explainrec_core.config import SamplesConfig, SplitConfig, load_config
from explainrec_core.data.samples import build_samples, training_period_counts
from explainrec_core.evaluation.ranking import build_candidates, collect_scores, expand_candidates, ranking_metrics
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import write_parquet
from tests.conftest import read_table, write_params

LEARNED = ("bpr", "lightgcn", "sasrec", "mmgcn", "lattice")
INTERACTIONS_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64}


def _interactions(rows) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=INTERACTIONS_SCHEMA, orient="row")


def _items(ids, titles=None) -> pl.DataFrame:
    titles = titles or [f"Film number {i}" for i in ids]
    return pl.DataFrame({"item_id": list(ids), "title": titles, "year": [1990 + i % 10 for i in ids],
                         "genres": [["Drama"] if i % 2 else ["Comedy"] for i in ids]},
                        schema={"item_id": pl.Int64, "title": pl.String, "year": pl.Int32,
                                "genres": pl.List(pl.String)})


def _batch(rows) -> pl.DataFrame:
    """Rows of (user_id, item_id, history_item_ids, history_ratings)."""
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64,
                                      "history_item_ids": pl.List(pl.Int64),
                                      "history_ratings": pl.List(pl.Float64)}, orient="row")


def group_world(n_users: int = 120, n_items: int = 30, per_user: int = 16, seed: int = 0):
    """Two user groups with opposite tastes: even users like items 1..15 and dislike 16..30, odd users the
    reverse. Users rate in parallel (interleaved timestamps), so the global time cut holds out each user's last
    ratings. Returns (samples, interactions, items); item 31 is in the catalogue but never rated."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        for k, item in enumerate(rng.choice(n_items, per_user, replace=False) + 1):
            liked = (item <= n_items // 2) == (user % 2 == 0)
            rows.append((user, int(item), 5.0 if liked else 1.0, 1_000 * (k + 1) + user))
    interactions = _interactions(rows)
    samples = build_samples(interactions, SamplesConfig(history_len=10, min_history=1), SplitConfig(0.7, 0.1))
    return samples, interactions, _items(range(1, n_items + 2))


@pytest.fixture(scope="module")
def world():
    samples, interactions, items = group_world()
    return samples, TrainingData.from_tables(samples, interactions, items, like_threshold=3.0,
                                             item_features=toy_item_features(items["item_id"].to_list()))


def toy_item_features(item_ids: list[int]) -> pl.DataFrame:
    """An item_features table for the multi-modal baselines: a one-hot 'attributes' vector (item id mod 5) and a
    seeded random 'text' vector per item; no image."""
    rng = np.random.default_rng(0)
    attrs = [np.eye(5)[i % 5].tolist() for i in item_ids]
    text = [rng.normal(size=8).tolist() for _ in item_ids]
    return pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.Int64),
                         "text": pl.Series(text, dtype=pl.List(pl.Float32)),
                         "attributes": pl.Series(attrs, dtype=pl.List(pl.Float32)),
                         "image": pl.Series([None] * len(item_ids), dtype=pl.List(pl.Float32))}).with_columns(
        has_text=pl.lit(True), has_attributes=pl.lit(True), has_image=pl.lit(False))


# --- TrainingData ---

def test_from_tables_drops_interactions_after_the_training_period():
    samples = pl.DataFrame({
        "user_id": [1, 1, 2, 2], "item_id": [11, 12, 21, 22], "timestamp": [10, 20, 20, 30],
        "split": ["train", "train", "valid", "test"],
    })
    interactions = _interactions([
        (1, 10, 4.0, 5), (1, 11, 4.0, 10), (1, 12, 2.0, 20),  # user 1: first rating + two train targets
        (0, 90, 5.0, 20),  # another user's first rating, tied with the last train target, earlier in key order
        (2, 20, 5.0, 15), (2, 21, 5.0, 20),  # user 2: the valid target ties in time with the last train target
        (2, 22, 1.0, 30), (3, 30, 4.0, 40),  # later: dropped
    ])
    data = TrainingData.from_tables(samples, interactions, _items([10, 11, 12, 20, 21, 22, 30, 90]), 3.0)
    kept = set(data.interactions.select("user_id", "item_id").iter_rows())
    assert kept == {(1, 10), (1, 11), (1, 12), (0, 90), (2, 20)}
    assert data.train["split"].unique().to_list() == ["train"]
    assert set(data.liked().select("user_id", "item_id").iter_rows()) == {(1, 10), (1, 11), (0, 90), (2, 20)}
    with pytest.raises(ValueError, match="train"):
        TrainingData.from_tables(samples.filter(pl.col("split") != "train"), interactions, data.items, 3.0)


def test_from_tables_on_real_ml100k_matches_the_cold_start_training_period(processed_ml100k):
    folder = processed_ml100k / "data" / "processed"
    samples, interactions = read_table(folder, "samples"), read_table(folder, "interactions")
    data = TrainingData.from_tables(samples, interactions, read_table(folder, "items"), like_threshold=3.0)
    users, _ = training_period_counts(samples, interactions)
    assert data.interactions.height == users["user_train_interactions"].sum()
    assert 0 < data.interactions.height < interactions.height
    assert data.interactions["timestamp"].max() <= data.train["timestamp"].max()
    later = samples.filter(pl.col("split") != "train").select("user_id", "item_id")
    assert data.interactions.join(later, on=["user_id", "item_id"], how="semi").is_empty()


# --- the shared interface ---

@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_model_fits_and_scores_any_batch_deterministically(name, world):
    samples, data = world
    batch = pl.concat([
        samples.filter(pl.col("split") == "test").select("user_id", "item_id", "history_item_ids",
                                                          "history_ratings").head(5),
        _batch([
            (999, 3, [1, 20], [5.0, 1.0]),  # a user unseen in training, with history
            (998, 4, [], []),  # unseen user, empty history
            (2, 9999, [1, 2], [5.0, 4.0]),  # an item outside the catalogue
            (2, 31, [1], [5.0]),  # a catalogue item nobody rated in training
            (997, 5, [8888, 1], [5.0, 2.0]),  # a history item outside the catalogue
        ]),
    ])
    model = BASELINES[name]()
    assert isinstance(model, Recommender) and model.name == name
    stats = model.fit(data, seed=0)
    assert isinstance(stats, dict) and stats["seconds"] >= 0
    scores = model.score(batch)
    assert scores.shape == (batch.height,) and np.isfinite(scores).all()
    assert model.score(batch.head(0)).shape == (0,)

    again = BASELINES[name]()
    again.fit(data, seed=0, valid=samples.filter(pl.col("split") == "valid"))  # valid is only evaluated
    np.testing.assert_array_equal(again.score(batch), scores)
    other = BASELINES[name]()
    other.fit(data, seed=1)
    if name in LEARNED:
        assert not np.array_equal(other.score(batch), scores)
    else:
        np.testing.assert_array_equal(other.score(batch), scores)


# --- hand-computed scores ---

def test_popularity_counts_likes_in_the_training_period():
    interactions = _interactions([
        (1, 1, 5.0, 1), (2, 1, 4.0, 2), (3, 1, 4.0, 3),  # item 1: three likes
        (1, 2, 4.0, 4), (2, 2, 3.0, 5), (3, 2, 1.0, 6),  # item 2: rated as often, one like
        (4, 2, 5.0, 100),  # after the training period: not counted
    ])
    samples = pl.DataFrame({"user_id": [3], "item_id": [2], "timestamp": [6], "split": ["train"]})
    model = Popularity()
    model.fit(TrainingData.from_tables(samples, interactions, _items([1, 2, 3]), 3.0), seed=0)
    scores = model.score(_batch([(9, 1, [], []), (9, 2, [1], [5.0]), (9, 3, [], [])]))
    np.testing.assert_allclose(scores, [math.log(3 + 1), math.log(1 + 1), math.log(0 + 1)])
    assert scores[0] > scores[1] > scores[2]


TOY_STORY = "Toy Story (1995). Genres: Animation, Children's, Comedy"
ALADDIN = "Aladdin (1992). Genres: Animation, Children's, Comedy, Musical"
SCHINDLER = "Schindler's List (1993). Genres: Drama, War"


def test_encoder_gives_real_sentence_semantics():
    toy, aladdin, schindler = encode_texts([TOY_STORY, ALADDIN, SCHINDLER])
    np.testing.assert_allclose([np.linalg.norm(v) for v in (toy, aladdin, schindler)], 1.0, atol=1e-5)
    assert toy @ aladdin > toy @ schindler + 0.1


def test_content_scores_liked_history_above_disliked_history():
    items = pl.DataFrame({"item_id": [1, 2, 3], "title": ["Toy Story", "Schindler's List", "Aladdin"],
                          "year": [1995, 1993, 1992],
                          "genres": [["Animation", "Children's", "Comedy"], ["Drama", "War"],
                                     ["Animation", "Children's", "Comedy", "Musical"]]})
    samples = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1], "split": ["train"]})
    model = ContentBased()
    model.fit(TrainingData.from_tables(samples, _interactions([(1, 1, 5.0, 1)]), items, 3.0), seed=0)
    # history: Toy Story liked, Schindler's List disliked
    scores = model.score(_batch([(7, 1, [1, 2], [5.0, 2.0]), (7, 2, [1, 2], [5.0, 2.0]),
                                 (7, 3, [1, 2], [5.0, 2.0]), (7, 3, [1], [5.0]), (7, 42, [1], [5.0])]))
    toy, schindler, aladdin = encode_texts([TOY_STORY, SCHINDLER, ALADDIN]).astype(np.float64)
    assert scores[0] > scores[2] > scores[1]
    np.testing.assert_allclose(scores[0], 1 - toy @ schindler, atol=1e-6)
    np.testing.assert_allclose(scores[3], aladdin @ toy, atol=1e-6)  # no disliked history: that side counts 0
    assert scores[4] == 0.0  # unknown target


# --- learning ---

@pytest.mark.parametrize("model", [
    BPR(BPRConfig(batch_size=64, epochs=30)),
    LightGCN(LightGCNConfig(batch_size=64, epochs=30)),
    SASRec(SASRecConfig(batch_size=32, epochs=60, lr=3e-3, dropout=0.1)),  # small data: more, bigger steps
], ids=lambda m: m.name)
def test_collaborative_models_learn_the_group_structure(model, world):
    samples, data = world
    held_out = samples.filter(pl.col("split") != "train")
    stats = model.fit(data, seed=0)
    assert stats["loss_curve"][-1] < stats["loss_curve"][0]
    assert roc_auc_score(held_out["label"].to_numpy(), model.score(held_out)) > 0.8
    # users never seen in training are scored from their history alone
    new_users = held_out.with_columns(pl.col("user_id") + 10_000)
    assert roc_auc_score(new_users["label"].to_numpy(), model.score(new_users)) > 0.8


def test_real_ml100k_valid_auc_beats_chance(processed_ml100k):
    folder = processed_ml100k / "data" / "processed"
    samples = read_table(folder, "samples").filter(pl.col("split") != "test")  # the test split stays unseen
    data = TrainingData.from_tables(samples, read_table(folder, "interactions"), read_table(folder, "items"), 3.0)
    valid = samples.filter(pl.col("split") == "valid")
    for model, floor in ((Popularity(), 0.58), (BPR(BPRConfig(epochs=5)), 0.65)):
        stats = model.fit(data, seed=0, valid=valid)
        assert stats["valid_auc"] > floor, (model.name, stats["valid_auc"])


# --- one setting per protocol ---

def test_validation_on_candidate_lists_reports_ndcg(world):
    samples, data = world
    _, interactions, _ = group_world()
    lists = build_candidates(samples, interactions, n_negatives=5, seed=0, split="valid")
    model = BPR(BPRConfig(batch_size=64, epochs=4))
    stats = model.fit(data, seed=0, valid=lists)
    assert stats["valid_metric"] == "ndcg@10" and len(stats["valid_ndcg@10_curve"]) == 4
    expanded = expand_candidates(lists)
    by_hand = ranking_metrics(collect_scores(expanded, model.score(expanded), 6), ks=(10,))["ndcg@10"]
    assert stats["valid_ndcg@10"] == pytest.approx(by_hand)
    on_samples = BPR(BPRConfig(batch_size=64, epochs=4)).fit(data, seed=0, valid=samples.filter(
        pl.col("split") == "valid"))
    assert on_samples["valid_metric"] == "auc" and "valid_auc" in on_samples and "valid_ndcg@10" not in on_samples


def test_each_protocol_has_its_own_tuned_setting():
    assert set(RANKING_CONFIGS) == set(BASELINES) and PROTOCOLS == ("auc", "ranking")
    assert build_baseline("bpr").config == BPRConfig()
    ranking = build_baseline("bpr", "ranking")
    assert ranking.config == bpr_module.RANKING_CONFIG != BPRConfig()
    # the ranking protocol wants unrated items as negatives: the AUC setting draws them among disliked ratings
    assert ranking.config.disliked_negatives < BPRConfig().disliked_negatives
    assert build_baseline("bpr", "ranking", {"epochs": 3}).config == dataclasses.replace(
        bpr_module.RANKING_CONFIG, epochs=3)
    assert build_baseline("popularity", "ranking").config == build_baseline("popularity").config
    with pytest.raises(KeyError, match="protocol"):
        build_baseline("bpr", "precision")
    with pytest.raises(TypeError):
        build_baseline("bpr", "ranking", {"no_such_field": 1})


def test_ranking_setting_beats_popularity_and_the_auc_setting_on_valid_lists(processed_ml100k):
    """The ranking-tuned BPR on validation lists (liked valid targets vs 99 unrated items); the test split stays
    unseen. The AUC-tuned setting (disliked-item negatives) ranks below popularity there."""
    folder = processed_ml100k / "data" / "processed"
    samples = read_table(folder, "samples").filter(pl.col("split") != "test")
    interactions = read_table(folder, "interactions")
    data = TrainingData.from_tables(samples, interactions, read_table(folder, "items"), 3.0)
    lists = build_candidates(samples, interactions, seed=0, split="valid", max_positives=300)
    models = {"popularity": Popularity(), "bpr_ranking": build_baseline("bpr", "ranking"),
              "bpr_auc": build_baseline("bpr", "auc", {"epochs": 10})}
    ndcg = {}
    for name, model in models.items():
        model.fit(data, seed=0)
        ndcg[name] = validate(model, lists)
    assert ndcg["bpr_ranking"] > ndcg["popularity"] + 0.05 > ndcg["bpr_auc"] + 0.05, ndcg


def test_baselines_step_scores_each_protocol_with_its_own_fit(processed_copy):
    from explainrec_core.steps.eval_steps import run_baselines, run_ranking_candidates

    root = processed_copy
    hyper = {"bpr": {"epochs": 2}}
    ranking_hyper = {"bpr": {"epochs": 3}}
    write_params(root, data={"raw_dir": "unused", "processed_dir": "data/processed"},
                 baselines={"methods": ["popularity", "bpr"], "seeds": [0, 1, 2], "hyperparameters": hyper,
                            "ranking_hyperparameters": ranking_hyper},
                 ranking={"max_positives": 150, "llm_positives": 20})
    cfg = load_config(root / "params.yaml")
    run_ranking_candidates(cfg, root)
    folder = root / "data" / "processed"
    samples, cold = read_table(folder, "samples"), read_table(folder, "cold_start_sets")
    llm_subset = pl.concat([samples.filter(pl.col("split") == "test").head(40).select(
        pl.lit("test").alias("set"), "sample_id")] + [cold.filter(pl.col("set") == name).head(30).select(
            "set", "sample_id") for name in ("new_user", "new_item")])
    write_parquet(llm_subset, root / paths.REC_PROMPTS)  # only which samples the LLM scored is read
    summary = run_baselines(cfg, root)

    results = pl.read_parquet(root / paths.BASELINE_RESULTS)
    assert sorted(results.select("method", "seed", "protocol").rows()) == sorted(
        (m, s, p) for m in ("popularity", "bpr") for s in (0, 1, 2) for p in PROTOCOLS)
    auc_rows, rank_rows = (results.filter(pl.col("protocol") == p) for p in PROTOCOLS)
    assert auc_rows["test_auc"].null_count() == 0 and auc_rows["rank_ndcg@10"].null_count() == auc_rows.height
    assert rank_rows["rank_ndcg@10"].null_count() == 0 and rank_rows["test_auc"].null_count() == rank_rows.height
    assert (rank_rows["rank_n"] == 150).all() and (rank_rows["rank_llm_subset_n"] == 20).all()

    # AUC sets are scored by the AUC-tuned fit, candidate lists by the ranking-tuned one (fitted here again)
    data = TrainingData.from_tables(samples, read_table(folder, "interactions"), read_table(folder, "items"), 3.0)
    test = samples.filter(pl.col("split") == "test")
    candidates = pl.read_parquet(root / paths.RANKING_CANDIDATES)
    expanded = expand_candidates(candidates)
    auc_fit, rank_fit = build_baseline("bpr", "auc", hyper["bpr"]), build_baseline("bpr", "ranking",
                                                                                   ranking_hyper["bpr"])
    auc_fit.fit(data, seed=1)
    rank_fit.fit(data, seed=1)
    bpr_auc = auc_rows.filter((pl.col("method") == "bpr") & (pl.col("seed") == 1)).row(0, named=True)
    bpr_rank = rank_rows.filter((pl.col("method") == "bpr") & (pl.col("seed") == 1)).row(0, named=True)
    assert bpr_auc["test_auc"] == pytest.approx(auc(test["label"].to_numpy(), auc_fit.score(test)))
    grid = collect_scores(expanded, rank_fit.score(expanded), 100)
    assert bpr_rank["rank_ndcg@10"] == pytest.approx(ranking_metrics(grid)["ndcg@10"])
    assert bpr_rank["rank_ndcg@10"] != pytest.approx(
        ranking_metrics(collect_scores(expanded, auc_fit.score(expanded), 100))["ndcg@10"])
    # popularity has one setting for both protocols: fitted once, so both rows carry the same fit
    pop = results.filter(pl.col("method") == "popularity").sort("seed", "protocol")
    assert pop["fit_seconds"].to_list()[::2] == pop["fit_seconds"].to_list()[1::2]

    scores = pl.read_parquet(root / paths.BASELINE_SCORES)
    assert (scores["protocol"] == "auc").all()
    assert scores.filter(pl.col("set").is_in(["test", "new_user", "new_item"])).height == 2 * 3 * llm_subset.height
    # the true cold-start sets, which no LLM scores yet, keep every sample: the zero-shot models pair with them
    curve = summary["cold_start_curve_n"]
    assert set(curve) == {"new_item_unseen", *(f"new_user_k{k}" for k in cfg.cold_start.curve_ks)}
    for name, n in curve.items():
        assert scores.filter(pl.col("set") == name).height == 2 * 3 * n
    assert summary["cold_start_curve"]["new_user_k0"]["bpr"]["n_seeds"] == 3
    ranks = pl.read_parquet(root / paths.BASELINE_RANKING)
    assert (ranks["protocol"] == "ranking").all() and ranks.height == 2 * 3 * 150

    # standard deviations over seeds are sample standard deviations (ddof = 1)
    per_seed = auc_rows.filter(pl.col("method") == "bpr")["test_auc"].to_numpy()
    assert summary["test_auc"]["bpr"]["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert summary["test_auc"]["bpr"]["mean"] == pytest.approx(per_seed.mean())
    assert summary["ndcg@10"]["bpr"]["mean"] == pytest.approx(rank_rows.filter(
        pl.col("method") == "bpr")["rank_ndcg@10"].mean())
    assert summary["hyperparameters"]["ranking"]["bpr"]["epochs"] == 3
    assert summary["hyperparameters"]["auc"]["bpr"]["epochs"] == 2


def test_baseline_runs_on_worker_processes_give_the_results_of_one_process(processed_copy):
    """The step spreads its (method, seed) runs over single-threaded worker processes (steps/baseline_runs.py):
    the tables it writes must not depend on how many there are, nor on the order the runs finish in."""
    from explainrec_core.steps.eval_steps import run_baselines, run_ranking_candidates

    root = processed_copy
    folder = root / "data" / "processed"
    written = {}
    for workers in (1, 2):
        write_params(root, data={"raw_dir": "unused", "processed_dir": "data/processed"},
                     baselines={"methods": ["bpr", "popularity"], "seeds": [0, 1], "workers": workers,
                                "hyperparameters": {"bpr": {"epochs": 2}},
                                "ranking_hyperparameters": {"bpr": {"epochs": 2}}},
                     ranking={"max_positives": 60, "llm_positives": 5})
        cfg = load_config(root / "params.yaml")
        run_ranking_candidates(cfg, root)
        samples = read_table(folder, "samples")
        write_parquet(samples.filter(pl.col("split") == "test").head(30).select(pl.lit("test").alias("set"),
                                                                                "sample_id"), root / paths.REC_PROMPTS)
        run_baselines(cfg, root)
        timing = ["fit_seconds", "ms_per_sample"]
        written[workers] = [pl.read_parquet(root / paths.BASELINE_RESULTS).drop(timing),
                            pl.read_parquet(root / paths.BASELINE_SCORES),
                            pl.read_parquet(root / paths.BASELINE_RANKING)]
    for one, two in zip(written[1], written[2], strict=True):
        assert one.height > 0
        assert one.equals(two)
    # the runs come back in the order of methods x seeds, not in the order the workers finished them
    assert written[2][0].select("method", "seed").unique(maintain_order=True).rows() == [
        ("bpr", 0), ("bpr", 1), ("popularity", 0), ("popularity", 1)]


def test_a_misspelt_baseline_fails_before_any_fit(processed_copy):
    from explainrec_core.errors import ConfigError
    from explainrec_core.steps.eval_steps import run_baselines

    write_params(processed_copy, data={"raw_dir": "unused", "processed_dir": "data/processed"},
                 baselines={"methods": ["bpr", "lightgnc"], "workers": 2})
    with pytest.raises(ConfigError, match="lightgnc"):
        run_baselines(load_config(processed_copy / "params.yaml"), processed_copy)


def test_params_yaml_states_the_tuned_settings_of_both_protocols():
    """params.yaml spells out each protocol's setting; they are the documented, validation-tuned ones in code."""
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml").baselines
    for name in BASELINES:
        assert build_baseline(name, "auc", cfg.hyperparameters[name]).config == BASELINES[name]().config, name
        assert build_baseline(name, "ranking", cfg.ranking_hyperparameters[name]).config == RANKING_CONFIGS[name], name
