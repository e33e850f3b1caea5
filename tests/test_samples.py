"""Samples, splits and cold-start sets: hand-computed cases, determinism and the real ML-100K numbers."""

from __future__ import annotations

import hashlib

import polars as pl

from explainrec_core.config import ColdStartConfig, SamplesConfig, SplitConfig, load_config
from explainrec_core.data.samples import build_cold_start_sets, build_samples
from explainrec_core.pipeline import run_step
from tests.conftest import read_table


def _interactions(rows):
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64,
                                      "timestamp": pl.Int64}, orient="row")


# user 1 rates items 10..14 at t=1..5, user 2 rates 20..22 at t=10..12 (one interaction tied with user 1's)
TOY = _interactions([
    (1, 10, 5.0, 1), (1, 11, 2.0, 2), (1, 12, 4.0, 3), (1, 13, 3.0, 4), (1, 14, 4.5, 5),
    (2, 20, 1.0, 3), (2, 21, 5.0, 10), (2, 22, 4.0, 11),
])


def test_history_is_the_previous_items_oldest_first():
    samples = build_samples(TOY, SamplesConfig(history_len=2, min_history=1), SplitConfig(0.5, 0.25))
    user1 = samples.filter(pl.col("user_id") == 1).sort("timestamp")
    assert user1["item_id"].to_list() == [11, 12, 13, 14]  # the first rating has no history: not a sample
    assert user1["history_item_ids"].to_list() == [[10], [10, 11], [11, 12], [12, 13]]
    assert user1["history_ratings"].to_list() == [[5.0], [5.0, 2.0], [2.0, 4.0], [4.0, 3.0]]
    assert user1["label"].to_list() == [0, 1, 0, 1]  # rating > 3
    assert user1["history_end_timestamp"].to_list() == [1, 2, 3, 4]


# user 1 rates item 10 at t=1, items 11 and 12 in the same second t=2, item 13 at t=3; user 2 rates two items at once
TIES = _interactions([
    (1, 10, 5.0, 1), (1, 11, 2.0, 2), (1, 12, 4.0, 2), (1, 13, 3.0, 3),
    (2, 20, 4.0, 7), (2, 21, 1.0, 7),
])


def test_history_holds_only_ratings_strictly_before_the_target_second():
    samples = build_samples(TIES, SamplesConfig(history_len=3, min_history=1), SplitConfig(0.5, 0.25))
    rows = samples.sort("user_id", "timestamp", "item_id")
    # 12 does not see 11 (same second), 13 sees both; user 2's two ratings have no earlier one: no samples
    assert rows.select("user_id", "item_id").rows() == [(1, 11), (1, 12), (1, 13)]
    assert rows["history_item_ids"].to_list() == [[10], [10], [10, 11, 12]]
    assert rows["history_ratings"].to_list() == [[5.0], [5.0], [5.0, 2.0, 4.0]]
    assert rows["history_end_timestamp"].to_list() == [1, 1, 2]
    assert (rows["history_end_timestamp"] < rows["timestamp"]).all()


def test_empty_histories_end_nowhere():
    samples = build_samples(TIES, SamplesConfig(history_len=3, min_history=0), SplitConfig(0.5, 0.25))
    user2 = samples.filter(pl.col("user_id") == 2)
    assert user2["history_item_ids"].to_list() == [[], []]
    assert user2["history_end_timestamp"].to_list() == [None, None]  # not user 1's last rating


def test_min_history_and_threshold_are_parameters():
    samples = build_samples(TOY, SamplesConfig(history_len=10, min_history=3, like_threshold=4.0),
                            SplitConfig(0.5, 0.25))
    assert samples.sort("timestamp")["item_id"].to_list() == [13, 14]  # user 2 never has 3 previous items
    assert samples.sort("timestamp")["label"].to_list() == [0, 1]  # 4.5 > 4 only


def test_split_is_a_global_time_cut():
    samples = build_samples(TOY, SamplesConfig(history_len=3), SplitConfig(0.5, 0.25))
    # 6 samples ordered by (timestamp, user, item): t=2,3,4,5 (user 1), t=10,11 (user 2)
    assert samples.sort("sample_id").select("timestamp", "split").rows() == [
        (2, "train"), (3, "train"), (4, "train"), (5, "valid"), (10, "test"), (11, "test")]


