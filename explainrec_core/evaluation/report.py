"""The evaluation report: tables shaped like the paper's, paired comparisons, plots, and reports/metrics.json.

Everything here is read from the outputs of the evaluation steps (the statistics files of upstream steps are
handed in by the report step, so this module needs no knowledge of the pipeline). The only numbers computed here
are the paired comparisons and the ROC curves, from the per-sample scores the steps stored: every "A vs B" is the
difference on the same samples (or candidate lists), joined on sample_id, with a 95% paired-bootstrap interval
(evaluation/paired.py), and the text says "better" or "worse" only when that interval excludes 0.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections.abc import Collection
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.config import ABLATION_MODALITY_GROUPS, Config
from explainrec_core.evaluation.paired import LEVEL, RESAMPLES, Distribution, PairedBootstrap, Scored, mean_std
from explainrec_core.evaluation.ranking import positive_ranks
from explainrec_core.io import atomic_path
from explainrec_core.plots import plot_auc_intervals, plot_cold_start_curve, plot_roc
from explainrec_core.rating.metrics import error_summary

__all__ = ["collect_metrics", "main_table", "mean_std", "write_report"]

LLM = "tallrec_lora"  # the method name of our LLM in tables and metrics.json
EXPLAINREC = "explainrec"  # the attributed model (answer + explanation, joint loss)
ABLATION = "explainrec_no_attribution"  # the same without preference attribution in the prompt
ITEM_TOKENS = "tallrec_item_tokens"  # the TALLRec recipe + item tokens (multimodal.schedule: joint or two_step)
CHAMPION = "explainrec_item_tokens"  # the attributed model + item tokens (its own fusion, attributed LoRA frozen)
KNOWLEDGE_BASE = "knowledge_base"  # eq. 5's demographic P(i | u) alone: ExplainRec's zero-shot component, no history
MULTITASK = "tallrec_multitask"  # the TALLRec recipe trained on preference + rating prediction (eq. 10)
CHATREC = "chat_rec"  # Chat-REC: the untuned instruction LLM with CF-retrieved candidates (zero-shot)
P5 = "p5"  # P5's prompt families (ID words) trained on our base LLM (baselines/p5.py)
CROSS_DOMAIN = "cross_domain"  # the held-out domain's samples (Table III's cross-domain column)
CROSS_DOMAIN_LLM = "tallrec_lora_cross_domain"  # the TALLRec recipe trained on the source domain only
LLM_METHODS = (LLM, EXPLAINREC, ABLATION, ITEM_TOKENS, CHAMPION, P5)  # ranked only on the LLM's candidate lists
VARIANT_METHODS = {"attributed": EXPLAINREC, "no_attribution": ABLATION,  # explain_* files' variant -> method
                   "attributed_item_tokens": CHAMPION}
# Table II's rows, each compared with the row it differs from in ONE setting (never two at once):
# (label, method, the method it is compared with, the setting that differs).
# The ablation runner's variants of the champion (steps/ablation_steps.py): its fusion without one group of vectors.
CHAMPION_VARIANTS = {f"wo_{group}": f"{CHAMPION}_wo_{group}" for group in ABLATION_MODALITY_GROUPS}
ABLATIONS = (("ExplainRec: attribution + item tokens (full model)", CHAMPION, None, None),
             *((f"w/o {group} vectors (item tokens)", method, CHAMPION, f"{group} vectors in the item tokens")
               for group, method in zip(ABLATION_MODALITY_GROUPS, CHAMPION_VARIANTS.values(), strict=True)),
             ("w/o item tokens (multi-modal)", EXPLAINREC, CHAMPION, "item tokens"),
             ("w/o preference attribution (text prompt)", ABLATION, EXPLAINREC, "attribution in the prompt"),
             ("w/o explanations (TALLRec, text prompt)", LLM, EXPLAINREC, "explanation task and prompt"),
             ("TALLRec + rating task (multi-task, eq. 10)", MULTITASK, LLM, "rating task added"))
SETS = ("test", "new_user", "new_item")
LISTS = ("llm_lists", "all_lists")  # the LLM's candidate lists; every list the baselines ranked
EXAMPLES = 6  # generated explanations shown in the report
KS = (5, 10, 20)
NDCG_K = 10
RANKING_KEYS = ("mrr", *(f"{x}@{k}" for x in ("hit", "ndcg") for k in KS))  # an LLM ranker's list metrics
BOOTSTRAP_SEED = 0


# --- per-sample scores and per-list NDCG of every method, as frames (sample_id, [label,] value[, seed]) ---

def _baseline_rows(frame: pl.DataFrame, protocol: str) -> pl.DataFrame:
    """Rows of one protocol when the baselines step writes both an AUC- and a ranking-tuned setting."""
    if "protocol" in frame.columns and (frame["protocol"] == protocol).any():
        return frame.filter(pl.col("protocol") == protocol)
    return frame


# The per-sample files of the optional LLM evaluation steps. A run that skipped a step (`explainrec run all --skip`)
# may still hold that step's files from an EARLIER run, with other models and code: the report never mixes them in.
STEP_FILES = {"rec_evaluation": (paths.REC_SCORES,), "llm_ranking": (paths.LLM_RANKING,),
              "explain_evaluation": (paths.EXPLAIN_SCORES, paths.EXPLAIN_RANKING, paths.EXPLANATIONS),
              "item_token_evaluation": (paths.ITEM_TOKEN_SCORES, paths.ITEM_TOKEN_RANKING),
              "preference_knowledge_base": (paths.KNOWLEDGE_BASE_SCORES,),
              "meta_adaptation": (paths.META_SCORES,),
              "cross_domain_evaluation": (paths.CROSS_DOMAIN_SCORES,),
              "chatrec_evaluation": (paths.CHATREC_SCORES,),
              "p5_evaluation": (paths.P5_SCORES, paths.P5_RANKING),
              "champion_ablations": (paths.CHAMPION_ABLATION_SCORES, paths.CHAMPION_ABLATION_RANKING),
              "multitask_evaluation": (paths.MULTITASK_SCORES, paths.MULTITASK_RATINGS)}
META_METHODS = {"none": "meta_no_adaptation", "first": "meta_maml_first_order", "second": "meta_maml_second_order"}


def _left_out(not_run: Collection[str]) -> set[str]:
    return {rel for step in not_run for rel in STEP_FILES.get(step, ())}


def auc_frames(root: Path, not_run: Collection[str] = ()) -> dict[str, dict[str, pl.DataFrame]]:
    """set -> method -> (sample_id, label, score[, seed]) on the samples the LLM scored; `not_run`: steps whose
    files are left out (a run that skipped a step reports the methods it has)."""
    skip = _left_out(not_run)
    llm = _read_if_any(root, paths.REC_SCORES, skip)
    explain = _read_if_any(root, paths.EXPLAIN_SCORES, skip)
    item_tokens = _read_if_any(root, paths.ITEM_TOKEN_SCORES, skip)
    knowledge = _read_if_any(root, paths.KNOWLEDGE_BASE_SCORES, skip)
    baselines = _baseline_rows(pl.read_parquet(root / paths.BASELINE_SCORES), "auc")
    meta = _read_if_any(root, paths.META_SCORES, skip)
    chatrec = _read_if_any(root, paths.CHATREC_SCORES, skip)
    p5 = _read_if_any(root, paths.P5_SCORES, skip)
    multitask = _read_if_any(root, paths.MULTITASK_SCORES, skip)
    ablations = _read_if_any(root, paths.CHAMPION_ABLATION_SCORES, skip)
    # the true cold-start sets (whole sets: no LLM scores them yet) where the baselines' scores have them
    curve = [name for name in dict.fromkeys(baselines["set"].to_list()) if name not in SETS]
    frames: dict[str, dict[str, pl.DataFrame]] = {s: {} for s in (*SETS, *curve)}
    for name in frames:
        llm_set = name in SETS  # the LLMs score the test and cold-start sets, not (yet) the true cold-start ones
        if llm is not None and llm_set:
            frames[name][LLM] = llm.filter(pl.col("set") == name).select("sample_id", "label", score="p_yes")
        if item_tokens is not None and llm_set:
            frames[name][ITEM_TOKENS] = item_tokens.filter(pl.col("set") == name).select("sample_id", "label",
                                                                                         score="p_yes")
        if multitask is not None and llm_set:
            frames[name][MULTITASK] = multitask.filter(pl.col("set") == name).select("sample_id", "label",
                                                                                     score="p_yes")
        if chatrec is not None and llm_set:
            frames[name][CHATREC] = chatrec.filter(pl.col("set") == name).select("sample_id", "label", score="p_yes")
        if p5 is not None and llm_set:
            frames[name][P5] = p5.filter(pl.col("set") == name).select("sample_id", "label", score="p_yes")
        for scores, variants in ((explain, VARIANT_METHODS), (ablations, CHAMPION_VARIANTS)):
            if scores is not None and llm_set:
                for variant, method in variants.items():
                    part = scores.filter((pl.col("variant") == variant) & (pl.col("set") == name))
                    if part.height:
                        frames[name][method] = part.select("sample_id", "label", score="p_yes")
        for (method,), part in baselines.filter(pl.col("set") == name).group_by("method", maintain_order=True):
            frames[name][method] = part.select("sample_id", "label", "score", "seed")
        if knowledge is not None and frames[name]:  # scored on whole sets: keep the samples the others scored
            scored = next(iter(frames[name].values()))["sample_id"].unique().implode()
            frames[name][KNOWLEDGE_BASE] = knowledge.filter((pl.col("set") == name) & pl.col("sample_id").is_in(
                scored)).select("sample_id", "label", score="p_yes")
        if meta is not None and name in curve:
            for (order,), part in meta.filter(pl.col("set") == name).group_by("order", maintain_order=True):
                frames[name][META_METHODS[order]] = part.select("sample_id", "label", score="p_yes")
    cross = _read_if_any(root, paths.CROSS_DOMAIN_SCORES, skip)
    if cross is not None:
        frames[CROSS_DOMAIN] = cross_domain_frames(cross)
    return {name: per_set for name, per_set in frames.items() if all(f.height for f in per_set.values())}


def cross_domain_frames(scores: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """method -> (sample_id, label, score[, seed]) of the held-out domain, on the samples the LLM scored (when it
    did: the others scored the whole set)."""
    llm_ids = scores.filter(pl.col("method") == CROSS_DOMAIN_LLM)["sample_id"]
    if llm_ids.len():
        scores = scores.filter(pl.col("sample_id").is_in(llm_ids.implode()))
    frames = {}
    for (method,), part in scores.group_by("method", maintain_order=True):
        seeded = part["seed"].null_count() == 0
        frames[method] = part.select("sample_id", "label", "score", *(["seed"] if seeded else []))
    return frames


def _read_if_any(root: Path, rel: str, skip: Collection[str] = ()) -> pl.DataFrame | None:
    """An optional method's scores (a profile may leave its steps out); None when absent, empty or left out."""
    path = root / rel
    frame = pl.read_parquet(path) if path.is_file() and rel not in skip else None
    return frame if frame is not None and frame.height else None


