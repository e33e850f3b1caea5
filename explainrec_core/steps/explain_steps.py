"""Preference-attribution steps: item attributes -> per-user reasons -> explained prompts -> the attributed
model (and its "w/o preference attribution" ablation); explain_evaluation_steps.py measures them.

The attributed model is trained exactly like the TALLRec rec adapter (from the stage-1 Alpaca adapter, early
stopping on validation AUC, the same sample sets) except for the prompt (reasons and target attributes), the
response (answer + reference explanation) and the loss (training/joint_loss.py). The ablation differs from it
only in the prompt: the same history titles without reasons or target attributes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.attribution.attributes import attribute_stats, item_attributes
from explainrec_core.attribution.builder import ContextBuilder
from explainrec_core.attribution.explanations import parse_citations, review_reference
from explainrec_core.attribution.preferences import user_preference_table
from explainrec_core.attribution.prompting import fit_explained_prompt, prompt_parts
from explainrec_core.config import Config
from explainrec_core.io import sha256_file, write_parquet
from explainrec_core.models import adapters
from explainrec_core.models.base_model import cache_dir, load_tokenizer
from explainrec_core.plots import plot_task_weights
from explainrec_core.steps.data_steps import local_raw_dir, read_processed
from explainrec_core.steps.llm_steps import (
    _as_dict,
    _base_info,
    _checkpoint_dir,
    _finish,
    _fit,
    load_base,
)
from explainrec_core.training.joint_loss import encode_explained, make_joint_loss
from explainrec_core.training.selection import ExplainedSelection

VARIANTS = {"attributed": (paths.EXPLAIN_ADAPTER, "prompt"),
            "no_attribution": (paths.EXPLAIN_ADAPTER_ABLATION, "prompt_plain")}



def run_item_attributes(cfg: Config, root: Path) -> dict:
    items = read_processed(cfg, root, "items")
    a = cfg.attribution
    table = item_attributes(items, local_raw_dir(cfg, root), cache_dir(cfg.model), imdb=a.imdb_attributes,
                            roles=a.kg_roles, min_actor_films=a.min_actor_films)
    write_parquet(table, paths.resolve(paths.processed("item_attributes"), cfg, root))
    return attribute_stats(table, items.height)


def run_preference_attributions(cfg: Config, root: Path) -> dict:
    """Per user and attribute, smoothed log-odds over the ratings up to the last training target (no leakage into
    validation or test): what the CLI shows as a user's profile."""
    samples, interactions = read_processed(cfg, root, "samples"), read_processed(cfg, root, "interactions")
    cut = samples.filter(pl.col("split") == "train")["timestamp"].max()
    attributes, items = read_processed(cfg, root, "item_attributes"), read_processed(cfg, root, "items")
    table = user_preference_table(interactions.filter(pl.col("timestamp") <= cut), attributes,
                                  cfg.samples.like_threshold, cfg.attribution.prior_strength, items.height)
    write_parquet(table, paths.resolve(paths.processed("preference_attributions"), cfg, root))
    strongest = table.filter(pl.col("log_odds") > 0).group_by("user_id").agg(pl.col("label").first())
    return {"rows": table.height, "users": table["user_id"].n_unique(), "period_end_timestamp": int(cut),
            "users_with_a_positive_reason": strongest.height}


def context_builder(cfg: Config, root: Path) -> ContextBuilder:
    return ContextBuilder(read_processed(cfg, root, "items"), read_processed(cfg, root, "item_attributes"),
                          cfg.samples.like_threshold, cfg.attribution.prior_strength)


def run_explain_prompts(cfg: Config, root: Path) -> dict:
    """Attributed and plain prompts with reference explanations, for the same samples as the TALLRec prompts."""
    chosen = pl.read_parquet(root / paths.REC_PROMPTS).select("set", "sample_id", "user_id", "item_id", "label")
    samples = read_processed(cfg, root, "samples").join(chosen.select("sample_id").unique(), on="sample_id")
    tokenizer = load_tokenizer(Path(_base_info(root)["path"]))

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    rows = explained_prompt_rows(cfg, root, samples, context_builder(cfg, root), count)
    table = chosen.with_columns(*[
        pl.col("sample_id").map_elements(lambda s, k=k: rows[s][k], return_dtype=dtype).alias(k)
        for k, dtype in (("prompt", pl.String), ("prompt_plain", pl.String), ("response", pl.String),
                         ("n_history_dropped", pl.Int32), ("cited", pl.Int32))])
    write_parquet(table, root / paths.EXPLAIN_PROMPTS)
    unique = table.unique("sample_id")
    return {"samples": unique.height, "sets": {s: int((table["set"] == s).sum()) for s in table["set"].unique().sort()},
            "truncated_prompts": int((unique["n_history_dropped"] > 0).sum()),
            "neutral_references": int((unique["cited"] == 0).sum()),
            "mean_prompt_tokens": round(float(np.mean([count(p) for p in unique["prompt"].head(200)])), 1),
            "mean_plain_prompt_tokens": round(float(np.mean([count(p) for p in unique["prompt_plain"].head(200)])), 1)}



