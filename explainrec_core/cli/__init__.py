"""The `explainrec` command (typer): main.py has the pipeline commands, explain.py `explain`/`recommend`,
storage.py `storage ...`. DVC stages and people call it; nothing in the library imports it."""

from explainrec_core.cli.main import EXIT_GATE, EXIT_INPUT, app

__all__ = ["EXIT_GATE", "EXIT_INPUT", "app"]
