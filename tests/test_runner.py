"""The profile runner (`explainrec run all`): real steps in their own processes, resumable, reruns what changed."""

from __future__ import annotations

import json

import polars as pl
import yaml

from explainrec_core import pipeline
from explainrec_core.config import load_config
from explainrec_core.runner import StepFailed, order, run_all
from tests.conftest import REPO, write_params


def _ran(summary: dict) -> dict[str, bool]:
    return {s["step"]: not s["reused"] for s in summary["steps"]}


def test_order_respects_inputs_and_gates():
    steps = order()
    assert set(steps) == {s.name for s in pipeline.STEPS} | {g.name for g in pipeline.GATES}
    position = {name: i for i, name in enumerate(steps)}
    for s in pipeline.STEPS:
        for gate in pipeline.gates_of(s) if s.gated else ():
            assert position[gate.name] < position[s.name], (gate.name, s.name)
        for out in s.deps:
            producer = next((p.name for p in pipeline.STEPS if out in p.outs), None)
            assert producer is None or position[producer] < position[s.name], (producer, s.name)


def test_resumes_and_reruns_only_what_changed(tmp_path, ml100k_raw):
    project = tmp_path / "profile"
    project.mkdir()
    params = write_params(project, data={"raw_dir": str(ml100k_raw), "processed_dir": "data/processed"})
    root = tmp_path / "out"

    first = run_all(load_config(params), params, root, REPO, until="samples", echo=lambda _: None)
    assert _ran(first) == {"ingest": True, "samples": True}
    assert (root / "data/processed/samples.parquet").is_file()
    assert json.loads((root / "reports/run_summary.json").read_text())["steps"][1]["step"] == "samples"

    again = run_all(load_config(params), params, root, REPO, until="samples", echo=lambda _: None)
    assert _ran(again) == {"ingest": False, "samples": False}

    # A changed setting of `samples` reruns it (not ingest); a forced ingest reruns what reads it too.
    raw = yaml.safe_load(params.read_text())
    raw["samples"]["history_len"] = 5
    params.write_text(yaml.safe_dump(raw))
    changed = run_all(load_config(params), params, root, REPO, until="samples", echo=lambda _: None)
    assert _ran(changed) == {"ingest": False, "samples": True}
    forced = run_all(load_config(params), params, root, REPO, force=["ingest"], until="samples", echo=lambda _: None)
    assert _ran(forced) == {"ingest": True, "samples": True}

    # A newly accepted incoming file (explainrec incoming process) reruns ingest, which reads it, and what follows.
    accepted = root / "data/incoming/accepted"
    accepted.mkdir(parents=True)
    pl.DataFrame({"user_id": [1], "item_id": [50], "rating": [4.0], "timestamp": [2_000_000_000]}).write_parquet(
        accepted / "0123456789ab.parquet")
    arrived = run_all(load_config(params), params, root, REPO, until="samples", echo=lambda _: None)
    assert _ran(arrived) == {"ingest": True, "samples": True}
    assert pl.read_parquet(root / "data/processed/interactions.parquet").height == 100_001

    # --until a step that --skip leaves out still ends the run there
    skipped = run_all(load_config(params), params, root, REPO, until="samples", skip=["samples"], echo=lambda _: None)
    assert [s["step"] for s in skipped["steps"]] == ["ingest", "samples"] and skipped["steps"][1]["skipped"]


def test_a_failing_step_stops_the_run_with_its_log(tmp_path):
    params = write_params(tmp_path, data={"raw_dir": str(tmp_path / "no_such_raw"), "processed_dir": "p"})
    try:
        run_all(load_config(params), params, tmp_path / "out", REPO, until="ingest", echo=lambda _: None)
    except StepFailed as exc:
        assert "ingest" in str(exc) and (tmp_path / "out/logs/ingest.log").is_file()
    else:
        raise AssertionError("a missing raw folder must fail the ingest step")
    assert not (tmp_path / "out/.run_state/ingest.json").exists()
