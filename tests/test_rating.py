"""The rating task's reference models: biased MF by ALS, its fold-in, and the paired RMSE / MAE summary."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from explainrec_core.baselines.base import TrainingData
from explainrec_core.rating.biased_mf import BiasedMF, BiasedMFConfig, GlobalMean
from explainrec_core.rating.metrics import error_summary


def _sample(user: int, item: int, history: list[int], ratings: list[float], rating: float = 3.0) -> dict:
    return {"sample_id": 0, "user_id": user, "item_id": item, "rating": rating,
            "history_item_ids": history, "history_ratings": ratings}


def test_biases_only_fold_in_matches_hand_computation():
    # Two items, biases only: mu = 3, and after ALS item 1 sits above item 2. A new user (id 99) with one history
    # rating of 5 on item 1 gets b_u = (5 - mu - b_1) / (1 + reg_bias) (a one-feature ridge regression).
    ratings = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "rating": [4.0, 2.0, 4.0, 2.0]})
    model = BiasedMF(BiasedMFConfig(dim=0, reg_bias=1.0, sweeps=5))
    model.fit(ratings)
    assert model.mu == pytest.approx(3.0)
    b1, b2 = model.item_bias[1], model.item_bias[2]
    assert b1 > 0 > b2
    row = pl.DataFrame([_sample(99, 2, [1], [5.0])])
    b_user = (5.0 - 3.0 - b1) / (1.0 + 1.0)
    assert model.predict(row)[0] == pytest.approx(3.0 + b_user + b2)
    # No history and never seen: mu + b_i. An item nobody rated: mu + b_u, and it is counted.
    assert model.predict(pl.DataFrame([_sample(99, 1, [], [])]))[0] == pytest.approx(3.0 + b1)
    unknown = pl.DataFrame([_sample(99, 777, [1], [5.0])])
    assert model.predict(unknown)[0] == pytest.approx(3.0 + b_user)
    assert model.unknown_items(unknown) == 1


def test_biased_mf_recovers_a_planted_low_rank_matrix():
    rng = np.random.default_rng(0)
    n_users, n_items, dim = 120, 80, 3
    p, q = rng.normal(0, 0.8, (n_users, dim)), rng.normal(0, 0.8, (n_items, dim))
    bu, bi = rng.normal(0, 0.4, n_users), rng.normal(0, 0.4, n_items)
    truth = 3.2 + bu[:, None] + bi[None, :] + p @ q.T
    mask = rng.random((n_users, n_items)) < 0.5
    users, items = np.nonzero(mask)
    train = pl.DataFrame({"user_id": users, "item_id": items,
                          "rating": truth[users, items] + rng.normal(0, 0.1, len(users))})
    held_u, held_i = np.nonzero(~mask)
    held = pl.DataFrame({"sample_id": np.arange(len(held_u)), "user_id": held_u, "item_id": held_i,
                         "history_item_ids": [[]] * len(held_u), "history_ratings": [[]] * len(held_u)},
                        schema_overrides={"history_item_ids": pl.List(pl.Int64),
                                          "history_ratings": pl.List(pl.Float64)})
    target = truth[held_u, held_i]
    mf = BiasedMF(BiasedMFConfig(dim=dim, reg=1.0, reg_bias=1.0, sweeps=15))
    mf.fit(train)
    mf_rmse = np.sqrt(np.mean((mf.predict(held) - np.clip(target, mf.low, mf.high)) ** 2))
    biases = BiasedMF(BiasedMFConfig(dim=0, reg_bias=1.0))
    biases.fit(train)
    bias_rmse = np.sqrt(np.mean((biases.predict(held) - np.clip(target, biases.low, biases.high)) ** 2))
    assert mf_rmse < 0.35 < bias_rmse


def test_a_prediction_never_reads_the_target_rating(processed_ml100k):
    samples = pl.read_parquet(processed_ml100k / "data/processed/samples.parquet")
    data = TrainingData.from_tables(samples, pl.read_parquet(processed_ml100k / "data/processed/interactions.parquet"),
                                    pl.read_parquet(processed_ml100k / "data/processed/items.parquet"), 3.0)
    model = BiasedMF(BiasedMFConfig(dim=8, sweeps=3))
    model.fit(data.interactions)
    test = samples.filter(pl.col("split") == "test").head(200)
    flipped = test.with_columns((6.0 - pl.col("rating")).alias("rating"))
    assert np.array_equal(model.predict(test), model.predict(flipped))
    # ... while the history it is given does matter.
    shifted = test.with_columns(pl.col("history_ratings").list.eval(6.0 - pl.element()))
    assert not np.allclose(model.predict(test), model.predict(shifted))


def test_biased_mf_beats_the_global_mean_on_real_validation_ratings(processed_ml100k):
    samples = pl.read_parquet(processed_ml100k / "data/processed/samples.parquet")
    data = TrainingData.from_tables(samples, pl.read_parquet(processed_ml100k / "data/processed/interactions.parquet"),
                                    pl.read_parquet(processed_ml100k / "data/processed/items.parquet"), 3.0)
    valid = samples.filter(pl.col("split") == "valid").sample(2000, seed=0)
    frames = []
    for model in (GlobalMean(), BiasedMF(BiasedMFConfig(dim=8, sweeps=4))):
        model.fit(data.interactions)
        frames.append(valid.select("sample_id", "rating").with_columns(
            pl.lit(model.name).alias("method"), pl.lit("valid").alias("set"),
            pl.Series("prediction", model.predict(valid))))
    summary = error_summary(pl.concat(frames), resamples=300)["valid"]
    assert summary["n"] == 2000
    delta = summary["methods"]["global_mean"]["vs_biased_mf"]["rmse"]
    assert delta["verdict"] == "higher error" and delta["delta"] > 0  # the global mean errs more than biased MF
    rmse = summary["methods"]["biased_mf"]["rmse"]
    assert rmse["ci95"][0] <= rmse["value"] <= rmse["ci95"][1] < 1.1


def test_error_summary_is_paired_and_hand_checkable():
    scores = pl.DataFrame({"method": ["a"] * 4 + ["biased_mf"] * 4, "set": ["t"] * 8,
                           "sample_id": [0, 1, 2, 3] * 2, "rating": [1.0, 2.0, 3.0, 4.0] * 2,
                           "prediction": [1.0, 2.0, 3.0, 6.0, 2.0, 3.0, 4.0, 5.0]})
    out = error_summary(scores, resamples=200)["t"]["methods"]
    assert out["a"]["rmse"]["value"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert out["a"]["mae"]["value"] == pytest.approx(0.5)
    assert out["biased_mf"]["rmse"]["value"] == pytest.approx(1.0)
    assert out["a"]["vs_biased_mf"]["mae"]["delta"] == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="not the same samples"):
        error_summary(scores.filter(~((pl.col("method") == "a") & (pl.col("sample_id") == 3))), resamples=10)
