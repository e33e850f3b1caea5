"""`dagster dev` / `dagster asset materialize` entry point (see workspace.yaml and pyproject's [tool.dagster])."""

import dagster as dg

from explainrec_dagster.assets import ASSETS
from explainrec_dagster.checks import CHECKS
from explainrec_dagster.resources import ExplainRecSettings
from explainrec_dagster.storage import ArtifactStoreResource, published_artifacts

full_pipeline = dg.define_asset_job("full_pipeline", selection=dg.AssetSelection.all(),
                                    description="Every asset, raw data to the latest artefact, quality-gated.")

defs = dg.Definitions(
    assets=[*ASSETS, published_artifacts],
    asset_checks=CHECKS,
    jobs=[full_pipeline],
    resources={"settings": ExplainRecSettings(), "artifact_store": ArtifactStoreResource()},
)
