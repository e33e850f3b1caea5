"""Artifact storage: publish pipeline outputs to a folder or to S3, fetch them back, read raw data from s3://.

One setting picks the backend: `storage.backend` in params.yaml (or EXPLAINREC_STORAGE_BACKEND), `local`
(LocalStore in local.py, a folder) or `s3` (S3Store in s3.py, a bucket and key prefix at an endpoint). Both keep
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

from explainrec_core.errors import StorageError
from explainrec_core.storage.base import KEEP_VERSIONS, ArtifactStore, Entry
from explainrec_core.storage.local import LocalStore
from explainrec_core.storage.store import DEFAULT_PUBLISH, effective_settings, localize, open_store, publish_artifacts

__all__ = ["DEFAULT_PUBLISH", "KEEP_VERSIONS", "ArtifactStore", "Entry", "LocalStore", "StorageError",
           "effective_settings", "localize", "open_store", "publish_artifacts"]
