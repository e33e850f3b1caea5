"""Errors people see. Each names the file, the field and example offending values."""

from __future__ import annotations

from collections.abc import Sequence


class ExplainRecError(Exception):
    """Base class: an error with a message meant for the person running the pipeline."""


class ConfigError(ExplainRecError):
    """params.yaml (or an override) is invalid."""


class DataError(ExplainRecError):
    """An input file is unusable. Nothing downstream has been written when this is raised."""

    def __init__(self, file: str, problem: str, *, column: str | None = None,
                 rows: Sequence[int] = (), values: Sequence[object] = ()):
        self.file, self.column, self.problem = str(file), column, problem
        self.rows, self.values = list(rows), list(values)
        where = f"{self.file}" + (f", column '{column}'" if column else "")
        detail = ""
        if self.rows:
            examples = ", ".join(f"line {r}: {v!r}" for r, v in zip(self.rows[:5], self.values[:5], strict=False))
            detail = f" (e.g. {examples})"
        elif self.values:
            detail = f" (e.g. {', '.join(repr(v) for v in self.values[:5])})"
        super().__init__(f"{where}: {problem}{detail}")


class QualityGateError(ExplainRecError):
    """A data-quality suite failed; the message lists each failed expectation."""


class StorageError(ExplainRecError):
    """An artifact store or s3:// input is unusable: endpoint down, object or bucket missing, credentials
    rejected, or a download that does not match its manifest. The message names the URI and the endpoint."""


class RetrainError(ExplainRecError):
    """A retrain cannot run (no champion yet, a window without both labels, features that do not fit the fusion)."""
