"""The item_features table as tensors, and what one prompt's soft tokens are made of.

A prompt with item tokens names, in order, the items its soft tokens stand for (`SlotRequest.items`; USER_SLOT
for the user token) and the liked items it shows (`SlotRequest.liked`). The user is the mean collaborative vector
of those liked items (LightGCN's fold-in, see item_features.py); the `affinity` modality of an item is that user
vector times the item's collaborative vector, elementwise, whose sum is the CF model's own score for the pair
(`affinity_ranking` likewise from the ranking-protocol vectors, `collaborative_ranking`, with its own fold-in).
So the token after the target title carries "how well this item fits this user" as well as what the item is.
The `knowledge` modality is per pair too: the preference knowledge base's evidence of how people like the user
(`SlotRequest.user`) liked the item (features/knowledge_evidence.py); a request without a user has it masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from explainrec_core.config import PAIR_MODALITY_SOURCES
from explainrec_core.errors import ExplainRecError
from explainrec_core.features.knowledge_evidence import KnowledgeEvidence

USER_SLOT = -1
"""In `SlotRequest.items`: the user token's slot."""
PAIR_MODALITIES = (*PAIR_MODALITY_SOURCES, "knowledge")
"""Modalities computed per (user, item) pair when a prompt is built, not stored in the item_features table."""


class FeatureError(ExplainRecError):
    """Item features that do not fit the prompts or the settings (unknown items, missing columns)."""


@dataclass(frozen=True)
class SlotRequest:
    items: tuple[int, ...]
    """Item id of each soft token of the prompt, in prompt order; USER_SLOT for the user token."""
    liked: tuple[int, ...]
    """The liked items the prompt shows: the user's vector is the mean of their collaborative vectors."""
    user: int | None = None
    """The user the prompt is about: the `knowledge` modality's evidence is about them (None: masked)."""


