"""Every baseline by name, and its settings per evaluation protocol.

Two protocols judge a baseline, and the best setting differs between them (tuned on validation for each):
- "auc": tell liked from disliked among the items a user rated (AUC of the test samples' labels); the model
  config's defaults are tuned for it.
- "ranking": find a liked item among 99 items the user never rated (Hit@K / NDCG@K of evaluation.ranking);
  each module's RANKING_CONFIG is tuned for it on validation candidate lists (liked validation targets).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from explainrec_core.baselines import bpr, content, lattice, lightgcn, mmgcn, popularity, sasrec
from explainrec_core.baselines.base import Recommender

BASELINES: dict[str, Callable[[], Recommender]] = {
    "popularity": popularity.Popularity,
    "bpr": bpr.BPR,
    "lightgcn": lightgcn.LightGCN,
    "sasrec": sasrec.SASRec,
    "content": content.ContentBased,
    "mmgcn": mmgcn.MMGCN,
    "lattice": lattice.LATTICE,
}

PROTOCOLS = ("auc", "ranking")

USES_ITEM_FEATURES = frozenset({"mmgcn", "lattice"})
"""The baselines that read the item_features asset (its content modalities) through TrainingData."""

RANKING_CONFIGS = {
    "popularity": popularity.PopularityConfig(),  # nothing to tune: the same model under both protocols
    "bpr": bpr.RANKING_CONFIG,
    "lightgcn": lightgcn.RANKING_CONFIG,
    "sasrec": sasrec.RANKING_CONFIG,
    "content": content.RANKING_CONFIG,
    "mmgcn": mmgcn.RANKING_CONFIG,
    "lattice": lattice.RANKING_CONFIG,
}


def build_baseline(name: str, protocol: str = "auc", overrides: dict | None = None) -> Recommender:
    """The baseline `name` with its `protocol`-tuned settings, then `overrides` (config field -> value) on top.

    Raises KeyError for an unknown name or protocol and TypeError for an unknown config field."""
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; known: {PROTOCOLS}")
    model = BASELINES[name]()
    if protocol == "ranking":
        model.config = RANKING_CONFIGS[name]
    model.config = dataclasses.replace(model.config, **(overrides or {}))
    return model
