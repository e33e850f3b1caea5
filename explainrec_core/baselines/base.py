"""What every baseline shares: the training data, the `Recommender` interface and small helpers.

A baseline learns from the training period only and then scores samples exactly like the LLM does: one float
per (user, target item, history) row, higher = more likely liked, compared by AUC against the sample's label.
Most validation/test users joined after the training period (a global time split), so every model must score
users (and items) it never saw; the row's history, which the LLM sees in its prompt too, is the fair signal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl
import torch

from explainrec_core.evaluation.ranking import collect_scores, expand_candidates, ranking_metrics
from explainrec_core.evaluation.scoring import auc

SAMPLE_KEY = ("timestamp", "user_id", "item_id")


def at_or_before(timestamp: int, user: int, item: int) -> pl.Expr:
    """Rows at or before the sample key (timestamp, user_id, item_id): the training period's cut."""
    return (pl.col("timestamp") < timestamp) | (
        (pl.col("timestamp") == timestamp)
        & ((pl.col("user_id") < user) | ((pl.col("user_id") == user) & (pl.col("item_id") <= item)))
    )


@dataclass(frozen=True)
class TrainingData:
    """Everything a baseline may learn from: nothing later than the last training target."""

    train: pl.DataFrame
    """Samples of the train split (columns of samples.parquet)."""
    interactions: pl.DataFrame
    """Training-period interactions only: user_id, item_id, rating, timestamp."""
    items: pl.DataFrame
    """The item catalogue (item_id, title, year, genres): metadata, no interactions."""
    like_threshold: float
    """label = rating > like_threshold."""
    item_features: pl.DataFrame | None = None
    """The `item_features` asset, when given (only the multi-modal baselines read it): one row per item, `item_id`
    (Int64), one List(Float32) vector column per modality (`text`, `attributes`, `collaborative`, `image`; null
    where the item lacks it) and a boolean `has_<modality>` per vector column. Those baselines read its content
    columns only (text, attributes, image): `collaborative` is another model's output."""

    @classmethod
    def from_tables(cls, samples: pl.DataFrame, interactions: pl.DataFrame, items: pl.DataFrame,
                    like_threshold: float, *, item_features: pl.DataFrame | None = None) -> TrainingData:
        train = samples.filter(pl.col("split") == "train")
        if train.is_empty():
            raise ValueError("samples have no 'train' split: nothing to train on")
        # The training period ends at the last training target. Samples are cut by position in
        # (timestamp, user_id, item_id) order, so an interaction with the same timestamp may still be a validation
        # target: compare the whole key (as the cold-start sets do), not the timestamp alone.
        ts, user, item = train.sort(*SAMPLE_KEY).select(SAMPLE_KEY).row(-1)
        period = interactions.filter(at_or_before(ts, user, item)).select("user_id", "item_id", "rating",
                                                                           "timestamp")
        return cls(train=train, interactions=period, items=items, like_threshold=float(like_threshold),
                   item_features=item_features)

    def liked(self) -> pl.DataFrame:
        """Training-period interactions that are likes (rating > like_threshold)."""
        return self.interactions.filter(pl.col("rating") > self.like_threshold)


@runtime_checkable
class Recommender(Protocol):
    name: str

    def fit(self, data: TrainingData, seed: int, valid: pl.DataFrame | None = None) -> dict:
        """Train; returns statistics (epochs, seconds, final loss, and with `valid` its metric per epoch).

        `valid` is either samples (metric: AUC of their labels) or candidate lists of evaluation.ranking (metric:
        NDCG@10 of the positive), see `validation_metric`. It is only ever evaluated, never trained on, and never
        changes the fitted model."""
        ...

    def score(self, batch: pl.DataFrame) -> np.ndarray:
        """One finite float per row of (user_id, item_id, history_item_ids, history_ratings)."""
        ...


# --- helpers shared by the models ---

def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's global generator (parameter init, dropout) and return a numpy generator for sampling."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous setting.

    These models are tiny (thousands of rows of 64 floats): with 2 threads, embedding backward passes were ~10x
    slower than with one on the 2-core development machine (thread hand-off costs more than the work), and one
    thread also makes the float summation order, hence the fitted weights, independent of the machine's cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


