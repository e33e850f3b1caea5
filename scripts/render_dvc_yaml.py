"""Write dvc.yaml from explainrec_core.pipeline (the DVC projection of the pipeline description).

    python scripts/render_dvc_yaml.py > dvc.yaml

tests/test_pipeline_graph.py checks that the committed dvc.yaml agrees with the pipeline, so re-run this after
adding or changing a step.
"""

from explainrec_core import pipeline

HEADER = """\
# The pipeline as DVC stages, written by scripts/render_dvc_yaml.py from explainrec_core/pipeline.py: each stage
# runs the same step function as the Dagster asset of that name; tests/test_pipeline_graph.py fails when they
# disagree. Paths interpolate params.yaml. Run with the venv active (or `make repro`) so `explainrec` is on PATH.
# The raw data is an input tracked by `dvc add` (data/raw/ml-100k.dvc), not a stage.
# Training stages depend on the quality gate's report, so a failing suite stops `dvc repro` before them.

stages:"""


def stage_deps(step: pipeline.Step, produced: dict[str, str]) -> list[str]:
    metrics = [pipeline.step(name).metrics for name in step.reads_metrics]
    gate = [pipeline.GATE.report] if step.gated else []
    return [produced[d] for d in step.deps] + metrics + list(step.code) + gate


def main() -> None:
    produced = {s.name: s.path for s in pipeline.SOURCES}
    for s in pipeline.STEPS:
        produced.update(s.outs)
    lines = [HEADER]
    for s in pipeline.STEPS:
        lines += [f"  {s.name}:", f"    cmd: explainrec run {s.name}", "    deps:"]
        lines += [f"      - {d}" for d in stage_deps(s, produced)]
        lines += ["    params:", *(f"      - {p}" for p in s.params)]
        lines += ["    outs:", *(f"      - {o}" for o in s.outs.values())]
        lines += ["    metrics:", f"      - {s.metrics}:", "          cache: false"]
        if s.plots:
            lines.append("    plots:")
            for p in s.plots:
                lines += [f"      - {p}:", "          cache: false"]
        lines.append("")
    g = pipeline.GATE
    lines += ["  # The quality gate: fails `dvc repro` when a suite fails; training stages depend on its report.",
              f"  {g.name}:", f"    cmd: explainrec run {g.name}", "    deps:",
              *(f"      - {produced[c]}" for c in g.checks), *(f"      - {c}" for c in g.code),
              "    params:", *(f"      - {p}" for p in g.params),
              "    outs:", f"      - {g.report}:", "          cache: false"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
