"""The artifact store as a Dagster resource, and the asset that publishes the champion adapter and the report.

Thin: the store, its layout and its errors are explainrec_core.storage's. The backend is one setting,
`storage.backend` in params.yaml (or EXPLAINREC_STORAGE_BACKEND); the resource's `backend` overrides it per
run from the launchpad. No `from __future__ import annotations`: Dagster reads the annotations at runtime.
"""

import dagster as dg

from explainrec_core import pipeline
from explainrec_core.storage import DEFAULT_PUBLISH, ArtifactStore, open_store, publish_artifacts
from explainrec_dagster.resources import ExplainRecSettings


class ArtifactStoreResource(dg.ConfigurableResource):
    backend: str = ""
    """"" = storage.backend from the settings file; `local` or `s3` to override it for a run."""

    def store(self, settings: ExplainRecSettings) -> ArtifactStore:
        return open_store(settings.config(), settings.root_path, backend=self.backend or None)


@dg.asset(name="published_artifacts", deps=list(DEFAULT_PUBLISH), group_name="publish",
          description="The champion rec adapter and the evaluation report, published to the artifact store "
                      "(local folder or S3, per storage.backend). A folder becomes visible only when complete.")
def published_artifacts(settings: ExplainRecSettings, artifact_store: ArtifactStoreResource) -> dg.MaterializeResult:
    store = artifact_store.store(settings)
    published = publish_artifacts(pipeline.outputs(settings.config(), settings.root_path), store, DEFAULT_PUBLISH)
    return dg.MaterializeResult(metadata={
        "store": store.uri(),
        **{name: dg.MetadataValue.json({k: v for k, v in vars(entry).items() if v not in ("", None)})
           for name, entry in published.items()},
    })