def _ndcg(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks <= NDCG_K, 1.0 / np.log2(ranks + 1.0), 0.0)


def ndcg_frames(root: Path, not_run: Collection[str] = ()) -> dict[str, dict[str, pl.DataFrame]]:
    """lists -> method -> (sample_id, ndcg[, seed]): NDCG@10 of each candidate list, keyed by its sample_id."""
    llm_lists: dict[str, pl.DataFrame] = {}
    skip = _left_out(not_run)
    ranked = _read_if_any(root, paths.LLM_RANKING, skip)
    if ranked is not None:
        llm_lists[LLM] = pl.DataFrame({"sample_id": ranked["sample_id"],
                                       "ndcg": _ndcg(positive_ranks(np.array(ranked["scores"].to_list())))})
    item_tokens = _read_if_any(root, paths.ITEM_TOKEN_RANKING, skip)
    if item_tokens is not None:
        llm_lists[ITEM_TOKENS] = pl.DataFrame({"sample_id": item_tokens["sample_id"], "ndcg": _ndcg(
            positive_ranks(np.array(item_tokens["scores"].to_list())))})
    p5 = _read_if_any(root, paths.P5_RANKING, skip)
    if p5 is not None:
        llm_lists[P5] = pl.DataFrame({"sample_id": p5["sample_id"],
                                      "ndcg": _ndcg(positive_ranks(np.array(p5["scores"].to_list())))})
    for rel, variants in ((paths.EXPLAIN_RANKING, VARIANT_METHODS), (paths.CHAMPION_ABLATION_RANKING,
                                                                     CHAMPION_VARIANTS)):
        ranked_variants = _read_if_any(root, rel, skip)
        if ranked_variants is None or "sample_id" not in ranked_variants.columns:  # older files: lists by position
            continue
        for variant, method in variants.items():
            part = ranked_variants.filter(pl.col("variant") == variant)
            if part.height:
                llm_lists[method] = pl.DataFrame({"sample_id": part["sample_id"], "ndcg": _ndcg(
                    positive_ranks(np.array(part["scores"].to_list())))})
    all_lists: dict[str, pl.DataFrame] = {}
    if (root / paths.BASELINE_RANKING).is_file():
        ranks = _baseline_rows(pl.read_parquet(root / paths.BASELINE_RANKING), "ranking")
        # every LLM method ranks the same seeded draw of lists (evaluation/ranking.llm_lists)
        ranked_ids = next(iter(llm_lists.values()))["sample_id"].implode() if llm_lists else None
        for (method,), part in ranks.group_by("method", maintain_order=True):
            frame = part.select("sample_id", "seed", ndcg=pl.Series(_ndcg(part["rank"].to_numpy())))
            all_lists[method] = frame
            if ranked_ids is not None:
                llm_lists[method] = frame.filter(pl.col("sample_id").is_in(ranked_ids))
    return {name: lists for name, lists in (("llm_lists", llm_lists), ("all_lists", all_lists)) if lists}


