"""The pipeline, described once: sources, steps and the quality gate.

Dagster (explainrec_dagster) and DVC (dvc.yaml) are projections of this description; tests/test_pipeline_graph.py
fails when either disagrees with it. Paths are templates over params.yaml keys (`${data.processed_dir}`), the
same syntax dvc.yaml interpolates, so one string serves both orchestrators.

A step function takes the settings and the project root, writes its outputs atomically, and returns the
statistics that become Dagster metadata and the DVC metrics file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from explainrec_core.config import Config
from explainrec_core.data import fetch, ingest, samples
from explainrec_core.errors import DataError, QualityGateError
from explainrec_core.io import write_json, write_parquet
from explainrec_core.quality.gate import CHECKS, SuiteResult

StepFn = Callable[[Config, Path], dict]


@dataclass(frozen=True)
class Source:
    """Raw input that no step produces. DVC tracks it with `dvc add`; Dagster materialises it by fetching."""

    name: str
    path: str
    group: str
    fetch: StepFn


@dataclass(frozen=True)
class Step:
    name: str
    group: str
    fn: StepFn
    deps: tuple[str, ...]  # names of sources or other steps' outputs
    outs: dict[str, str]  # output name (= Dagster asset key) -> path template
    params: tuple[str, ...]  # params.yaml sections (or dotted keys) the step reads
    metrics: str  # JSON statistics file; a DVC metrics file and Dagster metadata
    code: tuple[str, ...]  # source files whose change must re-run the step (DVC deps)
    doc: str = ""


@dataclass(frozen=True)
class Gate:
    """The quality gate: one GX suite per checked output. A DVC stage; Dagster asset checks (blocking)."""

    name: str
    checks: tuple[str, ...]
    params: tuple[str, ...]
    report: str
    code: tuple[str, ...]
    doc: str = ""


def resolve(template: str, cfg: Config, root: Path | str = ".") -> Path:
    """`${data.processed_dir}/x.parquet` -> root/data/processed/x.parquet, from the settings."""

    def lookup(match: re.Match) -> str:
        value: object = cfg
        for part in match.group(1).split("."):
            value = getattr(value, part)
        return str(value)

    return Path(root) / re.sub(r"\$\{([^}]+)\}", lookup, template)


def _processed(name: str) -> str:
    return "${data.processed_dir}/" + name + ".parquet"


def fetch_raw(cfg: Config, root: Path) -> dict:
    raw_dir = resolve("${data.raw_dir}", cfg, root)
    if cfg.data.format == "ml-100k" and not (raw_dir / "u.data").exists():
        fetch.fetch_ml100k(raw_dir)
    elif not raw_dir.is_dir() or not any(raw_dir.iterdir()):
        raise DataError(str(raw_dir), f"no raw {cfg.data.format} files here; only ml-100k can be fetched "
                        "automatically: download the dataset and point data.raw_dir at it")
    files = sorted(p for p in raw_dir.iterdir() if p.is_file())
    return {"files": {p.name: p.stat().st_size for p in files}, "format": cfg.data.format}


def run_ingest(cfg: Config, root: Path) -> dict:
    return ingest.ingest(cfg.data.format, resolve("${data.raw_dir}", cfg, root),
                         resolve("${data.processed_dir}", cfg, root))


def run_samples(cfg: Config, root: Path) -> dict:
    interactions = pl.read_parquet(resolve(_processed("interactions"), cfg, root))
    table = samples.build_samples(interactions, cfg.samples, cfg.split)
    write_parquet(table, resolve(_processed("samples"), cfg, root))
    return samples.sample_stats(table)


def run_cold_start_sets(cfg: Config, root: Path) -> dict:
    table = samples.build_cold_start_sets(pl.read_parquet(resolve(_processed("samples"), cfg, root)),
                                          pl.read_parquet(resolve(_processed("interactions"), cfg, root)),
                                          cfg.cold_start)
    write_parquet(table, resolve(_processed("cold_start_sets"), cfg, root))
    return samples.cold_start_stats(table)


SOURCES = (
    Source("raw_data", "${data.raw_dir}", "ingest", fetch_raw),
)

STEPS = (
    Step("ingest", "ingest", run_ingest, deps=("raw_data",),
         outs={name: _processed(name) for name in ingest.TABLES}, params=("data",),
         metrics="reports/data/ingest.json",
         code=("explainrec_core/data/ingest.py", "explainrec_core/data/movielens.py",
               "explainrec_core/data/rawcheck.py"),
         doc="Normalise the raw files into interactions, items and users tables."),
    Step("samples", "prepare", run_samples, deps=("interactions",),
         outs={"samples": _processed("samples")}, params=("samples", "split"),
         metrics="reports/data/samples.json", code=("explainrec_core/data/samples.py",),
         doc="History/target samples with labels, split 80/10/10 by global time order."),
    Step("cold_start_sets", "prepare", run_cold_start_sets, deps=("samples", "interactions"),
         outs={"cold_start_sets": _processed("cold_start_sets")}, params=("cold_start",),
         metrics="reports/data/cold_start.json", code=("explainrec_core/data/samples.py",),
         doc="Test samples of new users and new items (few training-period interactions)."),
)

GATE = Gate("validate", checks=tuple(CHECKS), params=("quality", "samples.like_threshold",
                                                      "samples.history_len", "samples.min_history"),
            report="reports/data_quality.json",
            code=("explainrec_core/quality/suites.py", "explainrec_core/quality/gate.py"),
            doc="Great Expectations suites over every table; training stages depend on its report.")


def step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(f"unknown step {name!r}; steps: {[s.name for s in STEPS] + [GATE.name]}")


def outputs(cfg: Config, root: Path | str = ".") -> dict[str, Path]:
    """Every named artefact (sources and step outputs) -> its resolved path."""
    paths = {s.name: resolve(s.path, cfg, root) for s in SOURCES}
    for s in STEPS:
        paths.update({name: resolve(t, cfg, root) for name, t in s.outs.items()})
    return paths


def run_step(name: str, cfg: Config, root: Path | str = ".") -> dict:
    """Run one step and write its metrics file; what `explainrec run STEP` and the Dagster assets call."""
    root = Path(root)
    if name == GATE.name:
        results = run_gate(cfg, root)
        return {r.name: r.success for r in results}
    s = step(name)
    stats = s.fn(cfg, root)
    write_json(stats, root / s.metrics)
    return stats


def run_check(name: str, cfg: Config, root: Path | str = ".") -> SuiteResult:
    return CHECKS[name](cfg, resolve("${data.processed_dir}", cfg, root))


def run_gate(cfg: Config, root: Path | str = ".") -> list[SuiteResult]:
    """Run every check and write the report (also on failure, so people can read it); raise on failure."""
    root = Path(root)
    results = [run_check(name, cfg, root) for name in GATE.checks]
    write_json({"success": all(r.success for r in results), "suites": [r.to_dict() for r in results]},
               root / GATE.report)
    failed = [r for r in results if not r.success]
    if failed:
        raise QualityGateError("data quality gate failed:\n" + "\n".join(r.summary() for r in failed))
    return results
