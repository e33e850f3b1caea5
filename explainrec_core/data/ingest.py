"""Ingest: read raw files of a known format, check them, write the normalised parquet tables.

Everything is read and checked before anything is written, and each table is replaced atomically, so a bad
input leaves the previous tables untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from explainrec_core.data.movielens import Tables, read_ml25m, read_ml100k
from explainrec_core.errors import DataError
from explainrec_core.io import write_parquet

READERS: dict[str, Callable[[Path], Tables]] = {
    "ml-100k": read_ml100k,
    "ml-25m": read_ml25m,
}
TABLES = ("interactions", "items", "users")


def read_tables(fmt: str, raw_dir: str | Path) -> Tables:
    if fmt not in READERS:
        raise DataError(str(raw_dir), f"unknown format {fmt!r}; known formats: {sorted(READERS)}")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(str(raw_dir), "input folder not found")
    return READERS[fmt](raw_dir)


def table_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / f"{name}.parquet"


def ingest(fmt: str, raw_dir: str | Path, out_dir: str | Path) -> dict:
    """Normalise `raw_dir` into `out_dir/{interactions,items,users}.parquet`; returns table statistics."""
    tables = read_tables(fmt, raw_dir)
    for name in TABLES:
        write_parquet(getattr(tables, name), table_path(out_dir, name))
    return table_stats(tables)


def table_stats(tables: Tables) -> dict:
    inter = tables.interactions
    return {
        "n_interactions": inter.height,
        "n_users": inter["user_id"].n_unique(),
        "n_items_rated": inter["item_id"].n_unique(),
        "n_items": tables.items.height,
        "density": round(inter.height / (inter["user_id"].n_unique() * inter["item_id"].n_unique()), 6),
        "rating_mean": round(float(inter["rating"].mean()), 4),
        "first_timestamp": int(inter["timestamp"].min()),
        "last_timestamp": int(inter["timestamp"].max()),
    }

