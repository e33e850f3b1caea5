"""Dagster: materialise the whole graph on a real instance; a failing blocking check stops what is downstream."""

from __future__ import annotations

import dagster as dg
import pytest

from explainrec_dagster.assets import ASSETS
from explainrec_dagster.checks import CHECKS
from explainrec_dagster.resources import ExplainRecSettings
from tests.conftest import write_params


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
    for key in ("raw_data", "interactions", "items", "users", "samples", "cold_start_sets"):
        assert _materialized(instance, key) is not None, key
    samples = _materialized(instance, "samples").metadata
    assert samples["rows"].value == 99_057
    assert 0.5 < samples["positive_rate"].value < 0.6
    assert "| sample_id" in samples["preview"].value
    checks = [e for e in result.get_asset_check_evaluations()]
    assert len(checks) == 5 and all(c.passed for c in checks)
    assert (project / "data/processed/cold_start_sets.parquet").is_file()


def test_failing_blocking_check_stops_downstream(ml25m_raw, tmp_path, instance):
    # A rating dated in the year 2100 parses fine, so ingest writes it; the interactions suite must then
    # fail and block `samples` and everything after it.
    with (ml25m_raw / "ratings.csv").open("a") as f:
        f.write("3,1,4.0,4102444800\n")
    write_params(tmp_path, data={"format": "ml-25m", "raw_dir": str(ml25m_raw)})
    result = _materialize(tmp_path, instance)

    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.asset_check_key.name for c in failed] == ["interactions_quality"]
    assert "timestamp" in failed[0].metadata["failures"].value
    assert _materialized(instance, "interactions") is not None
    assert _materialized(instance, "samples") is None
    assert _materialized(instance, "cold_start_sets") is None
    assert not (tmp_path / "data/processed/samples.parquet").exists()
