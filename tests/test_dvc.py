"""Real `dvc repro` in a temporary git repository: runs every stage, skips all on the second run, gates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, fast_llm_params, write_params

pytestmark = pytest.mark.e2e


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def dvc_repo(tmp_path, ml100k_raw, tiny_llm_dir) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    write_params(repo, **fast_llm_params(tiny_llm_dir))  # the project's settings, with the tiny LLM
    # Stage code dependencies are hashed from the repository's files.
    shutil.copytree(REPO / "explainrec_core", repo / "explainrec_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data/incoming/accepted").mkdir(parents=True)  # as `make data` creates it
    _run(["git", "init", "-q"], repo)
    _run(["dvc", "init", "-q"], repo)
    _run(["dvc", "config", "core.analytics", "false"], repo)
    # The real fetch (pip's cached recbole wheel) followed by `dvc add`, as a user would run it.
    shutil.copytree(ml100k_raw, repo / "data/raw/ml-100k")
    fetch = _run(["explainrec", "data", "fetch", "ml-100k"], repo)
    assert "tracked by DVC" in fetch.stderr
    return repo


def test_repro_twice_skips_everything_and_gate_fails_repro(dvc_repo):
    first = _run(["dvc", "repro"], dvc_repo)
    stages = [*yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]]
    for stage in stages:
        assert f"Running stage '{stage}'" in first.stdout, first.stdout
    # the gates ran before anything trained on what they check
    order = first.stdout.index
    assert order("Running stage 'validate'") < order("Running stage 'alpaca_adapter'")
    assert order("Running stage 'validate_rec_prompts'") < order("Running stage 'rec_adapter'")
    for gate in ("validate_explain_prompts", "validate_item_attributes"):
        assert order(f"Running stage '{gate}'") < order("Running stage 'explain_adapter'")
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)
    assert (dvc_repo / "models/rec_adapter/adapter_model.safetensors").is_file()
    assert json.loads((dvc_repo / "reports/data_quality.json").read_text())["success"] is True

    second = _run(["dvc", "repro"], dvc_repo)
    assert "Running stage" not in second.stdout
    for stage in stages:
        assert f"Stage '{stage}' didn't change, skipping" in second.stdout
    assert "up to date" in _run(["dvc", "status"], dvc_repo).stdout

    metrics = json.loads(_run(["dvc", "metrics", "show", "--json"], dvc_repo).stdout)
    data = next(iter(metrics.values()))["data"]
    assert data["reports/data/ingest.json"]["data"]["n_interactions"] == 100_000
    assert data["reports/data/samples.json"]["data"]["test"]["n_samples"] == 9_787

    # Tighten the label-balance bound below ML-100K's 55% positives: the gate re-runs and fails, so the
    # training stages that depend on it do not run.
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["quality"]["label_rate_max"] = 0.5
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    gated = _run(["dvc", "repro"], dvc_repo, check=False)
    assert gated.returncode != 0
    output = gated.stdout + gated.stderr
    assert "Stage 'samples' didn't change, skipping" in output
    assert "expect_column_mean_to_be_between" in output and "column 'label'" in output
    assert "Running stage 'alpaca_adapter'" not in output

    # A gate on a table the models train on: demand attributes for every item and drop the IMDb and Freebase
    # sources (genres and era leave ML-100K's "unknown" item bare). The attribute gate fails `dvc repro`
    # before the explanation models train on the poorer table.
    params["quality"]["label_rate_max"] = 0.8
    params["quality"]["min_attribute_coverage"] = 1.0
    params["attribution"].update(imdb_attributes=False, kg_roles=[])
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    gated = _run(["dvc", "repro"], dvc_repo, check=False)
    assert gated.returncode != 0
    output = gated.stdout + gated.stderr
    assert "expect_column_unique_value_count_to_be_between" in output and "column 'item_id'" in output
    assert "Running stage 'explain_adapter'" not in output
    assert json.loads((dvc_repo / "reports/quality/item_attributes.json").read_text())["success"] is False
