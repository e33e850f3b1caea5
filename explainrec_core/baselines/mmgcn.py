"""MMGCN (Wei et al. 2019): one graph convolution network per content modality, summed.

The graph links each user to the items they liked in the training period. For each content modality m (`text`,
`attributes`, `image` of the `item_features` asset, those present for at least one item) a GCN runs over that
graph: an item node starts from its modality features projected to the id-embedding size, a user node from a
learned preference vector of the same size (both rows L2 normalised). Each of the K layers is, as in the paper
(the element-wise "add" combination; MMRec's GCN class):

    h = LeakyReLU(mean over the node's neighbours of W1 x)             aggregation
    x_hat = LeakyReLU(W2 x + b2) + e_id                                 the node's own part, with its id embedding
    x = LeakyReLU(W3 h + b3 + x_hat)                                    combination

with e_id an id embedding per user and item shared by all modalities. A node's representation is the sum of its
K-th layer outputs over the modalities (the paper; MMRec divides that sum by the number of modalities, a constant
scale). Everything is learned with the BPR loss and an L2 penalty on the batch's id embedding and preference rows.

Content only: the `collaborative` column (another model's CF embeddings) is never read. An item lacking a modality
gets a zero feature row there, and its projected feature is masked to zero too (the projection's bias would
otherwise give every such item the same made-up feature): it enters that modality's graph with its id embedding
and neighbours only, and the values stored in its missing row are never read. Items nobody liked in training still
get a representation from their features (no neighbours: the own part only). Negatives come from the shared
sampler (AUC setting: the user's disliked items, as LightGCN; RANKING_CONFIG: uniform). Users unseen in training are
folded in as the mean final vector of the history items they liked; items outside catalogue and features score 0.
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

CONTENT_MODALITIES = ("text", "attributes", "image")
"""The `item_features` vector columns the multi-modal baselines use. `collaborative` is deliberately not one:
it holds CF embeddings, i.e. another baseline's output, not item content."""


@dataclass(frozen=True, eq=False)
class Modality:
    """One content modality as a model reads it: a feature row per item index, zero where the item lacks it."""

    name: str
    features: torch.Tensor
    """(n_items, d) float32; rows of items lacking the modality are zero."""
    present: torch.Tensor
    """(n_items,) bool: the item has this modality (a non-null vector and has_<name> not false)."""


def multimodal_item_index(data: TrainingData) -> IdIndex:
    """The items a multi-modal model has a row for: the catalogue, the training interactions' items, and every
    item of `item_features` (an item with features but no interactions still gets a representation)."""
    ids = catalogue_ids(data)
    if data.item_features is not None:
        ids = np.concatenate([ids, data.item_features["item_id"].to_numpy()])
    return IdIndex(ids)


def content_modalities(data: TrainingData, item_index: IdIndex, model: str) -> list[Modality]:
    """The content modalities of `data.item_features` present for at least one item, as rows per item index.

    Raises ValueError when there is no item_features table, when it has no content modality with a vector, or when
    a modality's vectors differ in length or are not finite."""
    frame = data.item_features
    if frame is None:
        raise ValueError(f"{model} needs item_features (TrainingData.item_features is None): the item content "
                         f"vectors ({', '.join(CONTENT_MODALITIES)}) it learns from")
    frame = frame.unique("item_id", keep="first", maintain_order=True)
    idx = item_index.lookup(frame["item_id"].to_numpy())
    modalities = []
    for name in CONTENT_MODALITIES:
        if name not in frame.columns:
            continue
        column = frame[name]
        if isinstance(column.dtype, pl.Array):
            column = column.cast(pl.List(column.dtype.inner))
        present = column.is_not_null().to_numpy() & (idx >= 0)
        if f"has_{name}" in frame.columns:
            present &= frame[f"has_{name}"].fill_null(False).to_numpy()
        if not present.any():
            continue
        vectors = column.filter(pl.Series(present))
        lengths = vectors.list.len().unique().to_list()
        if len(lengths) != 1 or lengths[0] == 0:
            raise ValueError(f"item_features.{name}: vectors must all have the same non-zero length, got {lengths}")
        values = vectors.list.to_array(lengths[0]).to_numpy().astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError(f"item_features.{name}: vectors have non-finite values")
        features = np.zeros((max(len(item_index), 1), lengths[0]), dtype=np.float32)
        features[idx[present]] = values
        mask = np.zeros(features.shape[0], dtype=bool)
        mask[idx[present]] = True
        modalities.append(Modality(name, torch.from_numpy(features), torch.from_numpy(mask)))
    if not modalities:
        raise ValueError(f"{model} needs item_features with at least one content modality "
                         f"({', '.join(CONTENT_MODALITIES)}) present for some item; got columns {frame.columns}")
    return modalities


