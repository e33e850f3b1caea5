"""New interactions: the inbox on real ML-100K (held-out stream, replay, append once, quarantine, crash safety)."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from typer.testing import CliRunner

from explainrec_core.cli import app
from explainrec_core.config import load_config
from explainrec_core.data import incoming
from explainrec_core.steps.data_steps import run_ingest
from tests.conftest import read_table, write_params


@pytest.fixture
def streamed(tmp_path, ml100k_raw, monkeypatch):
    """Real ML-100K ingested with its newest 2% held out as the stream; the CLI runs in this project."""
    write_params(tmp_path, data={"raw_dir": str(ml100k_raw), "stream_holdout": 0.02})
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "params.yaml")
    stats = run_ingest(cfg, tmp_path)
    return tmp_path, cfg, stats


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def test_replayed_stream_is_appended_exactly_once(streamed, ml100k_raw, tmp_path_factory):
    root, cfg, stats = streamed
    folder = root / "data/processed"
    assert stats["stream_held_out"] == 2000 and stats["n_interactions"] == 98_000
    held = read_table(folder, "stream_holdout")
    assert held["timestamp"].min() >= read_table(folder, "interactions")["timestamp"].max()  # the newest ratings

    result = _cli("replay", "--batches", "3")
    assert result.exit_code == 0, result.output
    inbox = root / "data/incoming"
    assert sorted(p.name for p in inbox.glob("*.data")) == ["replay-0001.data", "replay-0002.data",
                                                              "replay-0003.data"]
    # one batch twice under another name, and a file overlapping two batches: duplicates are skipped and counted
    shutil.copy(inbox / "replay-0001.data", inbox / "zz-resent.data")
    lines = (inbox / "replay-0002.data").read_text().splitlines()[:5]
    (inbox / "zz-overlap.data").write_text("\n".join(lines) + "\n")
    result = _cli("incoming", "process")
    assert result.exit_code == 0, result.output
    assert "replay-0001.data: appended 667 rating(s), skipped 0 duplicate(s)" in result.output
    assert "zz-resent.data: already processed (same content), skipped" in result.output
    assert "zz-overlap.data: appended 0 rating(s), skipped 5 duplicate(s)" in result.output
    assert not list(inbox.glob("*.data")) and len(list((inbox / "processed").iterdir())) == 5

    again = run_ingest(cfg, root)  # the pipeline's ingest now includes the accepted rows
    assert again["incoming_accepted"] == 2000 and again["n_interactions"] == 100_000
    full = tmp_path_factory.mktemp("full")
    write_params(full, data={"raw_dir": str(ml100k_raw)})
    run_ingest(load_config(full / "params.yaml"), full)
    assert read_table(folder, "interactions").equals(read_table(full / "data/processed", "interactions"))
    assert read_table(folder, "users").equals(read_table(full / "data/processed", "users"))
    assert _cli("incoming", "process").exit_code == 0  # an empty inbox is fine


def test_a_bad_file_is_quarantined_whole_with_its_reason(streamed):
    root, cfg, _ = streamed
    inbox = root / "data/incoming"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "bad-rating.data").write_text("1\t50\t5\t893286638\n2\t50\t9\t893286639\n")
    (inbox / "unknown-item.data").write_text("1\t99999\t4\t893286640\n")
    (inbox / "new-user.data").write_text("9999\t50\t4\t893286641\n")
    (inbox / "future.data").write_text("1\t50\t4\t4102444800\n")  # 2100-01-01: the GX suite's timestamp bound
    (inbox / "one-field.data").write_text("hello\n")  # one column where u.data has four
    # DVC's pointer for accepted/ lives in the inbox (`dvc add data/incoming/accepted`): never an incoming file
    (inbox / "accepted.dvc").write_text("outs:\n- path: accepted\n")
    result = _cli("incoming", "process")
    assert result.exit_code == 0, result.output
    reason = (inbox / "quarantine" / "bad-rating.data.reason.txt").read_text()
    assert "bad-rating.data, column 'rating'" in reason and "line 2: 9.0" in reason
    assert "column 'item_id'" in (inbox / "quarantine" / "unknown-item.data.reason.txt").read_text()
    assert (inbox / "quarantine" / "bad-rating.data").is_file()
    future = (inbox / "quarantine" / "future.data.reason.txt").read_text()
    assert "expect_column_values_to_be_between" in future and "timestamp" in future
    assert "new-user.data: appended 1 rating(s), skipped 0 duplicate(s), 1 new user(s)" in result.output
    assert "one-field.data: quarantined" in result.output and "accepted.dvc" not in result.output
    assert (inbox / "accepted.dvc").is_file()
    accepted = incoming.accepted_ratings(inbox)
    assert accepted.rows() == [(9999, 50, 4.0, 893286641)]  # nothing of the bad files
    run_ingest(cfg, root)
    users = read_table(root / "data/processed", "users")
    assert users.filter(pl.col("user_id") == 9999)["age"].to_list() == [None]  # accepted, no demographics


def test_a_crash_before_the_ledger_entry_counts_nothing_twice(streamed, monkeypatch):
    root, cfg, _ = streamed
    inbox = root / "data/incoming"
    assert _cli("replay", "--batches", "2").exit_code == 0
    real_write_json = incoming.write_json

    def crash(*args, **kwargs):
        raise RuntimeError("power cut after the accepted rows, before the ledger")

    monkeypatch.setattr(incoming, "write_json", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        incoming.process_incoming(inbox, "ml-100k", read_table(root / "data/processed", "interactions"),
                                  read_table(root / "data/processed", "items"), root / "items")
    monkeypatch.setattr(incoming, "write_json", real_write_json)
    result = _cli("incoming", "process")
    assert result.exit_code == 0, result.output
    assert incoming.accepted_ratings(inbox).height == 2000  # each batch's rows once
    assert len(incoming.read_ledger(inbox)) == 2


def test_ml25m_ratings_csv_files_are_replayed_and_appended(ml25m_raw, tmp_path, monkeypatch):
    """The ML-25M layout: the held-out newest ratings come back as ratings.csv files (with the header) and are
    appended once; a ratings.csv naming a film not in movies.csv is quarantined with its line."""
    write_params(tmp_path, data={"format": "ml-25m", "raw_dir": str(ml25m_raw), "stream_holdout": 0.3})
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "params.yaml")
    stats = run_ingest(cfg, tmp_path)
    held = read_table(tmp_path / "data/processed", "stream_holdout")
    assert stats["stream_held_out"] == held.height > 0
    assert _cli("replay", "--batches", "2").exit_code == 0
    inbox = tmp_path / "data/incoming"
    files = sorted(inbox.glob("replay-*.csv"))
    assert files and files[0].read_text().startswith("userId,movieId,rating,timestamp\n")
    (inbox / "unknown-film.csv").write_text("userId,movieId,rating,timestamp\n1,424242,4.0,1500000000\n")
    result = _cli("incoming", "process")
    assert result.exit_code == 0, result.output
    assert "unknown-film.csv: quarantined" in result.output and "424242" in result.output
    key = ["user_id", "item_id", "timestamp"]
    assert incoming.accepted_ratings(inbox).sort(key).equals(held.select(incoming.COLUMNS).sort(key))
    again = run_ingest(cfg, tmp_path)
    assert again["n_interactions"] == stats["n_interactions"] + held.height