def explained_prompt_rows(cfg: Config, root: Path, samples: pl.DataFrame, builder: ContextBuilder,
                          count) -> dict[int, dict]:
    """sample_id -> the attributed prompt (fitted to the cutoff), the plain prompt, the reference explanation and
    what was dropped, for every row of `samples` (also used by the retraining job for new interactions)."""
    a = cfg.attribution
    reviews = _reviews(cfg, root, samples)
    rows = {}
    for r in samples.iter_rows(named=True):
        ctx = builder.build(r["history_item_ids"], r["history_ratings"], r["item_id"])
        review = reviews.get(r["sample_id"])
        # The budget keeps room for the longer of the two possible responses (and EOS), never the label's own:
        # a prompt that lost more history when its answer was "No." would tell a model the label.
        fitted = fit_explained_prompt(ctx, review, a.reasons_per_item, a.max_cited, count, cfg.llm_training.cutoff,
                                      builder.rebuild(ctx))
        shown = fitted.context
        # The reference is rebuilt from the history actually shown, so it only cites what the prompt shows.
        response = review_reference(r["label"], review) or shown.reference(r["label"], a.max_cited)
        plain_prefix, plain_suffix = prompt_parts(shown, False, a.reasons_per_item)
        rows[r["sample_id"]] = {"prompt": fitted.prompt, "prompt_plain": plain_prefix + plain_suffix,
                                "response": response, "n_history_dropped": fitted.n_history_dropped,
                                "cited": len(parse_citations(response, builder.vocabulary))}
    return rows


def _reviews(cfg: Config, root: Path, samples: pl.DataFrame) -> dict[int, str]:
    """sample_id -> the user's review text of the target, where the interactions carry reviews (Amazon)."""
    interactions = pl.scan_parquet(paths.resolve(paths.processed("interactions"), cfg, root))
    if "review_text" not in interactions.collect_schema().names():
        return {}
    keys = samples.select("sample_id", "user_id", "item_id", "timestamp").lazy()
    found = keys.join(interactions.select("user_id", "item_id", "timestamp", "review_text"),
                      on=["user_id", "item_id", "timestamp"]).collect()
    return {s: t for s, t in found.select("sample_id", "review_text").iter_rows() if t}


def _train_variant(cfg: Config, root: Path, variant: str) -> dict:
    target, column = VARIANTS[variant]
    info, model, tokenizer = load_base(root)
    answer_ids = info["answer_token_ids"]
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    train_rows, valid_rows = (prompts.filter(pl.col("set") == s).unique("sample_id").sort("sample_id")
                              for s in ("train", "valid"))
    examples, skipped = [], 0
    for prompt, response in zip(train_rows[column], train_rows["response"], strict=True):
        example = encode_explained(tokenizer, prompt, response, answer_ids)
        if len(example.input_ids) > cfg.llm_training.cutoff:
            skipped += 1
        else:
            examples.append(example)
    lora_model = adapters.load_adapter(model, root / paths.ALPACA_ADAPTER, trainable=True)
    # Both variants are selected by the same rule (valid AUC + explanation likelihood, training/selection.py).
    weight = cfg.attribution.selection_explanation_weight
    evaluate = ExplainedSelection(tokenizer, answer_ids, valid_rows[column].to_list(), valid_rows["response"].to_list(),
                                  valid_rows["label"].to_list(), cfg.evaluation.batch_size, weight)
    name = "explain_adapter" if variant == "attributed" else "explain_adapter_ablation"
    ckpt = _checkpoint_dir(root, name, info, cfg.llm_training, cfg.attribution.loss,
                           sha256_file(root / paths.EXPLAIN_PROMPTS), column,
                           sha256_file(root / paths.ALPACA_ADAPTER / adapters.WEIGHTS), f"selection {weight}")
    loss_fn = make_joint_loss(cfg.attribution.loss, tokenizer, answer_ids)
    result = _fit(name, lora_model, tokenizer, examples, cfg.llm_training, ckpt, evaluate=evaluate,
                  loss_fn=loss_fn)
    card = {"name": name,
            "description": ("Preference-attributed recommender: answers Yes./No. and explains why, trained with the "
                            "joint loss (answer + explanation + consistency)" +
                            ("." if variant == "attributed" else "; ablation without reasons in the prompt.")),
            "base_model": info["source"], "base_model_source": info, "prompt_column": column,
            "data": {"file": paths.EXPLAIN_PROMPTS, "sha256": sha256_file(root / paths.EXPLAIN_PROMPTS),
                     "train_examples": len(examples), "valid_samples": valid_rows.height,
                     "skipped_longer_than_cutoff": skipped},
            "lora": _as_dict(cfg.lora), "training": _as_dict(cfg.llm_training),
            "loss_weights": _as_dict(cfg.attribution.loss),
            "selection": {"criterion": "valid AUC + w * exp(-explanation NLL)", "explanation_weight": weight},
            "metrics": {"best_valid_criterion": result.best_metric, "best_step": result.best_step,
                        "valid_criterion_by_step": result.evals, "valid_selection": evaluate.history}}
    best = evaluate.at_step(result.evals, result.best_step) or {}
    card["metrics"]["best_valid_auc"] = best.get("auc")
    card["metrics"]["best_valid_explanation_token_prob"] = best.get("explanation_token_prob")
    summary = _finish(name, target, lora_model, result, card, root, ckpt, model,
                      metric_name="valid AUC + w exp(-expl. NLL)" if weight > 0 else "valid AUC")
    history = loss_fn.weighting.history
    plot = plot_task_weights(history, f"{name}: task weights ({cfg.attribution.loss.weighting})",
                             root / paths.FIGURES / f"{name}_task_weights.png")
    return {**summary, "examples": len(examples), "skipped_longer_than_cutoff": skipped,
            "valid_criterion": result.best_metric, "valid_auc": best.get("auc"),
            "valid_explanation_token_prob": best.get("explanation_token_prob"),
            "own_explanations_generated": loss_fn.generated,
            "task_weighting": cfg.attribution.loss.weighting, "task_weights": [[s, w] for s, w in history],
            "task_weights_plot": str(plot.relative_to(root))}


def run_explain_adapter(cfg: Config, root: Path) -> dict:
    return _train_variant(cfg, root, "attributed")


def run_explain_adapter_ablation(cfg: Config, root: Path) -> dict:
    return _train_variant(cfg, root, "no_attribution")
