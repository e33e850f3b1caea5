"""The multi-task TALLRec model (paper eq. 10, first step): one LoRA trained on preference prediction (Yes/No) and
rating prediction (a verbalised star rating, rating/llm_rating.py) at once.

Compared like with like: the TALLRec recipe's own adapter (`rec_adapter`) is the single-task model. Both start from
the same stage-1 adapter, see the same few-shot training samples and validation samples, and use the one
`llm_training` schedule (same epochs, batch, lr, evaluation interval, patience, and so the same optimizer steps).
The differences are the rating task (every training sample also gives a rating example, its star rating) and the
selection criterion below.

Task sampler and weights (training/multitask_loss.py): a training unit is a bundle, the sample's Yes/No example
carrying its rating example, so every micro-batch holds both tasks of the same samples and an epoch has as many
optimizer steps as the single-task recipe. The two task losses are summed with fixed weights or adaptive ones
(`multitask.weighting`: torchjd's uncertainty weighting or DWA, eq. 11), recorded per step and plotted.

Model selection (early stopping and the kept weights) uses both tasks: (valid AUC - 0.5) + (1 - valid RMSE / the
RMSE of predicting the training samples' mean rating), each a skill score over a trivial predictor, equally
weighted. The single-task recipe selects on valid AUC, which is what this reduces to without the rating task.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from explainrec_core import paths
from explainrec_core.config import Config
from explainrec_core.evaluation.scoring import auc
from explainrec_core.io import sha256_file, write_parquet
from explainrec_core.models import adapters
from explainrec_core.plots import plot_task_weights
from explainrec_core.progress import progress_bar
from explainrec_core.prompts import quote_item
from explainrec_core.rating.llm_rating import expected_ratings, rating_prompt, rating_response, star_token_ids
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
from explainrec_core.training.engine import Example
from explainrec_core.training.examples import encode
from explainrec_core.training.multitask_loss import MultitaskLoss, bundle

METHOD = "tallrec_multitask"


def rating_prompts(cfg: Config, root: Path, sample_ids: pl.Series, tokenizer) -> pl.DataFrame:
    """(sample_id, rating, prompt, response, n_history_used) for the given samples, in sample_id order."""
    items = read_processed(cfg, root, "items")
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    rows = read_processed(cfg, root, "samples").filter(pl.col("sample_id").is_in(sample_ids.implode()))

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    out = []
    for r in rows.sort("sample_id").iter_rows(named=True):
        history = [(titles[i], x) for i, x in zip(r["history_item_ids"], r["history_ratings"], strict=True)]
        prompt, used = rating_prompt(history, titles[r["item_id"]], count, cfg.llm_training.cutoff)
        out.append({"sample_id": r["sample_id"], "rating": float(r["rating"]), "prompt": prompt,
                    "response": rating_response(r["rating"]), "n_history_used": used})
    return pl.DataFrame(out, schema={"sample_id": pl.Int64, "rating": pl.Float64, "prompt": pl.String,
                                     "response": pl.String, "n_history_used": pl.Int64})


def run_multitask_adapter(cfg: Config, root: Path) -> dict:
    info, model, tokenizer = load_base(root)
    prompts = pl.read_parquet(root / paths.REC_PROMPTS)
    train_rows, valid_rows = (prompts.filter(pl.col("set") == s) for s in ("train", "valid"))
    ratings = rating_prompts(cfg, root, train_rows["sample_id"], tokenizer)
    pairs = train_rows.select("sample_id", "prompt", "response").join(
        ratings.select("sample_id", pl.col("prompt").alias("rating_prompt"),
                       pl.col("response").alias("rating_response")), on="sample_id").sort("sample_id")
    examples, skipped = bundle_examples(tokenizer, pairs, cfg.llm_training.cutoff)
    lora_model = adapters.load_adapter(model, root / paths.ALPACA_ADAPTER, trainable=True)
    valid_auc = _scorer(tokenizer, info["answer_token_ids"], valid_rows["prompt"].to_list(),
                        valid_rows["label"].to_list(), cfg.evaluation.batch_size)
    valid_ratings = rating_prompts(cfg, root, valid_rows["sample_id"], tokenizer)
    star_ids, parts = star_token_ids(tokenizer), []
    mean_rmse = float(((valid_ratings["rating"] - ratings["rating"].mean()) ** 2).mean() ** 0.5)

    def evaluate(model) -> float:
        """Combined selection: (valid AUC - 0.5) + (1 - valid RMSE / RMSE of the training mean), each task's skill
        over a trivial predictor, weighted equally: selecting on AUC alone kept weights from before the rating
        task was learned (paper profile: RMSE 2.25, worse than the global mean's 1.14)."""
        auc_value = valid_auc(model)
        predicted = expected_ratings(model, tokenizer, valid_ratings["prompt"].to_list(), star_ids,
                                     cfg.evaluation.batch_size)
        rmse = float((((predicted - valid_ratings["rating"].to_numpy()) ** 2).mean()) ** 0.5)
        parts.append({"valid_auc": auc_value, "valid_rmse": rmse})
        return (auc_value - 0.5) + (1.0 - rmse / mean_rmse)
    samples_file = paths.resolve(paths.processed("samples"), cfg, root)
    ckpt = _checkpoint_dir(root, "multitask_adapter", info, cfg.llm_training, cfg.multitask,
                           sha256_file(root / paths.REC_PROMPTS), sha256_file(samples_file),
                           sha256_file(root / paths.ALPACA_ADAPTER / adapters.WEIGHTS))
    loss_fn = MultitaskLoss(cfg.multitask)
    result = _fit("multitask_adapter", lora_model, tokenizer, examples, cfg.llm_training, ckpt, evaluate=evaluate,
                  loss_fn=loss_fn)
    card = {"name": "multitask_adapter",
            "description": "The TALLRec recipe trained on two tasks at once: Yes/No preference prediction and a "
                           "verbalised 1-5 star rating of the same training samples (paper eq. 10).",
            "base_model": info["source"], "base_model_source": info,
            "data": {"file": paths.REC_PROMPTS, "sha256": sha256_file(root / paths.REC_PROMPTS),
                     "tasks": {"preference": len(examples), "rating": len(examples)},
                     "skipped_longer_than_cutoff": skipped, "valid_samples": valid_rows.height},
            "lora": _as_dict(cfg.lora), "training": _as_dict(cfg.llm_training),
            "multitask": _as_dict(cfg.multitask),
            "metrics": {"selection": "(valid AUC - 0.5) + (1 - valid RMSE / training-mean RMSE)",
                        "best_selection_score": result.best_metric, "best_step": result.best_step,
                        "selection_by_step": result.evals, "valid_parts_by_evaluation": parts,
                        "valid_rmse_of_training_mean": mean_rmse}}
    summary = _finish("multitask_adapter", paths.MULTITASK_ADAPTER, lora_model, result, card, root, ckpt, model)
    history = loss_fn.weighting.history
    plot = plot_task_weights(history, f"multitask_adapter: task weights ({cfg.multitask.weighting})",
                             root / paths.FIGURES / "multitask_adapter_task_weights.png")
    return {**summary, "examples": {"preference": len(examples), "rating": len(examples)},
            "skipped_longer_than_cutoff": skipped, "selection_score": result.best_metric,
            "valid_parts_by_evaluation": parts, "valid_rmse_of_training_mean": mean_rmse,
            "task_sampler": "bundles: each micro-batch holds both tasks of the same samples (seeded shuffle)",
            "task_weighting": cfg.multitask.weighting, "task_weights": [[s, w] for s, w in history],
            "task_weights_plot": str(plot.relative_to(root))}


def bundle_examples(tokenizer, pairs: pl.DataFrame, cutoff: int) -> tuple[list[Example], int]:
    """One bundle per sample (prompt, response, rating_prompt, rating_response): its Yes/No example carrying its
    rating example; a sample either of whose examples is longer than `cutoff` is skipped (and counted)."""
    examples, skipped = [], 0
    for r in pairs.iter_rows(named=True):
        preference = encode(tokenizer, r["prompt"], r["response"])
        rating = encode(tokenizer, r["rating_prompt"], r["rating_response"])
        if max(len(preference.input_ids), len(rating.input_ids)) > cutoff:
            skipped += 1
        else:
            examples.append(bundle(preference, rating))
    return examples, skipped


def run_multitask_evaluation(cfg: Config, root: Path) -> dict:
    """P(Yes) on the test and cold-start samples (as rec_evaluation) and the expected star rating of the test
    samples (paired with biased MF in the report's rating table)."""
    info, model, tokenizer = load_base(root)
    model = adapters.load_adapter(model, root / paths.MULTITASK_ADAPTER)
    prompts = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set").is_in(EVAL_SETS))
    scores, speed = score_prompts(model, tokenizer, info, prompts, cfg.evaluation.batch_size, "multitask_evaluation")
    write_parquet(scores, root / paths.MULTITASK_SCORES)
    test_ids = prompts.filter(pl.col("set") == "test")["sample_id"]
    rating_rows = rating_prompts(cfg, root, test_ids, tokenizer)
    with progress_bar(rating_rows.height, "multitask_evaluation: rating") as advance:
        predicted = expected_ratings(model, tokenizer, rating_rows["prompt"].to_list(), star_token_ids(tokenizer),
                                     cfg.evaluation.batch_size, on_batch=advance)
    ratings = rating_rows.select("sample_id", "rating").with_columns(
        pl.lit(METHOD).alias("method"), pl.lit("test").alias("set"), pl.Series("prediction", predicted))
    write_parquet(ratings.select("method", "set", "sample_id", "rating", "prediction"),
                  root / paths.MULTITASK_RATINGS)
    metrics: dict = {name: {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height}
                     for name in EVAL_SETS for part in [scores.filter(pl.col("set") == name)]}
    error = ratings["prediction"] - ratings["rating"]
    metrics["rating"] = {"n": ratings.height, "rmse": float((error ** 2).mean() ** 0.5),
                         "mae": float(error.abs().mean())}
    metrics["scoring"] = speed
    return metrics
