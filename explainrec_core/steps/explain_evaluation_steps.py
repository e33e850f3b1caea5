"""explain_evaluation: every model that answers and explains, measured the same way on the same samples.

Variants (report method in brackets):
- `attributed` (explainrec): explain_adapter on the attributed text prompt;
- `no_attribution` (explainrec_no_attribution): the ablation, bare titles in the prompt;
- `attributed_item_tokens` (explainrec_item_tokens, the champion): explain_adapter's LoRA + the fusion of
  explain_item_token_adapter, the attributed prompt with item tokens.

Each gets: AUC on the test set (and the cold-start sets for the attributed variants), NDCG@K on the LLM's candidate
lists (each user's prompt prefix run once), and, for `attribution.explain_samples` test samples, generated
explanations (stopped after one sentence, template markers stripped): BLEU-4, ROUGE-L, faithfulness with what the
citations rest on, how often the explanation's stance contradicts its answer (attribution/faithfulness.py), and how
many ran out of tokens before their sentence ended (`unfinished`).

The pipeline trains all three; a run may skip training one (`explainrec run all --skip ...`): a variant whose
adapter is missing is not evaluated and is listed under `variants_not_trained` (the report then has no row for it).
The attributed variant, which the others are compared with, is required.

Per variant (about 20 minutes each at paper size): each finished variant's scores, explanations and lists are
kept under data/scores/parts/explain_evaluation/ with a fingerprint of its adapters, inputs and settings
(steps/partial_results.py); a rerun reuses the variants whose fingerprint still matches, so an interrupted run
resumes, and a variant trained later is evaluated without redoing the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.attribution.builder import ContextBuilder
from explainrec_core.attribution.faithfulness import faithfulness, stance_agreement
from explainrec_core.attribution.prompting import prompt_parts
from explainrec_core.attribution.response_text import clean_response, complete_sentences
from explainrec_core.config import Config
from explainrec_core.evaluation.generation import explain_after_answer
from explainrec_core.evaluation.prefix_scoring import score_shared_prefix
from explainrec_core.evaluation.ranking import llm_lists, ranking_metrics
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.evaluation.text_metrics import explanation_scores
from explainrec_core.features.item_prompts import slotted_explain_parts
from explainrec_core.features.item_token_model import score_slotted_candidates, scoring_embedder
from explainrec_core.io import write_parquet
from explainrec_core.models import adapters
from explainrec_core.progress import progress_bar
from explainrec_core.steps.explain_item_token_steps import shown_contexts, slotted_explain_prompts
from explainrec_core.steps.explain_steps import VARIANTS, context_builder
from explainrec_core.steps.item_token_steps import load_item_token_model
from explainrec_core.steps.llm_steps import EVAL_SETS, load_base
from explainrec_core.steps.partial_results import Parts, files_under, fingerprint

ITEM_TOKEN_VARIANT = "attributed_item_tokens"
RANKING_SCHEMA = {"variant": pl.String, "list": pl.Int64, "sample_id": pl.Int64, "scores": pl.List(pl.Float64)}


@dataclass
class Variant:
    """How one model scores, explains and ranks; rows are explain_prompts rows (one per sample)."""

    name: str
    sets: tuple[str, ...]
    score: Callable[[pl.DataFrame, Callable[[int], None]], np.ndarray]
    explain: Callable[[pl.DataFrame, list[float], Callable[[int], None]], list[tuple[str, str]]]
    rank: Callable[[], tuple[list[int], np.ndarray]]


def _candidate_lists(cfg: Config, root: Path) -> pl.DataFrame:
    """The first `ranking.llm_positives` candidate lists (the lists llm_ranking ranks)."""
    return llm_lists(pl.read_parquet(root / paths.RANKING_CANDIDATES), cfg.ranking.llm_positives)


def _rank(root: Path, cfg: Config, model, tokenizer, answer_ids, builder: ContextBuilder,
          attributed: bool) -> tuple[list[int], np.ndarray]:
    """Shared-prefix P(Yes) of the text prompts over the candidate lists."""
    candidates, a, grid = _candidate_lists(cfg, root), cfg.attribution, []
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


def _rank_item_tokens(root: Path, cfg: Config, model, tokenizer, answer_ids,
                      builder: ContextBuilder) -> tuple[list[int], np.ndarray]:
    """The same lists with item tokens: each user's slotted prefix (KV-cached with its soft tokens) run once."""
    candidates, a, grid = _candidate_lists(cfg, root), cfg.attribution, []
    with progress_bar(candidates.height, "explain_evaluation: ranking (with item tokens)") as advance:
        for r in candidates.iter_rows(named=True):
            parts = [slotted_explain_parts(builder.build(r["history_item_ids"], r["history_ratings"], item),
                                           a.reasons_per_item, cfg.multimodal.user_token) for item in r["candidates"]]
            grid.append(score_slotted_candidates(model, tokenizer, parts[0][0], [suffix for _, suffix in parts],
                                                 answer_ids, cfg.evaluation.batch_size * 4))
            advance(1)
    return candidates["sample_id"].to_list(), np.array(grid)