VALID_NDCG_K = 10


def validation_metric(valid: pl.DataFrame) -> str:
    """The metric a validation frame is judged by: the protocol it belongs to.

    Samples (a `label` per row) are the AUC protocol; candidate lists (a `candidates` column: the positive first,
    then sampled unrated items) are the ranking protocol. A model is tuned for one protocol at a time: negatives
    that help telling liked from disliked rated items (AUC) hurt finding the liked item among unrated ones."""
    return f"ndcg@{VALID_NDCG_K}" if "candidates" in valid.columns else "auc"


def validate(model: Recommender, valid: pl.DataFrame) -> float | None:
    """`validation_metric(valid)` of the model's scores on `valid`."""
    if validation_metric(valid) == "auc":
        return auc(valid["label"].to_numpy(), model.score(valid))
    if valid.is_empty():
        return None
    expanded = expand_candidates(valid)
    grid = collect_scores(expanded, model.score(expanded), valid["candidates"].list.len()[0])
    return ranking_metrics(grid, ks=(VALID_NDCG_K,))[f"ndcg@{VALID_NDCG_K}"]


def validation_stats(model: Recommender, valid: pl.DataFrame, curve: list[float | None] | None = None) -> dict:
    """Statistics of a fit with a validation frame: the metric's name, its final value and its per-epoch curve."""
    name = validation_metric(valid)
    stats: dict = {"valid_metric": name}
    if curve:
        stats[f"valid_{name}_curve"] = curve
    stats[f"valid_{name}"] = curve[-1] if curve else validate(model, valid)
    return stats


class IdIndex:
    """Raw ids <-> contiguous indices 0..n-1 (sorted ids); unknown ids map to -1."""

    def __init__(self, ids) -> None:
        self.ids = np.unique(np.asarray(ids, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.ids, ids), 0, len(self.ids) - 1)
        return np.where(self.ids[pos] == ids, pos, -1)