@dataclass(frozen=True)
class MMGCNConfig:
    """Tuned on valid (real ML-100K, seed 0; item_features built from the real items: all-MiniLM-L6-v2 text of "Title
    (Year). Genres: ..." + TF-IDF attributes of genres and item_attributes; no image; epochs read off the per-epoch
    valid curve, up to 20). At 2 layers, lr in {1e-3, 3e-3} x weight_decay in {1e-3, 1e-2}, lr 1e-3 with
    weight_decay 1e-1 and 1, and lr 1e-2 weight_decay 1e-3: valid AUC peaks after one epoch at 0.666-0.676 (then
    falls to ~0.65 while the training loss keeps falling); lr 3e-4 weight_decay 1e-2: 0.675 at epoch 3. At 1 layer
    (weight_decay 1e-2): lr 1e-3 0.676 at epoch 12 (a flat 0.671-0.676 curve), lr 1e-2 0.667 (epoch 1),
    disliked_negatives 0.5 0.658. Chosen 1 layer, lr 1e-3, weight_decay 1e-2, disliked_negatives 1.0, 12 epochs:
    valid AUC 0.6759 (fit ~9 s on the busy 2-core machine). Most of it is there after one epoch: the features carry
    it (untrained, 2 layers: 0.551). With features/item_features.py's own attributes (multi-hot of the 512 most
    frequent values) instead: 0.6757."""

    dim: int = 64
    """Id-embedding size; every modality's features are projected to it."""
    layers: int = 1
    """Graph convolution layers K per modality (the paper and MMRec use 3; 2 peaked after one epoch here)."""
    epochs: int = 12
    """Passes over the liked pairs."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-2
    """L2 penalty on the batch's id-embedding rows (user, positive, negative) and user preference rows, per pair."""
    batch_size: int = 4096
    """Positive pairs per step; every step runs every modality's GCN over the whole graph."""
    negatives: int = 1
    """Negative items drawn per positive pair."""
    disliked_negatives: float = 1.0
    """Share of negatives drawn from the items the user rated and did not like (the rest: uniform)."""


RANKING_CONFIG = MMGCNConfig(disliked_negatives=0.0, weight_decay=1e-3, epochs=26)
"""The ranking protocol's setting (a liked item among 99 unrated ones), tuned on 1,000 validation lists (liked
valid targets, built like the test lists; real ML-100K, seed 0, the item_features above; epochs read off the
per-epoch curve, up to 30): uniform negatives, as in the paper. weight_decay 1e-2: 1 layer lr 1e-3 0.461 (epoch
26), lr 3e-3 0.448 (17), lr 1e-2 0.394 (16); 2 layers lr 1e-3 0.412 (24). 1 layer lr 1e-3 weight_decay 1e-3:
0.464 (26). Chosen 1 layer, lr 1e-3, weight_decay 1e-3, 26 epochs: valid NDCG@10 0.464 (a noisy plateau 0.445-0.464
from epoch 14; LightGCN 0.518, popularity 0.336; fit ~16 s). With the asset's multi-hot attributes: 0.446."""