def test_cold_start_counts_training_period_interactions():
    samples = build_samples(TOY, SamplesConfig(history_len=3), SplitConfig(0.5, 0.25))
    # Training period = interactions up to the last training target (t=4, user 1): user 1 has 4, user 2 has 1;
    # items 21 and 22 have none.
    cold = build_cold_start_sets(samples, TOY, ColdStartConfig(max_user_train_interactions=2,
                                                               max_item_train_interactions=1))
    assert cold.select("set", "user_id", "item_id", "user_train_interactions", "item_train_interactions").rows() \
        == [("new_item", 2, 21, 1, 0), ("new_item", 2, 22, 1, 0), ("new_user", 2, 21, 1, 0), ("new_user", 2, 22, 1, 0)]
    none_new = build_cold_start_sets(samples, TOY, ColdStartConfig(1, 0))
    assert none_new.height == 0


def test_real_ml100k_samples(processed_ml100k):
    samples = read_table(processed_ml100k / "data/processed", "samples")
    interactions = read_table(processed_ml100k / "data/processed", "interactions")
    # every rating but those in each user's first second (1,192 ratings share it with the user's very first)
    after_first_second = interactions.filter(pl.col("timestamp") > pl.col("timestamp").min().over("user_id"))
    assert samples.height == after_first_second.height == 100_000 - 943 - 1_192
    counts = samples.group_by("split").len().sort("split")
    assert dict(counts.rows()) == {"train": 78_292, "valid": 9_786, "test": 9_787}  # 80/10/10 of 97,865
    by_split = samples.group_by("split").agg(pl.col("timestamp").min().alias("lo"),
                                             pl.col("timestamp").max().alias("hi"))
    spans = {row[0]: row[1:] for row in by_split.rows()}
    assert spans["train"][1] <= spans["valid"][0] and spans["valid"][1] <= spans["test"][0]
    assert samples["history_item_ids"].list.len().max() == 10
    cold = read_table(processed_ml100k / "data/processed", "cold_start_sets")
    sizes = dict(cold.group_by("set").len().rows())
    assert sizes["new_user"] > 0 and sizes["new_item"] > 0
    assert cold.filter(pl.col("set") == "new_user")["user_train_interactions"].max() < 5


def test_rerun_writes_the_same_bytes(processed_copy):
    cfg = load_config(processed_copy / "params.yaml")
    files = [processed_copy / "data/processed" / f"{n}.parquet"
             for n in ("interactions", "items", "users", "samples", "cold_start_sets")]
    before = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    for step in ("ingest", "samples", "cold_start_sets"):
        run_step(step, cfg, processed_copy)
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in files] == before


def test_lazy_frames_in_give_lazy_frames_out():
    cfg, split = SamplesConfig(history_len=3), SplitConfig(0.5, 0.25)
    lazy = build_samples(TOY.lazy(), cfg, split)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect(engine="streaming").equals(build_samples(TOY, cfg, split))
    cold = build_cold_start_sets(lazy, TOY.lazy(), ColdStartConfig(max_user_train_interactions=2,
                                                                   max_item_train_interactions=1))
    assert isinstance(cold, pl.LazyFrame)
    assert cold.collect().select("set", "user_id", "item_id").rows() == [
        ("new_item", 2, 21), ("new_item", 2, 22), ("new_user", 2, 21), ("new_user", 2, 22)]


def test_true_cold_start_sets_cut_the_same_new_user_samples_to_their_last_k_ratings():
    from explainrec_core.data.samples import history_cut_sets

    samples = pl.DataFrame({
        "sample_id": [1, 2, 3, 4], "user_id": [7, 7, 8, 9], "item_id": [10, 11, 12, 13], "label": [1, 0, 1, 0],
        "history_item_ids": [[1, 2, 3, 4], [1, 2], [5, 6, 7], [8]],
        "history_ratings": [[5.0, 4.0, 3.0, 2.0], [5.0, 4.0], [1.0, 2.0, 3.0], [4.0]]})
    cold = pl.DataFrame({"set": ["new_user", "new_user", "new_user", "new_item", "new_item"],
                         "sample_id": [1, 2, 3, 3, 4], "item_train_interactions": [9, 9, 0, 0, 2]})
    sets = history_cut_sets(samples, cold, (0, 1, 3))
    assert list(sets) == ["new_user_k0", "new_user_k1", "new_user_k3", "new_item_unseen"]
    for k in (0, 1, 3):  # sample 2 has only 2 earlier ratings: in no k-set, so every k scores the same samples
        frame = sets[f"new_user_k{k}"].sort("sample_id")
        assert frame["sample_id"].to_list() == [1, 3]
        assert frame["history_item_ids"].to_list() == [[1, 2, 3, 4][4 - k:], [5, 6, 7][3 - k:]]
        assert frame["history_ratings"].to_list()[0] == [5.0, 4.0, 3.0, 2.0][4 - k:]
    assert sets["new_item_unseen"]["sample_id"].to_list() == [3]  # item 13 had 2 training interactions
