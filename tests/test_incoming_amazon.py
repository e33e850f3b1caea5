"""New Amazon reviews through the inbox: replayed in the format, mapped to the project's ids, appended once."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from explainrec_core.cli import app
from explainrec_core.config import load_config
from explainrec_core.data import incoming
from explainrec_core.data.ingest import read_tables
from explainrec_core.steps.data_steps import run_ingest
from tests.conftest import read_table, write_params
from tests.test_amazon_readers import META_2018, META_2023, REVIEWS_2018, REVIEWS_2023, write_lines

FORMATS = {  # format: (review file, metadata file, reviews, metadata, review -> same review by another reviewer)
    "amazon-2018": ("Movies_and_TV_5.json", "meta_Movies_and_TV.json", REVIEWS_2018, META_2018,
                    lambda r, who, t: {**r, "reviewerID": who, "unixReviewTime": t}),
    "amazon-2023": ("Movies_and_TV.jsonl", "meta_Movies_and_TV.jsonl", REVIEWS_2023, META_2023,
                    lambda r, who, t: {**r, "user_id": who, "timestamp": t * 1000}),
}


@pytest.fixture(params=list(FORMATS))
def project(request, tmp_path, monkeypatch):
    """A small category in the real format (the readers' test files, re-reviewed by 12 more reviewers over
    time), ingested with its newest 30% held back as the stream; the CLI runs in this project."""
    fmt = request.param
    reviews_name, meta_name, reviews, meta, by = FORMATS[fmt]
    lines = list(reviews)
    for n in range(12):
        for k, r in enumerate(reviews):
            lines.append(by(r, f"AREVIEWER{n:02d}", 1_500_000_000 + 86_400 * (3 * n + k)))
    raw = tmp_path / "raw"
    raw.mkdir()
    write_lines(raw / reviews_name, [json.dumps(r) for r in lines])
    write_lines(raw / meta_name, [json.dumps(m) for m in meta])
    root = tmp_path / "project"
    root.mkdir()
    write_params(root, data={"format": fmt, "raw_dir": str(raw), "stream_holdout": 0.3})
    monkeypatch.chdir(root)
    cfg = load_config(root / "params.yaml")
    return root, cfg, raw


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def test_replayed_reviews_come_back_exactly(project):
    root, cfg, raw = project
    stats = run_ingest(cfg, root)
    held = read_table(root / "data/processed", "stream_holdout")
    assert stats["stream_held_out"] == held.height > 5
    assert _cli("replay", "--batches", "2").exit_code == 0
    inbox = root / "data/incoming"
    files = sorted(p.name for p in inbox.iterdir() if p.is_file())
    assert len(files) == 2 and all(f.startswith("replay-") and ".json" in f for f in files)
    result = _cli("incoming", "process")
    assert result.exit_code == 0, result.output
    assert f"{held.height} rating(s) accepted" in result.output

    run_ingest(cfg, root)  # accepted reviews are back in the interactions, with their texts, votes and flags
    full = read_tables(cfg.data.format, raw)
    assert read_table(root / "data/processed", "interactions").equals(full.interactions)
    assert read_table(root / "data/processed", "users").equals(full.users)


def test_new_reviewers_get_stable_ids_and_unknown_items_are_quarantined(project):
    root, cfg, _ = project
    run_ingest(cfg, root)
    users = read_table(root / "data/processed", "users")
    top = int(users["user_id"].max())
    reviews_name, _, reviews, _, by = FORMATS[cfg.data.format]
    inbox = root / "data/incoming"
    inbox.mkdir(parents=True, exist_ok=True)
    write_lines(inbox / "a.json", [json.dumps(by(reviews[0], "ZNEW", 1_700_000_000))])
    # second file: the same new reviewer again (keeps its id) and one more (the next id)
    write_lines(inbox / "b.json", [json.dumps(by(reviews[1], "ZNEW", 1_700_000_100)),
                                   json.dumps(by(reviews[0], "YNEW", 1_700_000_200))])
    unknown = {**by(reviews[0], "XNEW", 1_700_000_300), "asin": "B0NOTINCATALOG", "parent_asin": "B0NOTINCATALOG"}
    write_lines(inbox / "c.json", [json.dumps(by(reviews[1], "XNEW", 1_700_000_300)), json.dumps(unknown)])
    write_lines(inbox / "d.json", [json.dumps(by(reviews[1], "WNEW", 1_700_000_400)), "{not json"])
    result = _cli("incoming", "process")
    assert result.exit_code == 0, result.output
    assert "a.json: appended 1 rating(s), skipped 0 duplicate(s), 1 new user(s)" in result.output
    assert "b.json: appended 2 rating(s), skipped 0 duplicate(s), 1 new user(s)" in result.output
    key = "parent_asin" if cfg.data.format == "amazon-2023" else "asin"
    reason = (inbox / "quarantine" / "c.json.reason.txt").read_text()
    assert f"column '{key}'" in reason and "line 2: 'B0NOTINCATALOG'" in reason and "not in the catalogue" in reason
    assert "line 2" in (inbox / "quarantine" / "d.json.reason.txt").read_text()
    accepted = incoming.accepted_ratings(inbox)
    assert accepted.height == 3  # nothing of the bad files

    run_ingest(cfg, root)
    after = read_table(root / "data/processed", "users")
    new = after.filter(pl.col("user_id") > top).select("user_id", "reviewer_id").rows()
    assert new == [(top + 1, "ZNEW"), (top + 2, "YNEW")]  # ZNEW first seen in a.json; ids never reused
    inter = read_table(root / "data/processed", "interactions")
    assert inter.filter(pl.col("user_id") == top + 1).height == 2
    assert inter.filter(pl.col("user_id") > top)["review_text"].null_count() < 3  # review texts kept
