"""LATTICE (Zhang et al. 2021): item-item graphs mined from content, on top of LightGCN.

For each content modality m (`text`, `attributes`, `image` of the `item_features` asset, those present for at
least one item) two kNN item graphs link each item to its `knn_k` most cosine-similar items (itself included, as in
the paper's code), weighted by the similarity (clamped at 0) and normalised D^-1/2 S D^-1/2 (D: row sums):
- the original graph S^m, from the raw features, fixed;
- the learned graph, from the features through a learned linear map W_m e + b_m, rebuilt (with gradients for
  the maps and the modality weights) at the first step of every epoch and reused, detached, by the epoch's other
  steps, as the paper's code does (rebuilding it at every step tripled the time of an epoch).
Learned modality weights (a softmax) combine them: A = (1 - lambda) norm(sum_m w_m learned^m)
+ lambda sum_m w_m S^m. `item_layers` convolutions on A smooth the item id embeddings: h = A^L e_id. The
user-item side is LightGCN over the liked training pairs (the mean of layers 0..K of D^-1/2 A D^-1/2 propagation,
base embeddings only learned), and an item's final vector is its LightGCN vector + h / ||h|| (the paper's
combination with a CF model, and MMRec's). BPR loss with an L2 penalty on the batch's final vectors (as in the
paper's code).

Content only: the `collaborative` column (another model's CF embeddings) is never read. An item lacking a modality
gets a zero feature row there and is masked out of that modality's graphs (no neighbours, nobody's neighbour), so
the values stored in its missing row are never read; an item lacking all modalities has h = 0. Items nobody liked
in training still get a representation from their features: h averages the embeddings of their content
neighbours. Negatives come from the shared sampler (AUC setting: the user's disliked items, as LightGCN;
RANKING_CONFIG: uniform). Users unseen in training are folded in as the mean final vector of the history items
they liked; items outside catalogue and features score 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from explainrec_core.baselines.base import (
    Timer,
    TrainingData,
    liked_pairs,
    one_thread,
    score_folded_in,
    seed_everything,
    validate,
    validation_stats,
)
from explainrec_core.baselines.lightgcn import normalized_adjacency
from explainrec_core.baselines.mmgcn import Modality, content_modalities, multimodal_item_index


@dataclass(frozen=True)
class LATTICEConfig:
    """Tuned on valid (real ML-100K, seed 0; item_features built from the real items: all-MiniLM-L6-v2 text of
    "Title (Year). Genres: ..." + TF-IDF attributes of genres and item_attributes; no image; the paper's graph
    settings, knn_k 10, lambda 0.9, 1 item layer; epochs read off the per-epoch valid curve, up to 30): lr 1e-2
    with weight_decay 1e-4 / 1e-3 / 1e-2: valid AUC 0.681 / 0.681 / 0.674 (epochs 11 / 11 / 6, then falling); lr
    1e-3 weight_decay 1e-3: 0.673 at 25, still rising slowly; lr 3e-3 weight_decay 1e-3: 0.682 at 30 (0.680 from
    epoch 16). Chosen lr 3e-3, weight_decay 1e-3, disliked_negatives 1.0, 30 epochs: valid AUC 0.6823 (fit ~15 s on
    the busy 2-core machine). With features/item_features.py's own attributes (multi-hot of the 512 most frequent
    values) instead: 0.6832."""

    dim: int = 64
    """Embedding size; the learned graphs' feature maps project to it too."""
    layers: int = 2
    """LightGCN propagation layers K on the user-item graph."""
    item_layers: int = 1
    """Convolutions on the item-item graph (the paper's default 1)."""
    knn_k: int = 10
    """Neighbours per item in each modality's kNN graph (the paper's default 10)."""
    lambda_coeff: float = 0.9
    """Weight of the original (raw-feature) graphs against the learned ones (the paper's default 0.9)."""
    epochs: int = 30
    """Passes over the liked pairs."""
    lr: float = 3e-3
    """Adam learning rate."""
    weight_decay: float = 1e-3
    """L2 penalty on the batch's final user and item vectors (half the squared norms), per pair."""
    batch_size: int = 4096
    """Positive pairs per step; every step propagates over the whole user-item and item-item graphs."""
    negatives: int = 1
    """Negative items drawn per positive pair."""
    disliked_negatives: float = 1.0
    """Share of negatives drawn from the items the user rated and did not like (the rest: uniform)."""


