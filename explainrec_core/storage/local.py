"""LocalStore: the artifact store's primitives over a folder (a shared disk, or tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

from explainrec_core.errors import StorageError
from explainrec_core.io import atomic_path
from explainrec_core.storage.base import ArtifactStore, ObjectInfo, sha256_file


class LocalStore(ArtifactStore):
    """A folder as a store (a shared disk, or tests): the same layout and atomicity as S3, via os.replace."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def uri(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def _upload(self, local: Path, key: str, sha256: str) -> None:
        with atomic_path(self.root / key) as tmp:
            shutil.copyfile(local, tmp)

    def _download(self, key: str, local: Path) -> None:
        try:
            shutil.copyfile(self.root / key, local)
        except FileNotFoundError:
            raise StorageError(f"{self.uri(key)} does not exist") from None

    def _read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def _write(self, data: bytes, key: str) -> None:
        with atomic_path(self.root / key) as tmp:
            tmp.write_bytes(data)

    def _head(self, key: str) -> ObjectInfo | None:
        path = self.root / key  # hashed on demand: a local store keeps no metadata beside the file
        return ObjectInfo(key, path.stat().st_size, sha256_file(path)) if path.is_file() else None

    def _keys(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix.endswith("/") else self.root
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    def _delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)
