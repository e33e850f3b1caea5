"""The GX quality gate: passes on real data; each corruption fails naming expectation, column and values."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from explainrec_core.config import load_config
from explainrec_core.errors import QualityGateError
from explainrec_core.io import write_parquet
from explainrec_core.pipeline import find_gate, outputs, run_check, run_gate, run_step
from tests.conftest import fast_llm_params, read_table, write_params

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
    # a history item from the target's own second (allowed before: ties were ordered by item id)
    ("samples", lambda df: df.with_columns(pl.col("timestamp").alias("history_end_timestamp")),
     "expect_column_values_to_be_in_set", "history_before_target", False),
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


# --- the gates on the tables the models train on -------------------------------------------------------------

TRAINING_GATES = ("validate_rec_prompts", "validate_explain_prompts", "validate_item_attributes",
                  "validate_cross_domain_sets")


@pytest.fixture(scope="module")
def training_project(tmp_path_factory, processed_ml100k, ml100k_raw, tiny_llm_dir):
    """The processed project plus the four tables the models train on, built by the real steps (read-only)."""
    root = tmp_path_factory.mktemp("training_tables")
    shutil.copytree(processed_ml100k, root, dirs_exist_ok=True)
    write_params(root, data={"raw_dir": str(ml100k_raw), "processed_dir": PROCESSED}, **fast_llm_params(tiny_llm_dir))
    cfg = load_config(root / "params.yaml")
    for step in ("base_model", "rec_prompts", "item_attributes", "explain_prompts", "cross_domain_sets"):
        run_step(step, cfg, root)
    return root


@pytest.fixture
def training_copy(tmp_path, training_project):
    shutil.copytree(training_project, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_real_training_tables_pass_their_gates(training_project):
    cfg = load_config(training_project / "params.yaml")
    for name in TRAINING_GATES:
        gate = find_gate(name)
        results = run_gate(cfg, training_project, gate)
        assert all(r.success for r in results), "\n".join(r.summary() for r in results)
        assert json.loads((training_project / gate.report).read_text())["success"] is True


def _rewrite(root, name, fn):
    path = outputs(load_config(root / "params.yaml"), root)[name]
    write_parquet(fn(pl.read_parquet(path)), path)


def _first(df, set_name):
    return df.filter(pl.col("set") == set_name)["sample_id"].min()


def _in_train_and_test(df):
    """A test sample also shown in training (a leak the model would be scored on)."""
    leaked = df.filter(pl.col("sample_id") == _first(df, "test")).with_columns(pl.lit("train").alias("set"))
    return pl.concat([df, leaked])


def _on_first(df, set_name, column, value):
    return df.with_columns(pl.when((pl.col("set") == set_name) & (pl.col("sample_id") == _first(df, set_name)))
                           .then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


def _target_item_in_source_train(df):
    target_item = df.filter(pl.col("set") == "target_eval")["item_id"][0]
    first_source = _first(df, "source_train")
    return df.with_columns(pl.when(pl.col("sample_id") == first_source).then(target_item)
                           .otherwise(pl.col("item_id")).alias("item_id"))


TRAINING_CORRUPTIONS = [
    ("rec_prompts", lambda df: _on_first(df, "train", "prompt", "   "), "prompt_chars"),
    ("rec_prompts", lambda df: df.with_columns(pl.col("prompt") + "Yes.\n\n### Response:\n"), "prompt_markers"),
    ("rec_prompts", lambda df: _on_first(df, "valid", "response", "Maybe."), "response_answers_label"),
    ("rec_prompts", _in_train_and_test, "splits_of_sample"),
    ("rec_prompts", lambda df: _on_first(df, "valid", "set", "train"), "set_matches_sample_split"),
    ("explain_prompts", lambda df: _on_first(df, "train", "prompt_plain", "no marker here"), "prompt_plain_markers"),
    ("explain_prompts", lambda df: df.with_columns(pl.lit("").alias("response")), "response_answers_label"),
    ("explain_prompts", _in_train_and_test, "splits_of_sample"),
    ("item_attributes", lambda df: df.filter(pl.col("item_id") % 4 == 0), "item_id"),
    ("cross_domain_sets", _target_item_in_source_train, "target_item_in_training"),
    ("cross_domain_sets", lambda df: pl.concat([df, df.head(1).with_columns(pl.lit("target_eval").alias("set"))]),
     "sample_id"),
]


@pytest.mark.parametrize("table, corrupt, column", TRAINING_CORRUPTIONS,
                         ids=[f"{c[0]}-{c[2]}" for c in TRAINING_CORRUPTIONS])
def test_training_table_corruption_fails_its_gate(training_copy, table, corrupt, column):
    cfg = load_config(training_copy / "params.yaml")
    _rewrite(training_copy, table, corrupt)
    result = run_check(table, cfg, training_copy)
    assert any(f.column == column for f in result.failures), result.summary()
    with pytest.raises(QualityGateError, match=column):
        run_gate(cfg, training_copy, find_gate(f"validate_{table}"))
