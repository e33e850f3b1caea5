"""Meta-learned adaptation to new users (paper eq. 6): theta'_u = theta - alpha * grad L_support(u)(theta).

The model follows MeLU (Lee et al. 2019, RecBole-MetaRec's anchor): global encoders of the item (its content
vectors from the item_features asset, and collaborative vectors refitted without the task users' ratings:
steps/meta_steps.py) and of the user (one-hot demographic groups of the knowledge base), and decision layers on
top. Only the decision layers are adapted per user: they are where a user's taste
lives, they are small (a step costs little), and the encoders learned over all users stay shared.

Tasks are training-period users: a task's support set is k of a user's ratings in time order and its query set the
`meta.query` ratings right after them; each user gives as many disjoint (support, query) windows as their ratings
allow, and k cycles over the curve's history lengths, k = 0 included (no support: the global model must also be good
with no history, the true zero-shot case). At test time each new user is adapted on the k ratings of their history
and then scores the target.

Three variants share everything but the inner step, so the comparison is like with like: `none` (no inner step: the
same model trained on the query sets), `first` (first-order MAML: the inner gradient is treated as a constant in
the outer update) and `second` (second-order MAML: the outer gradient flows through the inner step). All use
torch.func (functional_call + grad, vmap over tasks); no extra dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from explainrec_core.config import MetaConfig

LOCAL = "decision."  # the parameters the inner step adapts


class MetaRecommender(nn.Module):
    def __init__(self, item_dim: int, user_dim: int, hidden: int):
        super().__init__()
        self.item = nn.Sequential(nn.Linear(item_dim, hidden), nn.ReLU())
        self.user = nn.Linear(user_dim, hidden)  # its bias is the representation of a user with no known group
        self.decision = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, item_x: torch.Tensor, user_x: torch.Tensor) -> torch.Tensor:
        """Logits of P(like): item_x [..., n, item_dim] with user_x [..., user_dim] (one user per set of items)."""
        items = self.item(item_x)
        users = self.user(user_x).unsqueeze(-2).expand(*items.shape[:-1], -1)
        return self.decision(torch.cat([items, users], -1)).squeeze(-1)


def _support_loss(local: dict, shared: dict, model: nn.Module, item_x, user_x, y) -> torch.Tensor:
    logits = functional_call(model, {**shared, **local}, (item_x, user_x))
    return nn.functional.binary_cross_entropy_with_logits(logits, y)


def adapt(model: nn.Module, params: dict[str, torch.Tensor], item_x: torch.Tensor, user_x: torch.Tensor,
          y: torch.Tensor, alpha: float, steps: int, order: str) -> dict[str, torch.Tensor]:
    """The decision layers after `steps` inner steps of eq. 6 on one user's support set (item_x [k, d], y [k]).
    With no support (k = 0) or order `none` they are returned unchanged. `first`: the inner gradient is detached
    (first-order MAML); `second`: it stays in the graph, so an outer gradient flows through it."""
    local = {n: p for n, p in params.items() if n.startswith(LOCAL)}
    if order == "none" or item_x.shape[-2] == 0:
        return local
    shared = {n: p for n, p in params.items() if not n.startswith(LOCAL)}
    for _ in range(steps):
        g = grad(_support_loss)(local, shared, model, item_x, user_x, y)
        if order == "first":
            g = {n: v.detach() for n, v in g.items()}
        local = {n: p - alpha * g[n] for n, p in local.items()}
    return local


def adapted_logits(model: nn.Module, params: dict, support_x, support_user, support_y, target_x, alpha: float,
                   steps: int, order: str) -> torch.Tensor:
    """One user: adapt on the support set, then score the target items (target_x [n, d])."""
    local = adapt(model, params, support_x, support_user, support_y, alpha, steps, order)
    shared = {n: p for n, p in params.items() if not n.startswith(LOCAL)}
    return functional_call(model, {**shared, **local}, (target_x, support_user))


@dataclass(frozen=True)
class Features:
    """Row-indexed item and user inputs; the last row of each is the zero vector of an unknown id."""

    item_index: dict[int, int]
    item_x: torch.Tensor
    user_index: dict[int, int]
    user_x: torch.Tensor

    def items(self, ids: np.ndarray) -> torch.Tensor:
        unknown = len(self.item_index)
        return self.item_x[torch.from_numpy(np.array([self.item_index.get(int(i), unknown) for i in ids.ravel()],
                                                     dtype=np.int64)).reshape(ids.shape)]

    def users(self, ids: np.ndarray) -> torch.Tensor:
        unknown = len(self.user_index)
        return self.user_x[torch.from_numpy(np.array([self.user_index.get(int(u), unknown) for u in ids],
                                                     dtype=np.int64))]


def build_features(item_features: pl.DataFrame, user_groups: pl.DataFrame) -> Features:
    """Item input: text, attribute and collaborative vectors (zeros where an item lacks one, with a flag for the
    collaborative one, whose scale is normalised); user input: one-hot of their known demographic groups."""
    parts = []
    for column in ("text", "attributes", "collaborative"):
        if column not in item_features.columns or item_features[column].drop_nulls().is_empty():
            continue
        dim = item_features[column].drop_nulls().list.len()[0]
        matrix = np.stack([np.zeros(dim, np.float32) if v is None else np.asarray(v, np.float32)
                           for v in item_features[column].to_list()])
        if column == "collaborative":
            present = item_features["has_collaborative"].to_numpy()
            matrix /= max(float(matrix[present].std()), 1e-6)
            parts.append(present.astype(np.float32)[:, None])
        parts.append(matrix)
    item_x = np.concatenate(parts, 1)
    item_x = np.concatenate([item_x, np.zeros((1, item_x.shape[1]), np.float32)])
    known = user_groups.filter(pl.col("group_type") != "all").with_columns(
        key=pl.col("group_type") + ":" + pl.col("group_value"))
    vocabulary = {k: i for i, k in enumerate(sorted(known["key"].unique().to_list()))}
    users = sorted(user_groups["user_id"].unique().to_list())
    user_index = {u: i for i, u in enumerate(users)}
    user_x = np.zeros((len(users) + 1, max(len(vocabulary), 1)), np.float32)
    for u, key in known.select("user_id", "key").iter_rows():
        user_x[user_index[u], vocabulary[key]] = 1.0
    return Features({int(i): r for r, i in enumerate(item_features["item_id"].to_list())}, torch.from_numpy(item_x),
                    user_index, torch.from_numpy(user_x))


@dataclass(frozen=True)
class Tasks:
    """Training tasks with k support ratings each: item ids [T, k] and [T, query], labels alike, users [T]."""

    k: int
    users: np.ndarray
    support_items: np.ndarray
    support_y: np.ndarray
    query_items: np.ndarray
    query_y: np.ndarray


def training_tasks(ratings: pl.DataFrame, k: int, query: int) -> Tasks:
    """Disjoint (k support, `query` query) windows of each user's training-period ratings in time order."""
    rows = {name: [] for name in ("users", "support_items", "support_y", "query_items", "query_y")}
    ordered = ratings.sort("user_id", "timestamp", "item_id")
    for (user,), part in ordered.group_by("user_id", maintain_order=True):
        items, labels = part["item_id"].to_numpy(), part["label"].to_numpy().astype(np.float32)
        for start in range(0, len(items) - k - query + 1, k + query):
            rows["users"].append(user)
            rows["support_items"].append(items[start:start + k])
            rows["support_y"].append(labels[start:start + k])
            rows["query_items"].append(items[start + k:start + k + query])
            rows["query_y"].append(labels[start + k:start + k + query])
    shapes = {"support_items": (0, k), "support_y": (0, k), "query_items": (0, query), "query_y": (0, query)}
    arrays = {n: np.array(v) if v else np.zeros(shapes.get(n, (0,))) for n, v in rows.items()}
    return Tasks(k, **arrays)


