"""champion_ablations: the ablation runner for Table II's modality rows (paper Table II, "w/o multi-modal").

For each group in `ablations.modality_groups` (config.ABLATION_MODALITY_GROUPS) the champion's step 2
(`explain_item_token_steps.train_champion_fusion`) is run again with that group's vectors removed from
`multimodal.modalities` and nothing else changed: the same frozen attributed LoRA (explain_adapter), the same
explain_prompts examples, the one `llm_training` schedule and seed (the fusion is initialised from the same seed),
selection on the same validation AUC. Each variant is then scored on the champion's test samples and, with
`ablations.rank_lists`, on the LLM's candidate lists, so the report pairs it with the champion sample by sample and
list by list (Table II, paired 95% intervals).

What it leaves out, and why:
- explanations of the variants (BLEU-4 / faithfulness need generation, about 10x the scoring cost): Table II shows
  them for the champion and the text-prompt rows;
- the cold-start sets: Table II is a test-set table;
- the other Table II rows are steps of their own, trained on the same `llm_training` schedule (w/o item tokens =
  explain_adapter, w/o attribution = explain_adapter_ablation, w/o explanations = rec_adapter, + the rating task =
  multitask_adapter); "w/o zero-shot" has no row: the champion does not use the knowledge modality (the attributed
  prompts do not carry their user), so there is nothing to remove.

Resumable: a finished variant keeps its scores in its folder with a fingerprint of the settings and inputs; a rerun
with the same fingerprint reuses them, and an interrupted training resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.config import ABLATION_MODALITY_GROUPS, Config
from explainrec_core.evaluation.ranking import ranking_metrics
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import write_json, write_parquet
from explainrec_core.models import adapters
from explainrec_core.progress import progress_bar
from explainrec_core.steps.explain_evaluation_steps import item_token_variant
from explainrec_core.steps.explain_item_token_steps import train_champion_fusion
from explainrec_core.steps.explain_steps import context_builder
from explainrec_core.steps.partial_results import fingerprint

RESULTS = "ablation_result.json"  # in each variant's folder: its fingerprint and metrics
SCORES = "ablation_scores.parquet"
RANKING = "ablation_ranking.parquet"


def variant_name(group: str) -> str:
    """The variant's name in the scores files (the report's method is `explainrec_item_tokens_wo_<group>`)."""
    return f"wo_{group}"


def ablated_modalities(cfg: Config, champion_on: list[str], group: str) -> tuple[tuple[str, ...] | None, str]:
    """(the modalities of the variant, why it is skipped when None). `champion_on`: the modalities the champion's
    fusion attended over (those with vectors in this run)."""
    removed = ABLATION_MODALITY_GROUPS[group]
    if not set(removed) & set(champion_on):
        return None, f"none of {list(removed)} is on in the champion (on: {champion_on})"
    kept = tuple(m for m in cfg.multimodal.modalities if m not in removed)
    if not set(kept) & set(champion_on):
        return None, f"removing {list(removed)} leaves no modality with vectors (on: {champion_on})"
    return kept, ""


def _fingerprint(cfg: Config, root: Path) -> str:
    """Everything a variant's training and scores depend on: all settings and the input files' digests."""
    return fingerprint(cfg, [root / paths.EXPLAIN_PROMPTS, root / paths.EXPLAIN_ADAPTER / adapters.WEIGHTS,
                             root / paths.RANKING_CANDIDATES, paths.resolve(paths.ITEM_FEATURES, cfg, root),
                             *(paths.resolve(paths.processed(name), cfg, root)
                               for name in ("samples", "interactions", "items"))])


def _run_variant(cfg: Config, root: Path, group: str, champion_on: list[str], test, builder) -> dict:
    """Train, score and rank one variant into its folder (or reuse it when its fingerprint matches)."""
    folder = root / paths.CHAMPION_ABLATIONS / group
    fingerprint = _fingerprint(cfg, root)
    result_file = folder / RESULTS
    if result_file.is_file() and json.loads(result_file.read_text())["fingerprint"] == fingerprint:
        return json.loads(result_file.read_text())["metrics"]
    removed = [m for m in ABLATION_MODALITY_GROUPS[group] if m in champion_on]
    training = train_champion_fusion(
        cfg, root, f"champion_wo_{group}", f"{paths.CHAMPION_ABLATIONS}/{group}",
        f"Table II ablation of the champion: its fusion retrained without the {group} vectors ({removed}), the "
        "attributed LoRA, examples, schedule and seed unchanged.")
    name = variant_name(group)
    variant = item_token_variant(cfg, root, builder, f"{paths.CHAMPION_ABLATIONS}/{group}", name)
    start = time.perf_counter()
    with progress_bar(test.height, f"champion_ablations: scoring {name}") as advance:
        p_yes = variant.score(test, advance)
    seconds = time.perf_counter() - start
    scores = test.select("sample_id", "label").with_columns(pl.lit(name).alias("variant"), pl.lit("test").alias("set"),
                                                           pl.Series("p_yes", p_yes))
    metrics = {"modalities": list(cfg.multimodal.modalities), "removed": removed,
               "test": {"auc": auc(scores["label"].to_list(), scores["p_yes"].to_list()), "n": scores.height},
               "scoring_samples_per_s": round(test.height / seconds, 3),
               **{k: training.get(k) for k in ("train_seconds", "peak_memory_mb", "best_step", "valid_auc",
                                               "examples", "modalities_off")}}
    write_parquet(scores.select("variant", "set", "sample_id", "label", "p_yes"), folder / SCORES)
    if cfg.ablations.rank_lists:
        list_ids, grid = variant.rank()
        metrics["ranking"] = {**ranking_metrics(grid), "lists": int(grid.shape[0])}
        write_parquet(pl.DataFrame([{"variant": name, "list": i, "sample_id": s, "scores": row.tolist()}
                                    for i, (s, row) in enumerate(zip(list_ids, grid, strict=True))]),
                      folder / RANKING)
    write_json({"fingerprint": fingerprint, "metrics": metrics}, result_file)
    return json.loads(result_file.read_text())["metrics"]  # as a reused variant's: the same types either way


def run_champion_ablations(cfg: Config, root: Path) -> dict:
    card_file = root / paths.EXPLAIN_ITEM_TOKEN_ADAPTER / adapters.CARD_JSON
    if not card_file.is_file():
        raise FileNotFoundError(f"{card_file}: the champion is needed (explain_item_token_adapter)")
    champion_on = json.loads(card_file.read_text())["data"]["modalities"]
    test = pl.read_parquet(root / paths.EXPLAIN_PROMPTS).filter(pl.col("set") == "test").unique(
        "sample_id").sort("sample_id")
    builder = context_builder(cfg, root)
    metrics: dict = {"champion_modalities": champion_on, "variants": {}, "skipped": {}}
    score_files, ranking_files = [], []
    for group in cfg.ablations.modality_groups:
        kept, why = ablated_modalities(cfg, champion_on, group)
        if kept is None:
            metrics["skipped"][group] = why
            continue
        variant_cfg = dataclasses.replace(cfg, multimodal=dataclasses.replace(cfg.multimodal, modalities=kept))
        metrics["variants"][variant_name(group)] = _run_variant(variant_cfg, root, group, champion_on, test, builder)
        folder = root / paths.CHAMPION_ABLATIONS / group
        score_files.append(folder / SCORES)
        if cfg.ablations.rank_lists:
            ranking_files.append(folder / RANKING)
    # a group no longer configured (or skipped) leaves no folder behind for the report to mix in
    keep = {g for g in cfg.ablations.modality_groups if g not in metrics["skipped"]}
    for stale in (root / paths.CHAMPION_ABLATIONS).glob("*") if (root / paths.CHAMPION_ABLATIONS).is_dir() else ():
        if stale.is_dir() and stale.name not in keep:
            shutil.rmtree(stale)
    write_parquet(pl.concat([pl.read_parquet(f) for f in score_files]) if score_files else
                  pl.DataFrame(schema={"variant": pl.String, "set": pl.String, "sample_id": pl.Int64,
                                       "label": pl.Int64, "p_yes": pl.Float64}),
                  root / paths.CHAMPION_ABLATION_SCORES)
    write_parquet(pl.concat([pl.read_parquet(f) for f in ranking_files]) if ranking_files else
                  pl.DataFrame(schema={"variant": pl.String, "list": pl.Int64, "sample_id": pl.Int64,
                                       "scores": pl.List(pl.Float64)}),
                  root / paths.CHAMPION_ABLATION_RANKING)
    return metrics
