"""The artifact store's operations over seven object primitives (ArtifactStore) and the helpers they share.

The layout and why readers never see a half-written artifact are described in the package docstring
(explainrec_core/storage/__init__.py); LocalStore (local.py) and S3Store (s3.py) implement the primitives.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from explainrec_core.errors import StorageError
from explainrec_core.io import atomic_path, sha256_file

MANIFEST = ".manifest.json"
VERSIONS = ".v"
MANIFEST_FORMAT = "explainrec-artifact/1"
KEEP_VERSIONS = 3
UMASK = os.umask(0)  # read once at import: toggling the process umask later would race with other threads
os.umask(UMASK)


@dataclass(frozen=True)
class Entry:
    """One visible artefact of a store."""

    name: str
    kind: str  # "file" or "dir"
    uri: str
    bytes: int
    files: int = 1
    version: str = ""  # folders only
    sha256: str = ""  # files only; "" when the store did not record it


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str = ""  # recorded at upload (S3 user metadata); "" otherwise
    etag: str = ""


def check_name(name: str) -> str:
    """Artefact names are relative keys; segments starting with '.' are reserved for the layout."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise StorageError(f"invalid artifact name {name!r}: use '/'-separated segments that do not start with '.'")
    return name


def safe_relative(path: str, where: str) -> str:
    # A manifest comes from the store: never let it write outside the destination folder.
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"{where}: manifest lists an unsafe path {path!r}")
    return path


