"""Biased matrix factorisation for rating prediction (Koren, Bell & Volinsky 2009): the reference regression model of
the rating task (paper eq. 10's rating term; Table I's RMSE / MAE).

    r̂(u, i) = mu + b_u + b_i + p_u . q_i          clipped to the training ratings' range

fitted on the training-period ratings by alternating least squares: with the item side fixed, each user's
(b_u, p_u) is a ridge regression of r - mu - b_i on (1, q_i) over the items the user rated, and likewise for each
item. ALS has no learning rate or epoch count to tune and is deterministic given the seeded start.

A prediction for a sample solves the same ridge regression for its user from everything the user had rated before
the target: the user's training-period ratings plus the sample's history (the ratings the LLM's prompt shows; most
test users joined after the training period and have only those). So a user seen in training gets the regression
training solves for them (plus any newer history), a new one is folded in, and nothing from the target or later
can enter. An item with no training rating has b_i = 0 and q_i = 0: its prediction is mu + b_u (counted as
`unknown_items`).

`dim = 0` is the biases-only model (mu + b_u + b_i), the classic strong baseline for RMSE on MovieLens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class BiasedMFConfig:
    """Chosen on validation RMSE (scripts/tune_rating.py: real ML-100K as params.yaml ingests it, global 80/10/10
    time split, all 9,786 validation samples, seed 0, 10 sweeps; 2026-12-02): dim in {0, 8, 16, 32} x reg in
    {3, 10, 30} x reg_bias in {2, 5, 15}. Best: dim 16, reg 10, reg_bias 5: RMSE 0.9457, MAE 0.7487 (dim 8 and 32
    within 0.0001; biases only 0.9519 at reg_bias 5; reg 3 overfits: 0.967-0.978). ~1 s per fit on 2 cores."""

    dim: int = 16
    """Latent factors; 0 = biases only."""
    reg: float = 10.0
    """Ridge penalty on the factors p_u, q_i."""
    reg_bias: float = 5.0
    """Ridge penalty on the biases b_u, b_i (shrinks users/items with few ratings towards the mean)."""
    sweeps: int = 10
    """ALS sweeps (one user solve and one item solve each)."""
    init_std: float = 0.1
    """Standard deviation of the seeded start of the item factors."""


def _ridge(features: np.ndarray, targets: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """argmin_w |features w - targets|^2 + sum_k penalty_k w_k^2 (one small solve)."""
    gram = features.T @ features + np.diag(penalty)
    return np.linalg.solve(gram, features.T @ targets)


class BiasedMF:
    """Fit with `fit(ratings)` (columns user_id, item_id, rating), predict samples with `predict(samples)`."""

    name = "biased_mf"

    def __init__(self, config: BiasedMFConfig | None = None) -> None:
        self.config = config or BiasedMFConfig()
        self.mu = 0.0
        self.low, self.high = 1.0, 5.0
        self.item_bias: dict[int, float] = {}
        self.item_factors: dict[int, np.ndarray] = {}
        self.user_ratings: dict[int, dict[int, float]] = {}

    def _penalty(self) -> np.ndarray:
        c = self.config
        return np.array([c.reg_bias] + [c.reg] * c.dim)

    def _solve_user(self, ratings: dict[int, float]) -> np.ndarray:
        """(b_u, p_u) from a user's {item: rating}, with the item side fixed; items unknown to the model carry no
        information about the user and are left out."""
        known = [(i, r) for i, r in ratings.items() if i in self.item_bias]
        if not known:
            return np.zeros(1 + self.config.dim)
        features = np.array([[1.0, *self.item_factors[i]] for i, _ in known])
        targets = np.array([r - self.mu - self.item_bias[i] for i, r in known])
        return _ridge(features, targets, self._penalty())

    def fit(self, ratings: pl.DataFrame, seed: int = 0) -> dict:
        if ratings.is_empty():
            raise ValueError("biased MF: no training ratings")
        c = self.config
        users = ratings["user_id"].to_numpy()
        items = ratings["item_id"].to_numpy()
        values = ratings["rating"].to_numpy().astype(np.float64)
        self.mu = float(values.mean())
        self.low, self.high = float(values.min()), float(values.max())
        item_ids, item_pos = np.unique(items, return_inverse=True)
        user_ids, user_pos = np.unique(users, return_inverse=True)
        rng = np.random.default_rng(seed)
        q = np.column_stack([np.zeros(len(item_ids)), rng.normal(0.0, c.init_std, (len(item_ids), c.dim))])
        p = np.zeros((len(user_ids), 1 + c.dim))
        by_user = np.argsort(user_pos, kind="stable")
        by_item = np.argsort(item_pos, kind="stable")
        user_cuts = np.searchsorted(user_pos[by_user], np.arange(len(user_ids) + 1))
        item_cuts = np.searchsorted(item_pos[by_item], np.arange(len(item_ids) + 1))
        penalty = self._penalty()
        for _ in range(c.sweeps):
            for u in range(len(user_ids)):  # user side: r - mu - b_i ~ (1, q_i) . (b_u, p_u)
                rows = by_user[user_cuts[u]: user_cuts[u + 1]]
                feats = np.column_stack([np.ones(len(rows)), q[item_pos[rows], 1:]])
                p[u] = _ridge(feats, values[rows] - self.mu - q[item_pos[rows], 0], penalty)
            for i in range(len(item_ids)):  # item side: r - mu - b_u ~ (1, p_u) . (b_i, q_i)
                rows = by_item[item_cuts[i]: item_cuts[i + 1]]
                feats = np.column_stack([np.ones(len(rows)), p[user_pos[rows], 1:]])
                q[i] = _ridge(feats, values[rows] - self.mu - p[user_pos[rows], 0], penalty)
        self.item_bias = dict(zip(item_ids.tolist(), q[:, 0].tolist(), strict=True))
        self.item_factors = {int(i): q[k, 1:] for k, i in enumerate(item_ids)}
        self.user_ratings = {}
        for u, i, r in zip(users.tolist(), items.tolist(), values.tolist(), strict=True):
            self.user_ratings.setdefault(u, {})[i] = r
        fitted = self._predict_pairs(p[user_pos], items)
        return {"train_rmse": float(np.sqrt(np.mean((fitted - values) ** 2))), "users": len(user_ids),
                "items": len(item_ids), "ratings": len(values), "mu": self.mu}

    def _predict_pairs(self, user_vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        bias = np.array([self.item_bias.get(int(i), 0.0) for i in items])
        factors = np.array([self.item_factors.get(int(i), np.zeros(self.config.dim)) for i in items])
        dot = (user_vectors[:, 1:] * factors).sum(axis=1) if self.config.dim else 0.0
        return np.clip(self.mu + user_vectors[:, 0] + bias + dot, self.low, self.high)

    def predict(self, samples: pl.DataFrame) -> np.ndarray:
        """Predicted rating of each sample's (user, target item), from the user's training-period ratings and the
        sample's history (see the module doc)."""
        vectors = []
        for user, history, history_ratings in samples.select("user_id", "history_item_ids",
                                                             "history_ratings").iter_rows():
            known = {**self.user_ratings.get(user, {}),
                     **dict(zip(history or [], history_ratings or [], strict=True))}
            vectors.append(self._solve_user(known))
        vectors = np.array(vectors).reshape(len(vectors), 1 + self.config.dim)
        return self._predict_pairs(vectors, samples["item_id"].to_numpy())

    def unknown_items(self, samples: pl.DataFrame) -> int:
        return int(sum(int(i) not in self.item_bias for i in samples["item_id"].to_list()))


class GlobalMean:
    """Predicts the training ratings' mean for everyone: the floor any rating model must beat."""

    name = "global_mean"

    def __init__(self) -> None:
        self.mu = 0.0

    def fit(self, ratings: pl.DataFrame, seed: int = 0) -> dict:
        self.mu = float(ratings["rating"].mean())
        return {"mu": self.mu}

    def predict(self, samples: pl.DataFrame) -> np.ndarray:
        return np.full(samples.height, self.mu)