# --- paired comparisons ---

def _fields(metric: str, dist: Distribution, best: str | None, best_dist: Distribution | None) -> dict:
    """A method's value with its interval, and its paired difference to the best baseline (None for that one)."""
    est = dist.estimate().to_dict()
    out = {metric: est["value"], f"{metric}_ci95": est["ci95"], "n": est["n"], f"{metric}_per_seed": est["per_seed"],
           "best_baseline": best, f"delta_{metric}_vs_best": None, f"delta_{metric}_ci95": None,
           "verdict_vs_best": None}
    if best_dist is not None and dist is not best_dist:
        diff = dist.minus(best_dist).to_dict()
        out |= {f"delta_{metric}_vs_best": diff["delta"], f"delta_{metric}_ci95": diff["ci95"],
                f"delta_{metric}_per_seed": diff["per_seed"], "verdict_vs_best": diff["verdict"]}
    return out


def _compare(group: dict[str, pl.DataFrame], statistic: str, baselines: set[str],
             value: str, resamples: int = RESAMPLES) -> tuple[dict[str, Distribution], str | None]:
    """Every method's distribution on one set of bootstrap draws, and the best baseline (highest mean)."""
    label = "label" if statistic == "auc" else None
    scored = {m: Scored.from_frame(f, value, label) for m, f in group.items()}
    boot = PairedBootstrap(next(iter(scored.values())), resamples, BOOTSTRAP_SEED)
    dists = {m: boot.auc(s) if statistic == "auc" else boot.mean(s) for m, s in scored.items()}
    candidates = [m for m in dists if m in baselines and not np.isnan(dists[m].point.mean())]
    best = max(candidates, key=lambda m: dists[m].point.mean()) if candidates else None
    return dists, best


def paired_comparisons(root: Path, baselines: set[str], not_run: Collection[str] = (),
                       resamples: int = RESAMPLES) -> tuple[dict, list[dict]]:
    """Per method: {'sets': {set: AUC fields}, 'ranking_lists': {lists: NDCG@10 fields}}, each against the best
    baseline of that set; and the list of named comparisons (vs the best baseline, and the ablation vs the full
    model) that the report's text reads."""
    per_method: dict[str, dict] = {}
    comparisons: list[dict] = []
    full_model = {"auc": {}, f"ndcg@{NDCG_K}": {}}
    for kind, groups, statistic, value, key in (
            ("sets", auc_frames(root, not_run), "auc", "score", "auc"),
            ("ranking_lists", ndcg_frames(root, not_run), "mean", "ndcg", f"ndcg@{NDCG_K}")):
        for name, group in groups.items():
            dists, best = _compare(group, statistic, baselines, value, resamples)
            for method, dist in dists.items():
                per_method.setdefault(method, {}).setdefault(kind, {})[name] = _fields(
                    key, dist, best, dists.get(best))
                if best and method != best:
                    comparisons.append({"a": method, "b": best, "set": name, "metric": key,
                                        **dist.minus(dists[best]).to_dict()})
            # One setting changed: the same adapter with and without item tokens, on every set and the LLM's lists.
            if ITEM_TOKENS in dists and LLM in dists and name != "all_lists":
                diff = dists[ITEM_TOKENS].minus(dists[LLM]).to_dict()
                full_model.setdefault("item_tokens_vs_text", {})[f"{key}:{name}"] = diff
                comparisons.append({"a": ITEM_TOKENS, "b": LLM, "set": name, "metric": key, **diff})
            for _, method, reference, setting in ABLATIONS:
                if reference in dists and method in dists and name != "all_lists" and (
                        name in ("test", "llm_lists") or reference == CHAMPION):
                    diff = dists[method].minus(dists[reference]).to_dict()
                    if name in ("test", "llm_lists"):
                        full_model[key][method] = {**diff, "reference": reference, "setting": setting}
                    comparisons.append({"a": method, "b": reference, "set": name, "metric": key, **diff})
    return {"methods": per_method, "vs_full_model": full_model}, comparisons


# --- reports/metrics.json ---

