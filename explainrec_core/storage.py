"""Artifact storage: publish pipeline outputs to a folder or to S3, fetch them back, read raw data from s3://.

One setting picks the backend: `storage.backend` in params.yaml (or EXPLAINREC_STORAGE_BACKEND), `local`
(LocalStore, a folder) or `s3` (S3Store in storage_s3.py, a bucket and key prefix at an endpoint). Both keep
the same layout under their root (the folder, or s3://bucket/prefix):

    NAME                          a file (put_file): one object, replaced by one PUT (locally one rename)
    NAME/.v/VERSION/PATH          the files of one upload of folder NAME (put_dir); written once, never changed
    NAME/.manifest.json           the current version of folder NAME: its id and each file's path, size, sha256

Why a folder upload is never seen half-written: put_dir writes every file under a fresh VERSION key first and
the manifest LAST. Replacing one object is atomic on S3 (a reader gets the old object or the new one, never a
mix) and os.replace is atomic locally, so a reader sees the previous manifest or the new one, and each names
only files that were completely stored before it was written. An upload that fails half-way leaves files under
.v/ that no manifest names: invisible to exists/stat/get_dir/list, and pruned by a later put_dir. Readers
(get_dir) fetch the manifest once and then only that version's files, verify each against the manifest's
sha256, and swap the verified copy into place. The newest KEEP_VERSIONS versions stay, so a reader that read
the previous manifest just before a flip can still finish its download; older ones go after each put_dir.

Credentials are never read here: boto3 takes them from the standard AWS chain (environment, AWS_PROFILE and
~/.aws, SSO, an instance or task role).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from explainrec_core.config import Config, StorageConfig
from explainrec_core.data.fetch import default_cache_dir
from explainrec_core.errors import ConfigError, DataError, StorageError
from explainrec_core.storage_base import KEEP_VERSIONS, ArtifactStore, Entry, LocalStore

__all__ = ["KEEP_VERSIONS", "ArtifactStore", "Entry", "LocalStore", "StorageError", "effective_settings", "localize",
           "open_store", "publish_artifacts"]

DEFAULT_PUBLISH = ("rec_adapter", "evaluation_report", "evaluation_html")
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
        from explainrec_core.storage_s3 import S3Store  # boto3 loads only when S3 is used

        return S3Store(s.bucket, s.prefix, s.endpoint_url or None, max_attempts=s.max_attempts,
                       connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
    raise ConfigError(f"storage:backend: expected 'local' or 's3', got {backend!r}")


# --- what the pipeline uses ----------------------------------------------------------------------------------

def publish_artifacts(cfg: Config, root: str | Path = ".", names: Iterable[str] = DEFAULT_PUBLISH,
                      store: ArtifactStore | None = None) -> dict[str, Entry]:
    """Push named pipeline outputs (folders such as adapters, files such as reports) to the store.

    Every name is checked before anything is uploaded, so a typo never publishes half of a set.
    """
    from explainrec_core.pipeline import outputs  # the pipeline imports the model code: load it only here

    found = outputs(cfg, root)
    names = list(names)
    for name in names:
        if name not in found:
            raise ConfigError(f"unknown artifact {name!r}; pipeline outputs: {sorted(found)}")
        if not found[name].exists():
            raise DataError(str(found[name]), f"missing: run the step that makes `{name}` before publishing it")
    store = store or open_store(cfg, root)
    return {name: store.put_dir(found[name], name) if found[name].is_dir() else store.put_file(found[name], name)
            for name in names}


def localize(uri_or_path: str | Path, cache_dir: str | Path, settings: StorageConfig | None = None) -> Path:
    """A local path for `uri_or_path`: local paths come back unchanged; an s3:// folder (or single object) is
    downloaded once into `cache_dir`, in a folder named after the objects' keys, sizes and ETags, so a changed
    object gives a new folder and an unchanged one is not downloaded again (see storage_s3.localize_s3)."""
    if not str(uri_or_path).startswith("s3://"):
        return Path(uri_or_path)
    from explainrec_core.storage_s3 import localize_s3

    return localize_s3(str(uri_or_path), Path(cache_dir), effective_settings(settings or StorageConfig()))
