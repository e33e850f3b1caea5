"""The finished parts of a long step, so that a rerun redoes only the parts whose inputs changed.

explain_evaluation scores, explains and ranks with three models (about 20 minutes each at paper size on 2 CPU
cores); champion_ablations trains and scores one model per modality group. Each part is saved when it finishes,
with a fingerprint of everything it depends on (every setting and the SHA-256 of each input file), and a rerun
reuses a part only when the fingerprint still matches: a changed setting, adapter or input file redoes it. So an
interrupted run resumes after the parts it finished, and a variant trained later (a run that skipped one) is
evaluated without redoing the others.

A part is a metrics dict plus named tables. Its tables are written first and its metrics file last (each write is
atomic), so a part interrupted while being saved counts as not finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from explainrec_core.config import Config
from explainrec_core.io import sha256_file, write_json, write_parquet

DONE = "part.json"  # the part's fingerprint and metrics: written last


def files_under(folder: Path) -> list[Path]:
    """Every file of a folder (an adapter: weights, fusion, card), in a fixed order."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def fingerprint(cfg: Config, files: Iterable[Path]) -> str:
    """All settings and the digests of `files` (a missing file counts as missing, so creating it changes this).
    File names without their folders: the same project copied elsewhere has the same fingerprint."""
    digests = [[f.name, sha256_file(f) if f.is_file() else None] for f in files]
    payload = json.dumps([dataclasses.asdict(cfg), digests], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class Parts:
    """Finished parts under `folder`, one subfolder each, valid for one fingerprint."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get(self, name: str, fingerprint: str) -> tuple[dict, dict[str, pl.DataFrame]] | None:
        """The part's metrics and tables if it finished under this fingerprint, else None."""
        done = self.folder / name / DONE
        if not done.is_file():
            return None
        record = json.loads(done.read_text())
        if record["fingerprint"] != fingerprint:
            return None
        tables = {table: pl.read_parquet(self.folder / name / f"{table}.parquet") for table in record["tables"]}
        return record["metrics"], tables

    def put(self, name: str, fingerprint: str, metrics: dict, tables: dict[str, pl.DataFrame]) -> None:
        """Save a finished part (read it back with `get`, so a reused part and a fresh one give the same types)."""
        for table, frame in tables.items():
            write_parquet(frame, self.folder / name / f"{table}.parquet")
        record = {"fingerprint": fingerprint, "metrics": metrics, "tables": sorted(tables)}
        write_json(record, self.folder / name / DONE)