def meta_train(model: MetaRecommender, features: Features, tasks: list[Tasks], cfg: MetaConfig, order: str,
               on_step=None) -> list[float]:
    """Outer loop: Adam on the mean query loss of a batch of tasks, each adapted on its support set (vmap over the
    batch; batches of one k at a time, k cycling in a seeded order). Returns the loss of every step."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.meta_lr)
    batches = []
    for epoch in range(cfg.epochs):
        for t in tasks:
            order_ = rng.permutation(len(t.users))
            batches += [(epoch, t, order_[i:i + cfg.tasks_per_batch])
                        for i in range(0, len(order_), cfg.tasks_per_batch)]
    batches.sort(key=lambda b: (b[0], rng.random()))  # within an epoch, every k interleaved
    losses = []
    for _, t, idx in batches:
        params = dict(model.named_parameters())

        def query_loss(sx, su, sy, qx, qy, params=params):
            logits = adapted_logits(model, params, sx, su, sy, qx, cfg.inner_lr, cfg.inner_steps, order)
            return nn.functional.binary_cross_entropy_with_logits(logits, qy)

        loss = vmap(query_loss)(features.items(t.support_items[idx]), features.users(t.users[idx]),
                                torch.from_numpy(t.support_y[idx].astype(np.float32)),
                                features.items(t.query_items[idx]),
                                torch.from_numpy(t.query_y[idx].astype(np.float32))).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(1)
    return losses


def score_samples(model: MetaRecommender, features: Features, samples: pl.DataFrame, like_threshold: float,
                  cfg: MetaConfig, order: str, batch: int = 512) -> np.ndarray:
    """P(like) of each sample's target after adapting on its history (every row must have the same history
    length k: the true cold-start sets do)."""
    lengths = samples["history_item_ids"].list.len().unique().to_list()
    if len(lengths) > 1:
        raise ValueError(f"score_samples needs one history length per call, got {sorted(lengths)}")
    k = lengths[0] if lengths else 0
    params = {n: p.detach() for n, p in model.named_parameters()}
    out = []
    for start in range(0, samples.height, batch):
        part = samples.slice(start, batch)
        history = np.array(part["history_item_ids"].to_list(), dtype=np.int64).reshape(part.height, k)
        labels = (np.array(part["history_ratings"].to_list(), dtype=np.float32).reshape(part.height, k)
                  > like_threshold).astype(np.float32)

        def one(sx, su, sy, tx, params=params):
            return adapted_logits(model, params, sx, su, sy, tx, cfg.inner_lr, cfg.inner_steps, order)

        logits = vmap(one)(features.items(history), features.users(part["user_id"].to_numpy()),
                           torch.from_numpy(labels), features.items(part["item_id"].to_numpy()[:, None]))
        out.append(torch.sigmoid(logits.detach()).squeeze(-1).numpy())
    return np.concatenate(out) if out else np.empty(0)
