"""The configured store (settings, environment overrides, backend choice), publishing outputs, s3:// inputs.

The layout and its atomicity are described in the package docstring (explainrec_core/storage/__init__.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from explainrec_core import paths
from explainrec_core.config import Config, StorageConfig
from explainrec_core.data.fetch import default_cache_dir
from explainrec_core.errors import ConfigError, DataError
from explainrec_core.storage.base import ArtifactStore, Entry
from explainrec_core.storage.local import LocalStore

DEFAULT_PUBLISH = (paths.CHAMPION, "evaluation_report", "evaluation_html")
"""What `explainrec storage push` and the Dagster asset publish: the champion adapter and the report."""

ENV_BACKEND, ENV_LOCAL_DIR = "EXPLAINREC_STORAGE_BACKEND", "EXPLAINREC_STORAGE_DIR"
ENV_BUCKET, ENV_PREFIX = "EXPLAINREC_S3_BUCKET", "EXPLAINREC_S3_PREFIX"
ENV_ENDPOINTS = ("EXPLAINREC_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # first set wins


# --- settings ------------------------------------------------------------------------------------------------

def effective_settings(settings: StorageConfig, env: Mapping[str, str] | None = None) -> StorageConfig:
    """params.yaml's storage section with the environment overrides applied (see StorageConfig)."""
    env = os.environ if env is None else env
    changes = {field: env[var] for field, var in (("backend", ENV_BACKEND), ("local_dir", ENV_LOCAL_DIR),
                                                  ("bucket", ENV_BUCKET), ("prefix", ENV_PREFIX)) if env.get(var)}
    endpoint = next((env[var] for var in ENV_ENDPOINTS if env.get(var)), None)
    if endpoint:
        changes["endpoint_url"] = endpoint
    try:
        return dataclasses.replace(settings, **changes)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (set through the environment: {sorted(changes)})") from None


def open_store(cfg: Config, root: str | Path = ".", backend: str | None = None) -> ArtifactStore:
    """The configured store; `backend` overrides the setting (the Dagster resource's config does)."""
    s = effective_settings(cfg.storage)
    backend = backend or s.backend
    if backend == "local":
        folder = Path(s.local_dir) if s.local_dir else default_cache_dir() / "store"
        return LocalStore(folder if folder.is_absolute() else Path(root) / folder)
    if backend == "s3":
        if not s.bucket:
            raise ConfigError(f"storage:bucket is empty: set it in params.yaml or {ENV_BUCKET} to use backend s3")
        from explainrec_core.storage.s3 import S3Store  # boto3 loads only when S3 is used

        return S3Store(s.bucket, s.prefix, s.endpoint_url or None, max_attempts=s.max_attempts,
                       connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
    raise ConfigError(f"storage:backend: expected 'local' or 's3', got {backend!r}")


# --- what the pipeline uses ----------------------------------------------------------------------------------

def publish_artifacts(outputs: Mapping[str, Path], store: ArtifactStore,
                      names: Iterable[str] = DEFAULT_PUBLISH) -> dict[str, Entry]:
    """Push named pipeline outputs (folders such as adapters, files such as reports) to the store.

    `outputs` maps every artefact name to its path (the caller passes pipeline.outputs(...): the pipeline sits
    above this library, so it hands the names down instead of being imported here). Every name is checked before
    anything is uploaded, so a typo never publishes half of a set.
    """
    names = list(names)
    for name in names:
        if name not in outputs:
            raise ConfigError(f"unknown artifact {name!r}; pipeline outputs: {sorted(outputs)}")
        if not Path(outputs[name]).exists():
            raise DataError(str(outputs[name]), f"missing: run the step that makes `{name}` before publishing it")
    return {name: store.put_dir(Path(outputs[name]), name) if Path(outputs[name]).is_dir()
            else store.put_file(Path(outputs[name]), name) for name in names}


def localize(uri_or_path: str | Path, cache_dir: str | Path, settings: StorageConfig | None = None) -> Path:
    """A local path for `uri_or_path`: local paths come back unchanged; an s3:// folder (or single object) is
    downloaded once into `cache_dir`, in a folder named after the objects' keys, sizes and ETags, so a changed
    object gives a new folder and an unchanged one is not downloaded again (see storage.s3.localize_s3)."""
    if not str(uri_or_path).startswith("s3://"):
        return Path(uri_or_path)
    from explainrec_core.storage.s3 import localize_s3

    return localize_s3(str(uri_or_path), Path(cache_dir), effective_settings(settings or StorageConfig()))
