"""The s3:// drop box in front of the inbox, on a real S3 endpoint (moto's server) and real ML-100K."""

# ruff: noqa: F811  (the fixtures imported from tests/s3_server.py reappear as test arguments)
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from explainrec_core.cli import app
from explainrec_core.config import load_config
from explainrec_core.data import incoming, incoming_s3
from explainrec_core.steps.data_steps import run_ingest
from tests.conftest import read_table, write_params
from tests.s3_server import (
    aws_env,  # noqa: F401  (fixture)
    bucket,  # noqa: F401  (fixture)
    moto_server,  # noqa: F401  (fixture)
)


@pytest.fixture
def dropbox(tmp_path, ml100k_raw, monkeypatch, moto_server, bucket):
    """ML-100K with its newest 2% held back; the project's inbox fed from s3://bucket/drop."""
    write_params(tmp_path, data={"raw_dir": str(ml100k_raw), "stream_holdout": 0.02},
                 incoming={"remote_uri": f"s3://{bucket}/drop"}, storage={"endpoint_url": moto_server.endpoint})
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "params.yaml")
    run_ingest(cfg, tmp_path)
    # the stream's files are made locally, then uploaded to the drop box (as a producer would) and removed here
    staging = tmp_path / "staging"
    staging.mkdir()
    held = read_table(tmp_path / "data/processed", "stream_holdout")
    files = incoming.replay_batches(held, staging, 2)
    s3 = moto_server.client()
    for f in files:
        s3.upload_file(str(f), bucket, f"drop/{f.name}")
    s3.put_object(Bucket=bucket, Key="drop/bad.data", Body=b"1\t50\t5\t893286638\n2\t50\t9\t893286639\n")
    return tmp_path, cfg, s3, [f.name for f in files]


def _keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def test_files_dropped_on_s3_are_appended_once_and_settled_there(dropbox, bucket):
    root, cfg, s3, names = dropbox
    result = _cli("incoming", "process")
    assert result.exit_code == 0, result.output
    assert "replay-0001.data: appended 1000 rating(s)" in result.output
    assert "bad.data: quarantined" in result.output
    assert incoming.accepted_ratings(root / "data/incoming").height == 2000
    assert _keys(s3, bucket) == ["drop/processed/replay-0001.data", "drop/processed/replay-0002.data",
                                 "drop/quarantine/bad.data", "drop/quarantine/bad.data.reason.txt"]
    reason = s3.get_object(Bucket=bucket, Key="drop/quarantine/bad.data.reason.txt")["Body"].read().decode()
    assert "column 'rating'" in reason and "line 2: 9.0" in reason
    assert (root / "data/incoming/quarantine/bad.data.reason.txt").read_text() == reason  # the same reason here
    # the same content uploaded again under another name: seen before, nothing appended
    s3.copy_object(Bucket=bucket, Key="drop/resent.data", CopySource={"Bucket": bucket,
                                                                      "Key": "drop/processed/replay-0001.data"})
    result = _cli("incoming", "process")
    assert "resent.data: already processed (same content), skipped" in result.output
    assert incoming.accepted_ratings(root / "data/incoming").height == 2000
    assert "drop/processed/resent.data" in _keys(s3, bucket)
    assert run_ingest(cfg, root)["n_interactions"] == 100_000


def test_a_crash_before_settling_on_s3_counts_nothing_twice(dropbox, bucket, monkeypatch):
    root, cfg, s3, names = dropbox

    def crash(*args, **kwargs):
        raise RuntimeError("power cut after the local processing, before the S3 moves")

    real = incoming_s3.settle
    monkeypatch.setattr(incoming_s3, "settle", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        incoming.process_inbox(cfg, root)
    assert "drop/replay-0001.data" in _keys(s3, bucket)  # still pending on S3
    monkeypatch.setattr(incoming_s3, "settle", real)
    results = incoming.process_inbox(cfg, root)
    assert {r.name: r.status for r in results} == {"bad.data": "quarantined", "replay-0001.data": "seen before",
                                                   "replay-0002.data": "seen before"}
    assert incoming.accepted_ratings(root / "data/incoming").height == 2000  # each row once
    assert not [k for k in _keys(s3, bucket) if k.count("/") == 1]  # nothing pending on S3


def test_the_sensor_sees_files_waiting_on_s3(dropbox, bucket):
    from explainrec_dagster.automation import inbox_digest, pending_files

    root, cfg, s3, names = dropbox
    pending = pending_files(cfg, root)
    assert [name for name, _ in pending] == [f"s3://{bucket}/drop/{n}" for n in ["bad.data", *names]]
    before = inbox_digest(pending)
    s3.put_object(Bucket=bucket, Key="drop/more.data", Body=b"1\t50\t4\t893286640\n")
    assert inbox_digest(pending_files(cfg, root)) != before  # a new object: a new run key
    incoming.process_inbox(cfg, root)
    assert pending_files(cfg, root) == []


def test_a_drop_box_that_is_not_s3_is_refused(tmp_path):
    from explainrec_core.errors import ConfigError

    write_params(tmp_path, incoming={"remote_uri": "/tmp/elsewhere"})
    with pytest.raises(ConfigError, match="incoming.remote_uri must be an s3:// prefix"):
        load_config(tmp_path / "params.yaml")
