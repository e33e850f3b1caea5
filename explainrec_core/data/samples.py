"""Samples, time-ordered splits and cold-start sets (the TALLRec protocol).

A sample is one rating of a user: the target item, its label (rating > like_threshold) and the last
`history_len` items the user rated strictly before the target's timestamp, with their ratings, oldest first.
Ratings at the same second as the target are not in its history, whatever their item ids: they were entered
together (most MovieLens-100K ratings share their second with another of the user's), so no order between them
is known, and ordering them by item id would show some targets their batch-mates. Samples are ordered globally by
(timestamp, user_id, item_id) and cut 80/10/10 by position, so every training target is no later than every
validation target, which is no later than every test target. Histories may include items rated in the
validation/test period: they are what the user had rated before the target, known at prediction time.

Cold-start sets are test samples whose user (item) has fewer than a threshold of interactions in the training
period, i.e. interactions no later than the last training target.

Scale: every function takes a polars DataFrame or LazyFrame and returns the same kind. For a LazyFrame the
result is a query to sink (`sink_parquet`) or collect with the streaming engine; at ML-25M scale (25M ratings)
the samples table holds ~480M history values (~4 GB in memory), so the step functions never hold it whole.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa

from explainrec_core.config import ColdStartConfig, SamplesConfig, SplitConfig

SPLITS = ("train", "valid", "test")
SAMPLE_KEY = ("timestamp", "user_id", "item_id")
Frame = pl.DataFrame | pl.LazyFrame
_INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def _like(result: pl.LazyFrame, source: Frame) -> Frame:
    """Eager in, eager out: callers holding DataFrames keep getting DataFrames."""
    return result.collect() if isinstance(source, pl.DataFrame) else result


def build_samples(interactions: Frame, cfg: SamplesConfig, split: SplitConfig) -> Frame:
    """Samples with their histories and split labels (schema: see the module docstring and tests).

    How it scales: the interactions are sorted once by (user, timestamp, item); a sample's history is then
    the slice of the rows before its second within its user, i.e. rows [max(stop - history_len, user's first
    row), stop) where `stop` is the user's first row at the sample's timestamp. The scalar columns (row, slice
    length, sample key) are computed and ordered eagerly -- a stable sort on timestamp alone suffices, as rows
    are already in (user, item) order within a timestamp --;
    the history lists, 85% of the output, are gathered per batch from two flat arrays, so a streaming sink
    never materialises them all. (Per-user `shift(k).over(user)` windows, the plain formulation, took 240 s
    and 7.4 GB at 25M ratings on 2 cores; this takes a fraction of that, see README "Data path at scale").
    """
    n_hist = cfg.history_len
    by_user = interactions.lazy().select(_INTERACTION_COLUMNS).collect()
    if not _sorted_by(by_user, ("user_id", "timestamp", "item_id")):  # ingest writes them sorted: skip the copy
        by_user = by_user.sort("user_id", "timestamp", "item_id")
    nulls = {c: n for c, n in zip(by_user.columns, by_user.null_count().row(0), strict=True) if n}
    if nulls:  # validated tables never have them; a null inside a history would be silently dropped otherwise
        raise ValueError(f"interactions contain nulls: {nulls}")
    row = pl.col("row")
    first_of_user = pl.col("user_id").shift(1).is_null() | (pl.col("user_id") != pl.col("user_id").shift(1))
    first_of_second = first_of_user | (pl.col("timestamp") != pl.col("timestamp").shift(1))
    stop, start = pl.col("history_stop"), pl.col("user_start")
    skeleton = (
        by_user.lazy().with_row_index("row")
        .with_columns(pl.when(first_of_user).then(row).forward_fill().alias("user_start"),
                      # the history ends before the user's first rating at the target's second
                      pl.when(first_of_second).then(row).forward_fill().alias("history_stop"),
                      pl.when(first_of_second).then(pl.col("timestamp").shift(1)).forward_fill()
                      .alias("history_end_timestamp"))
        .filter(stop - start >= cfg.min_history)
        .with_columns(pl.min_horizontal(stop - start, n_hist).cast(pl.Int64).alias("history_len"),
                      # an empty history (min_history = 0) ends nowhere, not at the previous user's last rating
                      pl.when(stop > start).then(pl.col("history_end_timestamp")).alias("history_end_timestamp"))
        .drop("user_start")
        .sort("timestamp", maintain_order=True)  # stable: equal timestamps stay in (user_id, item_id) order
        .with_row_index("sample_id")
        # Cut points inside the query (pl.len() = number of samples), computed as int(n * share) would be.
        .with_columns(pl.when(pl.col("sample_id") < (pl.len() * split.train).cast(pl.Int64)).then(0)
                      .when(pl.col("sample_id") < (pl.len() * (split.train + split.valid)).cast(pl.Int64)).then(1)
                      .otherwise(2).cast(pl.UInt8).alias("split_code"))
        .collect()
    )
    items = history_gather(by_user["item_id"].cast(pl.Int64).to_numpy(), n_hist, pl.Int64)
    ratings = history_gather(by_user["rating"].cast(pl.Float64).to_numpy(), n_hist, pl.Float64)
    del by_user
    window = pl.struct(pl.col("history_stop").alias("row"), "history_len")
    sample_id = pl.col("sample_id").cast(pl.Int64)
    result = skeleton.lazy().select(
        sample_id,
        "user_id", "item_id", "rating",
        (pl.col("rating") > cfg.like_threshold).cast(pl.Int8).alias("label"),
        "timestamp",
        window.map_batches(items, pl.List(pl.Int64), is_elementwise=True).alias("history_item_ids"),
        window.map_batches(ratings, pl.List(pl.Float64), is_elementwise=True).alias("history_ratings"),
        "history_end_timestamp",
        pl.col("split_code").replace_strict([0, 1, 2], SPLITS, return_dtype=pl.String).alias("split"),
    )
    return _like(result, interactions)


def _sorted_by(df: pl.DataFrame, keys: tuple[str, ...]) -> bool:
    """Whether rows are in non-decreasing lexicographic order of `keys` (one vectorised pass)."""
    not_after = pl.lit(True)  # row >= previous row on keys[i:], built from the last key backwards
    for key in reversed(keys):
        col, prev = pl.col(key), pl.col(key).shift(1)
        not_after = (col > prev) | ((col == prev) & not_after)
    return bool(df.select(not_after.fill_null(True).all()).item())


def history_gather(values: np.ndarray, width: int, dtype: pl.DataType) -> Callable[[pl.Series], pl.Series]:
    """A batch function: struct(row, history_len) -> list of values[row - history_len: row], oldest first.

    `windows[r]` is a view of values[r - width: r] (zero-padded in front), so a batch copies one
    (rows x width) block and keeps the last history_len entries of each row: two vectorised passes.
    """
    padded = np.concatenate([np.zeros(width, dtype=values.dtype), values])
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    positions = np.arange(width)

    def gather(batch: pl.Series) -> pl.Series:
        rows = batch.struct.field("row").to_numpy()
        lengths = batch.struct.field("history_len").to_numpy()
        keep = positions >= (width - lengths)[:, None]
        offsets = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        lists = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(windows[rows][keep]))
        return pl.Series(batch.name, lists, dtype=pl.List(dtype))

    return gather


def _at_or_before(key: tuple[str, str, str]) -> pl.Expr:
    """Rows whose (timestamp, user_id, item_id) is <= the key held in columns `key`, lexicographically."""
    ts, user, item = (pl.col(c) for c in key)
    return (pl.col("timestamp") < ts) | (
        (pl.col("timestamp") == ts)
        & ((pl.col("user_id") < user) | ((pl.col("user_id") == user) & (pl.col("item_id") <= item)))
    )


def training_period_counts(samples: Frame, interactions: Frame) -> tuple[Frame, Frame]:
    """Interactions per user and per item up to (and including) the last training target."""
    last_key = ("last_timestamp", "last_user_id", "last_item_id")
    last_train = (samples.lazy().filter(pl.col("split") == "train").select(SAMPLE_KEY)
                  .top_k(1, by=list(SAMPLE_KEY))
                  .rename(dict(zip(SAMPLE_KEY, last_key, strict=True))))
    # A one-row cross join keeps the whole computation one lazy query (no collect of the key in between).
    period = (interactions.lazy().select("user_id", "item_id", "timestamp")
              .join(last_train, how="cross").filter(_at_or_before(last_key)))
    users = period.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("user_train_interactions"))
    items = period.group_by("item_id").agg(pl.len().cast(pl.Int64).alias("item_train_interactions"))
    return _like(users, samples), _like(items, samples)


def build_cold_start_sets(samples: Frame, interactions: Frame, cfg: ColdStartConfig) -> Frame:
    """One row per (test sample, set) with set in {"new_user", "new_item"}; a sample may be in both."""
    users, items = training_period_counts(samples.lazy(), interactions)
    test = (
        samples.lazy().filter(pl.col("split") == "test")
        .select("sample_id", "user_id", "item_id", "label")
        .join(users, on="user_id", how="left")
        .join(items, on="item_id", how="left")
        .with_columns(pl.col("user_train_interactions", "item_train_interactions").fill_null(0))
    )
    new_user = test.filter(pl.col("user_train_interactions") < cfg.max_user_train_interactions)
    new_item = test.filter(pl.col("item_train_interactions") < cfg.max_item_train_interactions)
    result = (
        pl.concat([new_user.with_columns(pl.lit("new_user").alias("set")),
                   new_item.with_columns(pl.lit("new_item").alias("set"))])
        .select("set", "sample_id", "user_id", "item_id", "label",
                "user_train_interactions", "item_train_interactions")
        .sort("set", "sample_id")
    )
    return _like(result, samples)


def last_k_history(samples: pl.DataFrame, k: int) -> pl.DataFrame:
    """The samples with their history cut to its last (most recent) k ratings; k = 0 leaves none."""
    return samples.with_columns(pl.col("history_item_ids", "history_ratings").list.slice(
        pl.col("history_item_ids").list.len() - k, k))


def history_cut_sets(samples: pl.DataFrame, cold: pl.DataFrame, ks: tuple[int, ...]) -> dict[str, pl.DataFrame]:
    """True cold-start sets (samples' columns):
    - `new_user_k{k}` for each k: the new-user test samples with at least max(ks) ratings before the target, their
      history cut to the last k (the most recent; k = 0: none), the same samples at every k;
    - `new_item_unseen`: the new-item test samples whose item has no training-period interaction at all."""
    new_users = samples.join(cold.filter(pl.col("set") == "new_user").select("sample_id"), on="sample_id")
    eligible = new_users.filter(pl.col("history_item_ids").list.len() >= max(ks))
    sets = {f"new_user_k{k}": last_k_history(eligible, k) for k in ks}
    unseen = cold.filter((pl.col("set") == "new_item") & (pl.col("item_train_interactions") == 0))
    sets["new_item_unseen"] = samples.join(unseen.select("sample_id"), on="sample_id")
    return sets


def _part_stats(frame: Frame, by: str, names: tuple[str, ...], extra: dict[str, pl.Expr] | None = None) -> dict:
    """Per value of `by`: samples, distinct users/items, positive rate, first/last timestamp (one pass)."""
    aggs = {
        "n_samples": pl.len(), "n_users": pl.col("user_id").n_unique(), "n_items": pl.col("item_id").n_unique(),
        "positive_rate": pl.col("label").mean(), **(extra or {}),
    }
    rows = {r[by]: r for r in frame.lazy().group_by(by).agg(**aggs).collect().iter_rows(named=True)}
    empty = {"n_samples": 0, "n_users": 0, "n_items": 0, "positive_rate": None}
    out = {}
    for name in names:
        row = rows.get(name)
        out[name] = {**empty, **{k: None for k in (extra or {})}} if row is None else {
            k: (round(float(v), 4) if k == "positive_rate" else v) for k, v in row.items() if k != by}
    return out


def sample_stats(samples: Frame) -> dict:
    stats: dict = {}
    totals = samples.lazy().select(pl.len().alias("n"), pl.col("history_item_ids").list.len().mean().alias("h")
                                   ).collect().row(0)
    stats["n_samples"] = totals[0]
    stats.update(_part_stats(samples, "split", SPLITS, {"first_timestamp": pl.col("timestamp").min(),
                                                        "last_timestamp": pl.col("timestamp").max()}))
    stats["mean_history_len"] = round(float(totals[1]), 3)
    return stats


def cold_start_stats(cold: Frame) -> dict:
    return _part_stats(cold, "set", ("new_user", "new_item"))
