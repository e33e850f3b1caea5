"""Data steps: raw files -> normalised tables -> samples and splits -> cold-start sets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.config import Config
from explainrec_core.data import cross_domain, fetch, incoming, ingest, samples
from explainrec_core.errors import DataError
from explainrec_core.io import atomic_path, write_parquet


def read_processed(cfg: Config, root: Path, name: str) -> pl.DataFrame:
    """One of the processed tables (`data/processed/NAME.parquet`) that later steps read."""
    return pl.read_parquet(paths.resolve(paths.processed(name), cfg, root))


def local_raw_dir(cfg: Config, root: Path) -> Path:
    """The raw folder on this machine: `data.raw_dir` under the project, or an s3:// URI downloaded (once, keyed
    by the objects' ETags) into the cache."""
    if cfg.data.raw_dir.startswith("s3://"):
        from explainrec_core.storage import localize

        return localize(cfg.data.raw_dir, fetch.default_cache_dir() / "s3", cfg.storage)
    return paths.resolve(paths.RAW, cfg, root)


def fetch_raw(cfg: Config, root: Path) -> dict:
    raw_dir = local_raw_dir(cfg, root)
    if cfg.data.format == "ml-100k" and not cfg.data.raw_dir.startswith("s3://") and not (raw_dir / "u.data").exists():
        fetch.fetch_ml100k(raw_dir)
    elif not raw_dir.is_dir() or not any(raw_dir.iterdir()):
        raise DataError(str(raw_dir), f"no raw {cfg.data.format} files here; only ml-100k can be fetched "
                        "automatically: download the dataset and point data.raw_dir at it")
    files = sorted(p for p in raw_dir.iterdir() if p.is_file())
    return {"files": {p.name: p.stat().st_size for p in files}, "format": cfg.data.format}


def run_ingest(cfg: Config, root: Path) -> dict:
    """The raw files (one dataset, or two combined: `cross_domain.second_dataset`), less the simulated stream's
    held-out newest ratings (`data.stream_holdout`), plus every accepted incoming file (data/incoming.py)."""
    second = cfg.cross_domain.second_dataset
    first = ingest.read_tables(cfg.data.format, local_raw_dir(cfg, root), bad_lines=cfg.data.bad_lines)
    extra: dict = {}
    if second.format:  # two-dataset mode: items and interactions keep their `domain`
        other = ingest.read_tables(second.format, root / second.raw_dir, bad_lines=cfg.data.bad_lines)
        user_map = cross_domain.read_user_map(root / second.user_map)
        first = cross_domain.combine_domains(first, other, user_map, key_a=second.key_a, key_b=second.key_b,
                                             map_file=str(root / second.user_map))
        extra = {"domains": {"a": cfg.data.format, "b": second.format},
                 "mapped_users": int((first.users["domain"] == "both").sum())}
    kept, held_out = incoming.hold_out_newest(first.interactions, cfg.data.stream_holdout)
    interactions, users, added = incoming.with_accepted(kept, first.users, root / cfg.incoming.uri)
    tables = dataclasses.replace(first, interactions=interactions, users=users)  # keeps a reader's read_stats
    stats = ingest.write_tables(tables, paths.resolve(paths.PROCESSED, cfg, root))
    write_parquet(held_out, paths.resolve(paths.processed("stream_holdout"), cfg, root))
    return {**stats, **extra, "stream_held_out": held_out.height, "incoming_accepted": added}


def sink_parquet(query: pl.LazyFrame, target: Path) -> Path:
    """Stream a query into `target` atomically, with write_parquet's settings (same content, fixed layout).

    The streaming engine writes batch by batch, so a samples table larger than memory is never held whole.
    """
    with atomic_path(target) as tmp:
        query.sink_parquet(tmp, compression="zstd", statistics=True, row_group_size=256_000, engine="streaming")
    return target


def run_samples(cfg: Config, root: Path) -> dict:
    interactions = pl.scan_parquet(paths.resolve(paths.processed("interactions"), cfg, root))
    target = paths.resolve(paths.processed("samples"), cfg, root)
    query = samples.build_samples(interactions, cfg.samples, cfg.split)
    sink_parquet(query, target)
    # Statistics from the query (its scalar part is in memory) rather than the file: re-reading 240M history
    # values from parquet only to count them costs more than gathering them again.
    return samples.sample_stats(query)


def run_cold_start_sets(cfg: Config, root: Path) -> dict:
    query = samples.build_cold_start_sets(pl.scan_parquet(paths.resolve(paths.processed("samples"), cfg, root)),
                                          pl.scan_parquet(paths.resolve(paths.processed("interactions"), cfg, root)),
                                          cfg.cold_start)
    target = paths.resolve(paths.processed("cold_start_sets"), cfg, root)
    sink_parquet(query, target)
    return samples.cold_start_stats(pl.scan_parquet(target))


def run_cross_domain_sets(cfg: Config, root: Path) -> dict:
    """Zero-shot cross-domain sets (source-domain training, target-domain evaluation) from a genre split."""
    items_file = paths.resolve(paths.processed("items"), cfg, root)
    interactions = pl.read_parquet(paths.resolve(paths.processed("interactions"), cfg, root))
    settings = cfg.cross_domain
    domains = cross_domain.item_domains(pl.read_parquet(items_file), settings.target_genres, str(items_file))
    table = cross_domain.build_cross_domain_sets(
        pl.scan_parquet(paths.resolve(paths.processed("samples"), cfg, root)), interactions, domains,
        cfg.samples.history_len, settings.min_source_interactions, settings.eval_splits)
    write_parquet(table, paths.resolve(paths.processed("cross_domain_sets"), cfg, root))
    return cross_domain.cross_domain_stats(table, domains, cross_domain.bridge_users(interactions, domains))
