"""`explainrec incoming process` and `explainrec replay`: new interactions into the inbox, and out of it.

    explainrec replay --batches N        the held-out newest ratings (data.stream_holdout) as N incoming files
    explainrec incoming process          every new file in the inbox: appended once, or quarantined with a reason

`incoming process` is the function the retraining job calls; afterwards `explainrec run ingest` (or the pipeline)
rebuilds the interactions with the accepted rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape

from explainrec_core import paths
from explainrec_core.config import DEFAULT_PARAMS, load_config
from explainrec_core.data import incoming
from explainrec_core.errors import ExplainRecError

incoming_app = typer.Typer(help="New interactions: process the inbox (append once, or quarantine).",
                           no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)
ParamsOption = Annotated[Path, typer.Option("--params", help="Settings file.")]
EXIT_INPUT = 2  # the exit code of explainrec_core.cli for unusable input or settings (not imported: cli imports us)


def _fail(exc: ExplainRecError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    return typer.Exit(EXIT_INPUT)


@incoming_app.command("process")
def process(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Append every new inbox file once (duplicate rows skipped and counted) or quarantine it whole; exit 0 when
    every file was handled, quarantined ones included (their reasons are printed and kept next to them)."""
    try:
        cfg = load_config(params)
        root = Path(".")  # the project root, as for `explainrec run`
        folder = root / cfg.incoming.uri
        folder.mkdir(parents=True, exist_ok=True)
        items_file = paths.resolve(paths.processed("items"), cfg, root)
        items = pl.read_parquet(items_file)
        users = pl.read_parquet(paths.resolve(paths.processed("users"), cfg, root))
        results = incoming.process_incoming(
            folder, cfg.data.format, pl.read_parquet(paths.resolve(paths.processed("interactions"), cfg, root)),
            items, items_file, check=lambda rows, path: gx_failures(cfg, rows, path, items, users))
    except ExplainRecError as exc:
        raise _fail(exc) from None
    for r in results:
        console.print(r.line(), style="red" if r.status == "quarantined" else None, highlight=False)
    appended = sum(r.appended for r in results)
    console.print(f"{len(results)} file(s): {appended} rating(s) accepted"
                  + ("; run `explainrec run ingest` (or the pipeline) to use them" if appended else ""))


def gx_failures(cfg, rows: pl.DataFrame, path: Path, items: pl.DataFrame, users: pl.DataFrame) -> str | None:
    """The data gate's interactions suite on an incoming file's rows (its new users count as known): None when it
    passes, else the failed expectations."""
    from explainrec_core.quality import suites  # great_expectations: imported when a file is checked
    from explainrec_core.quality.gate import run_suite

    known = pl.concat([users.select("user_id"), rows.select("user_id")]).unique()
    result = run_suite("incoming", path, rows.to_pandas(), suites.interactions_suite(cfg, items, known))
    return None if result.success else result.summary()


def replay(batches: Annotated[int, typer.Option("--batches", help="Number of incoming files.")] = 1,
           params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Write the ratings ingest held out (data.stream_holdout) into the inbox as time-ordered batches."""
    try:
        cfg = load_config(params)
        root = Path(".")  # the project root, as for `explainrec run`
        holdout = pl.read_parquet(paths.resolve(paths.processed("stream_holdout"), cfg, root))
        written = incoming.replay_batches(holdout, root / cfg.incoming.uri, batches)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    console.print(f"{len(written)} file(s), {holdout.height} rating(s) written to {root / cfg.incoming.uri}")
