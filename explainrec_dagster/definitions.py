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

# Every step runs in its own process. Spawned, each one re-imported Dagster, this module and its step's libraries:
# ~10 s of torch + transformers + peft per training or scoring step and ~6 s of Great Expectations per check, on the
# critical path of a 50-step run. A fork server imports them once and forks each step from it. The imports start no
# compute threads (torch's and polars' pools start on first use), only idle helpers (one of torch's, the jemalloc
# background threads of polars and pyarrow, polars' spill cleaner); forking beside those ran fine in two full demos,
# but a step that hangs at start is the thing to suspect them of: `"start_method": {"spawn": {}}` undoes this.
PRELOAD_MODULES = ["explainrec_dagster.definitions", "torch", "transformers", "peft", "accelerate",
                   "great_expectations", "polars", "sklearn.metrics"]

# At most two steps at a time, and never two heavy ones: each heavy step already uses every core (assets.cpu_tags).
EXECUTOR_CONFIG = {
    "max_concurrent": 2,
    "tag_concurrency_limits": [{"key": HEAVY_TAG, "value": "heavy", "limit": 1}],
    "start_method": {"forkserver": {"preload_modules": PRELOAD_MODULES}},
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