def history_long(batch: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histories flattened: (row index in batch, item_id, rating) for every history entry, oldest first."""
    lists = batch.select(
        pl.col("history_item_ids").fill_null([]).alias("items"),
        pl.col("history_ratings").fill_null([]).alias("ratings"),
    ).with_row_index("row")
    flat = lists.explode("items", "ratings").drop_nulls("items")
    return (flat["row"].to_numpy().astype(np.int64), flat["items"].to_numpy().astype(np.int64),
            flat["ratings"].fill_null(np.nan).to_numpy().astype(np.float64))


def mean_of_liked_history(item_vectors: torch.Tensor, item_index: IdIndex, batch: pl.DataFrame,
                          like_threshold: float) -> torch.Tensor:
    """Per row, the mean vector of the history items the user liked (zeros when none): a 'folded-in' user.

    This is how the collaborative models score users they never saw in training (most validation/test users):
    the user is represented by the items they are known to like, which the LLM reads in its prompt too."""
    rows, items, ratings = history_long(batch)
    idx = item_index.lookup(items)
    keep = (idx >= 0) & (ratings > like_threshold)
    rows_t, idx_t = torch.from_numpy(rows[keep]), torch.from_numpy(idx[keep])
    sums = torch.zeros(batch.height, item_vectors.shape[1], dtype=item_vectors.dtype)
    sums.index_add_(0, rows_t, item_vectors[idx_t])
    counts = torch.zeros(batch.height, dtype=item_vectors.dtype).index_add_(
        0, rows_t, torch.ones(len(rows_t), dtype=item_vectors.dtype))
    return sums / counts.clamp(min=1).unsqueeze(1)


class NegativeSampler:
    """Draws, for each user index, an item index the user did not like in the training period.

    With probability `disliked_rate` (when the user has any) the item is one the user rated and did NOT like:
    such "hard" negatives teach liked-vs-disliked among rated items, which is what the AUC over samples measures;
    uniform negatives over the catalogue mostly teach popularity. Otherwise the draw is uniform over the
    catalogue, redrawn while it hits a liked item (vectorised rejection sampling; after `tries` rounds the rare
    leftovers keep their last draw)."""

    def __init__(self, n_users: int, n_items: int, liked: tuple[np.ndarray, np.ndarray],
                 disliked: tuple[np.ndarray, np.ndarray], disliked_rate: float = 0.0, tries: int = 20) -> None:
        self.n_items, self.disliked_rate, self.tries = n_items, disliked_rate, tries
        self.liked_keys = np.unique(liked[0] * n_items + liked[1])
        # CSR layout of each user's disliked items: user u's are items[ptr[u]:ptr[u + 1]].
        order = np.argsort(disliked[0], kind="stable")
        self.disliked_items = disliked[1][order]
        self.disliked_ptr = np.concatenate([[0], np.cumsum(np.bincount(disliked[0], minlength=n_users))])

    def __call__(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        neg = rng.integers(0, self.n_items, size=len(users))
        for _ in range(self.tries):
            keys = users * self.n_items + neg
            pos = np.clip(np.searchsorted(self.liked_keys, keys), 0, max(len(self.liked_keys) - 1, 0))
            hit = self.liked_keys[pos] == keys if len(self.liked_keys) else np.zeros(len(users), dtype=bool)
            if not hit.any():
                break
            neg[hit] = rng.integers(0, self.n_items, size=int(hit.sum()))
        if self.disliked_rate > 0 and len(self.disliked_items):
            count = self.disliked_ptr[users + 1] - self.disliked_ptr[users]
            hard = (rng.random(len(users)) < self.disliked_rate) & (count > 0)
            pick = self.disliked_ptr[users] + (rng.random(len(users)) * count).astype(np.int64)
            neg = np.where(hard, self.disliked_items[np.minimum(pick, len(self.disliked_items) - 1)], neg)
        return neg


def disliked_pairs(data: TrainingData, user_index: IdIndex, item_index: IdIndex) -> tuple[np.ndarray, np.ndarray]:
    """(user index, item index) of the training-period ratings that are not likes, for indexed users/items."""
    disliked = data.interactions.filter(pl.col("rating") <= data.like_threshold)
    users = user_index.lookup(disliked["user_id"].to_numpy())
    items = item_index.lookup(disliked["item_id"].to_numpy())
    keep = (users >= 0) & (items >= 0)
    return users[keep], items[keep]


def catalogue_ids(data: TrainingData) -> np.ndarray:
    """Every item a model should have a row for: the catalogue plus any item of the training interactions."""
    return np.concatenate([data.items["item_id"].to_numpy(), data.interactions["item_id"].to_numpy()])


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)


def liked_pairs(data: TrainingData, item_index: IdIndex, disliked_rate: float
                ) -> tuple[IdIndex, np.ndarray, np.ndarray, int, int, NegativeSampler]:
    """What the graph models train on: (user index of the users with a like, their liked pairs as user and item
    indices, n_users, n_items (at least 1 each: never an empty table), the negative sampler)."""
    liked = data.liked()
    user_index = IdIndex(liked["user_id"].to_numpy())
    users = user_index.lookup(liked["user_id"].to_numpy())
    items = item_index.lookup(liked["item_id"].to_numpy())
    n_users, n_items = max(len(user_index), 1), max(len(item_index), 1)
    sampler = NegativeSampler(n_users, n_items, (users, items), disliked_pairs(data, user_index, item_index),
                              disliked_rate)
    return user_index, users, items, n_users, n_items, sampler


@torch.no_grad()
def score_folded_in(user_final: torch.Tensor, item_final: torch.Tensor, user_index: IdIndex, item_index: IdIndex,
                    batch: pl.DataFrame, like_threshold: float) -> np.ndarray:
    """user . item for each row: the learned user vector, or for users unseen in training the mean vector of the
    liked history items (`mean_of_liked_history`); unknown items score 0."""
    u = user_index.lookup(batch["user_id"].to_numpy())
    i = item_index.lookup(batch["item_id"].to_numpy())
    folded = mean_of_liked_history(item_final, item_index, batch, like_threshold)
    learned = user_final[torch.from_numpy(np.maximum(u, 0))]
    u_vec = torch.where(torch.from_numpy(u >= 0).unsqueeze(1), learned, folded)
    s = (u_vec * item_final[torch.from_numpy(np.maximum(i, 0))]).sum(-1)
    return torch.where(torch.from_numpy(i >= 0), s, torch.zeros_like(s)).numpy().astype(np.float64)
