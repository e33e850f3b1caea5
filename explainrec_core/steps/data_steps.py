"""Data steps: raw files -> normalised tables -> samples and splits -> cold-start sets."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.config import Config
from explainrec_core.data import fetch, ingest, samples
from explainrec_core.errors import DataError
from explainrec_core.io import write_parquet


def fetch_raw(cfg: Config, root: Path) -> dict:
    raw_dir = paths.resolve(paths.RAW, cfg, root)
    if cfg.data.format == "ml-100k" and not (raw_dir / "u.data").exists():
        fetch.fetch_ml100k(raw_dir)
    elif not raw_dir.is_dir() or not any(raw_dir.iterdir()):
        raise DataError(str(raw_dir), f"no raw {cfg.data.format} files here; only ml-100k can be fetched "
                        "automatically: download the dataset and point data.raw_dir at it")
    files = sorted(p for p in raw_dir.iterdir() if p.is_file())
    return {"files": {p.name: p.stat().st_size for p in files}, "format": cfg.data.format}


def run_ingest(cfg: Config, root: Path) -> dict:
    return ingest.ingest(cfg.data.format, paths.resolve(paths.RAW, cfg, root),
                         paths.resolve(paths.PROCESSED, cfg, root))


def run_samples(cfg: Config, root: Path) -> dict:
    interactions = pl.read_parquet(paths.resolve(paths.processed("interactions"), cfg, root))
    table = samples.build_samples(interactions, cfg.samples, cfg.split)
    write_parquet(table, paths.resolve(paths.processed("samples"), cfg, root))
    return samples.sample_stats(table)


def run_cold_start_sets(cfg: Config, root: Path) -> dict:
    table = samples.build_cold_start_sets(pl.read_parquet(paths.resolve(paths.processed("samples"), cfg, root)),
                                          pl.read_parquet(paths.resolve(paths.processed("interactions"), cfg, root)),
                                          cfg.cold_start)
    write_parquet(table, paths.resolve(paths.processed("cold_start_sets"), cfg, root))
    return samples.cold_start_stats(table)