def collect_metrics(cfg: Config, root: Path, upstream: dict[str, dict]) -> dict:
    """reports/metrics.json: method -> metric, with the dataset, splits, sample counts and seeds stated.
    `upstream`: the statistics of the steps named in paths.STEP_METRICS (missing ones as {})."""
    evaluation, rec, alpaca, llm_rank, candidates, base = (
        upstream.get(name, {}) for name in ("rec_evaluation", "rec_adapter", "alpaca_adapter", "llm_ranking",
                                            "ranking_candidates", "base_model"))
    results = pl.read_parquet(root / paths.BASELINE_RESULTS)
    methods = {}
    if evaluation:  # the TALLRec recipe (absent when a run skipped rec_evaluation)
        llm = {f"{name}_auc": evaluation[name]["auc"] for name in SETS}
        llm.update({k: llm_rank.get(k) for k in ("mrr", *(f"{m}@{k}" for m in ("hit", "ndcg") for k in KS))})
        llm.update({"train_seconds": (rec.get("train_seconds") or 0) + (alpaca.get("train_seconds") or 0),
                    "inference_ms_per_sample": 1e3 / evaluation["scoring"]["samples_per_s"],
                    "peak_memory_mb": max(rec.get("peak_memory_mb") or 0, alpaca.get("peak_memory_mb") or 0),
                    "seeds": [cfg.llm_training.seed], "base_model": base.get("source")})
        methods[LLM] = llm
    methods |= {**_explain_methods(cfg, upstream), **_item_token_method(cfg, upstream),
                **_knowledge_base_method(upstream), **_meta_methods(upstream), **_chatrec_method(upstream),
                **_p5_method(cfg, upstream), **_multitask_method(cfg, upstream),
                **_champion_ablation_methods(cfg, upstream)}
    # sample counts from whichever LLM evaluation ran (all score the same seeded sets)
    counted = evaluation or upstream.get("explain_evaluation", {}).get("attributed", {})
    for method in cfg.baselines.methods:
        rows = results.filter(pl.col("method") == method)
        auc_rows, rank_rows = _baseline_rows(rows, "auc"), _baseline_rows(rows, "ranking")
        entry = {}
        for name in SETS:
            entry[f"{name}_auc"] = mean_std(auc_rows, f"{name}_auc_llm_subset")
            entry[f"{name}_auc_full"] = mean_std(auc_rows, f"{name}_auc")
        for name in curve_sets(cfg):  # true cold start, whole sets (the LLMs do not score them yet)
            if f"{name}_auc" in auc_rows.columns:
                entry[f"{name}_auc_full"] = mean_std(auc_rows, f"{name}_auc")
        for col in rank_rows.columns:
            if col.startswith("rank_") and not col.endswith("_n"):
                entry[col.removeprefix("rank_").replace("llm_subset_", "llm_subset.")] = mean_std(rank_rows, col)
        # the fits whose AUC the tables show (a method tuned per protocol is fitted twice, each with its own epochs:
        # their mean +- std was a spread between two settings, not a run-to-run one)
        entry["train_seconds"] = mean_std(auc_rows, "fit_seconds")
        if "protocol" in rows.columns and (rows["protocol"] == "ranking").any():
            entry["train_seconds_ranking"] = mean_std(rank_rows, "fit_seconds")
        entry["inference_ms_per_sample"] = mean_std(auc_rows, "ms_per_sample")
        entry["seeds"] = sorted(set(rows["seed"].to_list()))
        methods[method] = entry
    for method, value in _cross_domain_full(upstream).items():
        methods.setdefault(method, {})["cross_domain_auc_full"] = value
    methods.get(CROSS_DOMAIN_LLM, {}).update(_cross_domain_llm_cost(upstream))
    not_run = [name for name in STEP_FILES if not upstream.get(name)]
    resamples = cfg.evaluation.bootstrap_resamples
    paired, comparisons = paired_comparisons(root, set(cfg.baselines.methods), not_run, resamples)
    for method, fields in paired["methods"].items():
        methods.setdefault(method, {}).update(fields)
    # a run without an LLM step: the sizes of the sets the methods were paired on
    paired_n = {name: next((v["sets"][name]["n"] for v in paired["methods"].values() if name in v.get("sets", {})),
                           None) for name in SETS}
    return {
        "dataset": cfg.data.format,
        "split": f"global time order {cfg.split.train:.0%}/{cfg.split.valid:.0%}/rest; label = rating > "
                 f"{cfg.samples.like_threshold}",
        "base_model": base.get("source"),
        "steps_not_run": not_run,
        "cold_start_curve": {"sets": curve_sets(cfg),
                             "n": upstream.get("baselines", {}).get("cold_start_curve_n") or {
                                 name: v.get("n") for name, v in upstream.get("preference_knowledge_base", {}).get(
                                     "demographic_model", {}).get("cold_start_curve", {}).items()}},
        "sample_counts": {name: counted.get(name, {}).get("n") or paired_n[name] for name in SETS}
        | {"cross_domain": upstream.get("cross_domain_evaluation", {}).get("n_llm"),
           "cross_domain_full": upstream.get("cross_domain_evaluation", {}).get("n"),
           "ranking_positives_baselines": candidates.get("positives"),
           # whichever LLM ranker ran (they all rank the same seeded lists): the text recipe, the champion or the
           # item-token model
           "ranking_positives_llm": llm_rank.get("n") or next(
               (m["ranking"].get("lists") for m in upstream.get("explain_evaluation", {}).values()
                if isinstance(m, dict) and "ranking" in m), None)
           or upstream.get("item_token_evaluation", {}).get("ranking", {}).get("n"),
           "candidates_per_positive": 1 + cfg.ranking.n_negatives},
        "notes": "AUC columns: every method on the same seeded subsets the LLM scores; *_auc_full: baselines on the "
                 "whole set. Ranking: baselines on ranking_positives_baselines lists; llm_subset.* and the LLM on "
                 "ranking_positives_llm of them. Standard deviations over seeds use ddof = 1. "
                 "methods.*.sets / ranking_lists: AUC / NDCG@10 with 95% intervals and the paired difference to "
                 "the best baseline on the same samples (lists); a seed-averaged method's statistic is the mean "
                 "over seeds, recomputed on every bootstrap draw.",
        "bootstrap": {"method": "paired percentile bootstrap over samples (candidate lists), joined on sample_id",
                      "resamples": resamples, "seed": BOOTSTRAP_SEED, "level": LEVEL},
        "seeds": {"baselines": list(cfg.baselines.seeds), "llm": [cfg.llm_training.seed],
                  "samples": cfg.rec_prompts.seed, "ranking": cfg.ranking.seed},
        "methods": methods,
        "rating": _rating(root, upstream, not_run, resamples),
        "vs_full_model": paired["vs_full_model"],
        "comparisons": comparisons,
    }


