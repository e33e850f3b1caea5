"""The quality gate as blocking asset checks: a failed suite stops every downstream asset in the run."""


import dagster as dg

from explainrec_core import pipeline
from explainrec_dagster.resources import ExplainRecSettings


def quality_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=table, name=f"{table}_quality", blocking=True,
                    description=f"Great Expectations suite over {table} (see explainrec_core/quality/suites.py).")
    def _check(settings: ExplainRecSettings) -> dg.AssetCheckResult:
        result = pipeline.run_check(table, settings.config(), settings.root_path)
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if result.success else result.summary()[:2000],
            metadata={
                "rows": result.n_rows,
                "expectations": result.n_expectations,
                "failed": len(result.failures),
                "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in result.failures) or "none"),
            },
        )

    return _check


CHECKS = [quality_check(name) for gate in pipeline.GATES for name in gate.checks]
