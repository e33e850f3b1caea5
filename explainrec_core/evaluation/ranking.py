"""The ranking protocol shared by every method: 1 liked target + N sampled unseen items, Hit@K / NDCG@K / MRR.

For each liked target (label 1) of a split we draw `n_negatives` distinct items the user never interacted with
(anywhere in the interactions, any time), uniformly from all items in the interactions. Every method scores the
same candidate lists (`expand_candidates` turns them into one row per (sample, candidate) for any pointwise
scorer, `collect_scores` reshapes the scores back) and `ranking_metrics` ranks the positive among them.

Negatives are drawn with a numpy Generator seeded by (seed, sample_id), so a sample's candidates do not depend
on the order of the rows, on which other samples are present, or on `max_positives`.

The LLM rankers are far slower than the baselines and rank only a few of the lists. Which ones is drawn here, once,
as a seeded random order of the lists (`llm_order`), and every LLM ranker takes its lists through `llm_lists`: a
random draw of the liked targets (the earliest targets would be the users and weeks that start the test period),
and the same draw for every reader.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from explainrec_core.io import write_parquet

CANDIDATE_COLUMNS = ("sample_id", "user_id", "item_id", "candidates", "history_item_ids", "history_ratings",
                     "llm_order")
EXPANDED_COLUMNS = ("sample_id", "position", "user_id", "item_id", "history_item_ids", "history_ratings")


def _empty_candidates(samples: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(schema={"sample_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64,
                                "candidates": pl.List(pl.Int64),
                                "history_item_ids": samples.schema["history_item_ids"],
                                "history_ratings": samples.schema["history_ratings"], "llm_order": pl.Int64})


def build_candidates(samples: pl.DataFrame, interactions: pl.DataFrame, *, n_negatives: int = 99, seed: int = 0,
                     split: str = "test", max_positives: int = 0) -> pl.DataFrame:
    """Candidate lists for the liked targets of `split`: the positive first, then `n_negatives` unseen items.

    `max_positives > 0` keeps a seeded subset of the positives. Output (sorted by sample_id): sample_id, user_id,
    item_id (the positive), candidates (list[i64]), history_item_ids, history_ratings, llm_order (a seeded random
    permutation 0..n-1 of the lists: the order in which the LLM rankers draw them, see `llm_lists`).
    Raises ValueError when a user has fewer than `n_negatives` unseen items.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    positives = samples.filter((pl.col("split") == split) & (pl.col("label") == 1)).sort("sample_id")
    draw = np.random.default_rng(seed)  # which positives are kept, then the order the LLM rankers take them in
    if 0 < max_positives < positives.height:
        keep = np.sort(draw.choice(positives.height, size=max_positives, replace=False))
        positives = positives[keep]
    if positives.height == 0:
        return _empty_candidates(samples)
    if positives["sample_id"].min() < 0:
        raise ValueError("sample_id must be >= 0 (it seeds the negatives)")

    all_items = np.unique(interactions["item_id"].to_numpy())
    users = set(positives["user_id"].to_list())
    seen_frame = (interactions.filter(pl.col("user_id").is_in(list(users)))
                  .group_by("user_id").agg(pl.col("item_id").unique()))
    seen = {u: np.asarray(items, dtype=np.int64) for u, items in seen_frame.iter_rows()}

    unseen_cache: dict[int, np.ndarray] = {}
    candidates = []
    for sample_id, user, positive in positives.select("sample_id", "user_id", "item_id").iter_rows():
        if user not in unseen_cache:
            unseen_cache[user] = np.setdiff1d(all_items, seen.get(user, np.empty(0, np.int64)), assume_unique=True)
        # The positive is an interaction of the user in real data; exclude it anyway for hand-built inputs.
        negatives = _draw(unseen_cache[user], positive, n_negatives, np.random.default_rng([seed, sample_id]),
                          f"user {user} has only {{n}} unseen items, fewer than n_negatives={n_negatives} "
                          f"(sample {sample_id})")
        candidates.append([int(positive), *map(int, negatives)])

    return positives.select(
        "sample_id", "user_id", "item_id",
        pl.Series("candidates", candidates, dtype=pl.List(pl.Int64)),
        "history_item_ids", "history_ratings",
        pl.Series("llm_order", draw.permutation(positives.height), dtype=pl.Int64),
    )