def _item_token_method(cfg: Config, upstream: dict[str, dict]) -> dict:
    """The TALLRec recipe with item tokens, from the item_token_evaluation and item_token_adapter metrics."""
    m, train = upstream.get("item_token_evaluation"), upstream.get("item_token_adapter", {})
    if not m:
        return {}
    entry = {f"{name}_auc": m[name]["auc"] for name in SETS if name in m}
    entry.update({k: m.get("ranking", {}).get(k) for k in RANKING_KEYS})
    coverage = {k: v.get("coverage") for k, v in upstream.get("item_features", {}).items() if isinstance(v, dict)}
    entry.update({"modality_weights": m.get("modality_weights"), "modalities": train.get("modalities"),
                  "modality_coverage": coverage,
                  "modalities_off": train.get("modalities_off"),
                  "train_seconds": train.get("train_seconds"),
                  "inference_ms_per_sample": 1e3 / m["scoring"]["samples_per_s"],
                  "peak_memory_mb": train.get("peak_memory_mb"), "seeds": [cfg.llm_training.seed]})
    return {ITEM_TOKENS: entry}


def _multitask_method(cfg: Config, upstream: dict[str, dict]) -> dict:
    """The multi-task TALLRec model: AUC per set, its rating errors, training and scoring cost."""
    m, train = upstream.get("multitask_evaluation"), upstream.get("multitask_adapter", {})
    if not m:
        return {}
    return {MULTITASK: {**{f"{name}_auc": m[name]["auc"] for name in SETS if name in m},
                        "rating_rmse": m.get("rating", {}).get("rmse"), "rating_mae": m.get("rating", {}).get("mae"),
                        "train_seconds": train.get("train_seconds"),
                        "inference_ms_per_sample": 1e3 / m["scoring"]["samples_per_s"],
                        "peak_memory_mb": train.get("peak_memory_mb"), "seeds": [cfg.llm_training.seed]}}


def _rating(root: Path, upstream: dict[str, dict], not_run: Collection[str], resamples: int = RESAMPLES) -> dict:
    """The rating table: rating_evaluation's summary, and with the multi-task LLM's ratings of the LLM's test
    samples, that set recomputed with the LLM paired with the reference models on the same samples."""
    summary = dict(upstream.get("rating_evaluation", {}).get("sets", {}))
    llm = _read_if_any(root, paths.MULTITASK_RATINGS, _left_out(not_run))
    references = _read_if_any(root, paths.RATING_SCORES)
    if llm is not None and references is not None and summary:
        test = references.filter(pl.col("set") == "test")
        if set(test["sample_id"].to_list()) == set(llm["sample_id"].to_list()):
            summary |= error_summary(pl.concat([test, llm.select(test.columns)]), resamples=resamples)
    return summary


def _chatrec_method(upstream: dict[str, dict]) -> dict:
    """Chat-REC (zero-shot, untuned): AUC per set, speed, and how often the CF candidates held the target."""
    m = upstream.get("chatrec_evaluation")
    if not m:
        return {}
    return {CHATREC: {**{f"{name}_auc": m[name]["auc"] for name in SETS if name in m}, "train_seconds": 0.0,
                      "inference_ms_per_sample": 1e3 / m["scoring"]["samples_per_s"],
                      "target_among_candidates": m.get("target_among_candidates"), "base_model": m.get("base_model")}}


def _p5_method(cfg: Config, upstream: dict[str, dict]) -> dict:
    """The P5 baseline: AUC per set, ranking metrics on the LLM's lists, cost (p5_adapter + p5_evaluation)."""
    m, train = upstream.get("p5_evaluation"), upstream.get("p5_adapter", {})
    if not m:
        return {}
    entry = {f"{name}_auc": m[name]["auc"] for name in SETS if name in m}
    entry.update({k: m.get("ranking", {}).get(k) for k in RANKING_KEYS})
    entry.update({"train_seconds": train.get("train_seconds"), "peak_memory_mb": train.get("peak_memory_mb"),
                  "inference_ms_per_sample": 1e3 / m["scoring"]["samples_per_s"],
                  "examples_per_family": train.get("examples_per_family"), "seeds": [cfg.llm_training.seed]})
    return {P5: entry}


def _champion_ablation_methods(cfg: Config, upstream: dict[str, dict]) -> dict:
    """The ablation runner's variants (Table II rows, Table IV costs): test AUC, ranking on the LLM's lists, cost."""
    methods = {}
    for variant, m in upstream.get("champion_ablations", {}).get("variants", {}).items():
        ranking = m.get("ranking", {})
        entry = {"test_auc": m["test"]["auc"], "removed_modalities": m.get("removed"),
                 **{k: ranking.get(k) for k in RANKING_KEYS},
                 "train_seconds": m.get("train_seconds"), "peak_memory_mb": m.get("peak_memory_mb"),
                 "inference_ms_per_sample": 1e3 / m["scoring_samples_per_s"], "seeds": [cfg.llm_training.seed]}
        methods[CHAMPION_VARIANTS[variant]] = entry
    return methods


def _cross_domain_full(upstream: dict[str, dict]) -> dict:
    """method -> AUC on the whole held-out domain (the LLM: on the samples it scored), from cross_domain_evaluation."""
    m = upstream.get("cross_domain_evaluation", {})
    out = dict(m.get("baselines", {}))
    out.update({name: v["auc"] for name, v in m.items() if isinstance(v, dict) and "auc" in v})
    return out


def _cross_domain_llm_cost(upstream: dict[str, dict]) -> dict:
    """Table IV's figures of the LLM trained on the source domain (cross_domain_adapter, cross_domain_evaluation)."""
    train = upstream.get("cross_domain_adapter", {})
    scoring = upstream.get("cross_domain_evaluation", {}).get(CROSS_DOMAIN_LLM, {}).get("scoring", {})
    cost = {"train_seconds": train.get("train_seconds"), "peak_memory_mb": train.get("peak_memory_mb")}
    if scoring.get("samples_per_s"):
        cost["inference_ms_per_sample"] = 1e3 / scoring["samples_per_s"]
    return {k: v for k, v in cost.items() if v is not None}