def _text_variant(cfg: Config, root: Path, name: str, model, tokenizer, answer_ids, builder) -> Variant:
    column = VARIANTS[name][1]
    batch, max_new = cfg.evaluation.batch_size, cfg.attribution.max_new_tokens
    return Variant(
        name, EVAL_SETS if name == "attributed" else ("test",),
        score=lambda rows, advance: score_yes(model, tokenizer, rows[column].to_list(), answer_ids, batch,
                                              on_batch=advance),
        explain=lambda rows, p_yes, advance: explain_after_answer(model, tokenizer, rows[column].to_list(), p_yes,
                                                                  max_new, batch, on_batch=advance),
        rank=lambda: _rank(root, cfg, model, tokenizer, answer_ids, builder, name == "attributed"))


def item_token_variant(cfg: Config, root: Path, builder: ContextBuilder,
                       adapter: str = paths.EXPLAIN_ITEM_TOKEN_ADAPTER, name: str = ITEM_TOKEN_VARIANT) -> Variant:
    """The champion (or, for the ablation runner, a variant of it saved in `adapter` and trained under `cfg`)."""
    info, model, tokenizer, slot_id = load_item_token_model(cfg, root, adapter)
    answer_ids = info["answer_token_ids"]
    batch, max_new = cfg.evaluation.batch_size, cfg.attribution.max_new_tokens

    def score(rows: pl.DataFrame, advance) -> np.ndarray:
        prompts, requests = slotted_explain_prompts(cfg, root, rows, builder)
        return score_yes(model.llm, tokenizer, prompts, answer_ids, batch, on_batch=advance,
                         embed=scoring_embedder(model, requests), slot_id=slot_id)

    def explain(rows: pl.DataFrame, p_yes: list[float], advance) -> list[tuple[str, str]]:
        prompts, requests = slotted_explain_prompts(cfg, root, rows, builder)
        return explain_after_answer(model.llm, tokenizer, prompts, p_yes, max_new, batch, on_batch=advance,
                                    embed=scoring_embedder(model, requests))

    return Variant(name, EVAL_SETS, score, explain,
                   rank=lambda: _rank_item_tokens(root, cfg, model, tokenizer, answer_ids, builder))


def _variants(cfg: Config, root: Path, builder: ContextBuilder):
    """Yield each trained variant (one model in memory at a time) and, at the end, the names of untrained ones."""
    info, base, tokenizer = load_base(root)
    if not (root / paths.EXPLAIN_ADAPTER).is_dir():
        raise FileNotFoundError(f"{root / paths.EXPLAIN_ADAPTER}: the attributed adapter is needed (explain_adapter)")
    model = None
    for name, (adapter, _) in VARIANTS.items():
        if (root / adapter).is_dir():
            model = adapters.load_adapter(base if model is None else model.unload(), root / adapter)
            yield _text_variant(cfg, root, name, model, tokenizer, info["answer_token_ids"], builder)
    del model, base
    if (root / paths.EXPLAIN_ITEM_TOKEN_ADAPTER).is_dir():
        yield item_token_variant(cfg, root, builder)


def _adapters(name: str) -> tuple[str, ...]:
    """The adapter folders a variant is loaded from (the champion: the attributed LoRA + its own fusion)."""
    if name == ITEM_TOKEN_VARIANT:
        return paths.EXPLAIN_ADAPTER, paths.EXPLAIN_ITEM_TOKEN_ADAPTER
    return (VARIANTS[name][0],)


def _missing(root: Path) -> list[str]:
    return [name for name in (*VARIANTS, ITEM_TOKEN_VARIANT) if not (root / _adapters(name)[-1]).is_dir()]


def _variant_fingerprint(cfg: Config, root: Path, name: str) -> str:
    """Everything one variant's results depend on: its adapters, the step's inputs and every setting."""
    inputs = [root / paths.BASE_MODEL, root / paths.EXPLAIN_PROMPTS, root / paths.RANKING_CANDIDATES,
              paths.resolve(paths.ITEM_FEATURES, cfg, root),
              *(paths.resolve(paths.processed(table), cfg, root)
                for table in ("samples", "interactions", "items", "item_attributes")),
              *files_under(paths.resolve(paths.KNOWLEDGE_BASE, cfg, root))]
    return fingerprint(cfg, [*inputs, *(f for folder in _adapters(name) for f in files_under(root / folder))])