def unseen_negatives(rows: pl.DataFrame, rated: pl.DataFrame, catalogue: np.ndarray, k: int,
                     seed: int) -> pl.DataFrame:
    """Training negatives of the ranking protocol: for each row (sample_id, user_id, item_id), `k` catalogue items
    the user did not rate in `rated` (user_id, item_id: the training period), never the row's item; seeded per
    sample as build_candidates' lists are. Output: sample_id, user_id, item_id (the negative), one row each.
    Raises ValueError when a user has fewer than `k` such items."""
    seen_frame = rated.group_by("user_id").agg(pl.col("item_id").unique())
    seen = {u: np.asarray(items, dtype=np.int64) for u, items in seen_frame.iter_rows()}
    catalogue = np.unique(np.asarray(catalogue, dtype=np.int64))
    out = []
    for sample_id, user, item in rows.select("sample_id", "user_id", "item_id").iter_rows():
        unseen = np.setdiff1d(catalogue, seen.get(user, np.empty(0, np.int64)), assume_unique=True)
        drawn = _draw(unseen, item, k, np.random.default_rng([seed, sample_id, 1]),  # not the test lists' stream
                      f"user {user} has only {{n}} unrated items, fewer than {k} (sample {sample_id})")
        out.extend((sample_id, user, int(i)) for i in drawn)
    return pl.DataFrame(out, schema={"sample_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64}, orient="row")


def _draw(pool: np.ndarray, exclude: int, k: int, rng: np.random.Generator, too_few: str) -> np.ndarray:
    """k distinct items of `pool` other than `exclude`; ValueError(too_few with {n} = what is left) if too few."""
    pool = pool[pool != exclude]
    if pool.size < k:
        raise ValueError(too_few.format(n=pool.size))
    return rng.choice(pool, size=k, replace=False)


def write_list_scores(rows: list[dict], path) -> dict:
    """Save an LLM ranker's scores (one row per list: sample_id, scores with the positive first) as parquet and
    return their ranking metrics ({"n": 0} for no list)."""
    table = pl.DataFrame(rows, schema={"sample_id": pl.Int64, "scores": pl.List(pl.Float64)})
    write_parquet(table, path)
    return ranking_metrics(np.array(table["scores"].to_list())) if table.height else {"n": 0}


def llm_lists(cands: pl.DataFrame, n: int) -> pl.DataFrame:
    """The `n` candidate lists the LLM rankers rank (all when fewer): the first `n` of the seeded `llm_order`
    draw, in that order, so a larger `n` only adds lists. Every LLM ranker must select its lists here."""
    if "llm_order" not in cands.columns:
        raise ValueError("candidate lists have no 'llm_order' column: rebuild them (build_candidates)")
    return cands.filter(pl.col("llm_order") < n).sort("llm_order")


def expand_candidates(cands: pl.DataFrame) -> pl.DataFrame:
    """One row per (sample, candidate): sample_id, position (0 = the positive), user_id, item_id (the candidate),
    history_item_ids, history_ratings; rows in the order of `cands`, positions in order."""
    return (cands.with_columns(pl.int_ranges(0, pl.col("candidates").list.len()).alias("position"))
            .drop("item_id").explode(["candidates", "position"])
            .rename({"candidates": "item_id"})
            .with_columns(pl.col("position").cast(pl.Int64))
            .select(*EXPANDED_COLUMNS))


def collect_scores(expanded: pl.DataFrame, scores: np.ndarray, n_candidates: int) -> np.ndarray:
    """Pointwise scores of `expand_candidates` rows back to (n_rows, n_candidates), positive in column 0.

    Checks that `expanded` is still in expansion order (positions 0..n-1 per sample, one sample per block),
    so a reordered frame raises instead of silently scrambling the candidates.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != expanded.height:
        raise ValueError(f"{len(scores)} scores for {expanded.height} expanded rows")
    if n_candidates < 1 or expanded.height % n_candidates:
        raise ValueError(f"{expanded.height} rows are not a whole number of {n_candidates}-candidate lists")
    n_rows = expanded.height // n_candidates
    positions = expanded["position"].to_numpy().reshape(n_rows, n_candidates)
    if not (positions == np.arange(n_candidates)).all():
        raise ValueError("expanded rows are not in expansion order (positions 0..n-1 per sample)")
    sample_ids = expanded["sample_id"].to_numpy().reshape(n_rows, n_candidates)
    if not (sample_ids == sample_ids[:, :1]).all():
        raise ValueError("expanded rows mix samples within one candidate list")
    return scores.reshape(n_rows, n_candidates)


def positive_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of column 0 among its row; ties count against the positive (see `ranking_metrics`)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (n_rows, 1 + n_negatives) with n_negatives >= 1, got {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: a NaN positive would otherwise rank first")
    return 1 + (scores[:, 1:] >= scores[:, :1]).sum(axis=1)


def ranking_metrics(scores: np.ndarray, ks: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """Hit@K, NDCG@K for each K, MRR and n, for `scores` (n_rows, 1 + n_negatives) with the positive in column 0.

    rank = 1 + #(negatives scoring > positive) + #(negatives scoring == positive). Ties are counted
    pessimistically: with optimistic (or "strictly higher only") ties a constant scorer, or a model whose P(Yes)
    saturates at 1.0 in low precision, would put every positive at rank 1 and get perfect metrics; pessimistic ties
    give it the worst rank, so a model must actually separate the positive to earn credit. With one relevant item,
    NDCG@K = 1 / log2(rank + 1) when rank <= K, else 0 (the ideal DCG is 1).
    """
    ranks = positive_ranks(scores)
    if len(ranks) == 0:
        raise ValueError("no rows to rank")
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be >= 1, got {k}")
        hit = ranks <= k
        out[f"hit@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    out["mrr"] = float((1.0 / ranks).mean())
    out["n"] = len(ranks)
    return out
