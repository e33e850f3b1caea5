"""Preference-attribution steps: item attributes -> per-user reasons -> explained prompts -> the attributed
model (and its "w/o preference attribution" ablation) -> AUC, ranking and explanation quality.

The attributed model is trained exactly like the TALLRec rec adapter (from the stage-1 Alpaca adapter, early
stopping on validation AUC, the same sample sets) except for the prompt (reasons and target attributes), the
response (answer + reference explanation) and the loss (training/joint_loss.py). The ablation differs from it
only in the prompt: the same history titles without reasons or target attributes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.attribution.attributes import attribute_stats, item_attributes
from explainrec_core.attribution.builder import ContextBuilder
from explainrec_core.attribution.explanations import parse_citations, review_reference
from explainrec_core.attribution.faithfulness import faithfulness, stance_agreement
from explainrec_core.attribution.preferences import user_preference_table
from explainrec_core.attribution.prompting import fit_explained_prompt, prompt_parts
from explainrec_core.attribution.response_text import clean_response, complete_sentences, split_answer
from explainrec_core.config import Config
from explainrec_core.evaluation.generation import explain_after_answer
from explainrec_core.evaluation.prefix_scoring import score_shared_prefix
from explainrec_core.evaluation.ranking import llm_lists, ranking_metrics
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.evaluation.text_metrics import explanation_scores
from explainrec_core.io import write_parquet
from explainrec_core.models import adapters
from explainrec_core.models.base_model import cache_dir, load_tokenizer
from explainrec_core.progress import progress_bar
from explainrec_core.steps.data_steps import local_raw_dir, read_processed
from explainrec_core.steps.llm_steps import (
    EVAL_SETS,
    _as_dict,
    _base_info,
    _checkpoint_dir,
    _finish,
    _fit,
    _scorer,
    _sha256,
    load_base,
)
from explainrec_core.training.joint_loss import encode_explained, make_joint_loss

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
    builder = context_builder(cfg, root)
    tokenizer = load_tokenizer(Path(_base_info(root)["path"]))
    a = cfg.attribution

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

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
    evaluate = _scorer(tokenizer, answer_ids, valid_rows[column].to_list(), valid_rows["label"].to_list(),
                       cfg.evaluation.batch_size)
    name = "explain_adapter" if variant == "attributed" else "explain_adapter_ablation"
    ckpt = _checkpoint_dir(root, name, info, cfg.llm_training, cfg.attribution.loss,
                           _sha256(root / paths.EXPLAIN_PROMPTS), column,
                           _sha256(root / paths.ALPACA_ADAPTER / adapters.WEIGHTS))
    loss_fn = make_joint_loss(cfg.attribution.loss, tokenizer, answer_ids)
    result = _fit(name, lora_model, tokenizer, examples, cfg.llm_training, ckpt, evaluate=evaluate,
                  loss_fn=loss_fn)
    card = {"name": name,
            "description": ("Preference-attributed recommender: answers Yes./No. and explains why, trained with the "
                            "joint loss (answer + explanation + consistency)" +
                            ("." if variant == "attributed" else "; ablation without reasons in the prompt.")),
            "base_model": info["source"], "base_model_source": info, "prompt_column": column,
            "data": {"file": paths.EXPLAIN_PROMPTS, "sha256": _sha256(root / paths.EXPLAIN_PROMPTS),
                     "train_examples": len(examples), "valid_samples": valid_rows.height,
                     "skipped_longer_than_cutoff": skipped},
            "lora": _as_dict(cfg.lora), "training": _as_dict(cfg.llm_training),
            "loss_weights": _as_dict(cfg.attribution.loss),
            "metrics": {"best_valid_auc": result.best_metric, "best_step": result.best_step,
                        "valid_auc_by_step": result.evals}}
    summary = _finish(name, target, lora_model, result, card, root, ckpt, model)
    return {**summary, "examples": len(examples), "skipped_longer_than_cutoff": skipped,
            "valid_auc": result.best_metric, "own_explanations_generated": loss_fn.generated}


def run_explain_adapter(cfg: Config, root: Path) -> dict:
    return _train_variant(cfg, root, "attributed")


def run_explain_adapter_ablation(cfg: Config, root: Path) -> dict:
    return _train_variant(cfg, root, "no_attribution")


def _rank(root: Path, cfg: Config, model, tokenizer, answer_ids, builder: ContextBuilder,
          attributed: bool) -> tuple[list[int], np.ndarray]:
    """Shared-prefix P(Yes) for the first `ranking.llm_positives` candidate lists (the lists llm_ranking ranks)."""
    candidates = llm_lists(pl.read_parquet(root / paths.RANKING_CANDIDATES), cfg.ranking.llm_positives)
    a, grid = cfg.attribution, []
    with progress_bar(candidates.height, f"explain_evaluation: ranking ({'with' if attributed else 'w/o'} "
                                         "attribution)") as advance:
        for r in candidates.iter_rows(named=True):
            contexts = [builder.build(r["history_item_ids"], r["history_ratings"], item) for item in r["candidates"]]
            prefix = prompt_parts(contexts[0], attributed, a.reasons_per_item)[0]
            suffixes = [prompt_parts(c, attributed, a.reasons_per_item)[1] for c in contexts]
            grid.append(score_shared_prefix(model, tokenizer, prefix, suffixes, answer_ids,
                                            batch_size=cfg.evaluation.batch_size * 4))
            advance(1)
    return candidates["sample_id"].to_list(), np.array(grid)


def run_explain_evaluation(cfg: Config, root: Path) -> dict:
    """For both variants: AUC (test; cold-start sets for the attributed model), NDCG@K on the LLM's candidate lists,
    and, for `attribution.explain_samples` test samples, the generated explanations (stopped after one sentence,
    template markers stripped): BLEU-4, ROUGE-L, faithfulness with what the citations rest on, how often the
    explanation's stance contradicts its answer (attribution/faithfulness.py), and how many ran out of tokens
    before their sentence ended (`unfinished`)."""
    info, base, tokenizer = load_base(root)
    answer_ids = info["answer_token_ids"]
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    builder = context_builder(cfg, root)
    samples = read_processed(cfg, root, "samples")
    n_explain = cfg.attribution.explain_samples
    test = prompts.filter(pl.col("set") == "test").sort("sample_id")
    # A seeded random draw of the scored test samples (sample ids follow users and time: the first ones are not).
    explain_rows = test.sample(n_explain, seed=cfg.rec_prompts.seed).sort("sample_id") if 0 < n_explain < test.height \
        else test
    dropped = dict(explain_rows.select("sample_id", "n_history_dropped").iter_rows())
    # The history the prompt shows (its oldest items may have been dropped to fit the cutoff): what an explanation
    # can honestly draw on, so what its citations and stance are checked against.
    contexts = {r["sample_id"]: builder.build(r["history_item_ids"][dropped[r["sample_id"]]:],
                                              r["history_ratings"][dropped[r["sample_id"]]:], r["item_id"])
                for r in samples.join(explain_rows.select("sample_id"), on="sample_id").iter_rows(named=True)}
    metrics: dict = {}
    score_frames, explanation_frames, ranking_rows = [], [], []
    model = None
    for variant, (adapter, column) in VARIANTS.items():
        model = adapters.load_adapter(base if model is None else model.unload(), root / adapter)
        sets = EVAL_SETS if variant == "attributed" else ("test",)
        chosen = prompts.filter(pl.col("set").is_in(sets))
        unique = chosen.unique("sample_id").sort("sample_id")
        start = time.perf_counter()
        with progress_bar(unique.height, f"explain_evaluation: scoring {variant}") as advance:
            p_yes = score_yes(model, tokenizer, unique[column].to_list(), answer_ids, cfg.evaluation.batch_size,
                              on_batch=advance)
        seconds = time.perf_counter() - start
        scores = chosen.select("set", "sample_id", "label").join(
            unique.select("sample_id").with_columns(pl.Series("p_yes", p_yes)), on="sample_id")
        score_frames.append(scores.with_columns(pl.lit(variant).alias("variant")))
        m = {name: {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height}
             for name in sets for part in [scores.filter(pl.col("set") == name)]}
        m["scoring_samples_per_s"] = round(unique.height / seconds, 3)

        with progress_bar(explain_rows.height, f"explain_evaluation: generating {variant}") as advance:
            predicted = dict(scores.unique("sample_id").select("sample_id", "p_yes").iter_rows())
            explained = explain_after_answer(model, tokenizer, explain_rows[column].to_list(),
                                             [predicted[s] for s in explain_rows["sample_id"]],
                                             cfg.attribution.max_new_tokens, cfg.evaluation.batch_size,
                                             on_batch=advance)
        raw = [answer + text for answer, text in explained]
        # What a person reads: the predicted answer + one explanation sentence (as `explain` prints it).
        generated = [clean_response(text, answer=answer) for answer, text in explained]
        ctx = [contexts[s] for s in explain_rows["sample_id"]]
        m["explanations"] = {**explanation_scores(generated, explain_rows["response"].to_list()),
                             **faithfulness(ctx, generated, builder.vocabulary),
                             **stance_agreement(ctx, generated, builder.vocabulary),
                             "unfinished": sum(complete_sentences(text) == 0 for text in raw)}
        explanation_frames.append(explain_rows.select("sample_id", "user_id", "item_id", "label", "response")
                                  .with_columns(pl.lit(variant).alias("variant"), pl.Series("generated", generated),
                                                pl.Series("generated_raw", raw)))
        list_ids, grid = _rank(root, cfg, model, tokenizer, answer_ids, builder, variant == "attributed")
        m["ranking"] = ranking_metrics(grid)
        m["ranking"]["lists"] = int(grid.shape[0])
        ranking_rows += [{"variant": variant, "list": i, "sample_id": sample_id, "scores": row.tolist()}
                         for i, (sample_id, row) in enumerate(zip(list_ids, grid, strict=True))]
        metrics[variant] = m
    write_parquet(pl.concat(score_frames).select("variant", "set", "sample_id", "label", "p_yes"),
                  root / paths.EXPLAIN_SCORES)
    write_parquet(pl.concat(explanation_frames), root / paths.EXPLANATIONS)
    write_parquet(pl.DataFrame(ranking_rows), root / paths.EXPLAIN_RANKING)
    return metrics
