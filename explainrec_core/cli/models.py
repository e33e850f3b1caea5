"""`explainrec retrain` and `explainrec models ...`: continuous training and the model registry.

    explainrec retrain                      process the inbox, rebuild the tables, train a challenger from the
                                            champion, promote it only if it is not worse (what the Dagster job runs)
    explainrec models                       every registered champion and challenger, with the decision and why
    explainrec models rollback [--to ID]    serve the previous champion again (or any registered model)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from explainrec_core import paths
from explainrec_core.cli.common import ParamsOption, console, fail
from explainrec_core.config import DEFAULT_PARAMS, load_config
from explainrec_core.continuous.registry import Registry, adapter_digest
from explainrec_core.errors import ExplainRecError

models_app = typer.Typer(help="The model registry: champions, challengers, decisions; rollback.",
                         invoke_without_command=True)


def retrain(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """New interactions -> quality gate -> rebuilt tables -> challenger warm-started from the champion -> champion
    and challenger on the same newest samples -> promote only if not worse (reports/retrain.json)."""
    from explainrec_core.continuous.retrain import retrain as run  # torch and GX only here

    try:
        cfg = load_config(params)
        report = run(cfg, Path("."), hashlib.sha256(Path(params).read_bytes()).hexdigest(),
                     log=lambda line: console.print(line, highlight=False, markup=False))
    except ExplainRecError as exc:
        raise fail(exc) from None
    console.print(f"[bold]{report['decision']}[/]: {report['reason']}", highlight=False)


@models_app.callback()
def models(ctx: typer.Context) -> None:
    """Every registered model: the champion served now, former champions, challengers and the decisions."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        registry = Registry(Path("."))
    except ExplainRecError as exc:
        raise fail(exc) from None
    if not registry.models:
        console.print(f"no registered models yet ({registry.path}): `explainrec retrain` registers the champion")
        return
    table = Table(title=f"models ({registry.path})")
    for column in ("id", "role", "created", "parent", "decision", "AUC (newest window)", "data", "git", "reason"):
        table.add_column(column, overflow="fold")
    for m in registry.models:
        own = m.metrics.get("challenger", {})  # a retrained model's own figures (the first champion has none)
        auc = f"{own['auc']:.4f}" if own.get("auc") is not None else "-"
        table.add_row(m.id, m.role, m.created, m.parent or "-", m.decision, auc, m.data_sha256[:12],
                      (m.git_commit or "-")[:8], m.reason)
    Console(width=200).print(table)
    served = Path(".") / paths.CHAMPION_ADAPTER
    if registry.champion and served.is_dir() and adapter_digest(served) != registry.current().adapter_sha256:
        console.print(f"[yellow]note:[/] {served} is not the registry's champion {registry.champion} (the pipeline "
                      "retrained it since); `explainrec models rollback --to ID` serves a registered one")


@models_app.command("rollback")
def rollback(to: Annotated[str, typer.Option("--to", help="Model id (default: the previous champion).")] = "") -> None:
    """Serve the previous champion again (its adapter and item features swapped in atomically)."""
    try:
        registry = Registry(Path("."))
        record = registry.rollback(Path(".") / paths.CHAMPION_ADAPTER, to or None)
    except ExplainRecError as exc:
        raise fail(exc) from None
    console.print(f"serving {record.id} ({record.decision or record.role}, created {record.created})")
