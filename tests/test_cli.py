"""The `explainrec` command line: exit codes and messages people see."""

from __future__ import annotations

import os

import polars as pl
from typer.testing import CliRunner

from explainrec_core.cli import EXIT_GATE, EXIT_INPUT, app
from explainrec_core.io import write_parquet
from tests.conftest import read_table

runner = CliRunner()


def test_ingest_then_validate(ml25m_raw, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "ingest", "--format", "ml-25m", "--input", str(ml25m_raw),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert read_table(out, "interactions").height == 8
    result = runner.invoke(app, ["data", "validate", str(out)])
    assert result.exit_code == 0, result.output
    assert "PASS interactions" in result.output

    bad = read_table(out, "interactions").with_columns(pl.lit(9.5).alias("rating"))
    write_parquet(bad, out / "interactions.parquet")
    result = runner.invoke(app, ["data", "validate", str(out)])
    assert result.exit_code == EXIT_GATE
    assert "FAIL interactions" in result.output and "rating" in result.output and "9.5" in result.output


def test_bad_input_exits_with_a_message(ml25m_raw, tmp_path):
    (ml25m_raw / "ratings.csv").write_text("")
    result = runner.invoke(app, ["data", "ingest", "--format", "ml-25m", "--input", str(ml25m_raw),
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == EXIT_INPUT
    assert "ratings.csv" in result.output and "empty" in result.output
    assert not (tmp_path / "out").exists()


def test_validate_without_tables(tmp_path):
    result = runner.invoke(app, ["data", "validate", str(tmp_path)])
    assert result.exit_code == EXIT_INPUT and "missing normalised tables" in result.output


def test_run_steps_from_params(project):
    cwd = os.getcwd()
    os.chdir(project)
    try:
        for step in ("ingest", "samples", "cold_start_sets", "alpaca_data", "validate"):
            result = runner.invoke(app, ["run", step])
            assert result.exit_code == 0, result.output
        assert (project / "reports/data/samples.json").is_file()
        result = runner.invoke(app, ["status"])
        assert result.exit_code == 0 and "passed" in result.output and "n_samples=97865" in result.output
        result = runner.invoke(app, ["run", "train_everything"])
        assert result.exit_code == EXIT_INPUT and "unknown step 'train_everything'" in result.output
        # `run gates` runs every gate; the prompt tables are not built yet, so it stops at the first that needs one.
        result = runner.invoke(app, ["run", "gates"])
        assert result.exit_code == EXIT_INPUT and "rec_prompts" in result.output and "missing" in result.output
    finally:
        os.chdir(cwd)


def test_fetch_refuses_what_cannot_be_fetched():
    result = runner.invoke(app, ["data", "fetch", "ml-25m"])
    assert result.exit_code == EXIT_INPUT and "fetchable: ['alpaca-seed', 'ml-100k']" in result.output
