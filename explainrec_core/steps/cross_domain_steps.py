"""Zero-shot cross-domain transfer (paper Table III, cross-domain column): train on the source domain, evaluate
on the held-out target domain that no model has seen.

The sets come from `cross_domain_sets` (data/cross_domain.py): `source_train` / `source_valid` (source-genre
targets of the training / validation split, source-only histories) and `target_eval` (held-out-genre targets after
the training period, source-only histories). Every method here learns from the source domain alone:

- the LLM: the TALLRec recipe (stage 2 from the same Alpaca adapter, same `llm_training` schedule as rec_adapter),
  trained on `source_train` prompts and early-stopped on `source_valid`: no choice is made on the target domain;
- the baselines: fitted on the training period's source-domain interactions with their AUC-protocol settings.
  Collaborative models have no vector for a target item (it has no source interaction) and score it 0: their AUC
  there measures nothing but ties, which is the honest zero-shot answer of pure CF. Content models (content-based,
  MMGCN, LATTICE) read the target items' metadata and content vectors, which are not interactions;
- the knowledge base (eq. 5) built from source-domain ratings only, its smoothing chosen on `source_valid`.

One scores file: (method, seed, sample_id, label, score) on every `target_eval` sample the method scored (the LLM:
a seeded subset of `rec_prompts.test_samples`, the others: all), which the report pairs on the LLM's samples.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.baselines.registry import USES_ITEM_FEATURES
from explainrec_core.config import Config
from explainrec_core.data.cross_domain import SETS, item_domains
from explainrec_core.evaluation.report import mean_std
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import write_parquet
from explainrec_core.knowledge import store
from explainrec_core.models import adapters
from explainrec_core.models.base_model import load_tokenizer
from explainrec_core.progress import progress_bar
from explainrec_core.steps.baseline_runs import fit_for_protocol
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.llm_steps import (
    _base_info,
    load_base,
    pick,
    prompt_stats,
    prompt_table,
    score_prompts,
    train_rec_adapter,
)

SOURCE_TRAIN, SOURCE_VALID, TARGET_EVAL = SETS
LLM_METHOD = "tallrec_lora_cross_domain"  # the TALLRec recipe trained on the source domain only
KB_METHOD = "knowledge_base_cross_domain"  # eq. 5 built from source-domain ratings only


def run_cross_domain_prompts(cfg: Config, root: Path) -> dict:
    """Seeded TALLRec prompts of the cross-domain sets: rec_prompts' train / valid / test sizes for source_train /
    source_valid / target_eval (0 = all)."""
    rp = cfg.rec_prompts
    sets = read_processed(cfg, root, "cross_domain_sets")
    sizes = {SOURCE_TRAIN: rp.train_samples, SOURCE_VALID: rp.valid_samples, TARGET_EVAL: rp.test_samples}
    chosen = {name: pick(sets.filter(pl.col("set") == name), n, rp.seed)["sample_id"] for name, n in sizes.items()}
    tokenizer = load_tokenizer(Path(_base_info(root)["path"]))
    table, built = prompt_table(sets, chosen, read_processed(cfg, root, "items"), tokenizer, cfg)
    write_parquet(table, root / paths.CROSS_DOMAIN_PROMPTS)
    return prompt_stats(table, built, tokenizer)


def run_cross_domain_adapter(cfg: Config, root: Path) -> dict:
    return train_rec_adapter(cfg, root, "cross_domain_adapter", paths.CROSS_DOMAIN_PROMPTS,
                             paths.CROSS_DOMAIN_ADAPTER, (SOURCE_TRAIN, SOURCE_VALID),
                             "The TALLRec recipe trained on the source domain only (zero-shot cross-domain: the "
                             "held-out genres are never a training target, history item or selection sample).")


def source_domain_data(cfg: Config, root: Path, sets: pl.DataFrame) -> TrainingData:
    """The training period restricted to source-domain interactions, with source_train as the training samples."""
    items = read_processed(cfg, root, "items")
    domains = item_domains(items, cfg.cross_domain.target_genres)
    source_items = domains.filter(pl.col("domain") == "source").select("item_id")
    interactions = read_processed(cfg, root, "interactions").join(source_items, on="item_id", how="semi")
    features = (pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, root))
                if USES_ITEM_FEATURES & set(cfg.cross_domain.methods or cfg.baselines.methods) else None)
    # source_train rows are training-split samples: from_tables cuts the interactions at the last of them
    return TrainingData.from_tables(sets.filter(pl.col("set") == SOURCE_TRAIN), interactions, items,
                                    cfg.samples.like_threshold, item_features=features)


def run_cross_domain_evaluation(cfg: Config, root: Path) -> dict:
    sets = read_processed(cfg, root, "cross_domain_sets")
    target = sets.filter(pl.col("set") == TARGET_EVAL).sort("sample_id")
    data = source_domain_data(cfg, root, sets)
    frames = []

    def keep(method: str, seed: int | None, scores) -> float | None:
        frames.append(target.select("sample_id", "label").with_columns(
            method=pl.lit(method), seed=pl.lit(seed, pl.Int64), score=pl.Series(scores, dtype=pl.Float64)))
        return auc(target["label"].to_list(), list(scores))

    results: dict = {"baselines": {}}
    methods = list(cfg.cross_domain.methods or cfg.baselines.methods)
    runs = [(m, s) for m in methods for s in cfg.baselines.seeds]
    per_run = []
    with progress_bar(len(runs), "cross_domain_evaluation: baselines on the source domain") as advance:
        for method, seed in runs:
            model, fit_seconds = fit_for_protocol(method, "auc", cfg, data, seed)
            value = keep(method, seed, model.score(target))
            per_run.append({"method": method, "seed": seed, "auc": value, "fit_seconds": fit_seconds})
            advance(1, info=f"{method} seed {seed}: AUC {value:.3f}" if value is not None else method)
    table = pl.DataFrame(per_run)
    results["baselines"] = {m: mean_std(table.filter(pl.col("method") == m), "auc") for m in methods}

    kb = store.build(data, read_processed(cfg, root, "users"), sets.filter(pl.col("set") == SOURCE_VALID),
                     cfg.knowledge)
    scored = kb.score(target)
    results[KB_METHOD] = {"auc": keep(KB_METHOD, None, scored["p"].to_list()),
                          "evidence": dict(scored["evidence"].value_counts().iter_rows()),
                          "weights": kb.manifest["weights"]}

    info, model, tokenizer = load_base(root)
    model = adapters.load_adapter(model, root / paths.CROSS_DOMAIN_ADAPTER)
    prompts = pl.read_parquet(root / paths.CROSS_DOMAIN_PROMPTS).filter(pl.col("set") == TARGET_EVAL)
    start = time.perf_counter()
    llm, speed = score_prompts(model, tokenizer, info, prompts, cfg.evaluation.batch_size,
                               "cross_domain_evaluation")
    frames.append(llm.select("sample_id", "label", method=pl.lit(LLM_METHOD), seed=pl.lit(None, pl.Int64),
                             score=pl.col("p_yes").cast(pl.Float64)))
    results[LLM_METHOD] = {"auc": auc(llm["label"].to_list(), llm["p_yes"].to_list()), "n": llm.height,
                           "scoring": speed, "seconds": round(time.perf_counter() - start, 1)}
    scores = pl.concat([f.select("method", "seed", "sample_id", pl.col("label").cast(pl.Int8), "score")
                        for f in frames])
    write_parquet(scores, root / paths.CROSS_DOMAIN_SCORES)
    return {"n": target.height, "n_llm": llm.height, "users": target["user_id"].n_unique(),
            "items": target["item_id"].n_unique(), "positive_rate": round(float(target["label"].mean()), 4),
            "source_training_interactions": data.interactions.height, **results}
