"""`dagster dev` / `dagster asset materialize` entry point (see workspace.yaml and pyproject's [tool.dagster])."""

import dagster as dg

from explainrec_dagster.assets import ASSETS, HEAVY_TAG
from explainrec_dagster.automation import model_registry, new_interactions_sensor, nightly_retrain, retrain_job
from explainrec_dagster.checks import CHECKS
from explainrec_dagster.resources import ExplainRecSettings
from explainrec_dagster.storage import ArtifactStoreResource, published_artifacts

full_pipeline = dg.define_asset_job("full_pipeline",
                                    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(model_registry),
                                    description="Every asset, raw data to the latest artefact, quality-gated.")

# At most two steps at a time, and never two heavy ones: each heavy step already uses every core.
EXECUTOR_CONFIG = {
    "max_concurrent": 2,
    "tag_concurrency_limits": [{"key": HEAVY_TAG, "value": "heavy", "limit": 1}],
}
executor = dg.multiprocess_executor.configured(EXECUTOR_CONFIG)

defs = dg.Definitions(
    assets=[*ASSETS, published_artifacts, model_registry],
    asset_checks=CHECKS,
    jobs=[full_pipeline, retrain_job],
    sensors=[new_interactions_sensor],
    schedules=[nightly_retrain],
    executor=executor,
    resources={"settings": ExplainRecSettings(), "artifact_store": ArtifactStoreResource()},
)
