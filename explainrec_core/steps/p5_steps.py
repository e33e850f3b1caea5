"""The P5 baseline (paper Table I): p5_adapter -> p5_evaluation (baselines/p5.py has the prompt families).

Like with like: P5's LoRA starts from the same stage-1 adapter as every LLM variant, trains on the same few-shot
training samples with the one `llm_training` schedule (epochs, batch, lr, evaluation interval, patience) and is
early-stopped on the same validation samples' AUC, asked through its scored family. What differs is P5 itself: ID
words instead of titles, the history without ratings, and one example per family and sample (so an epoch has
about as many optimizer steps as families; P5 trains on all its families at once). It is scored on the same test
and cold-start samples and the same candidate lists as the TALLRec recipe.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.baselines import p5
from explainrec_core.config import Config
from explainrec_core.evaluation.prefix_scoring import score_shared_prefix
from explainrec_core.evaluation.ranking import llm_lists, write_list_scores
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import sha256_file, write_parquet
from explainrec_core.models import adapters
from explainrec_core.progress import progress_bar
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.llm_steps import (
    EVAL_SETS,
    _as_dict,
    _checkpoint_dir,
    _finish,
    _fit,
    _scorer,
    load_base,
    score_prompts,
)
from explainrec_core.training.examples import encode_all

METHOD = "p5"
ANSWER_TOKENS = 8  # room kept for the longest answer (an ID word such as "item_1682" is 4-6 tokens here)


def p5_samples(cfg: Config, root: Path, rows: pl.DataFrame) -> list[p5.P5Sample]:
    """The P5 view of rec_prompts rows (in their order): user, target, label, stars, history item ids."""
    samples = read_processed(cfg, root, "samples").select("sample_id", "rating", "history_item_ids")
    joined = rows.select("sample_id", "user_id", "item_id", "label").join(samples, on="sample_id", how="left",
                                                                          maintain_order="left")
    return [p5.P5Sample(r["user_id"], r["item_id"], int(r["label"]), float(r["rating"]),
                        tuple(r["history_item_ids"] or ())) for r in joined.iter_rows(named=True)]


def _fits(tokenizer, cutoff: int):
    """fits(prompt) -> whether the prompt and the longest answer fit `cutoff` tokens."""
    return lambda prompt: len(tokenizer(prompt)["input_ids"]) + ANSWER_TOKENS <= cutoff


def history_for(sample: p5.P5Sample, fits) -> tuple[int, ...]:
    """The most recent history with which both history-reading prompts fit."""
    return p5.fitted_history(sample, lambda h: fits(p5.sequential_prompt(sample.user, h, sample.item))
                             and fits(p5.next_item_prompt(sample.user, h)))


def scored_prompts(cfg: Config, root: Path, rows: pl.DataFrame, tokenizer) -> list[str]:
    fits = _fits(tokenizer, cfg.llm_training.cutoff)
    return [p5.sequential_prompt(s.user, history_for(s, fits), s.item) for s in p5_samples(cfg, root, rows)]


def run_p5_adapter(cfg: Config, root: Path) -> dict:
    info, model, tokenizer = load_base(root)
    prompts = pl.read_parquet(root / paths.REC_PROMPTS)
    train_rows, valid_rows = (prompts.filter(pl.col("set") == s).sort("sample_id") for s in ("train", "valid"))
    fits = _fits(tokenizer, cfg.llm_training.cutoff)
    pairs, per_family = [], dict.fromkeys(cfg.p5.families, 0)
    for sample in p5_samples(cfg, root, train_rows):
        for family, prompt, response in p5.family_examples(sample, cfg.p5.families, history_for(sample, fits)):
            pairs.append((prompt, response))
            per_family[family] += 1
    examples, skipped = encode_all(tokenizer, pairs, cfg.llm_training.cutoff)
    lora_model = adapters.load_adapter(model, root / paths.ALPACA_ADAPTER, trainable=True)
    evaluate = _scorer(tokenizer, info["answer_token_ids"], scored_prompts(cfg, root, valid_rows, tokenizer),
                       valid_rows["label"].to_list(), cfg.evaluation.batch_size)
    ckpt = _checkpoint_dir(root, "p5_adapter", info, cfg.llm_training, cfg.p5, sha256_file(root / paths.REC_PROMPTS),
                           sha256_file(root / paths.ALPACA_ADAPTER / adapters.WEIGHTS))
    result = _fit("p5_adapter", lora_model, tokenizer, examples, cfg.llm_training, ckpt, evaluate=evaluate)
    card = {"name": "p5_adapter",
            "description": "The P5 baseline: P5's prompt families (ID words for users and items) on the base LLM, "
                           "LoRA continued from the stage-1 adapter; scored through the sequential yes/no family.",
            "base_model": info["source"], "base_model_source": info,
            "data": {"file": paths.REC_PROMPTS, "sha256": sha256_file(root / paths.REC_PROMPTS),
                     "train_samples": train_rows.height, "train_examples": len(examples),
                     "examples_per_family": per_family, "skipped_longer_than_cutoff": skipped,
                     "valid_samples": valid_rows.height},
            "p5": _as_dict(cfg.p5), "lora": _as_dict(cfg.lora), "training": _as_dict(cfg.llm_training),
            "metrics": {"best_valid_auc": result.best_metric, "best_step": result.best_step,
                        "valid_auc_by_step": result.evals}}
    summary = _finish("p5_adapter", paths.P5_ADAPTER, lora_model, result, card, root, ckpt, model)
    return {**summary, "examples": len(examples), "examples_per_family": per_family,
            "skipped_longer_than_cutoff": skipped, "valid_auc": result.best_metric}


def run_p5_evaluation(cfg: Config, root: Path) -> dict:
    """P(Yes) of the scored family on the test and cold-start samples (AUC per set) and on the LLM's candidate
    lists (each list's history prefix run once)."""
    info, model, tokenizer = load_base(root)
    model = adapters.load_adapter(model, root / paths.P5_ADAPTER)
    rows = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set").is_in(EVAL_SETS))
    unique = rows.unique("sample_id").sort("sample_id")
    texts = dict(zip(unique["sample_id"].to_list(), scored_prompts(cfg, root, unique, tokenizer), strict=True))
    rows = rows.with_columns(pl.col("sample_id").replace_strict(texts, return_dtype=pl.String).alias("prompt"))
    scores, speed = score_prompts(model, tokenizer, info, rows, cfg.evaluation.batch_size, "p5_evaluation")
    write_parquet(scores, root / paths.P5_SCORES)
    metrics: dict = {name: {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height}
                     for name in EVAL_SETS for part in [scores.filter(pl.col("set") == name)]}
    metrics["scoring"] = speed
    metrics["ranking"] = _rank(cfg, root, model, tokenizer, info["answer_token_ids"])
    return metrics


def _rank(cfg: Config, root: Path, model, tokenizer, answer_ids) -> dict:
    """The LLM's candidate lists (llm_lists' seeded draw), each user's history prefix run once."""
    candidates = llm_lists(pl.read_parquet(root / paths.RANKING_CANDIDATES), cfg.ranking.llm_positives)
    fits = _fits(tokenizer, cfg.llm_training.cutoff)
    rows, start = [], time.perf_counter()
    with progress_bar(candidates.height, "p5_evaluation: ranking") as advance:
        for r in candidates.iter_rows(named=True):
            longest = max(r["candidates"], key=lambda i: len(p5.item_word(i)))  # the history must fit for every one
            sample = p5.P5Sample(r["user_id"], longest, 1, 0.0, tuple(r["history_item_ids"]))
            prefix = p5.sequential_prefix(r["user_id"], history_for(sample, fits))
            p_yes = score_shared_prefix(model, tokenizer, prefix, [p5.sequential_suffix(i) for i in r["candidates"]],
                                        answer_ids, batch_size=cfg.evaluation.batch_size * 4)
            rows.append({"sample_id": r["sample_id"], "scores": p_yes.tolist()})
            advance(1)
    seconds = time.perf_counter() - start
    metrics = write_list_scores(rows, root / paths.P5_RANKING)
    return {**metrics, "seconds_per_list": round(seconds / max(candidates.height, 1), 2)}
