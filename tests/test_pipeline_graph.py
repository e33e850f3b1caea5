"""dvc.yaml and the Dagster asset graph are projections of explainrec_core.pipeline: same steps, deps, outputs."""

from __future__ import annotations

import dagster as dg
import yaml
from dvc.repo import Repo

from explainrec_core import pipeline
from explainrec_core.config import load_config
from tests.conftest import REPO

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _producer_paths() -> dict[str, str]:
    """Artefact name -> path template, for sources and step outputs."""
    paths = {s.name: s.path for s in pipeline.SOURCES}
    for step in pipeline.STEPS:
        paths.update(step.outs)
    return paths


def _names(entries: list) -> list[str]:
    """dvc.yaml list entries are strings or one-key mappings (path: options)."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def test_dvc_yaml_has_exactly_the_pipeline_steps_and_gate():
    assert list(DVC_YAML) == [s.name for s in pipeline.STEPS] + [pipeline.GATE.name]


def test_dvc_stages_match_steps():
    paths = _producer_paths()
    for step in pipeline.STEPS:
        stage = DVC_YAML[step.name]
        assert stage["cmd"] == f"explainrec run {step.name}"
        gate = [pipeline.GATE.report] if step.gated else []
        metrics_read = [pipeline.step(name).metrics for name in step.reads_metrics]
        assert _names(stage["deps"]) == [paths[d] for d in step.deps] + metrics_read + list(step.code) + gate, \
            step.name
        assert stage["params"] == list(step.params), step.name
        assert _names(stage["outs"]) == list(step.outs.values()), step.name
        assert _names(stage["metrics"]) == [step.metrics], step.name
        assert _names(stage.get("plots", [])) == list(step.plots), step.name


def test_training_steps_are_gated():
    """Everything that trains sits downstream of the quality gate."""
    gated = {s.name for s in pipeline.STEPS if s.gated}
    assert {"alpaca_adapter", "rec_adapter"} <= gated


def test_dvc_gate_matches_pipeline_gate():
    paths, gate = _producer_paths(), pipeline.GATE
    stage = DVC_YAML[gate.name]
    assert stage["cmd"] == f"explainrec run {gate.name}"
    assert _names(stage["deps"]) == [paths[c] for c in gate.checks] + list(gate.code)
    assert stage["params"] == list(gate.params)
    assert _names(stage["outs"]) == [gate.report]


def test_dvc_resolves_the_same_paths_as_the_pipeline():
    """DVC's own interpolation of ${...} agrees with pipeline.resolve for the project's params.yaml."""
    cfg = load_config(REPO / "params.yaml")
    resolved = {name: str(path) for name, path in pipeline.outputs(cfg, "").items()}
    with Repo(str(REPO)) as repo:
        stages = {s.name: s for s in repo.index.stages if hasattr(s, "cmd") and s.cmd}
    for step in pipeline.STEPS:
        outs = [o.def_path for o in stages[step.name].outs if not (o.metric or o.plot)]
        assert outs == [resolved[name] for name in step.outs]
        deps = [d.def_path for d in stages[step.name].deps if d.def_path != "params.yaml"]
        assert deps[: len(step.deps)] == [resolved[d] for d in step.deps]
    # The raw data is DVC-tracked with `dvc add` rather than produced by a stage.
    assert (REPO / (resolved["raw_data"] + ".dvc")).is_file()


def test_dagster_graph_matches_steps():
    from explainrec_dagster.checks import CHECKS
    from explainrec_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    # plus the asset that publishes the champion artefacts to the artifact store (explainrec_dagster/storage.py)
    assert keys == set(_producer_paths()) | {"published_artifacts"}
    for source in pipeline.SOURCES:
        assert not graph.get(dg.AssetKey(source.name)).parent_keys
    for step in pipeline.STEPS:
        for out in step.outs:
            node = graph.get(dg.AssetKey(out))
            gate = set(pipeline.GATE.checks) if step.gated else set()
            read = {o for name in step.reads_metrics for o in pipeline.step(name).outs}
            assert {p.to_user_string() for p in node.parent_keys} == set(step.deps) | gate | read, out
            assert node.group_name == step.group
            assert defs.resolve_assets_def(out).node_def.name == step.name
    specs = [spec for check in CHECKS for spec in check.check_specs]
    assert sorted(s.asset_key.to_user_string() for s in specs) == sorted(pipeline.GATE.checks)
    assert all(s.blocking for s in specs)
