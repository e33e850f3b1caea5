"""Ingest: read raw files of a known format, check them, write the normalised parquet tables.

Everything is read and checked before anything is written, and each table is replaced atomically, so a bad
input leaves the previous tables untouched.

`bad_lines` ("fail" or "skip") applies to the line-based JSON formats (amazon-*): a line that does not parse
fails the ingest or is skipped and counted in the returned statistics. The delimited MovieLens formats always
fail on a bad line and ignore the option.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from explainrec_core.data.amazon import read_amazon_2014, read_amazon_2018, read_amazon_2023
from explainrec_core.data.jsonlines import BAD_LINES, BadLines
from explainrec_core.data.movielens import Tables, read_ml25m, read_ml100k
from explainrec_core.errors import ConfigError, DataError
from explainrec_core.io import write_parquet

# Readers of line-based JSON take the `bad_lines` keyword; the others take only the folder.
LINE_READERS: dict[str, Callable[..., Tables]] = {
    "amazon-2014": read_amazon_2014,
    "amazon-2018": read_amazon_2018,
    "amazon-2023": read_amazon_2023,
}
READERS: dict[str, Callable[..., Tables]] = {
    "ml-100k": read_ml100k,
    "ml-25m": read_ml25m,
    **LINE_READERS,
}
TABLES = ("interactions", "items", "users")


def read_tables(fmt: str, raw_dir: str | Path, *, bad_lines: BadLines = "fail") -> Tables:
    if bad_lines not in BAD_LINES:
        raise ConfigError(f"bad_lines must be one of {list(BAD_LINES)}, got {bad_lines!r}")
    if fmt not in READERS:
        raise DataError(str(raw_dir), f"unknown format {fmt!r}; known formats: {sorted(READERS)}")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(str(raw_dir), "input folder not found")
    if fmt in LINE_READERS:
        return LINE_READERS[fmt](raw_dir, bad_lines=bad_lines)
    return READERS[fmt](raw_dir)


def table_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / f"{name}.parquet"


def ingest(fmt: str, raw_dir: str | Path, out_dir: str | Path, *, bad_lines: BadLines = "fail") -> dict:
    """Normalise `raw_dir` into `out_dir/{interactions,items,users}.parquet`; returns table statistics.

    Readers that drop or fill in data (amazon-*: skipped lines, duplicates, items without metadata) add their
    counts (`read_stats`) to the statistics.
    """
    return write_tables(read_tables(fmt, raw_dir, bad_lines=bad_lines), out_dir)


def write_tables(tables: Tables, out_dir: str | Path) -> dict:
    """The three tables, each written atomically; returns their statistics (and the reader's counts, if any)."""
    for name in TABLES:
        write_parquet(getattr(tables, name), table_path(out_dir, name))
    return {**table_stats(tables), **getattr(tables, "read_stats", {})}


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