RANKING_CONFIG = LATTICEConfig(disliked_negatives=0.0, lr=1e-2)
"""The ranking protocol's setting (a liked item among 99 unrated ones), tuned on 1,000 validation lists (liked
valid targets, built like the test lists; real ML-100K, seed 0, the item_features above; epochs read off the
per-epoch curve, up to 40): uniform negatives, as in the paper. lr 3e-3 weight_decay 1e-3: valid NDCG@10 0.474 at
40, still rising slowly; lr 1e-2 weight_decay 1e-3: 0.499 at 29 (0.495 at 30); lr 1e-2 weight_decay 1e-4: 0.501 at
35 (a plateau 0.49-0.50 from epoch 28). Chosen lr 1e-2, weight_decay 1e-3, 30 epochs: valid NDCG@10 0.495
(LightGCN 0.518, popularity 0.336; fit ~15 s). With the asset's multi-hot attributes: 0.496."""


Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(rows, cols, values) of a sparse item-item matrix."""


def knn_edges(features: torch.Tensor, present: torch.Tensor, k: int) -> Edges:
    """Each present item's top-k cosine neighbours among the present items (itself included), values >= 0.

    Differentiable in the kept similarities (the learned graphs train their feature maps through them)."""
    n = features.shape[0]
    k = min(k, int(present.sum()))
    unit = F.normalize(features, dim=1)
    sim = (unit @ unit.T).masked_fill(~(present.unsqueeze(1) & present.unsqueeze(0)), float("-inf"))
    values, cols = sim.topk(k, dim=1)
    rows = torch.arange(n).repeat_interleave(k)
    values, cols = values.reshape(-1), cols.reshape(-1)
    keep = present[rows] & torch.isfinite(values)
    return rows[keep], cols[keep], values[keep].clamp(min=0)


def sym_normalize(edges: Edges, n: int) -> Edges:
    """D^-1/2 S D^-1/2 with D the row sums (rows without weight keep value 0)."""
    rows, cols, values = edges
    degree = torch.zeros(n, dtype=values.dtype).index_add(0, rows, values)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1e-12).pow(-0.5), torch.zeros_like(degree))
    return rows, cols, values * inv_sqrt[rows] * inv_sqrt[cols]


def propagate(edges: Edges, x: torch.Tensor) -> torch.Tensor:
    """S x for the sparse S given by its edges."""
    rows, cols, values = edges
    return torch.zeros_like(x).index_add(0, rows, values.unsqueeze(1) * x[cols])


class LATTICENet(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: LATTICEConfig, modalities: list[Modality],
                 adjacency: torch.Tensor) -> None:
        super().__init__()
        self.n_users, self.n_items, self.cfg = n_users, n_items, cfg
        self.modalities, self.adjacency = modalities, adjacency
        self.embedding = nn.Embedding(n_users + n_items, cfg.dim)  # users first, then items
        nn.init.xavier_uniform_(self.embedding.weight)
        self.maps = nn.ModuleList([nn.Linear(m.features.shape[1], cfg.dim) for m in modalities])
        self.modal_weight = nn.Parameter(torch.full((len(modalities),), 1.0 / len(modalities)))
        # the original graphs never change: built once from the raw features
        self.original = [sym_normalize(knn_edges(m.features, m.present, cfg.knn_k), n_items) for m in modalities]

    def item_graph(self) -> Edges:
        """A = (1 - lambda) norm(sum_m w_m learned^m) + lambda sum_m w_m original^m, as one edge list."""
        weight = torch.softmax(self.modal_weight, dim=0)
        learned = [knn_edges(linear(m.features), m.present, self.cfg.knn_k)
                   for linear, m in zip(self.maps, self.modalities, strict=True)]
        learned = sym_normalize((torch.cat([e[0] for e in learned]), torch.cat([e[1] for e in learned]),
                                 torch.cat([w * e[2] for w, e in zip(weight, learned, strict=True)])), self.n_items)
        lam = self.cfg.lambda_coeff
        return (torch.cat([learned[0], *(e[0] for e in self.original)]),
                torch.cat([learned[1], *(e[1] for e in self.original)]),
                torch.cat([(1 - lam) * learned[2], *(lam * w * e[2] for w, e in zip(weight, self.original,
                                                                                      strict=True))]))

    def forward(self, graph: Edges | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) vectors: LightGCN's mean of layers 0..K, items + the normalised item-graph part.

        `graph` is the item graph to convolve on (default: built now, `item_graph()`)."""
        ego = self.embedding.weight
        layer, total = ego, ego
        for _ in range(self.cfg.layers):
            layer = torch.sparse.mm(self.adjacency, layer)
            total = total + layer
        final = total / (self.cfg.layers + 1)
        graph = self.item_graph() if graph is None else graph
        h = ego[self.n_users:]
        for _ in range(self.cfg.item_layers):
            h = propagate(graph, h)
        return final[: self.n_users], final[self.n_users:] + F.normalize(h, dim=1)


