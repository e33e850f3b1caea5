"""Chat-REC (Gao et al. 2023, arXiv 2303.14524; the paper's Table I): an instruction-tuned LLM, untuned, asked in
its own chat format whether the user will like the target, given the user's rated history and the candidates a
collaborative-filtering model retrieved for them. Zero-shot: no LoRA, no training on recommendation data.

Same protocol as every other method: the test and cold-start samples of `rec_prompts` (same seeded subsets, joined
on sample_id), P(Yes) from the answer-token logits at the assistant's first token, AUC against the label.

Retrieval: item-based CF (cosine similarity of items' training-period like vectors, ItemKNN), the user's liked
history items' similarities summed; the top `chatrec.candidates` items the user has not rated are listed, best
first. Chat-REC uses the CF model's candidates as context for the LLM's re-ranking: whether the target is among
them is the collaborative signal the untuned LLM can read.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core import paths
from explainrec_core.baselines.base import IdIndex, TrainingData
from explainrec_core.config import Config
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.io import write_parquet
from explainrec_core.models.base_model import answer_token_ids
from explainrec_core.progress import progress_bar
from explainrec_core.prompts import quote_item
from explainrec_core.steps.data_steps import read_processed
from explainrec_core.steps.llm_steps import EVAL_SETS, load_base

SYSTEM = "You are a movie recommender. Answer with Yes or No."


class ItemKNN:
    """Cosine similarity between items' training-period like vectors (users as dimensions)."""

    def __init__(self, data: TrainingData) -> None:
        liked = data.liked()
        self.items = IdIndex(data.items["item_id"].to_numpy())
        users = IdIndex(liked["user_id"].to_numpy())
        matrix = np.zeros((len(self.items), max(len(users), 1)), dtype=np.float32)
        rows, cols = self.items.lookup(liked["item_id"].to_numpy()), users.lookup(liked["user_id"].to_numpy())
        keep = rows >= 0
        matrix[rows[keep], cols[keep]] = 1.0
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit = matrix / np.maximum(norms, 1e-12)
        self.similarity = unit @ unit.T
        np.fill_diagonal(self.similarity, 0.0)

    def retrieve(self, history: list[int], ratings: list[float], like_threshold: float, n: int) -> list[int]:
        """The n items most similar to the liked history items (none rated in the history), best first; ties and
        a history with no liked item fall back to item order (a deterministic, uninformative list)."""
        liked = self.items.lookup([i for i, r in zip(history, ratings, strict=True) if r > like_threshold])
        scores = self.similarity[liked[liked >= 0]].sum(axis=0) if (liked >= 0).any() else np.zeros(len(self.items))
        rated = self.items.lookup(history)
        scores[rated[rated >= 0]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:n]
        return self.items.ids[top].tolist()


def chatrec_message(history: list[tuple[str, float]], candidates: list[str], target: str) -> str:
    """The user turn: rated history (oldest first), the retrieved candidates, the question."""
    rated = ", ".join(f"{title} ({rating:g} stars)" for title, rating in history) or "none yet"
    return (f"A user rated these movies (1-5 stars): {rated}.\n"
            f"A collaborative-filtering recommender retrieved these candidate movies for the user, best first: "
            f"{', '.join(candidates)}.\n"
            f"Will the user like the movie {target}? Answer Yes or No.")


def chat_prompt(tokenizer, message: str) -> str:
    """The model's own chat format, ending where the assistant's answer starts."""
    return tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}],
                                         tokenize=False, add_generation_prompt=True)


def run_chatrec_evaluation(cfg: Config, root: Path) -> dict:
    info, model, tokenizer = load_base(root)
    samples, items = read_processed(cfg, root, "samples"), read_processed(cfg, root, "items")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"), items,
                                    cfg.samples.like_threshold)
    knn = ItemKNN(data)
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    chosen = pl.read_parquet(root / paths.REC_PROMPTS).filter(pl.col("set").is_in(EVAL_SETS)).select(
        "set", "sample_id")
    rows = samples.join(chosen.unique("sample_id"), on="sample_id", how="semi").sort("sample_id")
    prompts, hits = [], 0
    for r in rows.iter_rows(named=True):
        # the last history_len ratings, as in every other prompt; a long history is cut oldest first
        history = list(zip(r["history_item_ids"], r["history_ratings"], strict=True))[-cfg.samples.history_len:]
        found = knn.retrieve([i for i, _ in history], [x for _, x in history], cfg.samples.like_threshold,
                             cfg.chatrec.candidates)
        hits += r["item_id"] in found
        prompts.append(chat_prompt(tokenizer, chatrec_message([(titles[i], x) for i, x in history],
                                                             [titles[i] for i in found], titles[r["item_id"]])))
    # the first token of "Yes."/"No." as it follows the assistant header in this chat format
    answers = answer_token_ids(tokenizer, chat_prompt(tokenizer, "?"))
    start = time.perf_counter()
    with progress_bar(len(prompts), "chatrec_evaluation: scoring (untuned LLM)") as advance:
        p_yes = score_yes(model, tokenizer, prompts, answers, cfg.evaluation.batch_size, on_batch=advance)
    seconds = time.perf_counter() - start
    scores = chosen.join(rows.select("sample_id", "label").with_columns(pl.Series("p_yes", p_yes)), on="sample_id")
    write_parquet(scores.sort("set", "sample_id"), root / paths.CHATREC_SCORES)
    metrics: dict = {name: {"auc": auc(part["label"].to_list(), part["p_yes"].to_list()), "n": part.height}
                     for name in EVAL_SETS for part in [scores.filter(pl.col("set") == name)]}
    return {**metrics, "candidates": cfg.chatrec.candidates, "target_among_candidates": round(hits / len(prompts), 4),
            "answer_token_ids": answers, "base_model": info["source"],
            "scoring": {"samples": len(prompts), "seconds": round(seconds, 2),
                        "samples_per_s": round(len(prompts) / seconds, 3)}}