def _evaluate(variant: Variant, prompts: pl.DataFrame, explain_rows: pl.DataFrame, contexts, builder):
    """One variant's metrics and its score, explanation and ranking tables."""
    chosen = prompts.filter(pl.col("set").is_in(variant.sets))
    unique = chosen.unique("sample_id").sort("sample_id")
    start = time.perf_counter()
    with progress_bar(unique.height, f"explain_evaluation: scoring {variant.name}") as advance:
        p_yes = variant.score(unique, advance)
    seconds = time.perf_counter() - start
    scores = chosen.select("set", "sample_id", "label").join(
        unique.select("sample_id").with_columns(pl.Series("p_yes", p_yes)), on="sample_id")
    m = {name: {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height}
         for name in variant.sets for part in [scores.filter(pl.col("set") == name)]}
    m["scoring_samples_per_s"] = round(unique.height / seconds, 3)

    predicted = dict(scores.unique("sample_id").select("sample_id", "p_yes").iter_rows())
    with progress_bar(explain_rows.height, f"explain_evaluation: generating {variant.name}") as advance:
        explained = variant.explain(explain_rows, [predicted[s] for s in explain_rows["sample_id"]], advance)
    raw = [answer + text for answer, text in explained]
    # What a person reads: the predicted answer + one explanation sentence (as `explain` prints it).
    generated = [clean_response(text, answer=answer) for answer, text in explained]
    m["explanations"] = {**explanation_scores(generated, explain_rows["response"].to_list()),
                         **faithfulness(contexts, generated, builder.vocabulary),
                         **stance_agreement(contexts, generated, builder.vocabulary),
                         "unfinished": sum(complete_sentences(text) == 0 for text in raw)}
    explanations = (explain_rows.select("sample_id", "user_id", "item_id", "label", "response")
                    .with_columns(pl.lit(variant.name).alias("variant"), pl.Series("generated", generated),
                                  pl.Series("generated_raw", raw)))
    list_ids, grid = variant.rank()
    m["ranking"] = {**ranking_metrics(grid), "lists": int(grid.shape[0])}
    ranking = pl.DataFrame([{"variant": variant.name, "list": i, "sample_id": sample_id, "scores": row.tolist()}
                            for i, (sample_id, row) in enumerate(zip(list_ids, grid, strict=True))],
                           schema=RANKING_SCHEMA)
    return m, {"scores": scores.with_columns(pl.lit(variant.name).alias("variant")),
               "explanations": explanations, "ranking": ranking}


def run_explain_evaluation(cfg: Config, root: Path) -> dict:
    prompts = pl.read_parquet(root / paths.EXPLAIN_PROMPTS)
    builder = context_builder(cfg, root)
    test = prompts.filter(pl.col("set") == "test").sort("sample_id")
    n_explain = cfg.attribution.explain_samples
    # A seeded random draw of the scored test samples (sample ids follow users and time: the first ones are not).
    explain_rows = test.sample(n_explain, seed=cfg.rec_prompts.seed).sort("sample_id") if 0 < n_explain < test.height \
        else test
    # The history the prompt shows (its oldest items may have been dropped to fit the cutoff): what an explanation
    # can honestly draw on, so what its citations and stance are checked against.
    contexts = shown_contexts(cfg, root, explain_rows, builder)
    metrics: dict = {"variants_not_trained": _missing(root)}
    parts = Parts(root / paths.EVALUATION_PARTS / "explain_evaluation")
    tables: dict[str, list[pl.DataFrame]] = {"scores": [], "explanations": [], "ranking": []}
    for variant in _variants(cfg, root, builder):
        key = _variant_fingerprint(cfg, root, variant.name)
        done = parts.get(variant.name, key)
        if done is None:
            parts.put(variant.name, key, *_evaluate(variant, prompts, explain_rows, contexts, builder))
            done = parts.get(variant.name, key)  # read back: a reused variant and a fresh one give the same types
        metrics[variant.name], frames = done
        for table, frame in frames.items():
            tables[table].append(frame)
    write_parquet(pl.concat(tables["scores"]).select("variant", "set", "sample_id", "label", "p_yes"),
                  root / paths.EXPLAIN_SCORES)
    write_parquet(pl.concat(tables["explanations"]), root / paths.EXPLANATIONS)
    write_parquet(pl.concat(tables["ranking"]), root / paths.EXPLAIN_RANKING)
    return metrics