def curve_sets(cfg: Config) -> list[str]:
    """The true cold-start sets (data.samples.history_cut_sets) in the order of the curve."""
    return [f"new_user_k{k}" for k in cfg.cold_start.curve_ks] + ["new_item_unseen"]


def _meta_methods(upstream: dict[str, dict]) -> dict:
    """The meta-learned new-user model's variants (meta_adaptation): AUC on the true cold-start curve only; the one
    kept on validation is marked."""
    m = upstream.get("meta_adaptation", {})
    out = {}
    for order, v in m.get("orders", {}).items():
        name = META_METHODS[order]
        out[name] = {f"new_user_k{k}_auc_full": value for k, value in v.get("test_auc", {}).items()}
        out[name]["kept_on_valid"] = order == m.get("chosen")
        # Table IV: its meta-training, and per test sample the inner step(s) on the user's k ratings plus scoring;
        # the peak memory is that of the process that trained it
        out[name].update({k: v[k] for k in ("train_seconds", "inference_ms_per_sample", "peak_memory_mb")
                          if v.get(k) is not None})
    return out


def _knowledge_base_method(upstream: dict[str, dict]) -> dict:
    """The knowledge base's demographic model (eq. 5), from the preference_knowledge_base metrics: whole sets."""
    m = upstream.get("preference_knowledge_base", {}).get("demographic_model")
    if not m:
        return {}
    curve = {f"{name}_auc_full": v["auc"] for name, v in m.get("cold_start_curve", {}).items()}
    cost = upstream["preference_knowledge_base"].get("cost", {})  # Table IV: building it, scoring from its tables
    return {KNOWLEDGE_BASE: {**{f"{name}_auc_full": m[name]["auc"] for name in SETS if name in m}, **curve,
                             "weights": upstream["preference_knowledge_base"].get("weights"),
                             **{k: cost[k] for k in ("train_seconds", "inference_ms_per_sample", "peak_memory_mb")
                                if cost.get(k) is not None}}}


def _explain_methods(cfg: Config, upstream: dict[str, dict]) -> dict:
    """The attributed model and its ablation, from the explain_evaluation and explain_adapter metrics."""
    evaluation = upstream.get("explain_evaluation", {})
    methods = {}
    for method, variant, adapter in ((EXPLAINREC, "attributed", "explain_adapter"),
                                     (ABLATION, "no_attribution", "explain_adapter_ablation"),
                                     (CHAMPION, "attributed_item_tokens", "explain_item_token_adapter")):
        m, train = evaluation.get(variant), upstream.get(adapter, {})
        if not m:
            continue
        entry = {f"{name}_auc": m[name]["auc"] for name in SETS if name in m}
        entry.update({k: m["ranking"].get(k) for k in RANKING_KEYS})
        # every explanation metric the step reports (faithfulness splits, stance, ...), under its own name
        entry.update({k: v for k, v in m["explanations"].items() if k != "n"})
        entry.update({"explanations_n": m["explanations"].get("n"), "train_seconds": train.get("train_seconds"),
                      "inference_ms_per_sample": 1e3 / m["scoring_samples_per_s"],
                      "peak_memory_mb": train.get("peak_memory_mb"), "seeds": [cfg.llm_training.seed]})
        methods[method] = entry
    return methods


# --- tables and text ---

def _point(value) -> float | None:
    """A number from a value that may be a seed summary ({mean, std, n_seeds})."""
    return value.get("mean") if isinstance(value, dict) else value


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"{value['mean']:.3f}" + (f" ± {value['std']:.3f}" if value.get("std") is not None else "")
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _ci(fields: dict | None, metric: str) -> str:
    """'0.712 [0.690, 0.735]' from a method's paired fields."""
    if not fields or fields.get(metric) is None:
        return "-"
    lo, hi = fields[f"{metric}_ci95"]
    return f"{fields[metric]:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{fields[metric]:.3f}"


def _delta(diff: dict | None, metric: str | None = None) -> str:
    """'+0.012 [-0.010, +0.034]' from a comparison, or from a method's delta-vs-best fields."""
    if not diff:
        return "-"
    delta, ci = (diff["delta"], diff["ci95"]) if metric is None else (
        diff.get(f"delta_{metric}_vs_best"), diff.get(f"delta_{metric}_ci95"))
    if delta is None:
        return "(best baseline)" if metric and diff.get("best_baseline") else "-"
    return f"{delta:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci and ci[0] is not None else f"{delta:+.3f}"


def _sentence(c: dict) -> str:
    where = {"llm_lists": "the LLM's candidate lists", "all_lists": "all candidate lists"}.get(c["set"], c["set"])
    per_seed = f" (per seed: {', '.join(f'{v:+.3f}' for v in c['per_seed'].values())})" if c["per_seed"] else ""
    verdict = f"{c['a']} is {c['verdict']}" if c["verdict"] in ("better", "worse") else c["verdict"]
    return (f"{c['a']} vs {c['b']}, {c['metric'].upper()} on {where} (n = {c['n']}): "
            f"{_delta(c)}{per_seed}: {verdict}")


