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


def test_dvc_yaml_has_exactly_the_pipeline_steps_and_gates():
    assert list(DVC_YAML) == [s.name for s in pipeline.STEPS] + [g.name for g in pipeline.GATES]


def test_dvc_stages_match_steps():
    paths = _producer_paths()
    for step in pipeline.STEPS:
        stage = DVC_YAML[step.name]
        assert stage["cmd"] == f"explainrec run {step.name}"
        gate = [g.report for g in pipeline.gates_of(step)]
        metrics_read = [pipeline.step(name).metrics for name in step.reads_metrics]
        assert _names(stage["deps"]) == [paths[d] for d in step.deps] + list(step.watch) + metrics_read + \
            list(step.code) + gate, step.name
        assert stage["params"] == list(step.params), step.name
        assert _names(stage["outs"]) == list(step.outs.values()), step.name
        assert _names(stage["metrics"]) == [step.metrics], step.name
        assert _names(stage.get("plots", [])) == list(step.plots), step.name


def test_training_steps_are_gated():
    """Everything that trains sits downstream of the data gate and of the gates on the tables it trains on."""
    gated = {s.name for s in pipeline.STEPS if s.gated}
    assert {"alpaca_adapter", "rec_adapter", "explain_adapter", "explain_adapter_ablation"} <= gated
    gates = {s.name: {g.name for g in pipeline.gates_of(s)} for s in pipeline.STEPS}
    assert all(pipeline.GATE.name in gates[name] for name in gated)
    assert gates["alpaca_adapter"] == {"validate"}  # it reads no prompts: a bad prompt table must not block it
    assert "validate_rec_prompts" in gates["rec_adapter"]
    assert {"validate_explain_prompts", "validate_item_attributes"} <= gates["explain_adapter"]
    assert {"validate_explain_prompts", "validate_item_attributes"} <= gates["explain_adapter_ablation"]
    assert all(not gates[s.name] for s in pipeline.STEPS if not s.gated)
    # every table the models train on has a gate, and every checked output is made by the pipeline
    checked = {c for g in pipeline.GATES for c in g.checks}
    assert {"rec_prompts", "explain_prompts", "item_attributes", "cross_domain_sets"} <= checked
    assert checked <= set(_producer_paths())


def test_dvc_gates_match_pipeline_gates():
    paths = _producer_paths()
    for gate in pipeline.GATES:
        stage = DVC_YAML[gate.name]
        assert stage["cmd"] == f"explainrec run {gate.name}"
        assert _names(stage["deps"]) == [paths[c] for c in gate.checks] + [paths[r] for r in gate.reads] + list(
            gate.code), gate.name
        assert stage.get("params", []) == list(gate.params), gate.name
        assert _names(stage["outs"]) == [gate.report], gate.name


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
    assert keys == set(_producer_paths()) | {"published_artifacts", "model_registry"}
    for source in pipeline.SOURCES:
        assert not graph.get(dg.AssetKey(source.name)).parent_keys
    for step in pipeline.STEPS:
        for out in step.outs:
            node = graph.get(dg.AssetKey(out))
            gate = set(pipeline.gate_checks(step))
            read = {o for name in step.reads_metrics for o in pipeline.step(name).outs}
            assert {p.to_user_string() for p in node.parent_keys} == set(step.deps) | gate | read, out
            assert node.group_name == step.group
            assert defs.resolve_assets_def(out).node_def.name == step.name
    specs = [spec for check in CHECKS for spec in check.check_specs]
    assert sorted(s.asset_key.to_user_string() for s in specs) == sorted(c for g in pipeline.GATES for c in g.checks)
    assert all(s.blocking for s in specs)
