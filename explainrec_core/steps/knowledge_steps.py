"""preference_knowledge_base: the knowledge base of the training period (eq. 4-5), and how well it predicts alone.

Its demographic part is a zero-shot recommender: P(i | u) needs no history at all, only the user's groups. Its
AUC on the validation (where it chose its smoothing), test and cold-start samples is in the step's metrics, and its
per-sample scores go to the report, which pairs them with every other method on the same samples.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import Config
from explainrec_core.data.samples import history_cut_sets
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import write_parquet
from explainrec_core.knowledge import store
from explainrec_core.memory import peak_rss_mb
from explainrec_core.steps.data_steps import read_processed

SETS = ("valid", "test", "new_user", "new_item")


def evaluation_rows(cfg: Config, root: Path) -> pl.DataFrame:
    """(set, sample_id, user_id, item_id, label) of the validation and test splits and the cold-start sets."""
    samples = read_processed(cfg, root, "samples")
    splits = samples.filter(pl.col("split").is_in(["valid", "test"])).select(
        pl.col("split").alias("set"), "sample_id", "user_id", "item_id", "label")
    cold = read_processed(cfg, root, "cold_start_sets").select("set", "sample_id", "user_id", "item_id", "label")
    return pl.concat([splits, cold])


def _set_auc(scores: pl.DataFrame, name: str) -> dict:
    part = scores.filter(pl.col("set") == name)
    return {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height,
            "evidence": dict(part["evidence"].value_counts().iter_rows())}


def run_preference_knowledge_base(cfg: Config, root: Path) -> dict:
    samples, items = read_processed(cfg, root, "samples"), read_processed(cfg, root, "items")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"), items,
                                    cfg.samples.like_threshold)
    users = read_processed(cfg, root, "users")
    valid = samples.filter(pl.col("split") == "valid")
    started = time.perf_counter()
    kb = store.build(data, users, valid, cfg.knowledge)  # its smoothing chosen on valid: part of its training
    build_seconds = time.perf_counter() - started
    store.save(kb, paths.resolve(paths.KNOWLEDGE_BASE, cfg, root))
    # the true cold-start sets the baselines are scored on too: P(i | u) reads no history, the same at every k
    curve = history_cut_sets(samples, read_processed(cfg, root, "cold_start_sets"), cfg.cold_start.curve_ks)
    rows = pl.concat([evaluation_rows(cfg, root), *(f.select(set=pl.lit(name), sample_id="sample_id",
                                                             user_id="user_id", item_id="item_id",
                                                             label=pl.col("label").cast(pl.Int8))
                                                    for name, f in curve.items())], how="vertical_relaxed")
    started = time.perf_counter()
    scored = kb.score(rows)
    score_seconds = time.perf_counter() - started
    scores = rows.select("set", "sample_id", "label").with_columns(p_yes=scored["p"], evidence=scored["evidence"])
    write_parquet(scores, root / paths.KNOWLEDGE_BASE_SCORES)
    evaluated = {name: _set_auc(scores, name) for name in SETS}
    evaluated["cold_start_curve"] = {name: {"auc": v["auc"], "n": v["n"]} for name in curve
                                     for v in [_set_auc(scores, name)]}
    manifest = {k: v for k, v in kb.manifest.items() if k != "fallbacks"}
    # Table IV: building the base is its training; scoring reads tables, so its cost per sample is tiny
    cost = {"train_seconds": build_seconds, "inference_ms_per_sample": 1e3 * score_seconds / max(rows.height, 1),
            "scored_samples": rows.height, "peak_memory_mb": peak_rss_mb()}
    return {**manifest, "tables": {name: frame.height for name, frame in kb.tables.items()},
            "demographic_model": evaluated, "cost": cost}
