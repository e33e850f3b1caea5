"""Stage code dependencies come from the import graph, and data flows one way (nothing below pipeline imports it)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from explainrec_core import code_graph, pipeline
from tests.conftest import REPO

PACKAGE = REPO / "explainrec_core"


def _covered(module_path: str, code: tuple[str, ...]) -> bool:
    """A file is covered when listed, or inside a listed folder (how the hand-written lists named packages)."""
    return any(module_path == c or module_path.startswith(c.rstrip("/") + "/") for c in code)


STEP_MODULES = sorted({s.fn.module for s in pipeline.STEPS})


@pytest.fixture(scope="module")
def loaded_by_importing() -> dict[str, set[str]]:
    """For each step module, the explainrec_core source files Python actually loads when importing it. One fresh
    interpreter for all of them: before each import every explainrec_core module is dropped from sys.modules, so
    each import loads exactly what that module needs of ours (torch & co. stay loaded: they are not what is
    checked, and importing them once instead of once per module saves ~3 minutes of the suite)."""
    script = ("import importlib, json, sys\n"
              "out = {}\n"
              "for module in sys.argv[1:]:\n"
              "    for name in [n for n in sys.modules if n.split('.')[0] == 'explainrec_core']:\n"
              "        del sys.modules[name]\n"
              "    importlib.import_module(module)\n"
              "    out[module] = sorted(m.__file__ for n, m in sys.modules.items()\n"
              "                         if n.split('.')[0] == 'explainrec_core' and getattr(m, '__file__', None))\n"
              "print(json.dumps(out))\n")
    out = subprocess.run([sys.executable, "-c", script, *STEP_MODULES], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    return {module: {Path(f).resolve().relative_to(REPO).as_posix() for f in files}
            for module, files in json.loads(out.splitlines()[-1]).items()}


@pytest.mark.parametrize("module", STEP_MODULES)
def test_step_code_deps_include_every_module_python_loads(module, loaded_by_importing):
    """Independent of the ast reading: whatever importing a step's module loads must be among its DVC deps."""
    loaded = loaded_by_importing[module]
    assert f"{module.replace('.', '/')}.py" in loaded  # the step's own file: the import did run
    for step in (s for s in pipeline.STEPS if s.fn.module == module):
        missing = sorted(f for f in loaded if not _covered(f, step.code))
        assert not missing, f"{step.name}: code deps miss {missing}"


def test_steps_depend_on_the_metrics_they_compute():
    """The modules the hand-written lists missed: a change to a metric must re-run the steps that use it."""
    needs = {
        "baselines": ("evaluation/scoring.py", "evaluation/ranking.py"),
        "llm_ranking": ("evaluation/scoring.py", "evaluation/ranking.py", "evaluation/prefix_scoring.py"),
        "explain_adapter": ("evaluation/scoring.py",),
        "explain_evaluation": ("evaluation/scoring.py", "evaluation/ranking.py", "evaluation/text_metrics.py"),
    }
    for name, files in needs.items():
        code = pipeline.step(name).code
        assert {f"explainrec_core/{f}" for f in files} <= set(code), name


def test_function_level_imports_and_package_inits_count():
    """data_steps imports the storage package inside a function; importing it runs the package's __init__."""
    code = set(pipeline.step("ingest").code)
    assert {"explainrec_core/storage/__init__.py", "explainrec_core/storage/store.py",
            "explainrec_core/steps/__init__.py", "explainrec_core/__init__.py"} <= code
    # and storage/store.py imports storage/s3.py inside a function only (boto3 loads when S3 is used)
    assert "explainrec_core/storage/s3.py" in code


def test_code_deps_are_sorted_files_that_exist():
    for step in pipeline.STEPS:
        assert list(step.code) == sorted(set(step.code)), step.name
        assert all((REPO / f).is_file() for f in step.code), step.name
        assert step.fn.module.replace(".", "/") + ".py" in step.code
    for gate in pipeline.GATES:
        assert "explainrec_core/quality/gate.py" in gate.code


def test_relative_imports_resolve(tmp_path, monkeypatch):
    pkg = tmp_path / "explainrec_core"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import a\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from ..b import g\n")
    (pkg / "b.py").write_text("import os\n")
    monkeypatch.setattr(code_graph, "ROOT", tmp_path)
    code_graph.direct_imports.cache_clear()
    code_graph.module_closure.cache_clear()
    try:
        assert code_graph.code_files("explainrec_core.sub") == (
            "explainrec_core/__init__.py", "explainrec_core/b.py", "explainrec_core/sub/__init__.py",
            "explainrec_core/sub/a.py")
    finally:
        code_graph.direct_imports.cache_clear()
        code_graph.module_closure.cache_clear()


def _imports_pipeline(path: Path) -> bool:
    """Whether a source file imports explainrec_core.pipeline anywhere (module level or inside a function)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(a.name == "explainrec_core.pipeline" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (
                node.module == "explainrec_core.pipeline"
                or (node.module == "explainrec_core" and any(a.name == "pipeline" for a in node.names))):
            return True
    return False


ABOVE_PIPELINE = ("pipeline.py", "runner.py", "continuous/retrain.py")
"""pipeline.py itself, runner.py, which drives whole profiles step by step, and continuous/retrain.py, which reruns
the data steps on new interactions (both called by the CLI and Dagster only)."""


def _may_import_pipeline(relative: Path) -> bool:
    """The modules above the pipeline and the command line (cli*.py or a cli/ package); all else is below it."""
    parts = relative.parts
    return (relative.as_posix() in ABOVE_PIPELINE or parts[0] == "cli"
            or (len(parts) == 1 and parts[0].startswith("cli")))


def test_data_flows_one_way():
    """The pipeline imports the steps, which import the library: a library module importing the pipeline back
    (even inside a function, to dodge the circle) makes the graph a loop. Callers pass what it needs instead."""
    offenders = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                       if not _may_import_pipeline(p.relative_to(PACKAGE)) and _imports_pipeline(p))
    assert offenders == []