class LATTICE:
    name = "lattice"

    def __init__(self, config: LATTICEConfig | None = None) -> None:
        self.config = config or LATTICEConfig()

    def fit(self, data: TrainingData, seed: int, valid: pl.DataFrame | None = None) -> dict:
        with one_thread():
            return self._fit(data, seed, valid)

    def _fit(self, data: TrainingData, seed: int, valid: pl.DataFrame | None) -> dict:
        cfg, timer = self.config, Timer()
        self.item_index = multimodal_item_index(data)
        modalities = content_modalities(data, self.item_index, "LATTICE")  # before any training: fail fast
        rng = seed_everything(seed)
        self.like_threshold = data.like_threshold
        self.user_index, users, items, n_users, n_items, sampler = liked_pairs(data, self.item_index,
                                                                               cfg.disliked_negatives)

        self.net = LATTICENet(n_users, n_items, cfg, modalities, normalized_adjacency(users, items, n_users, n_items))
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        curve, losses = [], []
        graph: tuple = ()  # set at each epoch's first step (start == 0) before it is read
        for _epoch in range(cfg.epochs):
            order = rng.permutation(len(users))
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                b = order[start: start + cfg.batch_size]
                u = torch.from_numpy(np.repeat(users[b], cfg.negatives))
                i = torch.from_numpy(np.repeat(items[b], cfg.negatives))
                j = torch.from_numpy(sampler(rng, u.numpy()))
                # the learned item graph: rebuilt (differentiably) at an epoch's first step, then reused detached
                graph = self.net.item_graph() if start == 0 else tuple(x.detach() for x in graph)
                user_final, item_final = self.net(graph)
                pu, pi, pj = user_final[u], item_final[i], item_final[j]
                reg = 0.5 * (pu.pow(2).sum() + pi.pow(2).sum() + pj.pow(2).sum()) / len(u)
                loss = -F.logsigmoid((pu * (pi - pj)).sum(-1)).mean() + cfg.weight_decay * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            losses.append(total / max(len(users), 1))
            if valid is not None:
                self._cache()
                curve.append(validate(self, valid))
        self._cache()
        weights = torch.softmax(self.net.modal_weight.detach(), dim=0).tolist()
        stats = {"epochs": cfg.epochs, "seconds": timer.seconds(), "final_loss": losses[-1] if losses else None,
                 "loss_curve": losses, "n_users": len(self.user_index), "n_items": len(self.item_index),
                 "n_edges": len(users), "modalities": [m.name for m in modalities],
                 "modal_weights": dict(zip([m.name for m in modalities], weights, strict=True))}
        if valid is not None:
            stats.update(validation_stats(self, valid, curve))
        return stats

    @torch.no_grad()
    def _cache(self) -> None:
        """Build the graphs and propagate once after training: scoring only reads the final vectors."""
        self.user_final, self.item_final = self.net()

    def score(self, batch: pl.DataFrame) -> np.ndarray:
        return score_folded_in(self.user_final, self.item_final, self.user_index, self.item_index, batch,
                               self.like_threshold)