def new_version() -> str:
    """Sortable by time (microseconds), unique across concurrent writers (random suffix)."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]


def swap_into_place(staging: Path, dest: Path) -> None:
    """Move a complete, verified `staging` folder (or file) to `dest`, replacing what was there.

    The old copy is renamed aside first and removed only after the new one is in place; two renames on the
    same file system, so the window with no `dest` is microseconds and never leaves a partial folder.
    """
    old = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.old"
    if dest.exists() or dest.is_symlink():
        dest.rename(old)
    try:
        staging.rename(dest)
    except OSError:
        if old.exists():
            old.rename(dest)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


class ArtifactStore(abc.ABC):
    """The operations; subclasses provide seven object primitives over keys relative to the store's root."""

    # --- primitives --------------------------------------------------------------------------------------
    @abc.abstractmethod
    def uri(self, key: str = "") -> str:
        """Where `key` lives, for messages and metadata (a path or s3://bucket/prefix/key)."""

    @abc.abstractmethod
    def _upload(self, local: Path, key: str, sha256: str) -> None:
        """Store a local file as `key`, replacing it atomically."""

    @abc.abstractmethod
    def _download(self, key: str, local: Path) -> None:
        """Copy `key` to the local path `local` (a temporary path chosen by the caller)."""

    @abc.abstractmethod
    def _read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    @abc.abstractmethod
    def _write(self, data: bytes, key: str) -> None:
        """Store `data` as `key`, replacing it atomically."""

    @abc.abstractmethod
    def _head(self, key: str) -> ObjectInfo | None:
        """Size and recorded sha256 of `key`, or None when it does not exist."""

    @abc.abstractmethod
    def _keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (recursive)."""

    @abc.abstractmethod
    def _delete_prefix(self, prefix: str) -> None:
        """Delete every key under `prefix`."""

    # --- files -------------------------------------------------------------------------------------------
    def put_file(self, local: str | Path, name: str) -> Entry:
        local = Path(local)
        if not local.is_file():
            raise StorageError(f"{local}: not a file, cannot publish it as {self.uri(check_name(name))}")
        digest = sha256_file(local)
        self._upload(local, check_name(name), digest)
        return Entry(name, "file", self.uri(name), local.stat().st_size, sha256=digest)

    def get_file(self, name: str, dest: str | Path) -> Path:
        """Download file `name` to `dest` through a temporary file; verify its recorded sha256, then rename."""
        dest = Path(dest)
        info = self._head(check_name(name))
        if info is None:
            raise StorageError(f"{self.uri(name)} does not exist")
        with atomic_path(dest) as tmp:
            self._download(name, tmp)
            self._verify(tmp, info.size, info.sha256, self.uri(name))
        return dest

    # --- folders -----------------------------------------------------------------------------------------
    def put_dir(self, local_dir: str | Path, name: str, keep: int = KEEP_VERSIONS) -> Entry:
        """Upload every file of `local_dir` under a new version, then flip the manifest to it (see module doc)."""
        local_dir = Path(local_dir)
        check_name(name)
        files = sorted(p for p in local_dir.rglob("*") if p.is_file()) if local_dir.is_dir() else []
        if not files:
            raise StorageError(f"{local_dir}: not a folder with files, nothing to publish as {self.uri(name)}")
        version = new_version()
        listed = []
        for path in files:  # one at a time: an adapter is a few files, and each large one uploads in parallel parts
            rel = path.relative_to(local_dir).as_posix()
            digest = sha256_file(path)
            self._upload(path, f"{name}/{VERSIONS}/{version}/{rel}", digest)
            listed.append({"path": rel, "size": path.stat().st_size, "sha256": digest})
        manifest = {"format": MANIFEST_FORMAT, "name": name, "version": version,
                    "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "bytes": sum(f["size"] for f in listed), "files": listed}
        self._write(json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n", f"{name}/{MANIFEST}")
        self.prune(name, keep)
        return self._dir_entry(name, manifest)

    def get_dir(self, name: str, dest: str | Path) -> Path:
        """Download the current version of folder `name` into a temporary folder next to `dest`, verify every
        file against the manifest, then swap it into place. On any failure `dest` is left as it was."""
        dest = Path(dest)
        manifest = self.manifest(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            for f in manifest["files"]:
                rel = safe_relative(f["path"], self.uri(f"{name}/{MANIFEST}"))
                key = f"{name}/{VERSIONS}/{manifest['version']}/{rel}"
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self._download(key, target)
                self._verify(target, f["size"], f["sha256"], self.uri(key))
            staging.chmod(0o777 & ~UMASK)  # mkdtemp makes 0700 folders; the result is shared like any folder
            swap_into_place(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return dest

    def manifest(self, name: str) -> dict:
        """The current manifest of folder `name`; StorageError when no complete upload of it exists."""
        key = f"{check_name(name)}/{MANIFEST}"
        raw = self._read(key)
        if raw is None:
            raise StorageError(f"{self.uri(name)} does not exist (no complete upload: {self.uri(key)} is missing)")
        return self._parse_manifest(raw, key)

    def _parse_manifest(self, raw: bytes, key: str) -> dict:
        try:
            manifest = json.loads(raw)
            if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), list):
                raise ValueError(f"format {manifest.get('format')!r}")
        except (ValueError, AttributeError) as exc:
            raise StorageError(f"{self.uri(key)}: not an artifact manifest ({exc})") from None
        return manifest

    def prune(self, name: str, keep: int = KEEP_VERSIONS) -> list[str]:
        """Delete all but the newest `keep` versions of folder `name` (never the current one); returns those gone.

        Also removes what failed uploads left behind once newer versions exist.
        """
        current = self.manifest(name)["version"]
        root = f"{name}/{VERSIONS}/"
        versions = sorted({key[len(root):].split("/", 1)[0] for key in self._keys(root)})
        doomed = [v for v in versions[: max(len(versions) - keep, 0)] if v != current]
        for version in doomed:
            self._delete_prefix(f"{root}{version}/")
        return doomed

    # --- queries -----------------------------------------------------------------------------------------
    def stat(self, name: str) -> Entry | None:
        """The visible artefact `name` (a folder with a manifest, or a file), or None."""
        key = f"{check_name(name)}/{MANIFEST}"
        if (raw := self._read(key)) is not None:
            return self._dir_entry(name, self._parse_manifest(raw, key))
        info = self._head(name)
        return Entry(name, "file", self.uri(name), info.size, sha256=info.sha256) if info else None

    def exists(self, name: str) -> bool:
        return self.stat(name) is not None

    def list(self, prefix: str = "") -> list[Entry]:
        """Every visible artefact whose name starts with `prefix`: folders with a manifest, and files.
        Files of versions (including unfinished uploads) are not artefacts of their own."""
        entries = []
        for key in self._keys(prefix):
            parts = key.split("/")
            if parts[-1] == MANIFEST:
                name = "/".join(parts[:-1])
                entries.append(self._dir_entry(name, self.manifest(name)))
            elif not any(p.startswith(".") for p in parts):  # version files, manifests, temporary files
                info = self._head(key)
                if info is not None:
                    entries.append(Entry(key, "file", self.uri(key), info.size, sha256=info.sha256))
        return sorted(entries, key=lambda e: e.name)

    # --- helpers -----------------------------------------------------------------------------------------
    def _dir_entry(self, name: str, manifest: dict) -> Entry:
        return Entry(name, "dir", self.uri(name), int(manifest["bytes"]), len(manifest["files"]),
                     version=manifest["version"])

    @staticmethod
    def _verify(path: Path, size: int, digest: str, uri: str) -> None:
        got = path.stat().st_size
        if got != size:
            raise StorageError(f"{uri}: downloaded {got} bytes, the manifest says {size}")
        if digest and (actual := sha256_file(path)) != digest:
            raise StorageError(f"{uri}: sha256 {actual} does not match the recorded {digest} (corrupted or "
                               "replaced object)")