class FeatureBank:
    """Per-modality item matrices (zeros where missing) with presence masks, indexed by item id."""

    def __init__(self, frame: pl.DataFrame, modalities: Sequence[str], source: str = "item_features",
                 knowledge: KnowledgeEvidence | None = None) -> None:
        missing = [m for m in modalities if m not in PAIR_MODALITIES and m not in frame.columns]
        missing += [f"{source} (needed by {m})" for m, source in PAIR_MODALITY_SOURCES.items()
                    if m in modalities and source not in frame.columns]
        if "knowledge" in modalities and knowledge is None:
            raise FeatureError(f"{source}: the knowledge modality needs the preference knowledge base (run "
                               "preference_knowledge_base), none was given")
        self.knowledge = knowledge if "knowledge" in modalities else None
        if missing or "item_id" not in frame.columns:
            raise FeatureError(f"{source}: missing columns {missing or ['item_id']}")
        frame = frame.sort("item_id")
        self.ids = frame["item_id"].to_numpy().astype(np.int64)
        if len(np.unique(self.ids)) != len(self.ids):
            raise FeatureError(f"{source}: duplicate item_id values")
        self.source = source
        self.vectors: dict[str, torch.Tensor] = {}
        self.present: dict[str, torch.Tensor] = {}
        sources = [PAIR_MODALITY_SOURCES.get(m, m) for m in modalities]
        stored = [m for m in dict.fromkeys([*sources, "collaborative"])
                  if m not in PAIR_MODALITIES and m in frame.columns]
        for m in stored:
            matrix, present = _matrix(frame[m], f"{source}, column '{m}'")
            # Each modality scaled to unit mean norm (one factor per modality, so directions, relative lengths and
            # the sign of every dot product are kept): the fusion's projections start on a common scale.
            norms = matrix[present].norm(dim=1)
            scale = float(norms.mean()) if len(norms) and float(norms.mean()) > 0 else 1.0
            self.vectors[m], self.present[m] = matrix / scale, present
        # A modality no item has (the image modality without CLIP weights) is left out of the fusion, and said so.
        self.off = [m for m in modalities if m not in PAIR_MODALITIES and not bool(self.present[m].any())]
        self.off += [m for m, source in PAIR_MODALITY_SOURCES.items()
                     if m in modalities and not bool(self.present[source].any())]
        self.modalities = [m for m in modalities if m not in self.off]
        if not self.modalities:
            raise FeatureError(f"{source}: none of the modalities {list(modalities)} has any item vector")

    @property
    def modality_dims(self) -> dict[str, int]:
        return {m: self.knowledge.dim if m == "knowledge" else
                int(self.vectors[PAIR_MODALITY_SOURCES.get(m, m)].shape[1]) for m in self.modalities}

    @property
    def context_dim(self) -> int:
        return int(self.vectors["collaborative"].shape[1]) if "collaborative" in self.vectors else 1

    def rows(self, item_ids: Sequence[int]) -> torch.Tensor:
        """Row index of each item; FeatureError naming unknown ids (a features table from another dataset)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.ids, ids), 0, max(len(self.ids) - 1, 0))
        unknown = ids[self.ids[pos] != ids] if len(self.ids) else ids
        if len(unknown):
            raise FeatureError(f"{self.source}: {len(unknown)} item ids have no features (e.g. "
                               f"{sorted(set(unknown.tolist()))[:5]}): the table belongs to another dataset or is "
                               "stale")
        return torch.from_numpy(pos)

    def user_vectors(self, liked: Sequence[Sequence[int]],
                     source: str = "collaborative") -> tuple[torch.Tensor, torch.Tensor]:
        """(n, dim) mean `source` vector of each list's liked items that have one, and (n,) whether any did (a user
        with none has no vector: masked, never a zero vector passed off as information). The `collaborative` one is
        also the fusion's context."""
        n = len(liked)
        if source not in self.vectors:
            return torch.zeros(n, 1), torch.zeros(n, dtype=torch.bool)
        cf, has = self.vectors[source], self.present[source]
        out, counts = torch.zeros(n, cf.shape[1]), torch.zeros(n)
        for row, items in enumerate(liked):
            if items:
                idx = self.rows(items)
                idx = idx[has[idx]]
                if len(idx):
                    out[row], counts[row] = cf[idx].mean(0), len(idx)
        return out, counts > 0

    def slot_inputs(self, requests: Sequence[SlotRequest]) -> dict:
        """Everything the fusion needs for the soft tokens of `requests`, flattened in (request, slot) order:
        item_positions / user_positions (indices into the flat slot list), the item slots' features and presence
        (in `self.modalities` order), their context (user) vectors, and the user slots' vectors."""
        user, has_user = self.user_vectors([r.liked for r in requests])
        flat = [(row, item) for row, r in enumerate(requests) for item in r.items]
        item_pos = [k for k, (_, item) in enumerate(flat) if item != USER_SLOT]
        user_pos = [k for k, (_, item) in enumerate(flat) if item == USER_SLOT]
        owner = torch.tensor([flat[k][0] for k in item_pos], dtype=torch.long)
        idx = self.rows([flat[k][1] for k in item_pos])
        features, present = {}, []
        for m in self.modalities:
            if m in PAIR_MODALITY_SOURCES:
                source = PAIR_MODALITY_SOURCES[m]
                pair_user, pair_has = (user, has_user) if source == "collaborative" else \
                    self.user_vectors([r.liked for r in requests], source)
                cf = self.vectors[source][idx]
                # times sqrt(dim): unit-norm user and item vectors give an affinity vector of about unit norm
                features[m] = pair_user[owner] * cf * cf.shape[1] ** 0.5
                present.append(self.present[source][idx] & pair_has[owner])
            elif m == "knowledge":
                users = [requests[flat[k][0]].user for k in item_pos]
                features[m], has = self.knowledge.vectors(users, [flat[k][1] for k in item_pos])
                present.append(has)
            else:
                features[m] = self.vectors[m][idx]
                present.append(self.present[m][idx])
        user_owner = torch.tensor([flat[k][0] for k in user_pos], dtype=torch.long)
        return {"n_slots": len(flat), "item_positions": torch.tensor(item_pos, dtype=torch.long),
                "user_positions": torch.tensor(user_pos, dtype=torch.long), "features": features,
                "present": torch.stack(present, dim=1) if present else torch.zeros(len(item_pos), 0, dtype=torch.bool),
                "context": user[owner], "has_context": has_user[owner],
                "user_context": user[user_owner], "user_has_context": has_user[user_owner]}


def _matrix(column: pl.Series, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, dim) float32 with zero rows where null, and the presence mask; non-finite values or ragged rows raise."""
    present = column.is_not_null().to_numpy()
    lengths = column.list.len().drop_nulls().unique().to_list()
    if len(lengths) > 1:
        raise FeatureError(f"{where}: vectors of different lengths {sorted(lengths)[:5]}")
    dim = int(lengths[0]) if lengths else 1
    matrix = np.zeros((len(column), dim), dtype=np.float32)
    if present.any():
        matrix[present] = np.asarray(column.drop_nulls().to_list(), dtype=np.float32)
    if not np.isfinite(matrix).all():
        bad = np.where(~np.isfinite(matrix).all(axis=1))[0]
        raise FeatureError(f"{where}: non-finite values in {len(bad)} rows (e.g. rows {bad[:5].tolist()})")
    return torch.from_numpy(matrix), torch.from_numpy(present)
