"""Dagster: materialise the whole graph on a real instance; a failing blocking check stops what is downstream."""

from __future__ import annotations

import dagster as dg
import pytest

from explainrec_dagster.assets import ASSETS
from explainrec_dagster.checks import CHECKS
from explainrec_dagster.resources import ExplainRecSettings
from tests.conftest import fast_llm_params, write_params


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as inst:
        yield inst


def _materialize(root, instance):
    return dg.materialize([*ASSETS, *CHECKS], instance=instance, raise_on_error=False,
                          resources={"settings": ExplainRecSettings(root=str(root))})


def _materialized(instance, key: str) -> dg.AssetMaterialization | None:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.asset_materialization if event else None


def test_whole_graph_on_real_ml100k(project, instance):
    result = _materialize(project, instance)
    assert result.success
    for key in ("raw_data", "interactions", "items", "users", "samples", "cold_start_sets", "base_model",
                "alpaca_data", "alpaca_adapter", "rec_prompts", "rec_adapter", "rec_scores"):
        assert _materialized(instance, key) is not None, key
    adapter = _materialized(instance, "rec_adapter").metadata
    assert adapter["steps"].value == 2 and "valid_auc" in adapter
    assert adapter["rec_adapter_training"].value.startswith("![rec_adapter_training](data:image/png;base64,")
    assert "test" in _materialized(instance, "rec_scores").metadata
    samples = _materialized(instance, "samples").metadata
    assert samples["rows"].value == 97_865
    assert 0.5 < samples["positive_rate"].value < 0.6
    assert "| sample_id" in samples["preview"].value
    checks = list(result.get_asset_check_evaluations())
    assert len(checks) == len(CHECKS) and all(c.passed for c in checks)
    assert (project / "data/processed/cold_start_sets.parquet").is_file()


def test_failing_blocking_check_stops_downstream(ml25m_raw, tmp_path, instance, tiny_llm_dir):
    # A rating dated in the year 2100 parses fine, so ingest writes it; the interactions suite must then
    # fail and block `samples`, the training assets and everything after them.
    with (ml25m_raw / "ratings.csv").open("a") as f:
        f.write("3,1,4.0,4102444800\n")
    write_params(tmp_path, data={"format": "ml-25m", "raw_dir": str(ml25m_raw)}, **fast_llm_params(tiny_llm_dir))
    result = _materialize(tmp_path, instance)

    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.asset_check_key.name for c in failed] == ["interactions_quality"]
    assert "timestamp" in failed[0].metadata["failures"].value
    assert _materialized(instance, "interactions") is not None
    assert _materialized(instance, "samples") is None
    assert _materialized(instance, "cold_start_sets") is None
    for trained in ("alpaca_adapter", "rec_adapter", "rec_scores"):
        assert _materialized(instance, trained) is None, trained
    assert not (tmp_path / "data/processed/samples.parquet").exists()
    assert not (tmp_path / "models/alpaca_adapter").exists()


def test_heavy_steps_never_run_two_at_a_time():
    """Training and LLM/baseline evaluation steps are tagged heavy and the deployment's executor runs one heavy step at
    a time (two at once on 2 cores ran 7x slower and nearly exhausted memory)."""
    from explainrec_core import pipeline
    from explainrec_dagster.assets import HEAVY_TAG
    from explainrec_dagster.definitions import EXECUTOR_CONFIG, defs, executor

    tags = {a.op.name: a.op.tags for a in ASSETS}
    for name in ("alpaca_adapter", "rec_adapter", "explain_adapter", "rec_evaluation", "baselines", "llm_ranking",
                 "item_features"):
        assert tags[name].get(HEAVY_TAG) == "heavy", name
    for name in ("ingest", "samples", "rec_prompts"):
        assert HEAVY_TAG not in tags[name], name
    assert {s.name for s in pipeline.STEPS if s.gated} <= {n for n, t in tags.items() if t.get(HEAVY_TAG)}

    # `dagster asset materialize` runs the implicit asset job; the UI launches full_pipeline: both use it.
    assert defs.get_implicit_global_asset_job_def().executor_def is executor
    assert defs.get_job_def("full_pipeline").executor_def is executor
    assert EXECUTOR_CONFIG["max_concurrent"] <= 2
    assert {"key": HEAVY_TAG, "value": "heavy", "limit": 1} in EXECUTOR_CONFIG["tag_concurrency_limits"]


def test_the_deployment_executor_forks_steps_from_a_preloaded_server(processed_copy, instance):
    """`dagster asset materialize` and the UI run steps through the deployment's executor: steps forked from a
    server that imported the heavy libraries once (definitions.PRELOAD_MODULES). A preload list naming a module that
    no longer imports would break every run, so run real steps through it (the raw data and ingest)."""
    from explainrec_dagster.definitions import EXECUTOR_CONFIG, PRELOAD_MODULES

    assert EXECUTOR_CONFIG["start_method"] == {"forkserver": {"preload_modules": PRELOAD_MODULES}}
    job = dg.reconstructable(_deployment_job)
    run_config = {"resources": {"settings": {"config": {"root": str(processed_copy)}}}}
    selection = [dg.AssetKey(k) for k in ("raw_data", "interactions", "items", "users", "stream_holdout")]
    with dg.execute_job(job, instance=instance, run_config=run_config, asset_selection=selection) as result:
        assert result.success
        starts = [e for e in result.all_events if e.event_type_value == "STEP_WORKER_STARTED"]
        assert starts, "the steps did not run in worker processes"
    assert _materialized(instance, "interactions") is not None


def _deployment_job():
    from explainrec_dagster.definitions import defs

    return defs.resolve_job_def("full_pipeline")  # the UI's job; the same executor as `dagster asset materialize`
