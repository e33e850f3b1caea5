"""Evaluation steps: ranking candidates, baselines under the LLM's protocol, LLM ranking, and the report.

One protocol for every method: binary AUC of the test samples (label = rating > 3) and of the cold-start
sets, and Hit@K / NDCG@K of each liked test target ranked against the same 99 sampled unrated items.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.baselines.base import TrainingData
from explainrec_core.baselines.registry import PROTOCOLS, USES_ITEM_FEATURES
from explainrec_core.config import Config
from explainrec_core.data.samples import history_cut_sets
from explainrec_core.evaluation.prefix_scoring import candidate_suffix, rec_prompt_parts, score_shared_prefix
from explainrec_core.evaluation.ranking import (
    build_candidates,
    expand_candidates,
    llm_lists,
    ranking_metrics,
)
from explainrec_core.evaluation.report import mean_std, write_report
from explainrec_core.io import write_parquet
from explainrec_core.models import adapters
from explainrec_core.parallel import cpu_budget
from explainrec_core.progress import progress_bar
from explainrec_core.prompts import quote_item
from explainrec_core.steps.baseline_runs import BaselineInputs, build, run_all
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.llm_steps import EVAL_SETS, load_base


def run_ranking_candidates(cfg: Config, root: Path) -> dict:
    table = build_candidates(read_processed(cfg, root, "samples"), read_processed(cfg, root, "interactions"),
                             n_negatives=cfg.ranking.n_negatives, seed=cfg.ranking.seed, split="test",
                             max_positives=cfg.ranking.max_positives)
    write_parquet(table, root / paths.RANKING_CANDIDATES)
    return {"positives": table.height, "users": table["user_id"].n_unique(),
            "candidates_per_positive": 1 + cfg.ranking.n_negatives, "seed": cfg.ranking.seed}


def run_baselines(cfg: Config, root: Path) -> dict:
    """Fit every baseline per seed and protocol; score the test and cold-start samples with the AUC-tuned fit and
    the ranking candidates with the ranking-tuned one.

    Results have one row per (method, seed, protocol): "auc" rows hold the AUC columns, "ranking" rows the rank_
    columns (the other protocol's columns are null). fit_seconds is the training alone (no validation)."""
    for method in cfg.baselines.methods:  # a misspelt method or setting fails here, before anything is read
        for protocol in PROTOCOLS:
            build(method, protocol, cfg)
    samples, cold = read_processed(cfg, root, "samples"), read_processed(cfg, root, "cold_start_sets")
    # The multi-modal baselines (MMGCN, LATTICE) read the item_features asset's content modalities.
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"),
                                    read_processed(cfg, root, "items"),
                                    cfg.samples.like_threshold,
                                    item_features=pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, root))
                                    if USES_ITEM_FEATURES & set(cfg.baselines.methods) else None)
    sets = {"test": samples.filter(pl.col("split") == "test"),
            **{name: samples.join(cold.filter(pl.col("set") == name).select("sample_id"), on="sample_id")
               for name in ("new_user", "new_item")}}
    curve = history_cut_sets(samples, cold, cfg.cold_start.curve_ks)  # true cold start: AUC vs k, unseen items
    sets.update(curve)
    # The LLM scores seeded subsets of these sets: keep every method's scores there, for like-for-like AUC and ROC.
    llm_subset = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set").is_in(EVAL_SETS)).select(
        "set", "sample_id")
    # no LLM scores the true cold-start sets yet: keep every sample's score, so the report can pair the zero-shot
    # models with the baselines there
    llm_subset = pl.concat([llm_subset, *(f.select(set=pl.lit(name), sample_id="sample_id")
                                          for name, f in curve.items())])
    candidates = pl.read_parquet(root / paths.RANKING_CANDIDATES)
    inputs = BaselineInputs(cfg, data, sets, llm_subset, candidates, expand_candidates(candidates),
                            candidates["sample_id"].is_in(llm_lists(candidates, cfg.ranking.llm_positives)
                                                          ["sample_id"].implode()).to_numpy())
    runs = [(m, s) for m in cfg.baselines.methods for s in cfg.baselines.seeds]
    workers = cfg.baselines.workers or cpu_budget()
    with progress_bar(len(runs), f"baselines: fit and score ({min(workers, len(runs))} processes)") as advance:
        done = run_all(inputs, runs, workers, on_done=lambda r: advance(
            1, info=f"{r.method} seed {r.seed}: test AUC {r.rows[0]['test_auc']:.3f}, "
                    f"NDCG@10 {r.rows[1]['rank_ndcg@10']:.3f}"))
    results = [row for r in done for row in r.rows]
    subset_scores = [frame for r in done for frame in r.scores]
    list_ranks = [r.ranks for r in done]
    table = pl.from_dicts(results, infer_schema_length=None)
    write_parquet(table, root / paths.BASELINE_RESULTS)
    write_parquet(pl.concat(subset_scores).select("method", "seed", pl.lit("auc").alias("protocol"), "set",
                                                  "sample_id", "label", "score"),
                  root / paths.BASELINE_SCORES)
    write_parquet(pl.concat(list_ranks), root / paths.BASELINE_RANKING)
    by_protocol = {p: table.filter(pl.col("protocol") == p) for p in PROTOCOLS}
    return {"methods": list(cfg.baselines.methods), "seeds": list(cfg.baselines.seeds),
            **{metric: {m: mean_std(by_protocol[protocol].filter(pl.col("method") == m), column)
                        for m in cfg.baselines.methods}
               for metric, protocol, column in (("test_auc", "auc", "test_auc"),
                                                ("ndcg@10", "ranking", "rank_ndcg@10"))},
            "cold_start_curve": {name: {m: mean_std(by_protocol["auc"].filter(pl.col("method") == m), f"{name}_auc")
                                        for m in cfg.baselines.methods} for name in curve},
            "cold_start_curve_n": {name: frame.height for name, frame in curve.items()},
            "hyperparameters": {p: {m: dataclasses.asdict(build(m, p, cfg).config)
                                    for m in cfg.baselines.methods} for p in PROTOCOLS}}


def run_llm_ranking(cfg: Config, root: Path) -> dict:
    """The rec adapter ranks `llm_positives` candidate lists (the seeded draw of `llm_lists`), sharing each list's
    prompt prefix."""
    info, model, tokenizer = load_base(root)
    model = adapters.load_adapter(model, root / paths.REC_ADAPTER)
    items = read_processed(cfg, root, "items")
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    candidates = llm_lists(pl.read_parquet(root / paths.RANKING_CANDIDATES), cfg.ranking.llm_positives)
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
    """Writes the markdown and HTML report; returns reports/metrics.json's content (method -> metric).

    The report reads the statistics of upstream steps; they are read here and handed over, so the report module
    knows nothing of the pipeline (data flows one way)."""
    skipped = skipped_this_run(root)
    upstream = {name: json.loads((root / rel).read_text()) if (root / rel).is_file() and name not in skipped else {}
                for name, rel in paths.STEP_METRICS.items()}
    return write_report(cfg, root, upstream)


def skipped_this_run(root: Path) -> set[str]:
    """Steps the `explainrec run all` invocation now in progress skipped (`--skip`): their files on disk, if any, are
    from an earlier run, with other models, so the report leaves them out. Only an unfinished summary counts (the
    report is the last step, so the summary of its own run is unfinished); a Dagster or DVC run has none."""
    path = root / paths.RUN_SUMMARY
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if "finished" in summary:
        return set()
    return {s["step"] for s in summary.get("steps", []) if s.get("skipped")}
