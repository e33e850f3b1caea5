"""The knowledge base's evidence about a (user, item) pair as a vector: the `knowledge` modality of an item token.

The preference knowledge base (knowledge/, paper eq. 5) knows, for every demographic group a user belongs to, how
that group liked each item in the training period. Placed in the item token after a title (and so also read for
the target), it tells the LLM "people like this user liked this film", which a new user's empty history cannot.
Per pair, with T the KB's group types (ML-100K: age, all, gender, occupation) in sorted order:

    [ logit P(i | u) ,  logit p_g(t)(i) for t in T ,  log(1 + n_all(i)) / 5 ]        each logit minus logit(global)

P(i | u) = sum_t w_t p_g(t)(i) over the types the user has a known value for (the KB's own score); a type the user
has no known value for repeats the `all` group's rate, as the KB's fallback does.

Leave-one-out. The KB counted every training-period rating, also the one a training sample asks about: its
group rates would hold the label the LLM is asked to predict. A pair the KB counted is therefore read with that
user's own ratings of the item removed from their groups' item counts, p = (likes - y + m q) / (n - c + m), the
same removal the KB's weight fit uses. Validation and test pairs were never counted: nothing to remove. The
genre-level prior q_g(i) still holds the rating (one among the hundreds to tens of thousands behind each group's
genre rate); that residual is documented, not removed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from explainrec_core.knowledge.demographic import ALL

COUNT_SCALE = 5.0
"""log(1 + ratings) / COUNT_SCALE: ML-100K's most rated film (583 ratings) gives ~1.3, the same scale as a logit."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class KnowledgeEvidence:
    """Dense per-group-type tables of the KB (counts, likes, priors per group and catalogue item), the users'
    groups, and the training-period (user, item) counts to leave out. `vectors(users, items)` is the modality."""

    def __init__(self, items: pl.DataFrame, user_groups: pl.DataFrame, weights: dict[str, float],
                 global_rate: float, item_smoothing: float, counted: pl.DataFrame, digest: str = "") -> None:
        """`items`: the KB's items table (group_type, group_value, item_id, n, likes, prior); `user_groups`:
        (user_id, group_type, group_value); `counted`: the training-period ratings the KB was built from (user_id,
        item_id, label); `digest` identifies the knowledge base (a fusion is checked against it on load)."""
        self.digest = digest
        self.types = sorted(weights)
        if ALL not in self.types:
            raise ValueError(f"the knowledge base has no '{ALL}' group type (types: {self.types})")
        self.weights = np.array([weights[t] for t in self.types], dtype=np.float64)
        self.global_rate, self.m = float(global_rate), float(item_smoothing)
        self.item_ids = np.sort(items["item_id"].unique().to_numpy().astype(np.int64))
        self.n, self.likes, self.prior, self.group_of = {}, {}, {}, {}
        for t in self.types:
            part = items.filter(pl.col("group_type") == t)
            values = part["group_value"].unique().sort().to_list()
            shape = (len(values), len(self.item_ids))
            g = part["group_value"].replace_strict({v: k for k, v in enumerate(values)},
                                                   return_dtype=pl.Int64).to_numpy()
            i = np.searchsorted(self.item_ids, part["item_id"].to_numpy())
            for table, column in ((self.n, "n"), (self.likes, "likes"), (self.prior, "prior")):
                table[t] = np.full(shape, np.nan)
                table[t][g, i] = part[column].to_numpy().astype(np.float64)
            members = user_groups.filter((pl.col("group_type") == t) & pl.col("group_value").is_in(values))
            self.group_of[t] = dict(zip(members["user_id"].to_list(),
                                        (values.index(v) for v in members["group_value"].to_list()), strict=True))
        pairs = counted.group_by("user_id", "item_id").agg(c=pl.len(), y=pl.col("label").sum())
        self.counted = {(u, i): (c, y) for u, i, c, y in pairs.select("user_id", "item_id", "c", "y").iter_rows()}

    @property
    def dim(self) -> int:
        return 2 + len(self.types)

    @classmethod
    def from_store(cls, kb, counted: pl.DataFrame) -> KnowledgeEvidence:
        """From a loaded knowledge base (knowledge/store.py) and its training-period ratings."""
        digest = hashlib.sha256(json.dumps(kb.manifest, sort_keys=True, default=str).encode()).hexdigest()
        return cls(kb.tables["items"], kb.tables["user_groups"], kb.manifest["weights"], kb.manifest["global_rate"],
                   kb.manifest["item_smoothing"], counted, digest)

    def rates(self, user: int, item: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(p per group type (NaN where the user has no known value), known mask, n_all) for one pair, leave-one-out
        when the KB counted the pair. An item outside the catalogue: every rate is the global like rate."""
        k = int(np.searchsorted(self.item_ids, item))
        if k >= len(self.item_ids) or self.item_ids[k] != item:
            return np.full(len(self.types), self.global_rate), np.array([t == ALL for t in self.types]), 0.0
        c, y = self.counted.get((user, item), (0, 0))
        p, known, n_all = np.full(len(self.types), np.nan), np.zeros(len(self.types), dtype=bool), 0.0
        for j, t in enumerate(self.types):
            g = 0 if t == ALL else self.group_of[t].get(user)
            if g is None:
                continue
            n, likes = self.n[t][g, k] - c, self.likes[t][g, k] - y
            if n < 0 or likes < 0:
                raise ValueError(f"knowledge base: user {user}'s ratings of item {item} are not in group {t}'s "
                                 "counts: the KB and the training ratings come from different periods")
            p[j], known[j] = (likes + self.m * self.prior[t][g, k]) / (n + self.m), True
            if t == ALL:
                n_all = n
        return p, known, n_all

    def vectors(self, users: Sequence[int | None], items: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, dim) evidence vectors and (n,) presence: a pair without a user (a prompt built without one) is
        masked, never a vector of zeros passed off as evidence."""
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        present = np.zeros(len(items), dtype=bool)
        base = _logit(np.array(self.global_rate))
        all_col = self.types.index(ALL)
        for row, (user, item) in enumerate(zip(users, items, strict=True)):
            if user is None:
                continue
            p, known, n_all = self.rates(int(user), int(item))
            mixed = self._mix(p, known)
            filled = np.where(known, p, p[all_col])
            out[row] = np.concatenate([[_logit(np.array(mixed)) - base], _logit(filled) - base,
                                       [np.log1p(n_all) / COUNT_SCALE]])
            present[row] = True
        return torch.from_numpy(out), torch.from_numpy(present)

    def score(self, user: int, item: int) -> float:
        """P(i | u), leave-one-out for a counted pair (the first entry of `vectors`, as a probability); for a pair
        the KB did not count, the KB's own score (demographic.score: a test holds them equal)."""
        return self._mix(*self.rates(user, item)[:2])

    def _mix(self, p: np.ndarray, known: np.ndarray) -> float:
        """eq. 5: the group rates weighted by w_t, renormalised over the types the user has a known value for."""
        return float((self.weights[known] * p[known]).sum() / self.weights[known].sum())
