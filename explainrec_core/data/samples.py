"""Samples, time-ordered splits and cold-start sets (the TALLRec protocol).

A sample is one rating of a user: the target item, its label (rating > like_threshold) and the user's previous
`history_len` rated items with their ratings, oldest first. Samples are ordered globally by
(timestamp, user_id, item_id) and cut 80/10/10 by position, so every training target is no later than every
validation target, which is no later than every test target. Histories may include items rated in the
validation/test period: they are what the user had rated before the target, known at prediction time.

Cold-start sets are test samples whose user (item) has fewer than a threshold of interactions in the training
period, i.e. interactions no later than the last training target.
"""

from __future__ import annotations

import polars as pl

from explainrec_core.config import ColdStartConfig, SamplesConfig, SplitConfig

SPLITS = ("train", "valid", "test")
SAMPLE_KEY = ("timestamp", "user_id", "item_id")


def build_samples(interactions: pl.DataFrame, cfg: SamplesConfig, split: SplitConfig) -> pl.DataFrame:
    n_hist = cfg.history_len
    by_user = interactions.sort("user_id", "timestamp", "item_id")

    def previous(col: str, dtype: pl.DataType) -> pl.Expr:
        # shift(k) within a user is the k-th previous rating; oldest first, and nulls (no such rating) dropped.
        shifted = [pl.col(col).shift(k).over("user_id") for k in range(n_hist, 0, -1)]
        return pl.concat_list(shifted).list.drop_nulls().cast(pl.List(dtype))

    samples = (
        by_user.with_columns(
            pl.int_range(pl.len()).over("user_id").alias("position"),
            previous("item_id", pl.Int64).alias("history_item_ids"),
            previous("rating", pl.Float64).alias("history_ratings"),
            pl.col("timestamp").shift(1).over("user_id").alias("history_end_timestamp"),
        )
        .filter(pl.col("position") >= cfg.min_history)
        .sort(*SAMPLE_KEY)
        .with_row_index("sample_id")
    )
    n = samples.height
    n_train, n_valid_end = int(n * split.train), int(n * (split.train + split.valid))
    sample_id = pl.col("sample_id").cast(pl.Int64)
    return samples.select(
        sample_id,
        "user_id", "item_id", "rating",
        (pl.col("rating") > cfg.like_threshold).cast(pl.Int8).alias("label"),
        "timestamp",
        "history_item_ids", "history_ratings", "history_end_timestamp",
        pl.when(sample_id < n_train).then(pl.lit("train"))
        .when(sample_id < n_valid_end).then(pl.lit("valid"))
        .otherwise(pl.lit("test")).alias("split"),
    )


def _at_or_before(key: tuple) -> pl.Expr:
    """Rows whose (timestamp, user_id, item_id) is <= `key` in lexicographic order."""
    ts, user, item = key
    return (pl.col("timestamp") < ts) | (
        (pl.col("timestamp") == ts)
        & ((pl.col("user_id") < user) | ((pl.col("user_id") == user) & (pl.col("item_id") <= item)))
    )


def training_period_counts(samples: pl.DataFrame, interactions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Interactions per user and per item up to (and including) the last training target."""
    last_train = samples.filter(pl.col("split") == "train").sort(*SAMPLE_KEY).select(SAMPLE_KEY).row(-1)
    period = interactions.filter(_at_or_before(last_train))
    users = period.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("user_train_interactions"))
    items = period.group_by("item_id").agg(pl.len().cast(pl.Int64).alias("item_train_interactions"))
    return users, items


def build_cold_start_sets(samples: pl.DataFrame, interactions: pl.DataFrame, cfg: ColdStartConfig) -> pl.DataFrame:
    """One row per (test sample, set) with set in {"new_user", "new_item"}; a sample may be in both."""
    users, items = training_period_counts(samples, interactions)
    test = (
        samples.filter(pl.col("split") == "test")
        .select("sample_id", "user_id", "item_id", "label")
        .join(users, on="user_id", how="left")
        .join(items, on="item_id", how="left")
        .with_columns(pl.col("user_train_interactions", "item_train_interactions").fill_null(0))
    )
    new_user = test.filter(pl.col("user_train_interactions") < cfg.max_user_train_interactions)
    new_item = test.filter(pl.col("item_train_interactions") < cfg.max_item_train_interactions)
    return (
        pl.concat([new_user.with_columns(pl.lit("new_user").alias("set")),
                   new_item.with_columns(pl.lit("new_item").alias("set"))])
        .select("set", "sample_id", "user_id", "item_id", "label",
                "user_train_interactions", "item_train_interactions")
        .sort("set", "sample_id")
    )


def sample_stats(samples: pl.DataFrame) -> dict:
    stats: dict = {"n_samples": samples.height}
    for name in SPLITS:
        part = samples.filter(pl.col("split") == name)
        stats[name] = {
            "n_samples": part.height,
            "n_users": part["user_id"].n_unique(),
            "n_items": part["item_id"].n_unique(),
            "positive_rate": round(float(part["label"].mean()), 4) if part.height else None,
            "first_timestamp": part["timestamp"].min(),
            "last_timestamp": part["timestamp"].max(),
        }
    stats["mean_history_len"] = round(float(samples["history_item_ids"].list.len().mean()), 3)
    return stats


def cold_start_stats(cold: pl.DataFrame) -> dict:
    stats = {}
    for name in ("new_user", "new_item"):
        part = cold.filter(pl.col("set") == name)
        stats[name] = {
            "n_samples": part.height,
            "n_users": part["user_id"].n_unique(),
            "n_items": part["item_id"].n_unique(),
            "positive_rate": round(float(part["label"].mean()), 4) if part.height else None,
        }
    return stats
