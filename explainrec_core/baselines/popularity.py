"""Popularity: how many users liked the item in the training period, the same score for every user.

The weakest sensible baseline and the fallback of every personalised model: an LLM recommender that cannot beat
it has learned nothing about the user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from explainrec_core.baselines.base import IdIndex, Timer, TrainingData, validation_stats


@dataclass(frozen=True)
class PopularityConfig:
    """Score = log(likes + smoothing), likes counted over the training-period interactions.

    `smoothing` (a pseudo-count) keeps the log finite and gives every item unseen in training the score of an
    item with zero likes; the log does not change any ranking, it only keeps scores on a readable scale.
    Nothing to tune (no setting changes the ranking): valid AUC 0.6134 on real ML-100K (deterministic). For
    reference, ranking by the item's smoothed like *rate* instead, (likes + 5 * 0.55) / (ratings + 5), gave
    valid AUC 0.6905: what matters for rated items is how often an item is liked, not how often it is rated;
    that is a different model (an item average), not this baseline."""

    smoothing: float = 1.0


class Popularity:
    name = "popularity"

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()

    def fit(self, data: TrainingData, seed: int = 0, valid: pl.DataFrame | None = None) -> dict:
        timer = Timer()
        likes = data.liked().group_by("item_id").agg(pl.len().alias("likes")).sort("item_id")
        self.index = IdIndex(likes["item_id"].to_numpy())  # sorted, so rows of `likes` line up with the index
        # one score per indexed item, then the score of an item nobody liked last: index -1 (unknown) lands there
        counts = np.append(likes["likes"].to_numpy().astype(np.float64), 0.0)
        self.item_scores = np.log(counts + self.config.smoothing)
        stats = {"epochs": 0, "seconds": timer.seconds(), "n_items_with_likes": len(self.index)}
        if valid is not None:
            stats.update(validation_stats(self, valid))
        return stats

    def score(self, batch: pl.DataFrame) -> np.ndarray:
        return self.item_scores[self.index.lookup(batch["item_id"].to_numpy())]