def _tables(metrics: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    methods = metrics["methods"]
    ndcg = f"ndcg@{NDCG_K}"

    def on(m: dict, kind: str, name: str) -> dict | None:
        return m.get(kind, {}).get(name)

    curve_only = {m for m, v in methods.items()  # scored on the true cold-start curve alone (meta_adaptation)
                  if all(k.startswith(("new_user_k", "new_item_unseen")) or k in ("kept_on_valid", "sets")
                         for k in v) and not set(v.get("sets", {})) & set(SETS)}
    cross_only = {m for m, v in methods.items()  # trained on the source domain: scored on the held-out domain alone
                  if set(v.get("sets", {})) <= {CROSS_DOMAIN} and v.get("cross_domain_auc_full") is not None
                  and not any(k.endswith("_auc") for k in v)}
    # the ablation runner's variants are Table II (and Table IV) rows, not methods of Table I / III
    listed = {m: v for m, v in methods.items() if m not in curve_only | cross_only | set(CHAMPION_VARIANTS.values())}

    main = [[m, _ci(on(v, "sets", "test"), "auc"), _delta(on(v, "sets", "test"), "auc"),
             _fmt(v.get("test_auc_full")), *(_fmt(v.get(f"{x}@{k}")) for x in ("hit", "ndcg") for k in KS),
             _ci(on(v, "ranking_lists", "llm_lists"), ndcg) if on(v, "ranking_lists", "llm_lists") else
             _fmt(v.get("ndcg@10") if m in LLM_METHODS else v.get("llm_subset.ndcg@10")),
             _delta(on(v, "ranking_lists", "llm_lists"), ndcg)]
            for m, v in listed.items()]
    cold = [[m, *(cell for name in ("new_user", "new_item", CROSS_DOMAIN)
                  for cell in (_ci(on(v, "sets", name), "auc"), _delta(on(v, "sets", name), "auc"))),
             _fmt(v.get("new_user_auc_full")), _fmt(v.get("new_item_auc_full")), _fmt(v.get("cross_domain_auc_full"))]
            for m, v in methods.items() if m in listed or m in cross_only]
    costed = {**listed, **{m: v for m, v in methods.items() if m not in listed and v.get("train_seconds") is not None}}
    eff = [[m, _fmt(v.get("train_seconds")), _fmt(v.get("inference_ms_per_sample")), _fmt(v.get("peak_memory_mb"))]
           for m, v in costed.items()]
    vs_full = metrics.get("vs_full_model", {})
    ablation = []
    for label, key, reference, setting in ABLATIONS:
        if key not in methods:
            continue
        v = methods[key]
        stance = v.get("stance_contradicts_answer")
        compared = f"{setting} (vs {reference})" if reference in methods else "-"
        ablation.append([label, compared, _ci(on(v, "sets", "test"), "auc"),
                         _delta(vs_full.get("auc", {}).get(key)) if reference else "-",
                         _ci(on(v, "ranking_lists", "llm_lists"), ndcg),
                         _delta(vs_full.get(ndcg, {}).get(key)) if reference else "-",
                         _fmt(v.get("bleu4")), _fmt(v.get("rouge_l")), _fmt(v.get("faithfulness")),
                         _fmt(stance) if not isinstance(stance, dict) else _fmt(stance.get("rate")),
                         f"{v['explanations_citing']}/{v['explanations_n']}" if v.get("explanations_n") else "-"])
    n = metrics["sample_counts"]
    curve = metrics.get("cold_start_curve", {"sets": [], "n": {}})
    true_cold = [[m + (" (kept on valid)" if v.get("kept_on_valid") else ""),
                  *(f"{_ci(on(v, 'sets', name), 'auc')}; {_delta(on(v, 'sets', name), 'auc')}"
                    if on(v, "sets", name) else _fmt(v.get(f"{name}_auc_full")) for name in curve["sets"])]
                 for m, v in methods.items()
                 if any(v.get(f"{name}_auc_full") is not None for name in curve["sets"])]
    counts = ", ".join(f"{name}: n = {curve['n'].get(name)}" for name in curve["sets"])
    extra = [(f"Table III-b: true cold start (AUC [95% CI]; paired difference to the best baseline of the set; whole "
              f"sets: new users whose history is cut to their last k ratings, the same samples at every k; items "
              f"with no training interaction; {counts})",
              ["method", *curve["sets"]], true_cold)] if true_cold else []
    return [
        (f"Table I: main results (AUC with 95% interval on the same {n['test']} test samples, and its paired "
         f"difference to the best baseline; Hit/NDCG@K over {n['ranking_positives_baselines']} liked test targets x "
         f"{n['candidates_per_positive']} candidates, the LLM over {n['ranking_positives_llm']} of them; last "
         "columns: NDCG@10 on the LLM's lists and its paired difference to the best baseline there)",
         ["method", "AUC [95% CI]", "ΔAUC vs best baseline [95% CI]", "AUC (full test)",
          *(f"{x}@{k}" for x in ("Hit", "NDCG") for k in KS), "NDCG@10 (LLM lists) [95% CI]",
          "ΔNDCG@10 vs best baseline [95% CI]"], main),
        (f"Table II: ablation (AUC on the {n['test']} test samples; NDCG@10 on the LLM's "
         f"{n['ranking_positives_llm']} lists; Δ: paired difference to the row that differs in one setting only, on "
         "the same samples / lists; BLEU-4 (sacrebleu 13a) / ROUGE-L / faithfulness of generated explanations; "
         "stance: share of explanations arguing against their own answer)",
         ["variant", "setting removed (compared with)", "AUC [95% CI]", "ΔAUC [95% CI]", "NDCG@10 [95% CI]",
          "ΔNDCG@10 [95% CI]",
          "BLEU-4", "ROUGE-L", "faithfulness", "stance contradicts answer", "explanations citing an attribute"],
         ablation),
        (f"Table III: cold start (AUC with 95% interval and paired difference to the best baseline; same "
         f"{n['new_user']} new-user / {n['new_item']} new-item samples; full sets for the baselines, mean ± std; "
         f"cross-domain: zero-shot on the held-out genres, every method trained on the source genres only, "
         f"{n.get('cross_domain')} of {n.get('cross_domain_full')} held-out samples paired, full set last; the "
         f"in-domain models' rows have no cross-domain cell: they trained on the held-out genres)",
         ["method", "new users [95% CI]", "Δ vs best", "new items [95% CI]", "Δ vs best",
          "cross-domain [95% CI]", "Δ vs best", "new users (full)", "new items (full)", "cross-domain (full)"],
         cold),
        *extra,
        *_rating_table(metrics.get("rating", {})),
        ("Table IV: efficiency (training s; inference ms per sample; peak memory MB: the process's resident peak, "
         "for the LLMs, the knowledge base and each meta-learner variant; baselines: "
         "the fit of the AUC setting, mean +- std over seeds; the knowledge base's training is its build, the "
         "meta-learner's inference includes each user's inner step)",
         ["method", "training time (s)", "inference (ms/sample)", "peak memory (MB)"], eff),
    ]


def _rating_table(sets: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Rating prediction (RMSE / MAE with 95% intervals; paired differences to biased MF on the same samples)."""
    if not sets:
        return []
    names = [name for name in ("test", "test_all", "valid") if name in sets]

    def cell(m: dict | None, metric: str) -> str:
        if not m:
            return "-"
        e = m[metric]
        vs = m.get("vs_biased_mf", {}).get(metric)
        return f"{_fmt(e['value'])} [{_fmt(e['ci95'][0])}, {_fmt(e['ci95'][1])}]" + (f"; {_delta(vs)}" if vs else "")

    methods = list(dict.fromkeys(m for name in names for m in sets[name]["methods"]))
    rows = [[m, *(cell(sets[name]["methods"].get(m), metric) for name in names for metric in ("rmse", "mae"))]
            for m in methods]
    counts = ", ".join(f"{name}: n = {sets[name]['n']}" for name in names)
    return [(f"Rating prediction (RMSE / MAE of the predicted stars with 95% intervals; after ';' the paired "
             f"difference to biased MF on the same samples, negative = lower error; {counts})",
             ["method", *(f"{name} {metric.upper()}" for name in names for metric in ("rmse", "mae"))], rows)]


def _examples(root: Path, not_run: Collection[str]) -> list[tuple[str, list[str], list[list[str]]]]:
    """A few generated explanations next to their references (the first test samples, not picked)."""
    frame = _read_if_any(root, paths.EXPLANATIONS, _left_out(not_run))
    if frame is None:
        return []
    rows = frame.filter(pl.col("variant") == "attributed").head(EXAMPLES)
    return [(f"Example explanations (attributed model, the first {rows.height} explained test samples)",
             ["user", "item", "label", "reference", "generated"],
             [[str(r["user_id"]), str(r["item_id"]), "Yes" if r["label"] else "No", r["response"], r["generated"]]
              for r in rows.iter_rows(named=True)])]


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(root: Path, metrics: dict) -> list[Path]:
    curves = {}
    for method, frame in auc_frames(root, metrics["steps_not_run"]).get("test", {}).items():
        if method in LLM_METHODS:
            frame = frame.sort("sample_id")
            curves[method] = (frame["label"].to_numpy(), frame["score"].to_numpy())
    base = _baseline_rows(pl.read_parquet(root / paths.BASELINE_SCORES), "auc").filter(pl.col("set") == "test")
    for (method,), part in base.group_by("method", maintain_order=True):  # each baseline's first seed
        part = part.filter(pl.col("seed") == part["seed"].min())
        curves[method] = (part["label"].to_numpy(), part["score"].to_numpy())
    intervals: dict[str, dict] = {name: {} for name in SETS}
    for method, v in metrics["methods"].items():
        for name, f in v.get("sets", {}).items():
            if (name in intervals and method not in CHAMPION_VARIANTS.values() and f["auc"] is not None
                    and f["auc_ci95"][0] is not None):
                intervals[name][method] = (f["auc"], *f["auc_ci95"])
    highlight = next((m for m in (CHAMPION, LLM) if m in curves), None)
    figures = [plot_roc(curves, root / paths.FIGURES / "roc_test.png", highlight=highlight),
               plot_auc_intervals(intervals, root / paths.FIGURES / "auc_by_method.png")]
    ks = [(int(name.removeprefix("new_user_k")), name) for name in metrics["cold_start_curve"]["sets"]
          if name.startswith("new_user_k")]
    by_k = {m: {k: _point(v.get(f"{name}_auc_full")) for k, name in ks} for m, v in metrics["methods"].items()}
    by_k = {m: points for m, points in by_k.items() if any(p is not None for p in points.values())}
    if by_k:
        figures.append(plot_cold_start_curve(by_k, root / paths.FIGURES / "cold_start_curve.png"))
    extra = [root / paths.FIGURES / name for name in ("rec_adapter_training.png", "item_token_adapter_training.png",
                                                       "item_token_modality_weights.png",
                                                       "explain_adapter_task_weights.png",
                                                       "multitask_adapter_task_weights.png")]
    return figures + [f for f in extra if f.is_file()]


def write_report(cfg: Config, root: Path, upstream: dict[str, dict]) -> dict:
    """reports/evaluation.md and the self-contained reports/evaluation.html; returns the metrics, which the
    pipeline writes to reports/metrics.json (the step's metrics file)."""
    metrics = collect_metrics(cfg, root, upstream)
    figures = _figures(root, metrics)
    title = f"ExplainRec evaluation: {metrics['dataset']}"
    intro = (f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Split: {metrics['split']}. "
             f"Base model: {metrics['base_model']}. Seeds: {metrics['seeds']}. "
             + (f"Not run this time (no rows): {', '.join(metrics['steps_not_run'])}. " if metrics["steps_not_run"]
                else "") +
             f"{metrics['notes']} Intervals: {metrics['bootstrap']['method']}, "
             f"{metrics['bootstrap']['resamples']} resamples, seed {metrics['bootstrap']['seed']}.")
    tables = _tables(metrics) + _examples(root, metrics["steps_not_run"])
    sentences = [_sentence(c) for c in metrics["comparisons"]]
    pairs_caption = ("Paired comparisons (A - B on the same samples / lists, 95% interval; \"better\"/\"worse\" only "
                     "when the interval excludes 0)")
    md = [f"# {title}", "", intro, ""]
    for caption, headers, rows in tables:
        md += [f"## {caption}", "", _md_table(headers, rows), ""]
    md += [f"## {pairs_caption}", "", *(f"- {s}" for s in sentences), ""]
    md += ["## Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in figures] + [""]
    with atomic_path(root / paths.EVALUATION_MD) as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    images = "".join(f'<figure><img alt="{f.stem}" src="data:image/png;base64,'
                     f'{base64.b64encode(f.read_bytes()).decode()}"><figcaption>{f.stem}</figcaption></figure>'
                     for f in figures)
    body = "".join(f"<h2>{html.escape(c)}</h2>{_html_table(h, r)}" for c, h, r in tables)
    body += f"<h2>{html.escape(pairs_caption)}</h2><ul>" + "".join(
        f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>"
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}figure{display:inline-block;margin:0 1em 1em 0}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
            f"{body}<h2>Figures</h2>{images}</body></html>")
    with atomic_path(root / paths.EVALUATION_HTML) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return metrics


def main_table(root: Path) -> str:
    """Table I as markdown, for `make demo` to print."""
    metrics = json.loads((root / paths.METRICS).read_text())
    caption, headers, rows = _tables(metrics)[0]
    return f"{caption}\n\n{_md_table(headers, rows)}"
