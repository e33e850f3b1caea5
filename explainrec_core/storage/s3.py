"""S3Store (the artifact store on S3, MinIO or a moto server) and s3:// raw inputs (localize_s3), with boto3.

Retries are bounded and left to botocore: one client per store with the standard retry mode,
`total_max_attempts` = storage.max_attempts (the first attempt included) and connect/read timeouts. Transfers go
through boto3's managed upload_file/download_file (multipart and parallel parts for large files, on the same
client). Every botocore/boto3 failure becomes a StorageError that names the URI and the endpoint (`translate`).
Credentials come only from the standard AWS chain; nothing here reads or accepts a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
from boto3.exceptions import Boto3Error, RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from explainrec_core.config import StorageConfig
from explainrec_core.errors import StorageError
from explainrec_core.storage.base import UMASK, ArtifactStore, ObjectInfo, safe_relative

MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
BUCKET_MISSING_CODES = {"NoSuchBucket", "404", "NotFound"}
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                    "TokenRefreshRequired", "InvalidClientTokenId", "AuthFailure", "UnrecognizedClientException"}
DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}
CHAIN_HINT = ("check the AWS credential chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), "
              "AWS_PROFILE and ~/.aws/credentials, or the instance/task role; keys never go in params.yaml")


def make_client(endpoint_url: str | None, max_attempts: int, connect_timeout: float, read_timeout: float):
    config = BotoConfig(retries={"total_max_attempts": max_attempts, "mode": "standard"},
                        connect_timeout=connect_timeout, read_timeout=read_timeout,
                        # MinIO, moto and most S3-compatible servers serve buckets as paths, not as host names
                        s3={"addressing_style": "path"} if endpoint_url else None)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/key -> ("bucket", "some/key")."""
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri}: not an s3:// URI")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name (expected s3://BUCKET/KEY)")
    return bucket, key


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def unwrap(exc: BaseException) -> BaseException:
    """The botocore error under boto3's transfer wrappers (they keep it only as context or an attribute)."""
    if isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
        return unwrap(exc.last_exception)
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
        return exc.__context__
    return exc


def translate(exc: BaseException, uri: str, bucket: str, endpoint: str, attempts: int) -> StorageError:
    """A StorageError saying what went wrong with `uri` and what to check."""
    exc = unwrap(exc)
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return StorageError(f"cannot reach the S3 endpoint {endpoint} for {uri}: gave up after {attempts} "
                            f"attempt(s) (storage.max_attempts): {exc}. Is it up, and is storage.endpoint_url "
                            "(or EXPLAINREC_S3_ENDPOINT_URL / AWS_ENDPOINT_URL) right?")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return StorageError(f"no usable AWS credentials for {uri} at {endpoint} ({exc}): {CHAIN_HINT}")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        if code == "NoSuchBucket":
            return bucket_missing(bucket, endpoint, uri)
        if code in MISSING_CODES:
            return StorageError(f"{uri} does not exist")
        if code in CREDENTIAL_CODES:
            return StorageError(f"S3 at {endpoint} rejected the credentials for {uri} ({code}: {message}): "
                                f"{CHAIN_HINT}")
        if code in DENIED_CODES:
            return StorageError(f"access to {uri} at {endpoint} denied ({code}): the credentials from the AWS "
                                f"chain are wrong or lack permission; {CHAIN_HINT}, and the bucket policy")
        return StorageError(f"S3 error on {uri} at {endpoint}: {code}: {message}")
    return StorageError(f"S3 request for {uri} at {endpoint} failed: {type(exc).__name__}: {exc}")


def bucket_missing(bucket: str, endpoint: str, uri: str) -> StorageError:
    return StorageError(f"bucket s3://{bucket} does not exist at {endpoint} (needed for {uri}): create it, or "
                        "fix storage.bucket / EXPLAINREC_S3_BUCKET")