def mean_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1 A of the bipartite graph (each row averages the node's neighbours; items come after users)."""
    rows = np.concatenate([users, items + n_users])
    cols = np.concatenate([items + n_users, users])
    degree = np.bincount(rows, minlength=n_users + n_items).astype(np.float32)
    values = 1.0 / np.maximum(degree, 1.0)[rows]
    n = n_users + n_items
    return torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(values),
                                   (n, n), check_invariants=False).coalesce()


class ModalityGCN(nn.Module):
    """The GCN of one modality: item features and user preferences through K aggregation/combination layers."""

    def __init__(self, n_users: int, feature_dim: int, dim: int, layers: int) -> None:
        super().__init__()
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, dim)))
        self.project = nn.Linear(feature_dim, dim)
        self.conv = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, dim))) for _ in range(layers)])
        self.own = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers)])
        self.combine = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers)])
        for layer in (*self.own, *self.combine):
            nn.init.xavier_normal_(layer.weight)

    def item_inputs(self, modality: Modality) -> torch.Tensor:
        """The items' layer-0 rows: projected features, exactly zero for items lacking the modality (masked after
        the projection, whose bias would otherwise give them all the same made-up feature)."""
        return self.project(modality.features) * modality.present.unsqueeze(1)

    def forward(self, modality: Modality, id_embedding: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        x = F.normalize(torch.cat([self.preference, self.item_inputs(modality)]), dim=1)
        for conv, own, combine in zip(self.conv, self.own, self.combine, strict=True):
            h = F.leaky_relu(torch.sparse.mm(adjacency, x @ conv))
            x_hat = F.leaky_relu(own(x)) + id_embedding
            x = F.leaky_relu(combine(h) + x_hat)
        return x


class MMGCNNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, layers: int, modalities: list[Modality],
                 adjacency: torch.Tensor) -> None:
        super().__init__()
        self.n_users, self.modalities, self.adjacency = n_users, modalities, adjacency
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users + n_items, dim)))
        self.gcns = nn.ModuleList(
            [ModalityGCN(n_users, m.features.shape[1], dim, layers) for m in modalities])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) representations: the sum over modalities."""
        total = sum(gcn(m, self.id_embedding, self.adjacency)
                    for gcn, m in zip(self.gcns, self.modalities, strict=True))
        return total[: self.n_users], total[self.n_users:]


class MMGCN:
    name = "mmgcn"

    def __init__(self, config: MMGCNConfig | None = None) -> None:
        self.config = config or MMGCNConfig()

    def fit(self, data: TrainingData, seed: int, valid: pl.DataFrame | None = None) -> dict:
        with one_thread():
            return self._fit(data, seed, valid)

    def _fit(self, data: TrainingData, seed: int, valid: pl.DataFrame | None) -> dict:
        cfg, timer = self.config, Timer()
        self.item_index = multimodal_item_index(data)
        modalities = content_modalities(data, self.item_index, "MMGCN")  # before any training: fail fast
        rng = seed_everything(seed)
        self.like_threshold = data.like_threshold
        self.user_index, users, items, n_users, n_items, sampler = liked_pairs(data, self.item_index,
                                                                               cfg.disliked_negatives)

        self.net = MMGCNNet(n_users, n_items, cfg.dim, cfg.layers, modalities,
                            mean_adjacency(users, items, n_users, n_items))
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
                ids = self.net.id_embedding
                reg = (ids[u].pow(2).sum() + ids[n_users + i].pow(2).sum() + ids[n_users + j].pow(2).sum()
                       + sum(gcn.preference[u].pow(2).sum() for gcn in self.net.gcns)) / len(u)
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
                 "n_edges": len(users), "modalities": [m.name for m in modalities]}
        if valid is not None:
            stats.update(validation_stats(self, valid, curve))
        return stats

    @torch.no_grad()
    def _cache(self) -> None:
        """Run the GCNs once after training: scoring only reads the final representations."""
        self.user_final, self.item_final = self.net()

    def score(self, batch: pl.DataFrame) -> np.ndarray:
        return score_folded_in(self.user_final, self.item_final, self.user_index, self.item_index, batch,
                               self.like_threshold)
