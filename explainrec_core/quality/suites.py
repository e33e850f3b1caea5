"""Great Expectations suites for the normalised tables, the samples and the cold-start sets.

Each function returns the expectations for one table. Properties that span rows or tables (history before
target, no train/test time leakage, label = rating > threshold) are turned into a derived column first, so
GX still does the checking and reports the offending values.
"""

from __future__ import annotations

import datetime as dt

import great_expectations.expectations as gxe
import pandas as pd
import polars as pl

from explainrec_core.config import Config
from explainrec_core.data.samples import SPLITS

INT_TYPES = ["int64", "Int64", "int32", "Int32", "int8", "Int8"]
FLOAT_TYPES = ["float64", "Float64"]


def _not_null(*columns: str) -> list:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _timestamp_bounds(cfg: Config) -> tuple[int, int]:
    low = int(dt.datetime.combine(cfg.quality.min_timestamp, dt.time(), dt.UTC).timestamp())
    return low, int(dt.datetime.now(dt.UTC).timestamp())


def interactions_suite(cfg: Config, items: pl.DataFrame, users: pl.DataFrame) -> list:
    low, high = _timestamp_bounds(cfg)
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        # Review datasets (Amazon) carry the review text as extra columns; the four core columns must be there.
        *[gxe.ExpectColumnToExist(column=c) for c in ("user_id", "item_id", "rating", "timestamp")],
        *[gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=INT_TYPES)
          for c in ("user_id", "item_id", "timestamp")],
        gxe.ExpectColumnValuesToBeInTypeList(column="rating", type_list=FLOAT_TYPES),
        *_not_null("user_id", "item_id", "rating", "timestamp"),
        gxe.ExpectColumnValuesToBeBetween(column="rating", min_value=cfg.quality.rating_min,
                                          max_value=cfg.quality.rating_max),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id", "timestamp"]),
        gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=items["item_id"].to_list()),
        gxe.ExpectColumnValuesToBeInSet(column="user_id", value_set=users["user_id"].to_list()),
        gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=low, max_value=high),
    ]


def items_suite(cfg: Config) -> list:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnToExist(column=c) for c in ("item_id", "title", "year", "genres")],
        gxe.ExpectColumnValuesToBeInTypeList(column="item_id", type_list=INT_TYPES),
        *_not_null("item_id", "genres"),
        # Amazon items reviewed but missing from the metadata have no title (the reader counts them); a catalogue
        # that is mostly untitled is broken, though.
        gxe.ExpectColumnValuesToNotBeNull(column="title", mostly=0.9),
        gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        # Nulls (unknown year) are allowed; a known year must be plausible for a film.
        gxe.ExpectColumnValuesToBeBetween(column="year", min_value=1870, max_value=dt.date.today().year + 1),
    ]


def users_suite(cfg: Config, users: pl.DataFrame) -> list:
    suite = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeInTypeList(column="user_id", type_list=INT_TYPES),
        *_not_null("user_id"),
        gxe.ExpectColumnValuesToBeUnique(column="user_id"),
    ]
    if "age" in users.columns:
        suite.append(gxe.ExpectColumnValuesToBeBetween(column="age", min_value=1, max_value=120))
    if "gender" in users.columns:
        suite.append(gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["M", "F"]))
    return suite


def samples_frame(samples: pl.DataFrame, cfg: Config) -> pd.DataFrame:
    """Samples in time order with derived columns for the cross-row checks (list columns dropped)."""
    rank = {name: i for i, name in enumerate(SPLITS)}
    return (
        samples.sort("timestamp", "sample_id")
        .with_columns(
            pl.col("history_item_ids").list.len().alias("history_len"),
            (pl.col("history_item_ids").list.len() == pl.col("history_ratings").list.len())
            .alias("history_aligned"),
            # strictly: a rating at the target's second is not before it (see data/samples.py)
            (pl.col("history_end_timestamp") < pl.col("timestamp")).fill_null(True).alias("history_before_target"),
            pl.col("split").replace_strict(rank, default=None, return_dtype=pl.Int8).alias("split_rank"),
            ((pl.col("rating") > cfg.samples.like_threshold).cast(pl.Int8) == pl.col("label"))
            .alias("label_matches_rating"),
        )
        .drop("history_item_ids", "history_ratings")
        .to_pandas()
    )


def samples_suite(cfg: Config) -> list:
    q = cfg.quality
    suite = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnToExist(column=c) for c in (
            "sample_id", "user_id", "item_id", "rating", "label", "timestamp", "history_end_timestamp", "split")],
        *_not_null("sample_id", "user_id", "item_id", "label", "timestamp", "split"),
        gxe.ExpectColumnValuesToBeUnique(column="sample_id"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        gxe.ExpectColumnValuesToBeBetween(column="history_len", min_value=cfg.samples.min_history,
                                          max_value=cfg.samples.history_len),
        gxe.ExpectColumnValuesToBeInSet(column="history_aligned", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="history_before_target", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="label_matches_rating", value_set=[True]),
        # Rows are in time order, so a split rank that ever goes down means a later split has an earlier
        # sample than an earlier split: time leakage between train, valid and test.
        gxe.ExpectColumnValuesToBeIncreasing(column="split_rank", strictly=False),
    ]
    for name in SPLITS:
        suite.append(gxe.ExpectColumnMeanToBeBetween(
            column="label", min_value=q.label_rate_min, max_value=q.label_rate_max,
            row_condition=f'split=="{name}"', condition_parser="pandas",
            description=f"label balance of the {name} split",
        ))
    return suite


def cold_start_suite(test_sample_ids: list[int]) -> list:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="set", value_set=["new_user", "new_item"]),
        *_not_null("set", "sample_id", "label"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["set", "sample_id"]),
        gxe.ExpectColumnValuesToBeInSet(column="sample_id", value_set=test_sample_ids),
    ]


def alpaca_suite() -> list:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnToExist(column=c) for c in ("instruction", "input", "output")],
        *_not_null("instruction", "input", "output"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="instruction", min_value=1),
        gxe.ExpectColumnValueLengthsToBeBetween(column="output", min_value=1),
    ]