class S3Store(ArtifactStore):
    """The artifact store under s3://bucket/prefix (layout and atomicity: see explainrec_core/storage/__init__.py)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, *, max_attempts: int = 3,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0):
        self.bucket, self.prefix, self.max_attempts = bucket, prefix.strip("/"), max_attempts
        self.client = make_client(endpoint_url, max_attempts, connect_timeout, read_timeout)
        self.endpoint = self.client.meta.endpoint_url
        # s3transfer re-reads a body that breaks mid-stream on its own; bound that by the same setting
        self.transfer = TransferConfig(num_download_attempts=max_attempts)

    def __repr__(self) -> str:
        return f"S3Store({self.uri()!r}, endpoint={self.endpoint!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str = "") -> str:
        path = self._key(key) if key else self.prefix
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            cause = unwrap(exc)
            if isinstance(cause, ClientError) and error_code(cause) in MISSING_CODES:
                self._require_bucket(key)  # a missing bucket also answers 404 to HEAD: say which is missing
            raise translate(exc, self.uri(key), self.bucket, self.endpoint, self.max_attempts) from exc

    def _require_bucket(self, key: str) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) in BUCKET_MISSING_CODES:
                raise bucket_missing(self.bucket, self.endpoint, self.uri(key)) from None
        except (BotoCoreError, Boto3Error):
            pass  # the caller reports its own error

    def _upload(self, local: Path, key: str, sha256: str) -> None:
        extra = {"Metadata": {"sha256": sha256}}  # get_file verifies downloads against it
        if content_type := mimetypes.guess_type(local.name)[0]:
            extra["ContentType"] = content_type  # reports open in a browser straight from S3
        with self._errors(key):
            self.client.upload_file(str(local), self.bucket, self._key(key), ExtraArgs=extra, Config=self.transfer)

    def _download(self, key: str, local: Path) -> None:
        with self._errors(key):
            self.client.download_file(self.bucket, self._key(key), str(local), Config=self.transfer)

    def _read(self, key: str) -> bytes | None:
        with self._errors(key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except ClientError as exc:
                if error_code(exc) != "NoSuchKey":
                    raise
        return None

    def _write(self, data: bytes, key: str) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   ContentType="application/json")

    def _head(self, key: str) -> ObjectInfo | None:
        with self._errors(key):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if error_code(exc) not in MISSING_CODES:
                    raise
                self._require_bucket(key)
                return None
        return ObjectInfo(key, head["ContentLength"], head.get("Metadata", {}).get("sha256", ""),
                          head.get("ETag", "").strip('"'))

    # Plain object operations, for a drop box of files other programs upload (data/incoming_s3.py): no manifests,
    # no sha256 metadata to verify against.
    def download(self, key: str, local: Path) -> None:
        """Download object `key` (relative to the store's prefix) to `local`."""
        self._download(key, local)

    def write_text(self, text: str, key: str) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=text.encode("utf-8"),
                                   ContentType="text/plain; charset=utf-8")

    def move(self, key: str, new_key: str) -> None:
        """Server-side copy to `new_key`, then delete `key` (S3 has no rename; objects up to 5 GB)."""
        with self._errors(key):
            self.client.copy_object(Bucket=self.bucket, Key=self._key(new_key),
                                    CopySource={"Bucket": self.bucket, "Key": self._key(key)})
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object under `prefix` (keys relative to the store's prefix), with size and ETag."""
        full, strip = self._key(prefix), len(self._key(""))
        found = []
        with self._errors(prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                found += [ObjectInfo(o["Key"][strip:], o["Size"], etag=o.get("ETag", "").strip('"'))
                          for o in page.get("Contents", [])]
        return found

    def _keys(self, prefix: str) -> list[str]:
        return [o.key for o in self.objects(prefix)]

    def _delete_prefix(self, prefix: str) -> None:
        keys = self._keys(prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            with self._errors(prefix):
                reply = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self._key(k)} for k in keys[start:start + 1000]], "Quiet": True})
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise StorageError(f"{self.uri(prefix)}: could not delete {len(reply['Errors'])} objects "
                                   f"(e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')})")


def localize_s3(uri: str, cache_dir: Path, settings: StorageConfig) -> Path:
    """Download an s3:// folder (every object under URI/) or single object into the cache, once per content.

    The cache folder is named after the endpoint, bucket and the objects' relative keys, sizes and ETags, so
    it is content-addressed: unchanged objects are not downloaded again, a changed one gives a new folder.
    Files download into a temporary folder that is renamed into place only when complete.
    """
    bucket, key = parse_s3_uri(uri)
    store = S3Store(bucket, "", settings.endpoint_url or None, max_attempts=settings.max_attempts,
                    connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout)
    folder = key.rstrip("/")
    objects, single = _list_input(store, key)
    if not objects:
        raise StorageError(f"{uri} does not exist (no object there, nor under {uri.rstrip('/')}/)")
    base = folder[: len(folder) - len(single)] if single else (f"{folder}/" if folder else "")
    listing = sorted((o.key[len(base):], o.size, o.etag) for o in objects)
    digest = hashlib.sha256(json.dumps([store.endpoint, bucket, listing]).encode()).hexdigest()[:16]
    final = Path(cache_dir) / "s3" / bucket / f"{(folder.rsplit('/', 1)[-1] or bucket)}-{digest}"
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            for o in objects:
                target = staging / safe_relative(o.key[len(base):], uri)
                target.parent.mkdir(parents=True, exist_ok=True)
                store._download(o.key, target)
                if target.stat().st_size != o.size:
                    raise StorageError(f"s3://{bucket}/{o.key}: downloaded {target.stat().st_size} bytes, "
                                       f"listed {o.size}")
            # The folder is named after the listing: an object replaced mid-download must not hide under it
            if sorted((o.key[len(base):], o.size, o.etag) for o in _list_input(store, key)[0]) != listing:
                raise StorageError(f"{uri} changed while it was being downloaded; run again")
            staging.chmod(0o777 & ~UMASK)
            try:
                staging.rename(final)
            except OSError:
                if not final.is_dir():  # else a concurrent localize of the same content finished first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final / single if single else final


def _list_input(store: S3Store, key: str) -> tuple[list[ObjectInfo], str]:
    """The objects under KEY/ (a folder), else the object KEY itself with its file name."""
    folder = key.rstrip("/")
    objects = [o for o in store.objects(f"{folder}/" if folder else "") if not o.key.endswith("/")]
    if not objects and folder and not key.endswith("/") and (info := store._head(folder)) is not None:
        return [info], folder.rsplit("/", 1)[-1]
    return objects, ""
