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

from explainrec_core import paths
from explainrec_core.cli.common import ParamsOption, console
from explainrec_core.cli.common import fail as _fail
from explainrec_core.config import DEFAULT_PARAMS, load_config
from explainrec_core.data import incoming
from explainrec_core.errors import ExplainRecError

incoming_app = typer.Typer(help="New interactions: process the inbox (append once, or quarantine).",
                           no_args_is_help=True)


@incoming_app.command("process")
def process(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Append every new inbox file once (duplicate rows skipped and counted) or quarantine it whole; exit 0 when
    every file was handled, quarantined ones included (their reasons are printed and kept next to them)."""
    try:
        results = incoming.process_inbox(load_config(params), Path("."))  # the project root, as `explainrec run`
    except ExplainRecError as exc:
        raise _fail(exc) from None
    for r in results:
        console.print(r.line(), style="red" if r.status == "quarantined" else None, highlight=False)
    appended = sum(r.appended for r in results)
    console.print(f"{len(results)} file(s): {appended} rating(s) accepted"
                  + ("; run `explainrec run ingest` (or the pipeline) to use them" if appended else ""))


def replay(batches: Annotated[int, typer.Option("--batches", help="Number of incoming files.")] = 1,
           params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Write the ratings ingest held out (data.stream_holdout) into the inbox as time-ordered batches."""
    try:
        cfg = load_config(params)
        root = Path(".")  # the project root, as for `explainrec run`
        holdout = pl.read_parquet(paths.resolve(paths.processed("stream_holdout"), cfg, root))
        tables = {name: pl.read_parquet(paths.resolve(paths.processed(name), cfg, root)) for name in ("users", "items")}
        written = incoming.replay_batches(holdout, root / cfg.incoming.uri, batches, cfg.data.format, **tables)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    console.print(f"{len(written)} file(s), {holdout.height} rating(s) written to {root / cfg.incoming.uri}")
