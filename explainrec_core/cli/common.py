"""What every `explainrec` sub-command shares: the console, the --params option, exit codes, error printing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from explainrec_core.errors import ExplainRecError, QualityGateError

console = Console(stderr=True, soft_wrap=True)  # soft wrap: messages stay greppable in logs
ParamsOption = Annotated[Path, typer.Option("--params", help="Settings file.")]
EXIT_GATE, EXIT_INPUT = 1, 2
"""Exit codes: 1 = a quality gate failed, 2 = unusable input or settings."""


def fail(exc: ExplainRecError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    return typer.Exit(EXIT_GATE if isinstance(exc, QualityGateError) else EXIT_INPUT)
