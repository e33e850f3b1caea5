"""LightGCN (He et al. 2020): BPR over embeddings smoothed on the user-item graph.

The graph links each user to the items they liked in the training period. With A its (users + items) square
adjacency matrix and D the degrees, one layer is E_{k+1} = D^-1/2 A D^-1/2 E_k (no weights, no non-linearity:
the paper's point), and a node's final embedding is the mean of E_0..E_K. Only E_0 is learned, with the BPR
loss and an L2 penalty on the E_0 rows of the batch, as in the paper.

Negatives come from the shared sampler: items the user did not like, part of them from the items the user rated
and did not like (see base.NegativeSampler; for the ranking protocol, RANKING_CONFIG, all uniform). Users unseen
in training are folded in as the mean final embedding of the history items they liked; unknown items score 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from explainrec_core.baselines.base import (
    IdIndex,
    Timer,
    TrainingData,
    catalogue_ids,
    liked_pairs,
    one_thread,
    score_folded_in,
    seed_everything,
    validate,
    validation_stats,
)


@dataclass(frozen=True)
class LightGCNConfig:
    """Tuned on valid (real ML-100K, seed 0; epochs read off the per-epoch valid curve, up to 30): layers in
    {1, 2, 3}, weight_decay in {1e-4, 1e-3, 1e-2, 3e-2}, lr in {3e-3, 1e-2, 3e-2}, dim 32 with
    disliked_negatives 0.7 (0.675, worse). Chosen dim 64, 2 layers, lr 1e-2, weight_decay 1e-2,
    disliked_negatives 1.0, 25 epochs: valid AUC 0.6865 (fit ~7 s). No item bias (as in the paper), which is
    probably why it stays a little below BPR here."""

    dim: int = 64
    """Embedding size."""
    layers: int = 2
    """Propagation layers K (the final embedding averages layers 0..K)."""
    epochs: int = 25
    """Passes over the liked pairs."""
    lr: float = 1e-2
    """Adam learning rate."""
    weight_decay: float = 1e-2
    """L2 penalty on the layer-0 embeddings of a batch, per pair."""
    batch_size: int = 4096
    """Positive pairs per step; every step propagates over the whole graph."""
    negatives: int = 1
    """Negative items drawn per positive pair."""
    disliked_negatives: float = 1.0
    """Share of negatives drawn from the items the user rated and did not like (the rest: uniform)."""


RANKING_CONFIG = LightGCNConfig(disliked_negatives=0.0, weight_decay=1e-3, epochs=50)
"""The ranking protocol's setting (a liked item among 99 unrated ones), tuned on 1,000 validation lists (liked
valid targets, built like the test lists; real ML-100K, seed 0; epochs read off the per-epoch curve, up to 60):
uniform negatives, as in the paper (the AUC setting's disliked-item negatives: valid NDCG@10 0.218, below
popularity's 0.336; uniform ones 0.447 at 25 epochs, weight_decay 1e-2). Then layers in {1, 2, 3} at
weight_decay 1e-3 (best 0.515 / 0.521 / 0.495) and weight_decay 1e-2 at 2 layers (0.456). Chosen 2 layers,
weight_decay 1e-3, 50 epochs: valid NDCG@10 0.518 (0.521 at epoch 49, a plateau from about epoch 45)."""

def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph as a sparse (n_users + n_items)^2 tensor; items come after users."""
    rows = np.concatenate([users, items + n_users])
    cols = np.concatenate([items + n_users, users])
    degree = np.bincount(rows, minlength=n_users + n_items).astype(np.float32)
    inv_sqrt = 1.0 / np.sqrt(np.maximum(degree, 1.0))  # isolated nodes (items nobody liked) have no edges anyway
    values = inv_sqrt[rows] * inv_sqrt[cols]
    n = n_users + n_items
    return torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(values),
                                   (n, n), check_invariants=False).coalesce()


class LightGCNNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, layers: int, adjacency: torch.Tensor) -> None:
        super().__init__()
        self.n_users, self.layers, self.adjacency = n_users, layers, adjacency
        self.embedding = nn.Embedding(n_users + n_items, dim)  # E_0: users first, then items
        nn.init.normal_(self.embedding.weight, std=0.1)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings: the mean of layers 0..K."""
        layer = self.embedding.weight
        total = layer
        for _ in range(self.layers):
            layer = torch.sparse.mm(self.adjacency, layer)
            total = total + layer
        final = total / (self.layers + 1)
        return final[: self.n_users], final[self.n_users:]


class LightGCN:
    name = "lightgcn"

    def __init__(self, config: LightGCNConfig | None = None) -> None:
        self.config = config or LightGCNConfig()

    def fit(self, data: TrainingData, seed: int, valid: pl.DataFrame | None = None) -> dict:
        with one_thread():
            return self._fit(data, seed, valid)

    def _fit(self, data: TrainingData, seed: int, valid: pl.DataFrame | None) -> dict:
        cfg, timer = self.config, Timer()
        rng = seed_everything(seed)
        self.item_index = IdIndex(catalogue_ids(data))
        self.like_threshold = data.like_threshold
        self.user_index, users, items, n_users, n_items, sampler = liked_pairs(data, self.item_index,
                                                                               cfg.disliked_negatives)

        self.net = LightGCNNet(n_users, n_items, cfg.dim, cfg.layers,
                               normalized_adjacency(users, items, n_users, n_items))
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        curve, losses = [], []
        for _epoch in range(cfg.epochs):
            order = rng.permutation(len(users))
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                b = order[start: start + cfg.batch_size]
                u = torch.from_numpy(np.repeat(users[b], cfg.negatives))
                i = torch.from_numpy(np.repeat(items[b], cfg.negatives))
                j = torch.from_numpy(sampler(rng, u.numpy()))
                user_final, item_final = self.net()
                diff = (user_final[u] * (item_final[i] - item_final[j])).sum(-1)
                ego = self.net.embedding.weight
                reg = (ego[u].pow(2).sum() + ego[n_users + i].pow(2).sum() + ego[n_users + j].pow(2).sum()) / len(u)
                loss = -F.logsigmoid(diff).mean() + cfg.weight_decay * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            losses.append(total / max(len(users), 1))
            if valid is not None:
                self._cache()
                curve.append(validate(self, valid))
        self._cache()
        stats = {"epochs": cfg.epochs, "seconds": timer.seconds(), "final_loss": losses[-1] if losses else None,
                 "loss_curve": losses, "n_users": len(self.user_index), "n_items": len(self.item_index),
                 "n_edges": len(users)}
        if valid is not None:
            stats.update(validation_stats(self, valid, curve))
        return stats

    @torch.no_grad()
    def _cache(self) -> None:
        """Propagate once after training: scoring only reads the final embeddings."""
        self.user_final, self.item_final = self.net()

    def score(self, batch: pl.DataFrame) -> np.ndarray:
        return score_folded_in(self.user_final, self.item_final, self.user_index, self.item_index, batch,
                               self.like_threshold)
