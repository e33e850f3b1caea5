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
# Training stages depend on the reports of the quality gates on their inputs, so a failing suite stops `dvc repro`
# before them. Stage code dependencies are the step's module and everything it imports (explainrec_core/code_graph.py).

stages:"""


def stage_deps(step: pipeline.Step, produced: dict[str, str]) -> list[str]:
    metrics = [pipeline.step(name).metrics for name in step.reads_metrics]
    gates = [g.report for g in pipeline.gates_of(step)]
    # Folders a step reads outside the pipeline (the accepted new interactions) are deps too; `make data` creates
    # them, and `explainrec incoming process` tracks their contents with `dvc add` in a DVC repo.
    return [produced[d] for d in step.deps] + list(step.watch) + metrics + list(step.code) + gates


def gate_deps(gate: pipeline.Gate, produced: dict[str, str]) -> list[str]:
    return [produced[c] for c in gate.checks] + [produced[r] for r in gate.reads] + list(gate.code)


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
    lines.append("  # The quality gates: each fails `dvc repro` when a suite fails; training stages depend on their"
                 " reports.")
    for g in pipeline.GATES:
        lines += [f"  {g.name}:", f"    cmd: explainrec run {g.name}", "    deps:",
                  *(f"      - {d}" for d in gate_deps(g, produced))]
        if g.params:
            lines += ["    params:", *(f"      - {p}" for p in g.params)]
        lines += ["    outs:", f"      - {g.report}:", "          cache: false", ""]
    print("\n".join(lines).rstrip())


if __name__ == "__main__":
    main()
