"""Evaluation steps: ranking candidates, baselines under the LLM's protocol, LLM ranking, and the report.

One protocol for every method: binary AUC of the test samples (label = rating > 3) and of the cold-start
sets, and Hit@K / NDCG@K of each liked test target ranked against the same 99 sampled unrated items.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.baselines.registry import BASELINES
from explainrec_core.config import Config
from explainrec_core.errors import ConfigError
from explainrec_core.evaluation.prefix_scoring import candidate_suffix, rec_prompt_parts, score_shared_prefix
from explainrec_core.evaluation.ranking import build_candidates, collect_scores, expand_candidates, ranking_metrics
from explainrec_core.evaluation.report import mean_std, write_report
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import write_parquet
from explainrec_core.models import adapters
from explainrec_core.progress import progress_bar
from explainrec_core.prompts import quote_item
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.llm_steps import EVAL_SETS, load_base


def run_ranking_candidates(cfg: Config, root: Path) -> dict:
    table = build_candidates(read_processed(cfg, root, "samples"), read_processed(cfg, root, "interactions"),
                             n_negatives=cfg.ranking.n_negatives, seed=cfg.ranking.seed, split="test",
                             max_positives=cfg.ranking.max_positives)
    write_parquet(table, root / paths.RANKING_CANDIDATES)
    return {"positives": table.height, "users": table["user_id"].n_unique(),
            "candidates_per_positive": 1 + cfg.ranking.n_negatives, "seed": cfg.ranking.seed}


def _build_baseline(name: str, overrides: dict):
    if name not in BASELINES:
        raise ConfigError(f"baselines.methods: unknown method {name!r}; known: {sorted(BASELINES)}")
    model = BASELINES[name]()
    try:
        model.config = dataclasses.replace(model.config, **overrides)
    except TypeError as exc:  # an unknown field name
        raise ConfigError(f"baselines.hyperparameters.{name}: {exc}") from None
    return model


def run_baselines(cfg: Config, root: Path) -> dict:
    """Fit every baseline once per seed; score the test and cold-start samples and the ranking candidates."""
    samples, cold = read_processed(cfg, root, "samples"), read_processed(cfg, root, "cold_start_sets")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"),
                                    read_processed(cfg, root, "items"),
                                    cfg.samples.like_threshold)
    valid = samples.filter(pl.col("split") == "valid")
    sets = {"test": samples.filter(pl.col("split") == "test"),
            **{name: samples.join(cold.filter(pl.col("set") == name).select("sample_id"), on="sample_id")
               for name in ("new_user", "new_item")}}
    # The LLM scores seeded subsets of these sets: keep every method's scores there, for like-for-like AUC and ROC.
    llm_subset = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set").is_in(EVAL_SETS)).select(
        "set", "sample_id")
    candidates = pl.read_parquet(root / paths.RANKING_CANDIDATES)
    expanded = expand_candidates(candidates)
    n_candidates = 1 + cfg.ranking.n_negatives
    llm_ranked = set(candidates["sample_id"].head(cfg.ranking.llm_positives).to_list())

    results, subset_scores = [], []
    runs = [(m, s) for m in cfg.baselines.methods for s in cfg.baselines.seeds]
    with progress_bar(len(runs), "baselines: fit and score") as advance:
        for method, seed in runs:
            model = _build_baseline(method, cfg.baselines.hyperparameters.get(method, {}))
            fit_stats = model.fit(data, seed, valid)
            row = {"method": method, "seed": seed, "fit_seconds": fit_stats.get("seconds")}
            start = time.perf_counter()
            for name, frame in sets.items():
                scores = model.score(frame)
                row[f"{name}_auc"] = auc(frame["label"].to_numpy(), scores)
                keep = llm_subset.filter(pl.col("set") == name)["sample_id"].implode()
                mask = frame["sample_id"].is_in(keep).to_numpy()
                subset_scores.append(frame.filter(mask).select("sample_id", "label").with_columns(
                    pl.lit(method).alias("method"), pl.lit(seed).alias("seed"), pl.lit(name).alias("set"),
                    pl.Series("score", scores[mask])))
                row[f"{name}_auc_llm_subset"] = auc(frame.filter(mask)["label"].to_numpy(), scores[mask])
            row["ms_per_sample"] = 1e3 * (time.perf_counter() - start) / sum(f.height for f in sets.values())
            grid = collect_scores(expanded, model.score(expanded), n_candidates)
            row.update({f"rank_{k}": v for k, v in ranking_metrics(grid).items()})
            in_llm = candidates["sample_id"].is_in(list(llm_ranked)).to_numpy()
            row.update({f"rank_llm_subset_{k}": v for k, v in ranking_metrics(grid[in_llm]).items()})
            results.append(row)
            advance(1, info=f"{method} seed {seed}: test AUC {row['test_auc']:.3f}")
    table = pl.DataFrame(results)
    write_parquet(table, root / paths.BASELINE_RESULTS)
    write_parquet(pl.concat(subset_scores).select("method", "seed", "set", "sample_id", "label", "score"),
                  root / paths.BASELINE_SCORES)
    return {"methods": list(cfg.baselines.methods), "seeds": list(cfg.baselines.seeds),
            **{metric: {m: mean_std(table.filter(pl.col("method") == m), column) for m in cfg.baselines.methods}
               for metric, column in (("test_auc", "test_auc"), ("ndcg@10", "rank_ndcg@10"))},
            "hyperparameters": {m: dataclasses.asdict(_build_baseline(m, cfg.baselines.hyperparameters.get(m, {}))
                                                      .config) for m in cfg.baselines.methods}}


def run_llm_ranking(cfg: Config, root: Path) -> dict:
    """The rec adapter ranks the first `llm_positives` candidate lists, sharing each user's prompt prefix."""
    info, model, tokenizer = load_base(root)
    model = adapters.load_adapter(model, root / paths.REC_ADAPTER)
    items = read_processed(cfg, root, "items")
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    candidates = pl.read_parquet(root / paths.RANKING_CANDIDATES).head(cfg.ranking.llm_positives)
    rows, start = [], time.perf_counter()
    with progress_bar(candidates.height, "llm_ranking: shared-prefix scoring") as advance:
        for r in candidates.iter_rows(named=True):
            history = [(titles[i], rating) for i, rating in zip(r["history_item_ids"], r["history_ratings"],
                                                                 strict=True)]
            prefix = rec_prompt_parts(history, cfg.samples.like_threshold)
            suffixes = [candidate_suffix(titles[i]) for i in r["candidates"]]
            p_yes = score_shared_prefix(model, tokenizer, prefix, suffixes, info["answer_token_ids"],
                                        batch_size=cfg.evaluation.batch_size * 4)
            rows.append({"sample_id": r["sample_id"], "scores": p_yes.tolist()})
            advance(1)
    seconds = time.perf_counter() - start
    table = pl.DataFrame(rows)
    write_parquet(table, root / paths.LLM_RANKING)
    metrics = ranking_metrics(np.array(table["scores"].to_list()))
    return {**metrics, "seconds_per_positive": round(seconds / max(candidates.height, 1), 2),
            "candidates_per_positive": 1 + cfg.ranking.n_negatives}


def run_evaluation_report(cfg: Config, root: Path) -> dict:
    """Writes the markdown and HTML report; returns reports/metrics.json's content (method -> metric)."""
    return write_report(cfg, root)
