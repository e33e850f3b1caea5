"""The GX quality gate: passes on real data; each corruption fails naming expectation, column and values."""

from __future__ import annotations

import polars as pl
import pytest

from explainrec_core.config import load_config
from explainrec_core.errors import QualityGateError
from explainrec_core.io import write_parquet
from explainrec_core.pipeline import run_check, run_gate
from tests.conftest import read_table

PROCESSED = "data/processed"


def test_real_ml100k_passes_every_suite(processed_ml100k):
    results = run_gate(load_config(processed_ml100k / "params.yaml"), processed_ml100k)
    assert [r.name for r in results] == ["interactions", "items", "users", "samples", "cold_start_sets",
                                         "alpaca_data"]
    assert all(r.success for r in results), "\n".join(r.summary() for r in results)
    assert all(r.n_expectations >= 4 for r in results)


def _corrupt(root, table, fn):
    folder = root / PROCESSED
    write_parquet(fn(read_table(folder, table)), folder / f"{table}.parquet")


def _swap_first_train_and_last_test(df):
    first_train = df.filter(pl.col("split") == "train")["sample_id"].min()
    last_test = df.filter(pl.col("split") == "test")["sample_id"].max()
    return df.with_columns(pl.when(pl.col("sample_id") == first_train).then(pl.lit("test"))
                           .when(pl.col("sample_id") == last_test).then(pl.lit("train"))
                           .otherwise(pl.col("split")).alias("split"))


CORRUPTIONS = [
    ("interactions", lambda df: df.with_columns(
        pl.when(pl.col("user_id") == 7).then(9.0).otherwise(pl.col("rating")).alias("rating")),
     "expect_column_values_to_be_between", "rating", 9.0),
    ("interactions", lambda df: df.with_columns(
        pl.when(pl.col("user_id") == 7).then(123456).otherwise(pl.col("item_id")).alias("item_id")),
     "expect_column_values_to_be_in_set", "item_id", 123456),
    ("interactions", lambda df: pl.concat([df, df.head(3)]),
     "expect_compound_columns_to_be_unique", "user_id, item_id, timestamp", None),
    ("interactions", lambda df: df.with_columns(
        pl.when(pl.col("user_id") == 7).then(4_102_444_800).otherwise(pl.col("timestamp")).alias("timestamp")),
     "expect_column_values_to_be_between", "timestamp", 4_102_444_800),  # year 2100: in the future
    ("items", lambda df: pl.concat([df, df.head(1)]), "expect_column_values_to_be_unique", "item_id", 1),
    ("users", lambda df: df.with_columns(pl.lit(None, pl.Int64).alias("user_id")),
     "expect_column_values_to_not_be_null", "user_id", None),
    ("samples", _swap_first_train_and_last_test, "expect_column_values_to_be_increasing", "split_rank", None),
    ("samples", lambda df: df.with_columns(pl.lit(1, pl.Int8).alias("label")),
     "expect_column_mean_to_be_between", "label", None),
]


@pytest.mark.parametrize("table, corrupt, expectation, column, example", CORRUPTIONS,
                         ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CORRUPTIONS])
def test_corruption_fails_its_suite(processed_copy, table, corrupt, expectation, column, example):
    cfg = load_config(processed_copy / "params.yaml")
    assert run_check(table, cfg, processed_copy).success
    _corrupt(processed_copy, table, corrupt)
    result = run_check(table, cfg, processed_copy)
    assert not result.success
    failure = next((f for f in result.failures if f.expectation.startswith(expectation) and f.column == column), None)
    assert failure is not None, result.summary()
    if example is not None:
        assert example in failure.examples, result.summary()
    assert expectation in result.summary() and column in result.summary()


def test_gate_raises_and_writes_a_report(processed_copy):
    _corrupt(processed_copy, "interactions", CORRUPTIONS[0][1])
    with pytest.raises(QualityGateError, match="rating"):
        run_gate(load_config(processed_copy / "params.yaml"), processed_copy)
    report = (processed_copy / "reports/data_quality.json").read_text()
    assert '"success": false' in report and "expect_column_values_to_be_between" in report
