"""Atomic writes: a crash or a bad input never leaves a half-written file that looks valid.

Each writer writes to a temporary file in the target's folder and renames it over the target (atomic on
POSIX), so readers see either the previous version or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target`, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs are shared like any other file
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def sha256_file(path: str | Path) -> str:
    """A file's SHA-256, read in blocks (adapters and tables can be larger than memory is worth spending)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_main_process() -> bool:
    """False in the other ranks of a multi-process run (`accelerate launch`): only rank 0 writes outputs."""
    return os.environ.get("RANK", "0") == "0"


def write_parquet(df: pl.DataFrame, target: str | Path) -> Path:
    # Fixed writer settings so the same frame gives the same bytes on every run (DVC and tests rely on it).
    with atomic_path(target) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=True, row_group_size=256_000)
    return Path(target)


def write_json(obj: object, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return Path(target)


def write_bytes(data: bytes, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
